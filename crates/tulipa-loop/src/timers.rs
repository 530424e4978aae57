//! The timer heap (asyncio's `_scheduled`).
//!
//! A binary min-heap keyed by (deadline, sequence number): equal deadlines pop in scheduling
//! order. Insert and pop are O(log n); cancel is O(1) (a flag on the callback cell, see
//! `handle.rs`). Cancelled entries are dropped lazily when they reach the top, and the whole heap
//! is rebuilt in O(n) once more than half of it is cancelled: that bounds the heap to twice the
//! number of live timers, so scheduling and cancelling millions of timers leaves nothing behind.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::rc::Rc;

use crate::handle::{is_cancelled, set_in_heap, Callback, CancelCounter};

/// Below this many cancelled entries compaction is not worth a pass.
const MIN_COMPACT: usize = 64;

pub(crate) struct Entry {
    when: u64,
    seq: u64,
    pub(crate) cb: Rc<dyn Callback>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.when, self.seq) == (other.when, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest deadline on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.when, other.seq).cmp(&(self.when, self.seq))
    }
}

pub(crate) struct Timers {
    heap: BinaryHeap<Entry>,
    seq: u64,
    /// Cancelled entries still in `heap`; bumped by `Handle::cancel` through the shared cell.
    pub(crate) cancelled: CancelCounter,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            seq: 0,
            cancelled: CancelCounter::default(),
        }
    }

    /// Inserts a timer. O(log n), amortised O(1) extra for compaction.
    pub(crate) fn push(&mut self, when: u64, cb: Rc<dyn Callback>) {
        self.maybe_compact();
        set_in_heap(&*cb, true);
        self.seq += 1;
        self.heap.push(Entry {
            when,
            seq: self.seq,
            cb,
        });
    }

    /// Live (not cancelled) timers.
    pub(crate) fn live(&self) -> usize {
        self.heap.len() - self.cancelled.get()
    }

    /// Compacts once more than half of the heap is cancelled. O(1) when there is nothing to do.
    ///
    /// Checked on every insert and, through `next_deadline`, on every loop iteration (as asyncio's
    /// `_run_once` does): checking on insert alone would leave a heap of cancelled entries in
    /// place for as long as nothing new is scheduled.
    fn maybe_compact(&mut self) {
        if self.cancelled.get() > MIN_COMPACT && self.cancelled.get() * 2 > self.heap.len() {
            self.compact();
        }
    }

    /// The earliest live deadline, dropping cancelled entries from the top.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        self.maybe_compact();
        while let Some(top) = self.heap.peek() {
            if is_cancelled(&*top.cb) {
                // A cancelled cell holds no closure any more: dropping it runs no user code.
                self.heap.pop();
                self.cancelled.set(self.cancelled.get() - 1);
            } else {
                return Some(top.when);
            }
        }
        None
    }

    /// Pops the earliest timer due at or before `now`, skipping cancelled ones.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<Rc<dyn Callback>> {
        let when = self.next_deadline()?;
        if when > now {
            return None;
        }
        let e = self.heap.pop().expect("peeked entry");
        set_in_heap(&*e.cb, false);
        Some(e.cb)
    }

    /// Rebuilds the heap without its cancelled entries and gives memory back. O(n).
    pub(crate) fn compact(&mut self) {
        let mut v = std::mem::take(&mut self.heap).into_vec();
        let mut keep = Vec::with_capacity((v.len() - self.cancelled.get()).max(16) * 2);
        keep.extend(v.drain(..).filter(|e| !is_cancelled(&*e.cb)));
        self.cancelled.set(0);
        self.heap = BinaryHeap::from(keep);
    }

    /// Removes everything (loop close).
    pub(crate) fn clear(&mut self) -> Vec<Entry> {
        self.cancelled.set(0);
        let v = std::mem::take(&mut self.heap).into_vec();
        for e in &v {
            set_in_heap(&*e.cb, false);
        }
        v
    }

    pub(crate) fn heap_len(&self) -> usize {
        self.heap.len()
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::{cancel, Kind, Once};
    use std::panic::Location;

    /// Random schedules, cancellations and advances of the clock against a sorted model: the
    /// order, the deadlines and the counts must always agree.
    #[test]
    fn matches_a_sorted_model() {
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut rand = move |n: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        };
        for round in 0..200 {
            let mut timers = Timers::new();
            // Model: (when, seq, id, cb), live entries only.
            let mut model: Vec<(u64, u64, usize, Rc<dyn Callback>)> = Vec::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            let spread = [10, 1_000, 1 << 40][round % 3];
            for _ in 0..400 {
                match rand(10) {
                    0..=4 => {
                        // Mostly future deadlines, some in the past (call_at in the past).
                        let when = if rand(8) == 0 {
                            now.saturating_sub(rand(spread))
                        } else {
                            now + rand(spread)
                        };
                        seq += 1;
                        let id = seq as usize;
                        let cb: Rc<dyn Callback> = Once::new(
                            || {},
                            Location::caller(),
                            timers.cancelled.clone(),
                            Kind::Timer,
                        );
                        timers.push(when, cb.clone());
                        model.push((when, seq, id, cb));
                    }
                    5 if !model.is_empty() => {
                        let i = rand(model.len() as u64) as usize;
                        let (_, _, _, cb) = model.remove(i);
                        cancel(&*cb);
                    }
                    _ => {
                        now += rand(spread);
                        model.sort_by_key(|e| (e.0, e.1));
                        let expect = model.first().map(|e| e.0);
                        assert_eq!(timers.next_deadline(), expect);
                        while let Some(cb) = timers.pop_due(now) {
                            let (when, _, id, expected) = model.remove(0);
                            assert!(when <= now, "timer {id} popped early");
                            assert!(Rc::ptr_eq(&cb, &expected), "timer {id} out of order");
                        }
                        assert!(model.first().is_none_or(|e| e.0 > now));
                        assert_eq!(timers.live(), model.len());
                    }
                }
            }
        }
    }
}
