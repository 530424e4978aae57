//! Callback handles: what `call_soon`, `call_later` and friends return (PEP 3156 "The Handle Class").
//!
//! A timer, fd, signal, repeating or threadsafe callback lives in one reference-counted cell
//! shared by the loop's queues and the [`Handle`] given to the caller: one allocation per
//! callback. Cancelling sets a flag and drops the closure at once, so whatever it captured is
//! freed even while the cell still sits in a queue. The loop skips cancelled cells when it meets
//! them. A `call_soon` callback is owned by the ready queue alone, and its handle finds it there
//! by sequence number (see `ready.rs`): no shared cell, one small allocation.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::{self, AssertUnwindSafe, Location};
use std::rc::{Rc, Weak};
use std::time::Instant;

/// The timer queue's cancellation counts, shared with its timer cells (see `timers.rs`).
#[derive(Default)]
pub(crate) struct TimerCounts {
    /// Cancelled cells marked `IN_HEAP`: in the queue, or fired and not yet reached by the loop.
    pub(crate) cancelled: Cell<usize>,
    /// Cancellations counted since the queue was last compacted.
    pub(crate) since_compaction: Cell<usize>,
}

impl TimerCounts {
    pub(crate) fn uncount(&self) {
        self.cancelled.set(self.cancelled.get().saturating_sub(1));
    }
}

pub(crate) type CancelCounter = Rc<TimerCounts>;

/// What every shared cell carries besides its closure: 16 bytes (the call site, the fd or
/// signal, the kind and the flags).
pub(crate) struct Header {
    location: &'static Location<'static>,
    /// The fd or signal number for fd and signal callbacks.
    tag: i32,
    kind: KindTag,
    flags: Cell<u8>,
}

const CANCELLED: u8 = 1;
/// Set while the cell sits in the timer queue, and kept after it fired until the loop reaches it
/// in the ready queue (the queue hands fired timers over without touching their cells);
/// cancelling it meanwhile bumps the queue's counter.
const IN_HEAP: u8 = 2;

#[derive(Clone, Copy, Debug)]
#[repr(u8)]
enum KindTag {
    Threadsafe,
    Callback,
    Timer,
    Repeating,
    Reader,
    Writer,
    Signal,
}

/// What a cell is, for logs and exception contexts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Threadsafe,
    Callback,
    Timer,
    Repeating,
    Reader(i32),
    Writer(i32),
    Signal(i32),
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Threadsafe => f.write_str("threadsafe callback"),
            Kind::Callback => f.write_str("callback"),
            Kind::Timer => f.write_str("timer"),
            Kind::Repeating => f.write_str("repeating timer"),
            Kind::Reader(fd) => write!(f, "reader on fd {fd}"),
            Kind::Writer(fd) => write!(f, "writer on fd {fd}"),
            Kind::Signal(sig) => write!(f, "handler of signal {sig}"),
        }
    }
}

impl Header {
    pub(crate) fn new(location: &'static Location<'static>, kind: Kind) -> Self {
        let (kind, tag) = match kind {
            Kind::Threadsafe => (KindTag::Threadsafe, 0),
            Kind::Callback => (KindTag::Callback, 0),
            Kind::Timer => (KindTag::Timer, 0),
            Kind::Repeating => (KindTag::Repeating, 0),
            Kind::Reader(fd) => (KindTag::Reader, fd),
            Kind::Writer(fd) => (KindTag::Writer, fd),
            Kind::Signal(sig) => (KindTag::Signal, sig),
        };
        Header {
            location,
            tag,
            kind,
            flags: Cell::new(0),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self.kind {
            KindTag::Threadsafe => Kind::Threadsafe,
            KindTag::Callback => Kind::Callback,
            KindTag::Timer => Kind::Timer,
            KindTag::Repeating => Kind::Repeating,
            KindTag::Reader => Kind::Reader(self.tag),
            KindTag::Writer => Kind::Writer(self.tag),
            KindTag::Signal => Kind::Signal(self.tag),
        }
    }

    fn cancelled(&self) -> bool {
        self.flags.get() & CANCELLED != 0
    }

    /// Marks the cell cancelled; returns `Some(in_heap)` the first time.
    fn mark_cancelled(&self) -> Option<bool> {
        let f = self.flags.get();
        if f & CANCELLED != 0 {
            return None;
        }
        self.flags.set(f | CANCELLED);
        Some(f & IN_HEAP != 0)
    }
}

/// Where a timer cell reports its cancellation: the timer queue's counter (or nowhere, for a
/// timer scheduled when no counter was given).
pub(crate) trait CancelSink: 'static {
    fn bump(&self);
    fn unbump(&self);
}

impl CancelSink for CancelCounter {
    fn bump(&self) {
        self.cancelled.set(self.cancelled.get() + 1);
        self.since_compaction.set(self.since_compaction.get() + 1);
    }
    fn unbump(&self) {
        self.uncount();
    }
}

impl CancelSink for Option<CancelCounter> {
    fn bump(&self) {
        if let Some(c) = self {
            c.bump();
        }
    }
    fn unbump(&self) {
        if let Some(c) = self {
            c.unbump();
        }
    }
}

/// A unit of work the loop can run: one-shot, repeating or fd callbacks.
pub(crate) trait Callback {
    fn header(&self) -> &Header;
    /// Runs the callback. `me` is the cell's own `Rc`, for repeating callbacks to reschedule
    /// themselves.
    fn run(&self, me: &Rc<dyn Callback>, core: &Rc<crate::event_loop::Core>);
    /// Drops the closure. Called after the header was marked cancelled.
    fn drop_closure(&self);
    /// Counts a cancellation of a cell that sits in the timer queue.
    fn count_cancelled_in_heap(&self);
    /// Takes back that count: the cell left the queue's books.
    fn uncount_cancelled(&self);
}

pub(crate) fn cancel(cb: &dyn Callback) {
    if let Some(in_heap) = cb.header().mark_cancelled() {
        if in_heap {
            cb.count_cancelled_in_heap();
        }
        cb.drop_closure();
    }
}

pub(crate) fn is_cancelled(cb: &dyn Callback) -> bool {
    cb.header().cancelled()
}

/// Called by the loop right before it runs a cell from the ready queue; false when the cell is
/// cancelled and must be skipped. A fired timer leaves the timer queue's books here (its
/// `IN_HEAP` mark is cleared, and its cancellation, if any, uncounted), as this is the first time
/// the loop touches its cell after it fired.
pub(crate) fn take_for_run(cb: &dyn Callback) -> bool {
    let h = cb.header();
    let f = h.flags.get();
    if f & IN_HEAP != 0 {
        h.flags.set(f & !IN_HEAP);
        if f & CANCELLED != 0 {
            cb.uncount_cancelled();
        }
    }
    f & CANCELLED == 0
}

/// True for a cancelled cell still on the timer queue's books (see [`take_for_run`]).
pub(crate) fn is_counted_cancelled(cb: &dyn Callback) -> bool {
    cb.header().flags.get() & (IN_HEAP | CANCELLED) == IN_HEAP | CANCELLED
}

pub(crate) fn set_in_heap(cb: &dyn Callback, in_heap: bool) {
    let h = cb.header();
    let f = h.flags.get();
    h.flags
        .set(if in_heap { f | IN_HEAP } else { f & !IN_HEAP });
}

/// A timer's callback, run once (`call_later`, `call_at`; `C` is the queue's counter).
pub(crate) struct Once<F, C> {
    header: Header,
    sink: C,
    f: Cell<Option<F>>,
}

impl<F: FnOnce() + 'static, C: CancelSink> Once<F, C> {
    pub(crate) fn new(f: F, location: &'static Location<'static>, sink: C, kind: Kind) -> Rc<Self> {
        Rc::new(Once {
            header: Header::new(location, kind),
            sink,
            f: Cell::new(Some(f)),
        })
    }
}

impl<F: FnOnce() + 'static, C: CancelSink> Callback for Once<F, C> {
    fn header(&self) -> &Header {
        &self.header
    }
    fn run(&self, _me: &Rc<dyn Callback>, _core: &Rc<crate::event_loop::Core>) {
        if let Some(f) = self.f.take() {
            f();
        }
    }
    fn drop_closure(&self) {
        drop(self.f.take());
    }
    fn count_cancelled_in_heap(&self) {
        self.sink.bump();
    }
    fn uncount_cancelled(&self) {
        self.sink.unbump();
    }
}

/// A callback that runs many times: fd readers/writers, signal handlers and `call_repeatedly`.
pub(crate) struct Repeating<F> {
    header: Header,
    sink: Option<CancelCounter>,
    f: RefCell<Option<F>>,
    /// `Some(interval)` for `call_repeatedly`: after each run the cell goes back into the timer queue.
    interval: Option<std::time::Duration>,
}

impl<F: FnMut() + 'static> Repeating<F> {
    pub(crate) fn new(
        f: F,
        location: &'static Location<'static>,
        counter: Option<CancelCounter>,
        interval: Option<std::time::Duration>,
        kind: Kind,
    ) -> Rc<Self> {
        Rc::new(Repeating {
            header: Header::new(location, kind),
            sink: counter,
            f: RefCell::new(Some(f)),
            interval,
        })
    }
}

impl<F: FnMut() + 'static> Callback for Repeating<F> {
    fn header(&self) -> &Header {
        &self.header
    }
    fn run(&self, me: &Rc<dyn Callback>, core: &Rc<crate::event_loop::Core>) {
        // Take the closure out for the call so that the callback may cancel its own handle (or
        // re-enter the loop) without a RefCell borrow being held across user code.
        let Some(mut f) = self.f.borrow_mut().take() else {
            return;
        };
        let Some(interval) = self.interval else {
            // fd and signal callbacks outlive a panic, as in asyncio: put `f` back before the
            // loop reports the panic. Otherwise a level-triggered reader would stay registered
            // with no closure, and the loop would spin on its ready fd doing nothing.
            let result = panic::catch_unwind(AssertUnwindSafe(&mut f));
            if !self.header.cancelled() {
                *self.f.borrow_mut() = Some(f);
            }
            if let Err(payload) = result {
                panic::resume_unwind(payload);
            }
            return;
        };
        f();
        // Reached only when `f` returned normally: a panic ends a repeating call (PEP 3156).
        if self.header.cancelled() {
            return; // cancelled during the call: `f` is dropped here
        }
        *self.f.borrow_mut() = Some(f);
        // Late runs delay the following ones: the next deadline counts from now.
        let when = core
            .clock
            .now_ns()
            .saturating_add(crate::clock::nanos(interval));
        core.push_timer(when, me.clone());
    }
    fn drop_closure(&self) {
        // If the closure is running it was taken out; `run` drops it when it returns.
        if let Ok(mut slot) = self.f.try_borrow_mut() {
            let f = slot.take();
            drop(slot);
            drop(f);
        }
    }
    fn count_cancelled_in_heap(&self) {
        self.sink.bump();
    }
    fn uncount_cancelled(&self) {
        self.sink.unbump();
    }
}

/// A handle to a scheduled callback, returned by [`EventLoop::call_soon`](crate::EventLoop::call_soon)
/// and friends (asyncio's `Handle`).
///
/// Dropping a `Handle` does **not** cancel the callback; call [`cancel`](Handle::cancel).
/// `Handle` is `!Send`: it lives on the loop's thread. Use a
/// [`ThreadsafeHandle`](crate::ThreadsafeHandle) from other threads.
#[derive(Clone)]
pub struct Handle {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// A cell shared with the loop's queues.
    Cell(Rc<dyn Callback>),
    /// A `call_soon` callback in the ready queue.
    Soon(SoonHandle),
}

/// What a `call_soon` handle keeps: where its callback sits in the ready queue, and the
/// cancelled flag, which is the handle's own until it is first cloned and then shared with its
/// clones (allocated on that first clone only: most handles are dropped unused). 32 bytes.
///
/// The `Weak` keeps the loop's core allocation (not the loop: its poller, fds and callbacks are
/// released when it closes) until the last such handle is dropped.
pub(crate) struct SoonHandle {
    core: Weak<crate::event_loop::Core>,
    /// The entry's sequence number; the top bit is the handle's own cancelled flag.
    seq: Cell<u64>,
    location: &'static Location<'static>,
    shared: Cell<Option<Rc<Cell<bool>>>>,
}

/// The top bit of [`SoonHandle::seq`]: sequence numbers never reach it.
const OWN_CANCELLED: u64 = 1 << 63;

impl SoonHandle {
    fn seq(&self) -> u64 {
        self.seq.get() & !OWN_CANCELLED
    }

    fn own_cancelled(&self) -> bool {
        self.seq.get() & OWN_CANCELLED != 0
    }

    /// The flag shared with clones, made on first use from the handle's own.
    fn shared_flag(&self) -> Rc<Cell<bool>> {
        let flag = self
            .shared
            .take()
            .unwrap_or_else(|| Rc::new(Cell::new(self.own_cancelled())));
        self.shared.set(Some(flag.clone()));
        flag
    }

    fn cancelled(&self) -> bool {
        match self.shared.take() {
            Some(flag) => {
                let c = flag.get();
                self.shared.set(Some(flag));
                c
            }
            None => self.own_cancelled(),
        }
    }

    fn cancel(&self) {
        self.seq.set(self.seq.get() | OWN_CANCELLED);
        if let Some(flag) = self.shared.take() {
            flag.set(true);
            self.shared.set(Some(flag));
        }
        if let Some(core) = self.core.upgrade() {
            let taken = core.ready.borrow_mut().cancel_soon(self.seq());
            // Dropped with no borrow held: the closure's captures may run any code.
            drop(taken);
        }
    }
}

impl Clone for SoonHandle {
    fn clone(&self) -> Self {
        SoonHandle {
            core: self.core.clone(),
            seq: Cell::new(self.seq.get()),
            location: self.location,
            shared: Cell::new(Some(self.shared_flag())),
        }
    }
}

impl Handle {
    pub(crate) fn new(cb: Rc<dyn Callback>) -> Self {
        Handle {
            repr: Repr::Cell(cb),
        }
    }

    /// The handle of a `call_soon` callback queued with sequence number `seq`.
    pub(crate) fn soon(
        core: Weak<crate::event_loop::Core>,
        seq: u64,
        location: &'static Location<'static>,
    ) -> Self {
        Handle {
            repr: Repr::Soon(SoonHandle {
                core,
                seq: Cell::new(seq & !OWN_CANCELLED),
                location,
                shared: Cell::new(None),
            }),
        }
    }

    /// Cancels the callback: it will not run (again). Idempotent; cancelling a callback that has
    /// already run does nothing to it (the handle still reports [`cancelled`](Handle::cancelled),
    /// as asyncio's does). The closure is dropped at once.
    pub fn cancel(&self) {
        match &self.repr {
            Repr::Cell(cb) => cancel(&**cb),
            Repr::Soon(h) => h.cancel(),
        }
    }

    /// True once [`cancel`](Handle::cancel) was called on this handle or a clone of it (a
    /// repeating callback stopped by a panic is not reported as cancelled: only an explicit
    /// cancel is).
    pub fn cancelled(&self) -> bool {
        match &self.repr {
            Repr::Cell(cb) => is_cancelled(&**cb),
            Repr::Soon(h) => h.cancelled(),
        }
    }

    /// Where the callback was scheduled (the caller of `call_soon`, `call_later`, …).
    pub fn scheduled_at(&self) -> &'static Location<'static> {
        match &self.repr {
            Repr::Cell(cb) => cb.header().location,
            Repr::Soon(h) => h.location,
        }
    }

    fn kind(&self) -> Kind {
        match &self.repr {
            Repr::Cell(cb) => cb.header().kind(),
            Repr::Soon(_) => Kind::Callback,
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("kind", &format_args!("{}", self.kind()))
            .field("cancelled", &self.cancelled())
            .field("scheduled_at", &format_args!("{}", self.scheduled_at()))
            .finish()
    }
}

/// A handle to a timer (asyncio's `TimerHandle`): a [`Handle`] plus the deadline.
#[derive(Clone)]
pub struct TimerHandle {
    handle: Handle,
    when: Instant,
}

impl TimerHandle {
    pub(crate) fn new(handle: Handle, when: Instant) -> Self {
        TimerHandle { handle, when }
    }

    /// The deadline on the loop's clock ([`EventLoop::time`](crate::EventLoop::time)).
    pub fn when(&self) -> Instant {
        self.when
    }

    /// Cancels the timer; see [`Handle::cancel`]. A cancelled timer leaves the loop's timer queue
    /// lazily, and the queue is compacted once more than half of it is cancelled, so cancelled
    /// timers never pile up.
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// True once cancelled.
    pub fn cancelled(&self) -> bool {
        self.handle.cancelled()
    }

    /// The plain handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl fmt::Debug for TimerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerHandle")
            .field("when", &self.when)
            .field("handle", &self.handle)
            .finish()
    }
}

pub(crate) fn describe(cb: &dyn Callback) -> (Kind, &'static Location<'static>) {
    let h = cb.header();
    (h.kind(), h.location)
}

/// A `call_soon_threadsafe` job once it reached the loop: it runs like any callback, and checks
/// its thread-safe cancel flag right before running.
pub(crate) struct Threadsafe {
    header: Header,
    call: Cell<Option<Box<dyn crate::loop_handle::RemoteCall>>>,
}

impl Threadsafe {
    pub(crate) fn new(call: Box<dyn crate::loop_handle::RemoteCall>) -> Rc<Self> {
        Rc::new(Threadsafe {
            header: Header::new(call.location(), Kind::Threadsafe),
            call: Cell::new(Some(call)),
        })
    }
}

impl Callback for Threadsafe {
    fn header(&self) -> &Header {
        &self.header
    }
    fn run(&self, _me: &Rc<dyn Callback>, _core: &Rc<crate::event_loop::Core>) {
        if let Some(call) = self.call.take() {
            // Cancelled after it was queued here, before it started: skip it.
            if !call.cancelled() {
                call.call();
            }
        }
    }
    fn drop_closure(&self) {
        drop(self.call.take());
    }
    fn count_cancelled_in_heap(&self) {}
    fn uncount_cancelled(&self) {}
}
