//! The state a pipe's ends share, and the protocol every wait on it follows.
//!
//! One `Mutex<Chan<T>>` behind an `Arc` holds everything: the buffer, the senders blocked with
//! their item (*offers*), and the receivers waiting for one (*waiters*). Every operation is one
//! critical section, so a pipe works the same between tasks of one loop and between loops on
//! different threads. No user code runs under the lock: wakers are collected and woken after it
//! is released, and items that must be dropped (a closed pipe's offers, the buffer of a pipe whose
//! last receiver went away) are dropped after it too, because an item may itself hold an end of
//! this pipe.
//!
//! ## Receivers: reservations, not hand-offs
//!
//! An item is never pushed into a receiver; a receiver always takes it itself, inside its own
//! `poll`. When an item becomes available the first waiter that holds no reservation is
//! *granted* one and woken; `granted` counts reservations. A waiter may take an item when it is
//! granted, and a newcomer (or `try_recv`) only when more items are available than are reserved,
//! so queued waiters are served first (FIFO). A waiter that leaves (cancelled, dropped, or it
//! took its item) gives its reservation back and [`Chan::rebalance`] grants the next waiter, so a
//! wake-up is never swallowed by a waiter that is gone. Once the pipe is closed every waiter is
//! granted: each takes a remaining item or learns that the pipe is closed.
//!
//! ## Senders: offers delivered in order
//!
//! A sender that cannot put its item into the buffer (a rendezvous pipe, or a full buffer) queues
//! an *offer* holding the item. A receiver takes the first offer's item (rendezvous), or moves it
//! into the space it just freed in the buffer; either way the offer is *delivered*. Offers are
//! delivered strictly in queue order, so `delivered_upto` (one past the last delivered offer id)
//! tells a blocked sender whether its item went through. Closing the pipe rejects the offers still
//! queued; their items were not sent.
//!
//! Costs: taking or giving an item is O(1) plus the waiter scan of `rebalance`, which stops at the
//! first waiter it can grant (normally the first one); removing a waiter or an offer is O(n) in
//! the number of waiters, as asyncio's deque removal.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use crate::error::Error;

/// Locks `m`, ignoring poisoning: no user code runs under these locks, so a panic elsewhere
/// cannot leave the state half-updated.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Wakers collected under a lock, woken once it is released. One inline slot: most operations
/// wake at most one task.
#[derive(Default)]
pub(crate) struct Wakes {
    first: Option<Waker>,
    rest: Vec<Waker>,
}

impl Wakes {
    pub(crate) fn push(&mut self, w: Waker) {
        if self.first.is_none() {
            self.first = Some(w);
        } else {
            self.rest.push(w);
        }
    }

    #[inline]
    pub(crate) fn run(self) {
        // `rest` is only ever filled after `first`.
        if let Some(w) = self.first {
            w.wake();
            self.rest.into_iter().for_each(Waker::wake);
        }
    }
}

/// Stores `w` in `slot` unless it already holds a waker that wakes the same task.
pub(crate) fn set_waker(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(cur) if cur.will_wake(w) => {}
        _ => *slot = Some(w.clone()),
    }
}

/// A receiver waiting for an item.
struct Waiter {
    id: u64,
    waker: Option<Waker>,
    granted: bool,
}

/// A sender blocked with its item.
struct Offer<T> {
    id: u64,
    item: T,
    waker: Waker,
}

/// A task waiting for an event without taking anything (notify-all, no reservation).
pub(crate) struct Watchers {
    list: Vec<(u64, Waker)>,
}

impl Watchers {
    const fn new() -> Self {
        Watchers { list: Vec::new() }
    }

    pub(crate) fn register(&mut self, id: u64, w: &Waker) {
        match self.list.iter_mut().find(|(i, _)| *i == id) {
            Some((_, cur)) => {
                if !cur.will_wake(w) {
                    *cur = w.clone();
                }
            }
            None => self.list.push((id, w.clone())),
        }
    }

    pub(crate) fn remove(&mut self, id: u64) {
        if let Some(i) = self.list.iter().position(|(x, _)| *x == id) {
            self.list.swap_remove(i);
        }
    }

    #[inline]
    pub(crate) fn wake_all(&mut self, wakes: &mut Wakes) {
        if self.list.is_empty() {
            return;
        }
        for (_, w) in self.list.drain(..) {
            wakes.push(w);
        }
    }
}

/// How a send started ([`Chan::start_send`]).
pub(crate) enum Start<T> {
    /// The item is in the buffer.
    Done,
    /// The sender waits with its item as offer `id`.
    Offered(u64),
    /// The pipe is closed; the item comes back.
    Closed(T),
}

/// How a blocked send stands ([`Chan::poll_offer`]).
pub(crate) enum OfferState<T> {
    Delivered,
    Waiting,
    /// Withdrawn (the item comes back, if it was still queued) or rejected by a close.
    Gone(Option<T>),
}

pub(crate) struct Chan<T> {
    items: VecDeque<T>,
    cap: usize,
    offers: VecDeque<Offer<T>>,
    delivered_upto: u64,
    waiters: VecDeque<Waiter>,
    granted: usize,
    /// Tasks waiting until a `try_send` could succeed (`select_send`).
    pub(crate) room: Watchers,
    /// Tasks waiting for the pipe to close (`Sender::closed`).
    pub(crate) on_close: Watchers,
    closed: bool,
    error: Option<Error>,
    pub(crate) senders: usize,
    pub(crate) recvers: usize,
    next_id: u64,
}

impl<T> Chan<T> {
    pub(crate) fn new(cap: usize) -> Self {
        Chan {
            items: VecDeque::new(),
            cap,
            offers: VecDeque::new(),
            delivered_upto: 0,
            waiters: VecDeque::new(),
            granted: 0,
            room: Watchers::new(),
            on_close: Watchers::new(),
            closed: false,
            error: None,
            senders: 1,
            recvers: 1,
            next_id: 1,
        }
    }

    /// A fresh id for a waiter, an offer or a watcher (never 0).
    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    /// Items a receiver could take now: buffered ones plus blocked senders' ones.
    pub(crate) fn available(&self) -> usize {
        self.items.len() + self.offers.len()
    }

    pub(crate) fn buffered(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn waiting_recvers(&self) -> usize {
        self.waiters.len()
    }

    pub(crate) fn waiting_senders(&self) -> usize {
        self.offers.len()
    }

    /// What a receiver gets once the pipe is closed and drained.
    pub(crate) fn closed_error(&self) -> Error {
        self.error.clone().unwrap_or(Error::Closed)
    }

    fn position(&self, id: u64) -> Option<usize> {
        self.waiters.iter().position(|w| w.id == id)
    }

    /// Grants reservations until every available item has one (or, once closed, grants every
    /// waiter); see the module docs.
    fn rebalance(&mut self, wakes: &mut Wakes) {
        if self.waiters.len() == self.granted {
            return;
        }
        let mut want = if self.closed {
            usize::MAX
        } else {
            self.available().saturating_sub(self.granted)
        };
        for w in self.waiters.iter_mut() {
            if want == 0 {
                break;
            }
            if !w.granted {
                w.granted = true;
                self.granted += 1;
                want -= 1;
                if let Some(k) = w.waker.take() {
                    wakes.push(k);
                }
            }
        }
    }

    /// Room for a `try_send`: buffer space, plus receivers waiting without a reservation (they
    /// will take the item), as long as no sender is queued ahead.
    fn has_room(&self) -> bool {
        self.offers.is_empty() && self.items.len() < self.cap + (self.waiters.len() - self.granted)
    }

    /// Takes the next item, delivering offers as needed.
    fn take_item(&mut self, wakes: &mut Wakes) -> Option<T> {
        if self.available() == 0 {
            return None;
        }
        // Buffer space or a delivered offer: senders waiting for room may go on.
        self.room.wake_all(wakes);
        if let Some(item) = self.items.pop_front() {
            if self.items.len() < self.cap {
                if let Some(o) = self.offers.pop_front() {
                    self.delivered_upto = o.id + 1;
                    self.items.push_back(o.item);
                    wakes.push(o.waker);
                }
            }
            return Some(item);
        }
        let o = self.offers.pop_front()?;
        self.delivered_upto = o.id + 1;
        wakes.push(o.waker);
        Some(o.item)
    }

    // ---- receiving --------------------------------------------------------------------------

    /// One receive attempt for the waiter in `slot` (registered here when it must wait).
    ///
    /// `Some(Ok(item))`, `Some(Err(closed))` once closed and drained, `None` when it must wait
    /// (its waker is registered). The waiter leaves the queue however the attempt ends, except
    /// when it waits.
    pub(crate) fn poll_recv(
        &mut self,
        slot: &mut Option<u64>,
        waker: &Waker,
        wakes: &mut Wakes,
    ) -> Option<Result<T, Error>> {
        let pos = slot.and_then(|id| self.position(id));
        let granted = pos.is_some_and(|p| self.waiters[p].granted);
        if granted || self.available() > self.granted {
            if let Some(item) = self.take_item(wakes) {
                if let Some(p) = pos {
                    self.remove_waiter_at(p, wakes);
                }
                *slot = None;
                return Some(Ok(item));
            }
        }
        if self.closed && self.available() == 0 {
            if let Some(p) = pos {
                self.remove_waiter_at(p, wakes);
            }
            *slot = None;
            return Some(Err(self.closed_error()));
        }
        match pos {
            Some(p) => {
                let w = &mut self.waiters[p];
                if w.granted {
                    // Granted, but the item went away (its sender gave up): keep the place in
                    // the queue and wait again.
                    w.granted = false;
                    self.granted -= 1;
                    self.room.wake_all(wakes);
                }
                set_waker(&mut w.waker, waker);
            }
            None => {
                let id = self.next_id();
                self.waiters.push_back(Waiter {
                    id,
                    waker: Some(waker.clone()),
                    granted: false,
                });
                *slot = Some(id);
                // A waiting receiver is room for a `try_send` on a rendezvous pipe.
                self.room.wake_all(wakes);
            }
        }
        None
    }

    /// A receive without waiting: the item, `Err(WouldBlock)`, or the closed error.
    pub(crate) fn try_recv(&mut self, wakes: &mut Wakes) -> Result<T, Error> {
        if self.available() > self.granted {
            if let Some(item) = self.take_item(wakes) {
                return Ok(item);
            }
        }
        if self.closed && self.available() == 0 {
            return Err(self.closed_error());
        }
        Err(Error::WouldBlock)
    }

    fn remove_waiter_at(&mut self, p: usize, wakes: &mut Wakes) {
        if let Some(w) = self.waiters.remove(p) {
            if w.granted {
                self.granted -= 1;
                self.rebalance(wakes);
            }
        }
    }

    /// The waiter in `slot` gives up; a reservation it held goes to the next waiter.
    pub(crate) fn leave(&mut self, slot: &mut Option<u64>, wakes: &mut Wakes) {
        if let Some(id) = slot.take() {
            if let Some(p) = self.position(id) {
                self.remove_waiter_at(p, wakes);
            }
        }
    }

    // ---- sending ----------------------------------------------------------------------------

    /// Starts a send: into the buffer when there is space and nobody queued ahead, else as an
    /// offer that waits for a receiver.
    pub(crate) fn start_send(&mut self, item: T, waker: &Waker, wakes: &mut Wakes) -> Start<T> {
        if self.closed {
            return Start::Closed(item);
        }
        if self.offers.is_empty() && self.items.len() < self.cap {
            self.items.push_back(item);
            self.rebalance(wakes);
            return Start::Done;
        }
        let id = self.next_id();
        self.offers.push_back(Offer {
            id,
            item,
            waker: waker.clone(),
        });
        self.rebalance(wakes);
        Start::Offered(id)
    }

    /// A send without waiting; the item comes back with `WouldBlock` or `Closed`.
    pub(crate) fn try_send(&mut self, item: T, wakes: &mut Wakes) -> Result<(), (T, Error)> {
        if self.closed {
            return Err((item, Error::Closed));
        }
        if !self.has_room() {
            return Err((item, Error::WouldBlock));
        }
        self.items.push_back(item);
        self.rebalance(wakes);
        Ok(())
    }

    /// True when a `try_send` would succeed or fail at once (room, or closed).
    pub(crate) fn send_ready(&self) -> bool {
        self.closed || self.has_room()
    }

    /// Where blocked send `id` stands. With `withdraw`, a still queued offer is removed and its
    /// item returned (the sender gives up).
    pub(crate) fn poll_offer(
        &mut self,
        id: u64,
        waker: Option<&Waker>,
        withdraw: bool,
        wakes: &mut Wakes,
    ) -> OfferState<T> {
        if id < self.delivered_upto {
            return OfferState::Delivered;
        }
        let Some(p) = self.offers.iter().position(|o| o.id == id) else {
            // Rejected by `close`.
            return OfferState::Gone(None);
        };
        if withdraw {
            let o = self.offers.remove(p);
            // Fewer items available: a receiver granted for it finds nothing and waits again.
            // With no sender queued ahead any more, there may be room for a `try_send`.
            self.room.wake_all(wakes);
            return OfferState::Gone(o.map(|o| o.item));
        }
        if let Some(w) = waker {
            let o = &mut self.offers[p];
            if !o.waker.will_wake(w) {
                o.waker = w.clone();
            }
        }
        OfferState::Waiting
    }

    // ---- closing ----------------------------------------------------------------------------

    /// Closes the pipe: queued offers are rejected (their items returned, to be dropped outside
    /// the lock), every waiter is woken. With `error`, receivers get it instead of `Closed` once
    /// the buffer is drained. False if it was closed already.
    pub(crate) fn close(
        &mut self,
        error: Option<Error>,
        wakes: &mut Wakes,
        drop_later: &mut Vec<T>,
    ) -> bool {
        if self.closed {
            return false;
        }
        self.closed = true;
        self.error = error;
        for o in self.offers.drain(..) {
            wakes.push(o.waker);
            drop_later.push(o.item);
        }
        self.rebalance(wakes);
        self.room.wake_all(wakes);
        self.on_close.wake_all(wakes);
        true
    }

    /// The last receiver went away: close, and give back the buffered items (nobody can take
    /// them any more) to be dropped outside the lock.
    pub(crate) fn abandon_items(&mut self, drop_later: &mut Vec<T>) {
        drop_later.extend(self.items.drain(..));
    }
}
