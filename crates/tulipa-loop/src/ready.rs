//! The ready queue: what runs on the loop's next iteration, in the order it became ready (PEP
//! 3156's FIFO guarantee for `call_soon`), whatever its kind.
//!
//! A `call_soon` callback is owned by the queue alone, in a [`Soon`] box: an allocation of 16
//! bytes (the call site and a one-pointer closure fit glibc's smallest chunk), where a cell shared
//! with its handle would also carry two reference counts and a flags header. Its [`Handle`]
//! instead remembers the entry's sequence number: every entry gets the next number when it is
//! queued, and entries leave only from the front, so the entry of number `seq` sits at index
//! `seq - base` while it waits. Cancelling takes the callback out at once and leaves a
//! [`Job::Cancelled`] mark that the loop skips.
//!
//! [`Handle`]: crate::Handle

use std::collections::VecDeque;
use std::panic::Location;
use std::rc::Rc;

use async_task::Runnable;

use crate::handle::Callback;

/// A ready-queue entry (24 bytes).
pub(crate) enum Job {
    /// A cell shared with its handle: fired timers, fd and signal callbacks, repeating and
    /// threadsafe callbacks.
    Cb(Rc<dyn Callback>),
    /// A `call_soon` callback, owned by the queue.
    Soon(Box<dyn SoonCallback>),
    /// A `call_soon` callback cancelled while it waited here.
    Cancelled,
    /// A task's step (`async-task`).
    Task(Runnable),
}

/// A `call_soon` callback as the queue owns it.
pub(crate) trait SoonCallback {
    /// Where it was scheduled.
    fn location(&self) -> &'static Location<'static>;
    /// Runs it, consuming it.
    fn run(self: Box<Self>);
}

/// The one implementation of [`SoonCallback`]: the closure and its call site.
pub(crate) struct Soon<F> {
    location: &'static Location<'static>,
    f: F,
}

impl<F: FnOnce() + 'static> Soon<F> {
    pub(crate) fn boxed(f: F, location: &'static Location<'static>) -> Box<dyn SoonCallback> {
        Box::new(Soon { location, f })
    }
}

impl<F: FnOnce()> SoonCallback for Soon<F> {
    fn location(&self) -> &'static Location<'static> {
        self.location
    }
    fn run(self: Box<Self>) {
        (self.f)();
    }
}

/// The queue, with the sequence number of its front entry.
pub(crate) struct ReadyQueue {
    jobs: VecDeque<Job>,
    /// The sequence number of `jobs[0]`: how many entries have left the queue so far.
    base: u64,
}

impl ReadyQueue {
    pub(crate) fn with_capacity(n: usize) -> Self {
        ReadyQueue {
            jobs: VecDeque::with_capacity(n),
            base: 0,
        }
    }

    /// Queues `job`; returns its sequence number.
    pub(crate) fn push_back(&mut self, job: Job) -> u64 {
        let seq = self.base + self.jobs.len() as u64;
        self.jobs.push_back(job);
        seq
    }

    pub(crate) fn pop_front(&mut self) -> Option<Job> {
        let job = self.jobs.pop_front()?;
        self.base += 1;
        Some(job)
    }

    pub(crate) fn len(&self) -> usize {
        self.jobs.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Job> {
        self.jobs.iter()
    }

    /// Empties the queue (the loop is closing); the caller drops the entries once no borrow is
    /// held, as dropping closures runs user code.
    pub(crate) fn take_all(&mut self) -> VecDeque<Job> {
        self.base += self.jobs.len() as u64;
        std::mem::take(&mut self.jobs)
    }

    /// Takes the `call_soon` callback of number `seq` out if it still waits, leaving a
    /// [`Job::Cancelled`] mark; the caller drops it once no borrow is held.
    pub(crate) fn cancel_soon(&mut self, seq: u64) -> Option<Box<dyn SoonCallback>> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let slot = self.jobs.get_mut(index)?;
        if !matches!(slot, Job::Soon(_)) {
            return None;
        }
        match std::mem::replace(slot, Job::Cancelled) {
            Job::Soon(cb) => Some(cb),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::mem::size_of;

    use super::*;

    #[test]
    fn entries_stay_small() {
        // Every pending callback pays for these: see the module docs.
        assert!(size_of::<Job>() <= 24, "{}", size_of::<Job>());
        // Every handle pays for the largest variant (a call_soon handle: see handle.rs).
        assert!(
            size_of::<crate::Handle>() <= 32,
            "{}",
            size_of::<crate::Handle>()
        );
        let counter = Rc::new(Cell::new(0));
        let c = counter.clone();
        let f = move || c.set(c.get() + 1);
        fn soon_size<F>(_: &F) -> usize {
            size_of::<Soon<F>>()
        }
        // A call site and a one-pointer closure: glibc's smallest chunk holds 24 bytes.
        assert!(soon_size(&f) <= 24, "{}", soon_size(&f));
        drop(Soon::boxed(f, Location::caller()));
    }

    #[test]
    fn sequence_numbers_find_waiting_entries_only() {
        let mut q = ReadyQueue::with_capacity(4);
        let ran = Rc::new(Cell::new(0));
        let soon = |r: &Rc<Cell<i32>>| {
            let r = r.clone();
            Job::Soon(Soon::boxed(move || r.set(r.get() + 1), Location::caller()))
        };
        let a = q.push_back(soon(&ran));
        let b = q.push_back(soon(&ran));
        let c = q.push_back(soon(&ran));
        assert_eq!((a, b, c), (0, 1, 2));
        let Some(Job::Soon(first)) = q.pop_front() else {
            panic!("the first entry")
        };
        first.run();
        assert!(q.cancel_soon(a).is_none(), "already left the queue");
        assert!(q.cancel_soon(c).is_some());
        assert!(q.cancel_soon(c).is_none(), "only once");
        assert!(q.cancel_soon(7).is_none(), "never queued");
        assert!(matches!(q.pop_front(), Some(Job::Soon(_))));
        assert!(matches!(q.pop_front(), Some(Job::Cancelled)));
        assert_eq!(
            q.push_back(Job::Cancelled),
            3,
            "numbers go on after the queue emptied"
        );
        let d = q.push_back(soon(&ran));
        drop(q.take_all());
        assert!(q.cancel_soon(d).is_none(), "gone with the queue");
        assert_eq!(ran.get(), 1);
    }
}
