//! The timer queue (asyncio's `_scheduled`).
//!
//! Timers pop in (deadline, sequence number) order: equal deadlines pop in scheduling order.
//!
//! **Layout.** Deadlines are nanoseconds on the loop's clock, grouped into buckets of 2^20 ns
//! (about 1 ms). The 64 buckets from the current one on live in a ring of plain `Vec`s: inserting
//! is a push onto one of them, O(1), and a bucket is sorted once, when its earliest deadline is
//! first asked for, then drained from its end. The current bucket follows the clock (it moves
//! only as timers fall due, never past the present), so timers scheduled from now on land in the
//! ring. Timers further ahead wait in a binary heap and move into the ring when their bucket
//! comes within reach. A timer that lands in the current bucket after it was sorted, and is not
//! earlier than all of it (a deadline in the past, or within the current ~1 ms), goes to a side
//! heap, O(log n), so the sorted bucket stays sorted.
//! Firing a burst of timers therefore reads memory in order instead of sifting a large heap (a
//! cache miss per level), which is what a binary heap of 200,000 timers costs (see
//! `docs/benchmarks.md`).
//!
//! **Cancellation** is O(1): a flag on the callback cell (see `handle.rs`). Fired timers are
//! handed to the ready queue without touching their cells (a cache miss each, for a burst that
//! does not fit the caches); the loop skips cancelled ones there, and settles the cancellation
//! count then (`handle::take_for_run`). A cancelled timer at the front is dropped when the loop
//! asks for the next deadline, and everything is rebuilt in O(n) once the cancellations since
//! the last rebuild exceed half of the queue: that bounds the queue to about twice the number
//! of live timers, so scheduling and cancelling millions of timers leaves nothing behind. Bucket
//! buffers give their spare capacity back once it is far more than what is queued, so a burst's
//! memory does not stay.

use std::cmp::Ordering;
use std::collections::binary_heap::{BinaryHeap, PeekMut};
use std::rc::Rc;

#[cfg(test)]
use crate::handle::take_for_run;
use crate::handle::{is_cancelled, set_in_heap, Callback, CancelCounter};

/// Below this many cancelled entries compaction is not worth a pass.
const MIN_COMPACT: usize = 64;
/// log2 of a bucket's width in nanoseconds (2^20 ns ≈ 1.05 ms).
const SHIFT: u32 = 20;
/// Buckets in the ring: timers up to ~67 ms ahead go straight into a bucket.
const SLOTS: u64 = 64;
/// Spare capacity (entries) a bucket may keep when it runs empty without being halved.
const KEEP_SPARE: usize = 256;

pub(crate) struct Entry {
    when: u64,
    seq: u64,
    pub(crate) cb: Rc<dyn Callback>,
}

impl Entry {
    fn key(&self) -> (u64, u64) {
        (self.when, self.seq)
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest deadline on top. The same
    // order sorts a bucket with its earliest entry last, where `Vec::pop` takes it.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

#[derive(Default)]
struct Bucket {
    /// Earliest entry last once `sorted`.
    entries: Vec<Entry>,
    sorted: bool,
}

/// Where the earliest entry sits.
#[derive(Clone, Copy)]
enum Front {
    /// The current bucket.
    Bucket,
    /// The side heap of the current bucket.
    Side,
    /// The first non-empty bucket this many buckets ahead (the current one and the side heap are
    /// empty).
    Ahead(u64),
    /// The far heap (the ring and the side heap are empty).
    Far,
}

pub(crate) struct Timers {
    /// `ring[b % SLOTS]` holds the timers of bucket `b` for `b` in `cur..cur + SLOTS`; timers of
    /// earlier buckets are kept with bucket `cur`.
    ring: Vec<Bucket>,
    /// The current bucket number (deadline >> SHIFT). Moves only in `drain_due`, as timers fall
    /// due: never past a non-empty bucket, nor past the present.
    cur: u64,
    /// Entries in `ring`.
    in_ring: usize,
    /// Entries of bucket `cur` (or earlier) that arrived after it was sorted and are not earlier
    /// than all of it.
    side: BinaryHeap<Entry>,
    /// Entries of buckets `cur + SLOTS` and later.
    far: BinaryHeap<Entry>,
    seq: u64,
    /// Cancellation counts, bumped by `Handle::cancel` through the shared cell (see
    /// `handle::TimerCounts`).
    pub(crate) cancelled: CancelCounter,
}

impl Timers {
    pub(crate) fn new() -> Self {
        Timers {
            ring: (0..SLOTS).map(|_| Bucket::default()).collect(),
            cur: 0,
            in_ring: 0,
            side: BinaryHeap::new(),
            far: BinaryHeap::new(),
            seq: 0,
            cancelled: CancelCounter::default(),
        }
    }

    fn slot(b: u64) -> usize {
        // `SLOTS` is 64: the remainder always fits.
        (b % SLOTS) as usize
    }

    /// Inserts a timer. O(1) within the ring's reach, O(log n) beyond it or into the bucket being
    /// drained; amortised O(1) extra for compaction.
    pub(crate) fn push(&mut self, when: u64, cb: Rc<dyn Callback>) {
        self.maybe_compact();
        set_in_heap(&*cb, true);
        self.seq += 1;
        let e = Entry {
            when,
            seq: self.seq,
            cb,
        };
        self.insert(e);
    }

    fn insert(&mut self, e: Entry) {
        let b = (e.when >> SHIFT).max(self.cur);
        if b >= self.cur + SLOTS {
            self.far.push(e);
            return;
        }
        let bucket = &mut self.ring[Self::slot(b)];
        // A bucket is sorted once it was looked at. An entry earlier than all of it keeps it
        // sorted. Any other one, in the current bucket (which is being drained), goes to the side
        // heap rather than spoil the order; in a later bucket it just makes it unsorted again.
        if bucket.sorted
            && bucket
                .entries
                .last()
                .is_some_and(|last| e.key() > last.key())
        {
            if b == self.cur {
                self.side.push(e);
                return;
            }
            bucket.sorted = false;
        }
        bucket.entries.push(e);
        self.in_ring += 1;
    }

    /// Entries queued, cancelled ones included.
    pub(crate) fn heap_len(&self) -> usize {
        self.in_ring + self.side.len() + self.far.len()
    }

    /// Live (not cancelled) timers, given how many fired timers waiting in the ready queue are
    /// cancelled (`handle::is_counted_cancelled`): those are still counted.
    pub(crate) fn live(&self, cancelled_fired: usize) -> usize {
        let in_queue = self
            .cancelled
            .cancelled
            .get()
            .saturating_sub(cancelled_fired);
        self.heap_len().saturating_sub(in_queue)
    }

    /// Compacts once more than half of the queue is cancelled. O(1) when there is nothing to do.
    ///
    /// Checked on every insert and, through `next_deadline`, on every loop iteration (as asyncio's
    /// `_run_once` does): checking on insert alone would leave cancelled entries in place for as
    /// long as nothing new is scheduled.
    fn maybe_compact(&mut self) {
        // Every cancelled entry in the queue was cancelled since the last rebuild, which removed
        // all of them; counting the fired ones too only brings the rebuild a little earlier.
        let c = self.cancelled.since_compaction.get();
        if c > MIN_COMPACT && c * 2 > self.heap_len() {
            self.compact();
        }
    }

    /// Moves `cur` forward to bucket `b` and pulls the far timers that come within reach into the
    /// ring. The current bucket, every bucket before `b` and the side heap must be empty.
    fn advance(&mut self, b: u64) {
        debug_assert!(b >= self.cur && self.side.is_empty());
        let queued = self.heap_len();
        let old = &mut self.ring[Self::slot(self.cur)];
        debug_assert!(old.entries.is_empty());
        // Give a burst's buffer back once it is clearly oversized for what is queued now. Not
        // sooner: freeing a large buffer makes glibc consolidate its free lists, which would
        // cost on every bucket of a burst that is still being fired.
        if old.entries.capacity() > KEEP_SPARE + 2 * queued {
            old.entries.shrink_to(KEEP_SPARE);
        }
        self.cur = b;
        while let Some(top) = self.far.peek() {
            if (top.when >> SHIFT) >= self.cur + SLOTS {
                break;
            }
            if let Some(e) = self.far.pop() {
                let bucket = &mut self.ring[Self::slot(e.when >> SHIFT)];
                bucket.entries.push(e);
                bucket.sorted = false;
                self.in_ring += 1;
            }
        }
        if self.far.capacity() > KEEP_SPARE + 2 * self.heap_len() {
            self.far.shrink_to(KEEP_SPARE.max(self.far.len()));
        }
        // The side heap is empty here (see above).
        if self.side.capacity() > KEEP_SPARE + 2 * self.heap_len() {
            self.side.shrink_to(KEEP_SPARE);
        }
    }

    /// Sorts bucket `b`'s slot if it is not sorted yet; its earliest entry is then last.
    fn sorted(&mut self, b: u64) -> &mut Vec<Entry> {
        let bucket = &mut self.ring[Self::slot(b)];
        if !bucket.sorted {
            // `Entry`'s order is reversed: ascending puts the earliest last.
            bucket.entries.sort_unstable();
            bucket.sorted = true;
        }
        &mut bucket.entries
    }

    /// Finds the earliest entry (cancelled or not) and says where it is; `None` when empty.
    ///
    /// Never moves `cur`: only `drain_due` does, as the clock passes, so that `cur` stays at or
    /// before the current time and timers scheduled from now on land in the ring.
    fn front(&mut self) -> Option<Front> {
        let cur = self.cur;
        let side = self.side.peek().map(Entry::key);
        if !self.ring[Self::slot(cur)].entries.is_empty() || side.is_some() {
            let last = self.sorted(cur).last().map(Entry::key);
            return match (last, side) {
                (Some(b), Some(s)) if s < b => Some(Front::Side),
                (Some(_), _) => Some(Front::Bucket),
                (None, _) => Some(Front::Side),
            };
        }
        if self.in_ring > 0 {
            let k = (1..SLOTS).find(|k| !self.ring[Self::slot(cur + k)].entries.is_empty())?;
            self.sorted(cur + k);
            return Some(Front::Ahead(k));
        }
        self.far.peek().map(|_| Front::Far)
    }

    fn peek(&self, front: Front) -> Option<&Entry> {
        match front {
            Front::Bucket => self.ring[Self::slot(self.cur)].entries.last(),
            Front::Ahead(k) => self.ring[Self::slot(self.cur + k)].entries.last(),
            Front::Side => self.side.peek(),
            Front::Far => self.far.peek(),
        }
    }

    fn take(&mut self, front: Front) -> Option<Entry> {
        let e = match front {
            Front::Bucket => self.ring[Self::slot(self.cur)].entries.pop(),
            Front::Ahead(k) => self.ring[Self::slot(self.cur + k)].entries.pop(),
            Front::Side => return self.side.pop(),
            Front::Far => return self.far.pop(),
        };
        self.in_ring -= usize::from(e.is_some());
        e
    }

    /// The earliest live deadline, dropping cancelled entries from the front.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        self.maybe_compact();
        loop {
            let front = self.front()?;
            let e = self.peek(front)?;
            if is_cancelled(&*e.cb) {
                // A cancelled cell holds no closure any more: dropping it runs no user code.
                if let Some(e) = self.take(front) {
                    set_in_heap(&*e.cb, false);
                    self.cancelled.uncount();
                }
            } else {
                return Some(e.when);
            }
        }
    }

    /// Hands every timer due at or before `now` to `out`, earliest first, cancelled ones
    /// included: their cells are not read here (see the module docs), the loop skips them. Due
    /// timers leave a sorted bucket in one slice.
    pub(crate) fn drain_due(&mut self, now: u64, mut out: impl FnMut(Rc<dyn Callback>)) {
        self.maybe_compact();
        let mut emit = |e: Entry| out(e.cb);
        while let Some(front) = self.front() {
            match front {
                Front::Side => match self.side.peek_mut() {
                    Some(top) if top.when <= now => emit(PeekMut::pop(top)),
                    _ => break,
                },
                Front::Bucket => {
                    let side_first = self.side.peek().map(Entry::key);
                    let entries = &mut self.ring[Self::slot(self.cur)].entries;
                    // Sorted latest first: the due entries (and, while the side heap holds
                    // something, only those before its earliest) are a suffix.
                    let k = entries.partition_point(|e| {
                        e.when > now || side_first.is_some_and(|s| e.key() > s)
                    });
                    if k == entries.len() {
                        break;
                    }
                    self.in_ring -= entries.len() - k;
                    entries.drain(k..).rev().for_each(&mut emit);
                    if k == 0 {
                        // Drained empty: new timers of this bucket are pushed again (O(1)), not
                        // sent to the side heap, until it is next sorted.
                        self.ring[Self::slot(self.cur)].sorted = false;
                    }
                }
                // The earliest timer is in a later bucket (or the far heap): if it is due, that
                // bucket becomes the current one (at or before `now`'s), else nothing is due.
                Front::Ahead(_) | Front::Far => match self.peek(front) {
                    Some(e) if e.when <= now => {
                        let b = e.when >> SHIFT;
                        self.advance(b);
                    }
                    _ => break,
                },
            }
        }
        // Everything due is gone, so every bucket before `now`'s is empty: the ring starts at
        // `now`'s bucket from here on, and timers scheduled from now on land in it.
        let now_bucket = now >> SHIFT;
        if now_bucket > self.cur
            && self.side.is_empty()
            && self.ring[Self::slot(self.cur)].entries.is_empty()
        {
            self.advance(now_bucket);
        }
    }

    /// Drops every cancelled entry and gives spare memory back. O(n).
    pub(crate) fn compact(&mut self) {
        let counts = self.cancelled.clone();
        let keep = |e: &Entry| {
            if is_cancelled(&*e.cb) {
                set_in_heap(&*e.cb, false);
                counts.uncount();
                false
            } else {
                true
            }
        };
        for bucket in &mut self.ring {
            // `retain` keeps the order, so a sorted bucket stays sorted.
            bucket.entries.retain(keep);
            bucket.entries.shrink_to(bucket.entries.len() * 2);
        }
        self.in_ring = self.ring.iter().map(|b| b.entries.len()).sum();
        for heap in [&mut self.side, &mut self.far] {
            let mut v = std::mem::take(heap).into_vec();
            v.retain(keep);
            v.shrink_to(v.len() * 2);
            *heap = BinaryHeap::from(v);
        }
        // What is left counted belongs to fired timers still in the ready queue.
        self.cancelled.since_compaction.set(0);
    }

    /// Removes everything (loop close).
    pub(crate) fn clear(&mut self) -> Vec<Entry> {
        self.cancelled.cancelled.set(0);
        self.cancelled.since_compaction.set(0);
        let mut v: Vec<Entry> = Vec::with_capacity(self.heap_len());
        self.in_ring = 0;
        for bucket in &mut self.ring {
            v.append(&mut std::mem::take(&mut bucket.entries));
            bucket.sorted = false;
        }
        v.extend(std::mem::take(&mut self.side).into_vec());
        v.extend(std::mem::take(&mut self.far).into_vec());
        for e in &v {
            set_in_heap(&*e.cb, false);
        }
        v
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
        for round in 0..300 {
            let mut timers = Timers::new();
            // Model: (when, seq, id, cb), live entries only.
            let mut model: Vec<(u64, u64, usize, Rc<dyn Callback>)> = Vec::new();
            let mut now = 0u64;
            let mut seq = 0u64;
            // Within one bucket, across the ring, across ring and far heap, and far apart.
            let spread = [10, 1_000, 1 << 22, 1 << 26, 1 << 40][round % 5];
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
                        let mut due = Vec::new();
                        timers.drain_due(now, |cb| due.push(cb));
                        // As the loop does: cancelled ones are skipped when reached.
                        for cb in due.into_iter().filter(|cb| take_for_run(&**cb)) {
                            let (when, _, id, expected) = model.remove(0);
                            assert!(when <= now, "timer {id} popped early");
                            assert!(Rc::ptr_eq(&cb, &expected), "timer {id} out of order");
                        }
                        assert!(model.first().is_none_or(|e| e.0 > now));
                        assert_eq!(timers.live(0), model.len());
                    }
                }
            }
        }
    }

    fn timer(timers: &Timers) -> Rc<dyn Callback> {
        Once::new(
            || {},
            Location::caller(),
            timers.cancelled.clone(),
            Kind::Timer,
        )
    }

    /// A burst's bucket buffer is given back once the burst is over, not kept at its peak.
    #[test]
    fn a_burst_does_not_keep_its_memory() {
        let mut timers = Timers::new();
        for i in 0..20_000 {
            let cb = timer(&timers);
            timers.push(1_000 + i, cb);
        }
        let big = timers.ring[0].entries.capacity();
        assert!(big >= 20_000);
        let mut fired = 0;
        // The clock is a few buckets on: the drain moves the ring's start there, which trims
        // the emptied bucket.
        timers.drain_due(5 << SHIFT, |cb| fired += usize::from(take_for_run(&*cb)));
        assert_eq!(fired, 20_000);
        assert_eq!(timers.cur, 5);
        assert!(timers.ring[0].entries.capacity() <= KEEP_SPARE);
    }

    /// The same for the side heap: a burst of late arrivals into the sorted current bucket.
    #[test]
    fn a_burst_into_the_side_heap_does_not_keep_its_memory() {
        let mut timers = Timers::new();
        let first = timer(&timers);
        timers.push(0, first);
        assert_eq!(timers.next_deadline(), Some(0)); // sorts bucket 0
        for i in 0..20_000 {
            let cb = timer(&timers);
            timers.push(1_000 + i, cb);
        }
        assert!(timers.side.capacity() >= 20_000);
        timers.drain_due(5 << SHIFT, |cb| assert!(take_for_run(&*cb)));
        assert_eq!((timers.heap_len(), timers.cur), (0, 5));
        assert!(timers.side.capacity() <= KEEP_SPARE);
    }

    /// After a drain that empties the current bucket, timers due later in it are pushed onto
    /// the bucket again, not into the side heap.
    #[test]
    fn a_drained_bucket_takes_pushes_again() {
        let mut timers = Timers::new();
        let a = timer(&timers);
        timers.push(100, a);
        timers.drain_due(200, |cb| assert!(take_for_run(&*cb)));
        for i in 1..=3 {
            let cb = timer(&timers);
            timers.push(200 + i * 100_000, cb);
        }
        assert_eq!((timers.in_ring, timers.side.len()), (3, 0));
    }

    /// Timers scheduled into the bucket being fired (deadlines in the past) keep the order.
    #[test]
    fn late_arrivals_in_the_current_bucket_keep_the_order() {
        let mut timers = Timers::new();
        let (a, b, c) = (timer(&timers), timer(&timers), timer(&timers));
        timers.push(500, a.clone());
        timers.push(900, c.clone());
        assert_eq!(timers.next_deadline(), Some(500)); // sorts the bucket
        timers.push(700, b.clone()); // lands in the side heap
        let mut order = Vec::new();
        timers.drain_due(1_000, |cb| order.push(cb));
        assert_eq!(order.len(), 3);
        for (got, want) in order.iter().zip([&a, &b, &c]) {
            assert!(Rc::ptr_eq(got, want));
        }
        assert_eq!(timers.heap_len(), 0);
    }

    /// A far timer does not pull the ring's start ahead of the clock: timers scheduled near
    /// the current time still land in buckets (not in the side heap), and fire in order.
    #[test]
    fn a_far_timer_leaves_near_ones_in_the_ring() {
        let mut timers = Timers::new();
        let far = timer(&timers);
        timers.push(30_000 << SHIFT, far.clone());
        let mut now = 5 << SHIFT;
        assert_eq!(timers.next_deadline(), Some(30_000 << SHIFT));
        timers.drain_due(now, |_| panic!("nothing is due"));
        assert_eq!(timers.cur, 5);
        let near: Vec<_> = (0..100).map(|_| timer(&timers)).collect();
        for (i, cb) in near.iter().enumerate() {
            // 10 ms ahead, in reverse order of deadline.
            timers.push(now + (10 << SHIFT) + 1_000 - i as u64, cb.clone());
        }
        assert_eq!((timers.in_ring, timers.side.len()), (100, 0));
        now += 20 << SHIFT;
        let mut order = Vec::new();
        timers.drain_due(now, |cb| order.push(cb));
        assert_eq!(order.len(), 100);
        for (got, want) in order.iter().zip(near.iter().rev()) {
            assert!(Rc::ptr_eq(got, want));
        }
        assert_eq!(timers.cur, now >> SHIFT);
        assert_eq!(timers.next_deadline(), Some(30_000 << SHIFT));
    }
}
