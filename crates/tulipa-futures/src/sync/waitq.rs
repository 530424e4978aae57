//! The FIFO of suspended waiters every primitive is built on (asyncio keeps a deque of futures).
//!
//! A waiter is a slot in the queue. Waking it *grants* it: the primitive has reserved what the
//! waiter asked for (a lock hand-off, a semaphore unit, a notification). A waiter that gives up
//! (cancelled, or its future dropped) leaves the queue, and if it had been granted, its primitive
//! hands the grant on to the next waiter (or takes it back), so no wake-up is ever swallowed by a
//! stale waiter. Every primitive's future does that in one `abandon` step, called both when it
//! delivers a cancellation and from its `Drop`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

#[derive(Default)]
pub(crate) struct Slot {
    granted: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl Slot {
    pub(crate) fn granted(&self) -> bool {
        self.granted.get()
    }

    pub(crate) fn set_waker(&self, w: &Waker) {
        let mut cur = self.waker.borrow_mut();
        match cur.as_ref() {
            Some(c) if c.will_wake(w) => {}
            _ => *cur = Some(w.clone()),
        }
    }

    fn grant(&self) {
        self.granted.set(true);
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

#[derive(Default)]
pub(crate) struct WaitQueue {
    q: RefCell<VecDeque<Rc<Slot>>>,
}

impl WaitQueue {
    /// Appends a waiter. O(1).
    pub(crate) fn push(&self, w: &Waker) -> Rc<Slot> {
        let slot = Rc::new(Slot::default());
        slot.set_waker(w);
        self.q.borrow_mut().push_back(slot.clone());
        slot
    }

    /// Removes a waiter (it finished or gave up). O(n) in the number of waiters, as asyncio.
    pub(crate) fn remove(&self, slot: &Rc<Slot>) {
        let mut q = self.q.borrow_mut();
        if let Some(i) = q.iter().position(|s| Rc::ptr_eq(s, slot)) {
            q.remove(i);
        }
    }

    /// Grants the first waiter not granted yet; false if there is none.
    pub(crate) fn grant_first(&self) -> bool {
        let first = self.q.borrow().iter().find(|s| !s.granted()).cloned();
        match first {
            Some(s) => {
                s.grant();
                true
            }
            None => false,
        }
    }

    /// Grants every waiter.
    pub(crate) fn grant_all(&self) {
        let all: Vec<Rc<Slot>> = self
            .q
            .borrow()
            .iter()
            .filter(|s| !s.granted())
            .cloned()
            .collect();
        for s in all {
            s.grant();
        }
    }

    /// Grants up to `n` waiters; returns how many.
    pub(crate) fn grant_n(&self, n: usize) -> usize {
        let some: Vec<Rc<Slot>> = self
            .q
            .borrow()
            .iter()
            .filter(|s| !s.granted())
            .take(n)
            .cloned()
            .collect();
        let k = some.len();
        for s in some {
            s.grant();
        }
        k
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.q.borrow().is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.q.borrow().len()
    }

    /// Waiters granted but not yet resumed.
    pub(crate) fn granted_count(&self) -> usize {
        self.q.borrow().iter().filter(|s| s.granted()).count()
    }
}

/// A waiter's place in a queue, removed however the wait ends (also on drop).
pub(crate) struct Waiting<'a> {
    queue: &'a WaitQueue,
    slot: Option<Rc<Slot>>,
}

impl<'a> Waiting<'a> {
    pub(crate) fn new(queue: &'a WaitQueue) -> Self {
        Waiting { queue, slot: None }
    }

    /// Registers (first call) or refreshes the waker; returns true once granted.
    pub(crate) fn poll(&mut self, w: &Waker) -> bool {
        match &self.slot {
            Some(s) if s.granted() => true,
            Some(s) => {
                s.set_waker(w);
                false
            }
            None => {
                self.slot = Some(self.queue.push(w));
                false
            }
        }
    }

    pub(crate) fn is_queued(&self) -> bool {
        self.slot.is_some()
    }

    /// Leaves the queue; true if the waiter had been granted (the caller decides whether the
    /// grant is consumed or must be passed on).
    pub(crate) fn leave(&mut self) -> bool {
        match self.slot.take() {
            Some(s) => {
                self.queue.remove(&s);
                s.granted()
            }
            None => false,
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // The owning future's `abandon` has normally run already; this only keeps the queue clean.
        self.leave();
    }
}
