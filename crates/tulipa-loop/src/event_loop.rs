//! The event loop (PEP 3156 "Event Loop Interface", asyncio's `base_events.py`).
//!
//! One iteration (`run_once`) does, in this order:
//! 1. poll for I/O, with a timeout of zero if callbacks are ready or the loop is stopping (then it
//!    does not poll at all), else until the earliest timer; fd events queue their callbacks;
//! 2. move jobs queued from other threads onto the ready queue;
//! 3. move every timer whose deadline has passed onto the ready queue, in deadline order;
//! 4. run the ready queue *as it was at this point*: callbacks scheduled meanwhile wait for the
//!    next iteration, which is what makes `call_soon` fair and `stop` prompt.
//!
//! Costs: ready queue push and pop O(1); timer insert O(1) within ~67 ms, else O(log n); firing
//! a timer amortised O(log n) (a sort per ~1 ms bucket); cancel O(1) (see `timers.rs`).
//! No `RefCell` borrow is held across user code.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::os::fd::RawFd;
use std::panic::{self, AssertUnwindSafe, Location};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sys::poller::{Events, Poller};
use async_task::Runnable;

use crate::clock::{nanos, Clock};
use crate::completion::{Completion, DoneNotifier};
use crate::error::{Error, Result};
use crate::exception::{default_exception_handler, ExceptionContext, ExceptionHandler};
use crate::handle::{
    self, describe, is_cancelled, is_counted_cancelled, take_for_run, Callback, Handle, Kind, Once,
    Repeating, TimerHandle,
};
use crate::loop_handle::{LoopHandle, Remote, RemoteJob};
use crate::ready::{Job, ReadyQueue, Soon};
use crate::sys;
use crate::timers::Timers;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Default for [`EventLoop::slow_callback_duration`], as asyncio.
const SLOW_CALLBACK: Duration = Duration::from_millis(100);

type CloseHook = Box<dyn FnOnce(&EventLoop)>;

#[derive(Default)]
struct FdSlot {
    reader: Option<Rc<dyn Callback>>,
    writer: Option<Rc<dyn Callback>>,
    /// The reader drains the fd (added with [`EventLoop::add_reader_edge`]).
    reader_drains: bool,
}

impl FdSlot {
    /// Edge-triggered only while the reader drains and no writer is registered: a level
    /// writer (and a level reader) keep the whole fd level-triggered, which a draining reader
    /// is correct under too.
    fn edge(&self) -> bool {
        self.reader.is_some() && self.reader_drains && self.writer.is_none()
    }
}

struct SignalSlot {
    pipe: sys::signal::SignalPipe,
    handler: Rc<dyn Callback>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Idle,
    Running,
    Closed,
}

/// What [`Core::run_job`] ran, for the slow-callback warning of debug mode.
enum Ran {
    Cell(Rc<dyn Callback>),
    Soon(&'static Location<'static>),
    Task,
}

pub(crate) struct Core {
    pub(crate) id: u64,
    pub(crate) clock: Clock,
    pub(crate) ready: RefCell<ReadyQueue>,
    timers: RefCell<Timers>,
    io: RefCell<HashMap<RawFd, FdSlot>>,
    poller: RefCell<Option<Arc<Poller>>>,
    events: RefCell<Events>,
    pub(crate) remote: Arc<Remote>,
    state: Cell<State>,
    stopping: Cell<bool>,
    debug: Cell<bool>,
    slow: Cell<Duration>,
    handler: RefCell<Option<ExceptionHandler>>,
    signals: RefCell<HashMap<i32, SignalSlot>>,
    run_generation: Cell<u64>,
    close_hooks: RefCell<Vec<CloseHook>>,
}

thread_local! {
    /// The loop running on this thread, if any (asyncio's `_get_running_loop`).
    static RUNNING: RefCell<Option<EventLoop>> = const { RefCell::new(None) };
    /// Its id, readable without a borrow: the task-wake fast path compares against it.
    static RUNNING_ID: Cell<u64> = const { Cell::new(0) };
}

/// Pushes a task runnable onto the ready queue of the loop running on this thread, if that loop
/// is `id`. No lock, no syscall: two thread-local reads and a `VecDeque` push.
pub(crate) fn push_local_task(id: u64, r: Runnable) -> std::result::Result<(), Runnable> {
    if RUNNING_ID.with(Cell::get) != id {
        return Err(r);
    }
    RUNNING.with(|cell| {
        let Ok(guard) = cell.try_borrow() else {
            return Err(r);
        };
        let Some(lp) = guard.as_ref() else {
            return Err(r);
        };
        let pushed = match lp.core.ready.try_borrow_mut() {
            Ok(mut q) => {
                q.push_back(Job::Task(r));
                Ok(())
            }
            Err(_) => Err(r),
        };
        pushed
    })
}

/// An event loop: callbacks, timers, fd callbacks and signal handlers on one thread.
///
/// `EventLoop` is a cheap reference-counted handle (`Clone`); all clones drive the same loop. It
/// is `!Send`: a loop belongs to the thread that made it. Reach it from other threads through
/// [`LoopHandle`].
///
/// Callbacks often capture a clone of the loop; that makes a reference cycle, which
/// [`close`](EventLoop::close) breaks by dropping every pending callback. Close loops you are done
/// with.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tulipa_loop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// let lp2 = lp.clone();
/// lp.call_soon(|| println!("first"))?;
/// lp.call_later(Duration::from_millis(5), move || lp2.stop())?;
/// lp.run_forever()?;
/// lp.close()?;
/// # Ok::<(), tulipa_loop::Error>(())
/// ```
///
/// `EventLoop` is not `Send`:
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<tulipa_loop::EventLoop>();
/// ```
#[derive(Clone)]
pub struct EventLoop {
    pub(crate) core: Rc<Core>,
}

/// Counts describing a loop at one moment ([`EventLoop::stats`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoopStats {
    /// Callbacks in the ready queue (including cancelled ones not yet skipped).
    pub ready: usize,
    /// Live (not cancelled) timers.
    pub timers: usize,
    /// Entries in the timer queue, cancelled ones included; at most about twice `timers`.
    pub timer_heap: usize,
    /// File descriptors with a reader.
    pub readers: usize,
    /// File descriptors with a writer.
    pub writers: usize,
    /// The earliest live timer deadline.
    pub next_deadline: Option<Instant>,
}

impl EventLoop {
    /// A new loop on the real monotonic clock. Debug mode is on when `TULIPA_DEBUG=1`.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the poller cannot be created (out of file descriptors).
    pub fn new() -> Result<EventLoop> {
        Self::with_clock(Clock::real())
    }

    /// A new loop on a virtual clock, for tests: whenever nothing is ready, time jumps to the next
    /// timer instead of waiting (fds are still polled, without waiting). A test of a one-hour
    /// timeout runs in microseconds, with the same order and the same times on every run.
    ///
    /// # Errors
    ///
    /// As [`EventLoop::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use tulipa_loop::EventLoop;
    ///
    /// let lp = EventLoop::new_virtual()?;
    /// let start = lp.time();
    /// let lp2 = lp.clone();
    /// lp.call_later(Duration::from_secs(3600), move || lp2.stop())?;
    /// lp.run_forever()?; // returns at once in real time
    /// assert_eq!(lp.time() - start, Duration::from_secs(3600));
    /// # Ok::<(), tulipa_loop::Error>(())
    /// ```
    pub fn new_virtual() -> Result<EventLoop> {
        Self::with_clock(Clock::virtual_time())
    }

    fn with_clock(clock: Clock) -> Result<EventLoop> {
        let poller = Arc::new(Poller::new().map_err(|e| Error::io("creating the poller", e))?);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let debug = std::env::var_os("TULIPA_DEBUG").is_some_and(|v| v == "1");
        let events = Events::new();
        Ok(EventLoop {
            core: Rc::new(Core {
                id,
                clock,
                ready: RefCell::new(ReadyQueue::with_capacity(64)),
                timers: RefCell::new(Timers::new()),
                io: RefCell::new(HashMap::new()),
                remote: Arc::new(Remote::new(id, poller.clone())),
                poller: RefCell::new(Some(poller)),
                events: RefCell::new(events),
                state: Cell::new(State::Idle),
                stopping: Cell::new(false),
                debug: Cell::new(debug),
                slow: Cell::new(SLOW_CALLBACK),
                handler: RefCell::new(None),
                signals: RefCell::new(HashMap::new()),
                run_generation: Cell::new(0),
                close_hooks: RefCell::new(Vec::new()),
            }),
        })
    }

    /// A number unique to this loop in the process.
    pub fn id(&self) -> u64 {
        self.core.id
    }

    /// The thread-safe door into this loop.
    pub fn loop_handle(&self) -> LoopHandle {
        LoopHandle {
            remote: self.core.remote.clone(),
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.core.state.get() == State::Closed {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    // ---- scheduling -------------------------------------------------------------------------

    /// Schedules `f` to run on the next iteration. Callbacks run in the order they were
    /// scheduled (FIFO), each exactly once unless cancelled.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the loop is closed.
    #[track_caller]
    pub fn call_soon(&self, f: impl FnOnce() + 'static) -> Result<Handle> {
        self.check_open()?;
        let location = Location::caller();
        let seq = self
            .core
            .ready
            .borrow_mut()
            .push_back(Job::Soon(Soon::boxed(f, location)));
        Ok(Handle::soon(Rc::downgrade(&self.core), seq, location))
    }

    /// Schedules `f` to run once `delay` has passed.
    ///
    /// # Precision
    ///
    /// A timer never fires early. It fires on the first iteration after its deadline, which can be
    /// late by the poller's resolution (1 ms on epoll) plus whatever callbacks run before it.
    /// Timers with equal deadlines fire in the order they were scheduled.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the loop is closed.
    #[track_caller]
    pub fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> Result<TimerHandle> {
        let when = self.core.clock.now_ns().saturating_add(nanos(delay));
        self.call_at_ns(when, f, Location::caller())
    }

    /// Schedules `f` to run at `when` on the loop's clock ([`time`](EventLoop::time)). A deadline
    /// in the past runs on the next iteration.
    ///
    /// # Precision
    ///
    /// As [`call_later`](EventLoop::call_later).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the loop is closed.
    #[track_caller]
    pub fn call_at(&self, when: Instant, f: impl FnOnce() + 'static) -> Result<TimerHandle> {
        let when = self.core.clock.ns_of(when);
        self.call_at_ns(when, f, Location::caller())
    }

    fn call_at_ns(
        &self,
        when: u64,
        f: impl FnOnce() + 'static,
        location: &'static Location<'static>,
    ) -> Result<TimerHandle> {
        self.check_open()?;
        let counter = self.core.timers.borrow().cancelled.clone();
        let cb = Once::new(f, location, counter, Kind::Timer);
        self.core.push_timer(when, cb.clone());
        Ok(TimerHandle::new(
            Handle::new(cb),
            self.core.clock.instant(when),
        ))
    }

    /// Calls `f` every `interval` until the handle is cancelled or `f` panics (PEP 3156). The
    /// first call is one interval from now; each following call is one interval after the
    /// previous call *ran*, so a late run delays the ones after it instead of bunching them up.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the loop is closed.
    #[track_caller]
    pub fn call_repeatedly(&self, interval: Duration, f: impl FnMut() + 'static) -> Result<Handle> {
        self.check_open()?;
        let counter = self.core.timers.borrow().cancelled.clone();
        let cb = Repeating::new(
            f,
            Location::caller(),
            Some(counter),
            Some(interval),
            Kind::Repeating,
        );
        let when = self.core.clock.now_ns().saturating_add(nanos(interval));
        self.core.push_timer(when, cb.clone());
        Ok(Handle::new(cb))
    }

    // ---- running ----------------------------------------------------------------------------

    /// Runs until [`stop`](EventLoop::stop) is called.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed loop, [`Error::AlreadyRunning`] when this loop is running,
    /// [`Error::NestedRun`] when another loop runs on this thread.
    pub fn run_forever(&self) -> Result<()> {
        self.check_can_run()?;
        let _running = RunningGuard::enter(self);
        loop {
            self.core.run_once();
            if self.core.stopping.get() {
                break;
            }
        }
        Ok(())
    }

    /// Runs until `completion` is done and returns its output.
    ///
    /// `tulipa-futures` implements [`Completion`] for its futures and tasks; anything else can too.
    ///
    /// # Errors
    ///
    /// As [`run_forever`](EventLoop::run_forever), and [`Error::StoppedBeforeComplete`] when the
    /// loop was stopped before `completion` finished.
    pub fn run_until_complete<C: Completion>(&self, mut completion: C) -> Result<C::Output> {
        // Refuse before arming the notifier: an already-complete completion stops the loop at
        // once, and a refused run must not leave that stop pending for the next run.
        self.check_can_run()?;
        let generation = self.core.run_generation.get() + 1;
        self.core.run_generation.set(generation);
        completion.notify_when_done(DoneNotifier {
            core: Rc::downgrade(&self.core),
            generation,
        });
        let ran = self.run_forever();
        // Retire this call's notifier: a completion finishing after we returned (stopped early)
        // must not stop a later run, as asyncio removes its done-callback here.
        self.core.run_generation.set(generation + 1);
        ran?;
        completion.take_output().ok_or(Error::StoppedBeforeComplete)
    }

    fn check_can_run(&self) -> Result<()> {
        self.check_open()?;
        if self.core.state.get() == State::Running {
            return Err(Error::AlreadyRunning);
        }
        if RUNNING_ID.with(Cell::get) != 0 {
            return Err(Error::NestedRun);
        }
        Ok(())
    }

    /// Stops the loop: the current batch of ready callbacks finishes, then `run_forever` returns
    /// without polling for I/O. Nothing scheduled is lost; running the loop again continues.
    /// Called before `run_forever`, it makes the next run do one iteration and return.
    pub fn stop(&self) {
        self.core.stopping.set(true);
    }

    /// True while `run_forever` or `run_until_complete` is running.
    pub fn is_running(&self) -> bool {
        self.core.state.get() == State::Running
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.core.state.get() == State::Closed
    }

    /// Closes the loop: drops every pending callback, timer, fd registration and signal handler,
    /// and releases the poller. Idempotent.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyRunning`] when called on a running loop.
    pub fn close(&self) -> Result<()> {
        match self.core.state.get() {
            State::Closed => Ok(()),
            State::Running => Err(Error::AlreadyRunning),
            State::Idle => {
                // Hooks first, while the loop still works: they may unregister fds or cancel
                // timers (the futures layer drops the tasks left pending here).
                loop {
                    let hooks = std::mem::take(&mut *self.core.close_hooks.borrow_mut());
                    if hooks.is_empty() {
                        break;
                    }
                    for hook in hooks {
                        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| hook(self))) {
                            self.core.report_panic("close hook", None, &*p);
                        }
                    }
                }
                self.core.shutdown();
                Ok(())
            }
        }
    }

    /// Registers `hook` to run when the loop is closed with [`close`](EventLoop::close), before
    /// anything is released (not when a loop is merely dropped). Layers above use it to release
    /// what they keep per loop, for example tasks still pending.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the loop is already closed.
    pub fn add_close_hook(&self, hook: impl FnOnce(&EventLoop) + 'static) -> Result<()> {
        self.check_open()?;
        self.core.close_hooks.borrow_mut().push(Box::new(hook));
        Ok(())
    }

    /// The loop's clock: monotonic real time, or virtual time for a virtual loop.
    pub fn time(&self) -> Instant {
        self.core.clock.now()
    }

    /// True for a loop made by [`EventLoop::new_virtual`].
    pub fn is_virtual_time(&self) -> bool {
        self.core.clock.is_virtual()
    }

    // ---- I/O --------------------------------------------------------------------------------

    /// Calls `f` whenever `fd` is readable (level-triggered: again on every iteration while it
    /// stays readable). A second `add_reader` on the same fd replaces the first.
    ///
    /// Remove the reader before closing the fd, as in asyncio.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] on a closed loop; [`Error::Io`] when the fd cannot be polled (not open,
    /// or a regular file on epoll).
    #[track_caller]
    pub fn add_reader(&self, fd: RawFd, f: impl FnMut() + 'static) -> Result<Handle> {
        let cb = Repeating::new(f, Location::caller(), None, None, Kind::Reader(fd));
        self.add_fd_callback(fd, cb, Some(false))
    }

    /// As [`add_reader`](EventLoop::add_reader), for a reader that **drains** `fd` each time it is
    /// called: it reads until the fd would block, or, for a TCP socket, until a read returns
    /// less than it asked for (the kernel had no more; urgent data, which stops a read early,
    /// raises `EPOLLPRI`, and the loop then watches the fd level-triggered). Other sockets can
    /// return short reads with more queued (a `SOCK_SEQPACKET` record, an AF_UNIX message that
    /// carried fds): read those until they would block. The loop may then watch `fd`
    /// edge-triggered, and call `f` once per arrival of new data instead of on every iteration
    /// while data is buffered: one scan less per ready fd in every wait, which is what keeps a
    /// busy server's round-trip tail short. Tulipa's stream transports read this way.
    ///
    /// A reader that stops before draining (because it was told to pause, or read a full
    /// buffer) must call itself again later (with `call_soon`) or re-add itself; otherwise it may
    /// not be called until more data arrives. While `fd` also has a writer, and on backends
    /// other than Linux epoll, the fd stays level-triggered, which a draining reader is correct
    /// under too.
    ///
    /// # Errors
    ///
    /// As [`add_reader`](EventLoop::add_reader).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::Cell;
    /// use std::io::{Read, Write};
    /// use std::os::fd::AsRawFd;
    /// use std::os::unix::net::UnixStream;
    /// use std::rc::Rc;
    /// use tulipa_loop::EventLoop;
    ///
    /// let lp = EventLoop::new()?;
    /// let (mut a, b) = UnixStream::pair()?;
    /// b.set_nonblocking(true)?;
    /// let got = Rc::new(Cell::new(0));
    /// let (g, lp2) = (got.clone(), lp.clone());
    /// let mut b2 = b.try_clone()?;
    /// lp.add_reader_edge(b.as_raw_fd(), move || {
    ///     let mut buf = [0u8; 4096];
    ///     // Drain: read until the socket would block.
    ///     while let Ok(n @ 1..) = b2.read(&mut buf) {
    ///         g.set(g.get() + n);
    ///     }
    ///     lp2.stop();
    /// })?;
    /// a.write_all(b"hello")?;
    /// lp.run_forever()?;
    /// assert_eq!(got.get(), 5);
    /// lp.remove_reader(b.as_raw_fd());
    /// # lp.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[track_caller]
    pub fn add_reader_edge(&self, fd: RawFd, f: impl FnMut() + 'static) -> Result<Handle> {
        let cb = Repeating::new(f, Location::caller(), None, None, Kind::Reader(fd));
        self.add_fd_callback(fd, cb, Some(true))
    }

    /// Calls `f` whenever `fd` is writable; see [`add_reader`](EventLoop::add_reader).
    ///
    /// # Errors
    ///
    /// As [`add_reader`](EventLoop::add_reader).
    #[track_caller]
    pub fn add_writer(&self, fd: RawFd, f: impl FnMut() + 'static) -> Result<Handle> {
        let cb = Repeating::new(f, Location::caller(), None, None, Kind::Writer(fd));
        self.add_fd_callback(fd, cb, None)
    }

    /// Stops watching `fd` for reading. Returns whether a reader was registered.
    pub fn remove_reader(&self, fd: RawFd) -> bool {
        self.core.remove_fd_callback(fd, true, None)
    }

    /// Stops watching `fd` for writing. Returns whether a writer was registered.
    pub fn remove_writer(&self, fd: RawFd) -> bool {
        self.core.remove_fd_callback(fd, false, None)
    }

    /// Adds a reader (`drains` says whether it drains the fd) or, for `None`, a writer.
    fn add_fd_callback(
        &self,
        fd: RawFd,
        cb: Rc<dyn Callback>,
        drains: Option<bool>,
    ) -> Result<Handle> {
        let read = drains.is_some();
        self.check_open()?;
        let old = {
            let poller = self.core.poller.borrow();
            let poller = poller.as_ref().ok_or(Error::Closed)?;
            let mut io = self.core.io.borrow_mut();
            let existing = io.contains_key(&fd);
            let slot = io.entry(fd).or_default();
            let old_drains = slot.reader_drains;
            let old = if let Some(d) = drains {
                slot.reader_drains = d;
                slot.reader.replace(cb.clone())
            } else {
                slot.writer.replace(cb.clone())
            };
            let (r, w) = (slot.reader.is_some(), slot.writer.is_some());
            if let Err(e) = poller.register(fd, r, w, slot.edge(), existing) {
                // Put things back as they were.
                let slot = io.get_mut(&fd).expect("slot inserted above");
                if read {
                    slot.reader = old;
                    slot.reader_drains = old_drains;
                } else {
                    slot.writer = old;
                }
                if slot.reader.is_none() && slot.writer.is_none() {
                    io.remove(&fd);
                }
                let what = if read { "add_reader" } else { "add_writer" };
                return Err(Error::io(format!("{what}(fd {fd})"), e));
            }
            old
        };
        // Outside every borrow: dropping the old closure may run user code.
        if let Some(old) = old {
            handle::cancel(&*old);
        }
        Ok(Handle::new(cb))
    }

    // ---- signals ----------------------------------------------------------------------------

    /// Runs `f` as an ordinary callback whenever signal `sig` arrives (never in signal context).
    /// Several deliveries between two iterations may run `f` once. A second handler for the same
    /// signal replaces the first.
    ///
    /// Only a loop on the process's main thread may add signal handlers (as in asyncio), so that
    /// one loop owns each signal. Removing the handler, or closing the loop, gives the signal its
    /// default action back (see [`remove_signal_handler`](EventLoop::remove_signal_handler)).
    ///
    /// # Errors
    ///
    /// [`Error::NotMainThread`] off the main thread; [`Error::InvalidSignal`] for a number that is
    /// not a signal or a signal that cannot be caught (SIGKILL, SIGSTOP, SIGSEGV, …);
    /// [`Error::Closed`] on a closed loop.
    #[track_caller]
    pub fn add_signal_handler(&self, sig: i32, f: impl FnMut() + 'static) -> Result<()> {
        self.check_open()?;
        sys::signal::validate(sig)?;
        if !sys::signal::is_main_thread() {
            return Err(Error::NotMainThread);
        }
        let handler: Rc<dyn Callback> =
            Repeating::new(f, Location::caller(), None, None, Kind::Signal(sig));
        let old = self
            .core
            .signals
            .borrow_mut()
            .get_mut(&sig)
            .map(|slot| std::mem::replace(&mut slot.handler, handler.clone()));
        if let Some(old) = old {
            handle::cancel(&*old);
            return Ok(());
        }
        let pipe = sys::signal::SignalPipe::register(sig)?;
        let weak = Rc::downgrade(&self.core);
        self.add_reader(pipe.fd(), move || {
            if let Some(core) = weak.upgrade() {
                core.signal_arrived(sig);
            }
        })?;
        self.core
            .signals
            .borrow_mut()
            .insert(sig, SignalSlot { pipe, handler });
        Ok(())
    }

    /// Removes the handler of `sig`; returns whether there was one.
    ///
    /// As asyncio does (`SIG_DFL`), the signal then has its default action again: a SIGINT or
    /// SIGTERM that arrives later ends the process, a SIGCHLD is ignored. That holds whatever
    /// handled the signal before [`add_signal_handler`](EventLoop::add_signal_handler).
    /// (`signal-hook`'s process-wide handler stays installed and emulates the default action.)
    ///
    /// # Errors
    ///
    /// [`Error::InvalidSignal`] for an invalid signal number.
    pub fn remove_signal_handler(&self, sig: i32) -> Result<bool> {
        sys::signal::validate(sig)?;
        let slot = self.core.signals.borrow_mut().remove(&sig);
        match slot {
            None => Ok(false),
            Some(slot) => {
                self.core.remove_fd_callback(slot.pipe.fd(), true, None);
                handle::cancel(&*slot.handler);
                drop(slot);
                Ok(true)
            }
        }
    }

    // ---- errors -----------------------------------------------------------------------------

    /// Sets the handler that is told about panicking callbacks and unhandled errors; `None`
    /// restores the default, which logs through `tracing`. If the handler itself panics, both that
    /// panic and the original context go to the default handler.
    pub fn set_exception_handler(
        &self,
        handler: Option<impl Fn(&EventLoop, &ExceptionContext) + 'static>,
    ) {
        *self.core.handler.borrow_mut() = handler.map(|h| Rc::new(h) as ExceptionHandler);
    }

    /// True when a custom exception handler is set.
    pub fn has_exception_handler(&self) -> bool {
        self.core.handler.borrow().is_some()
    }

    /// Reports `context` to the exception handler (or the default one).
    pub fn call_exception_handler(&self, context: ExceptionContext) {
        self.core.call_exception_handler(context);
    }

    /// The default handler, for custom handlers that want to fall back to it.
    pub fn default_exception_handler(&self, context: &ExceptionContext) {
        default_exception_handler(context);
    }

    // ---- debug and introspection ------------------------------------------------------------

    /// Turns debug mode on or off: when on, callbacks that run longer than
    /// [`slow_callback_duration`](EventLoop::slow_callback_duration) are logged at warn level with
    /// where they were scheduled. Off, it costs one branch per callback.
    pub fn set_debug(&self, on: bool) {
        self.core.debug.set(on);
    }

    /// True in debug mode.
    pub fn get_debug(&self) -> bool {
        self.core.debug.get()
    }

    /// The threshold for slow-callback warnings (default 100 ms).
    pub fn slow_callback_duration(&self) -> Duration {
        self.core.slow.get()
    }

    /// Sets the threshold for slow-callback warnings.
    pub fn set_slow_callback_duration(&self, d: Duration) {
        self.core.slow.set(d);
    }

    /// Counts of ready callbacks, timers and fd registrations, and the next deadline.
    pub fn stats(&self) -> LoopStats {
        let io = self.core.io.borrow();
        let mut timers = self.core.timers.borrow_mut();
        let next = timers.next_deadline();
        let ready = self.core.ready.borrow();
        // Fired timers cancelled before the loop reached them are still on the queue's books.
        let cancelled_fired = ready
            .iter()
            .filter(|j| matches!(j, Job::Cb(cb) if is_counted_cancelled(&**cb)))
            .count();
        LoopStats {
            ready: ready.len(),
            timers: timers.live(cancelled_fired),
            timer_heap: timers.heap_len(),
            readers: io.values().filter(|s| s.reader.is_some()).count(),
            writers: io.values().filter(|s| s.writer.is_some()).count(),
            next_deadline: next.map(|ns| self.core.clock.instant(ns)),
        }
    }

    /// The loop running on this thread.
    ///
    /// # Errors
    ///
    /// [`Error::NoRunningLoop`] when no loop runs here.
    pub fn running() -> Result<EventLoop> {
        RUNNING
            .with(|r| r.borrow().clone())
            .ok_or(Error::NoRunningLoop)
    }

    /// Queues an `async-task` runnable on this loop (used by `tulipa-futures`; see [`crate::rt`]).
    pub(crate) fn push_runnable(&self, r: Runnable) {
        self.core.ready.borrow_mut().push_back(Job::Task(r));
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventLoop")
            .field("id", &self.core.id)
            .field("state", &self.core.state.get())
            .field("virtual_time", &self.core.clock.is_virtual())
            .field("debug", &self.core.debug.get())
            .finish()
    }
}

/// Marks a loop running on this thread and undoes it on every exit path.
struct RunningGuard<'a> {
    lp: &'a EventLoop,
}

impl<'a> RunningGuard<'a> {
    fn enter(lp: &'a EventLoop) -> Self {
        lp.core.state.set(State::Running);
        RUNNING.with(|r| *r.borrow_mut() = Some(lp.clone()));
        RUNNING_ID.with(|id| id.set(lp.core.id));
        RunningGuard { lp }
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        RUNNING_ID.with(|id| id.set(0));
        let prev = RUNNING.with(|r| r.borrow_mut().take());
        drop(prev);
        self.lp.core.stopping.set(false);
        if self.lp.core.state.get() == State::Running {
            self.lp.core.state.set(State::Idle);
        }
    }
}

impl Core {
    pub(crate) fn push_timer(&self, when: u64, cb: Rc<dyn Callback>) {
        self.timers.borrow_mut().push(when, cb);
    }

    fn run_once(self: &Rc<Self>) {
        if !self.stopping.get() {
            self.poll_io();
        }
        self.remote.drain(|job| {
            let job = match job {
                RemoteJob::Call(call) => {
                    if call.cancelled() {
                        return;
                    }
                    Job::Cb(crate::handle::Threadsafe::new(call))
                }
                RemoteJob::Task(r) => Job::Task(r),
                RemoteJob::Stop => {
                    self.stopping.set(true);
                    return;
                }
            };
            self.ready.borrow_mut().push_back(job);
        });
        let now = self.clock.now_ns();
        {
            // No user code runs while both are borrowed: cancelled cells hold no closure.
            let mut ready = self.ready.borrow_mut();
            self.timers.borrow_mut().drain_due(now, |cb| {
                ready.push_back(Job::Cb(cb));
            });
        }
        // Run only what is ready now; callbacks scheduled by these run on the next iteration.
        let n = self.ready.borrow().len();
        for _ in 0..n {
            let job = self.ready.borrow_mut().pop_front();
            match job {
                Some(job) => self.run_job(job),
                None => break,
            }
        }
    }

    fn poll_io(self: &Rc<Self>) {
        let busy = !self.ready.borrow().is_empty() || !self.remote.is_empty();
        let no_fds = self.io.borrow().is_empty();
        if busy && no_fds {
            // Callbacks are waiting and no fd is registered: a zero-timeout poll could find
            // nothing, yet costs several syscalls (the poller re-arms its notifier and timer on
            // every wait). Jobs from other threads are drained from their queue without it.
            return;
        }
        let next = self.timers.borrow_mut().next_deadline();
        let timeout = if busy {
            Some(Duration::ZERO)
        } else {
            next.map(|w| Duration::from_nanos(w.saturating_sub(self.clock.now_ns())))
        };
        match (self.clock.is_virtual(), timeout, next) {
            (true, Some(t), Some(next)) if !t.is_zero() => {
                // Virtual time: look at the fds without waiting; if nothing happened, jump.
                let events = if no_fds {
                    0
                } else {
                    self.poll(Some(Duration::ZERO))
                };
                if events == 0 && self.remote.is_empty() {
                    self.clock.advance_to(next);
                }
            }
            _ => {
                self.poll(timeout);
            }
        }
    }

    /// Waits for I/O and queues the callbacks of ready fds. Returns the number of fd events.
    fn poll(&self, timeout: Option<Duration>) -> usize {
        let poller_ref = self.poller.borrow();
        let Some(poller) = poller_ref.as_ref() else {
            return 0;
        };
        let mut events = self.events.borrow_mut();
        events.clear();
        if let Err(e) = poller.wait(&mut events, timeout) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!(loop_id = self.id, error = %e, "polling for I/O failed");
            }
            return 0;
        }
        let mut stale = Vec::new();
        let mut ended = Vec::new();
        {
            let io = self.io.borrow();
            let mut ready = self.ready.borrow_mut();
            for ev in events.iter() {
                let fd = ev.fd;
                let Some(slot) = io.get(&fd) else { continue };
                if ev.hangup && slot.edge() {
                    ended.push(fd);
                }
                for (wanted, cb, is_read) in [
                    (ev.readable, &slot.reader, true),
                    (ev.writable, &slot.writer, false),
                ] {
                    if let (true, Some(cb)) = (wanted, cb) {
                        if is_cancelled(&**cb) {
                            // asyncio's rule: a cancelled fd handle unregisters itself lazily.
                            stale.push((fd, is_read, cb.clone()));
                        } else {
                            ready.push_back(Job::Cb(cb.clone()));
                        }
                    }
                }
            }
        }
        let n = events.len();
        drop(events);
        for fd in ended {
            self.to_level_triggered(poller, fd);
        }
        drop(poller_ref);
        for (fd, read, cb) in stale {
            self.remove_fd_callback(fd, read, Some(&cb));
        }
        n
    }

    /// An edge-triggered fd whose peer ended, that failed, or that got urgent data goes
    /// level-triggered: its data and its end may have come as one edge, and a draining reader's
    /// short read leaves the end (or what follows the urgent mark) unread, so it must be
    /// reported again until the reader has seen it.
    fn to_level_triggered(&self, poller: &Poller, fd: RawFd) {
        let mut io = self.io.borrow_mut();
        let Some(slot) = io.get_mut(&fd) else { return };
        slot.reader_drains = false;
        let (r, w) = (slot.reader.is_some(), slot.writer.is_some());
        if let Err(e) = poller.register(fd, r, w, false, true) {
            tracing::warn!(loop_id = self.id, fd, error = %e, "updating fd interest failed");
        }
    }

    /// Removes the reader or writer of `fd` (only if it is `only`, when given).
    fn remove_fd_callback(&self, fd: RawFd, read: bool, only: Option<&Rc<dyn Callback>>) -> bool {
        let removed = {
            let mut io = self.io.borrow_mut();
            let Some(slot) = io.get_mut(&fd) else {
                return false;
            };
            let target = if read {
                &mut slot.reader
            } else {
                &mut slot.writer
            };
            if let (Some(only), Some(cur)) = (only, target.as_ref()) {
                if !Rc::ptr_eq(only, cur) {
                    return false;
                }
            }
            let removed = target.take();
            let (r, w) = (slot.reader.is_some(), slot.writer.is_some());
            if let Some(poller) = self.poller.borrow().as_ref() {
                if !r && !w {
                    io.remove(&fd);
                    poller.delete(fd);
                } else if removed.is_some() {
                    if let Err(e) = poller.register(fd, r, w, slot.edge(), true) {
                        tracing::warn!(loop_id = self.id, fd, error = %e, "updating fd interest failed");
                    }
                }
            }
            removed
        };
        match removed {
            Some(cb) => {
                handle::cancel(&*cb);
                true
            }
            None => false,
        }
    }

    fn signal_arrived(&self, sig: i32) {
        let handler = {
            let signals = self.signals.borrow();
            let Some(slot) = signals.get(&sig) else {
                return;
            };
            slot.pipe.drain();
            slot.handler.clone()
        };
        self.ready.borrow_mut().push_back(Job::Cb(handler));
    }

    fn run_job(self: &Rc<Self>, job: Job) {
        let started = self.debug.get().then(Instant::now);
        // The header is read (for logs) only when the callback panics or runs slow in debug mode.
        let ran = match job {
            Job::Cb(cb) => {
                if !take_for_run(&*cb) {
                    return;
                }
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| cb.run(&cb, self))) {
                    let (kind, location) = describe(&*cb);
                    self.report_panic(&kind.to_string(), Some(location), &*p);
                }
                Ran::Cell(cb)
            }
            Job::Soon(cb) => {
                let location = cb.location();
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(move || cb.run())) {
                    self.report_panic(&Kind::Callback.to_string(), Some(location), &*p);
                }
                Ran::Soon(location)
            }
            Job::Cancelled => return,
            Job::Task(r) => {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| r.run())) {
                    self.report_panic("task", None, &*p);
                }
                Ran::Task
            }
        };
        if let Some(started) = started {
            let took = started.elapsed();
            if took >= self.slow.get() {
                let (what, location) = match ran {
                    Ran::Cell(cb) => {
                        let (kind, location) = describe(&*cb);
                        (kind.to_string(), location.to_string())
                    }
                    Ran::Soon(location) => (Kind::Callback.to_string(), location.to_string()),
                    Ran::Task => ("task step".to_owned(), "-".to_owned()),
                };
                tracing::warn!(
                    loop_id = self.id,
                    callback = %what,
                    scheduled_at = %location,
                    took_ms = took.as_secs_f64() * 1e3,
                    "slow callback"
                );
            }
        }
    }

    fn report_panic(
        self: &Rc<Self>,
        what: &str,
        location: Option<&'static Location<'static>>,
        payload: &(dyn std::any::Any + Send),
    ) {
        let mut ctx = ExceptionContext::new("exception in callback")
            .with_panic(payload)
            .with_source(what);
        ctx.scheduled_at = location;
        self.call_exception_handler(ctx);
    }

    pub(crate) fn call_exception_handler(self: &Rc<Self>, ctx: ExceptionContext) {
        let handler = self.handler.borrow().clone();
        let Some(handler) = handler else {
            default_exception_handler(&ctx);
            return;
        };
        let lp = EventLoop { core: self.clone() };
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| handler(&lp, &ctx))) {
            default_exception_handler(
                &ExceptionContext::new("the exception handler panicked").with_panic(&*p),
            );
            default_exception_handler(&ctx);
        }
    }

    pub(crate) fn stop_for(&self, generation: u64) {
        if self.run_generation.get() == generation {
            self.stopping.set(true);
        }
    }

    /// Releases everything (close, or drop of an unclosed loop).
    fn shutdown(&self) {
        self.state.set(State::Closed);
        let signals: Vec<SignalSlot> = self.signals.borrow_mut().drain().map(|(_, s)| s).collect();
        let io: Vec<(RawFd, FdSlot)> = self.io.borrow_mut().drain().collect();
        if let Some(poller) = self.poller.borrow().as_ref() {
            for (fd, _) in &io {
                poller.delete(*fd);
            }
        }
        self.poller.borrow_mut().take();
        self.remote.close();
        let timers = self.timers.borrow_mut().clear();
        let ready = self.ready.borrow_mut().take_all();
        let hooks = std::mem::take(&mut *self.close_hooks.borrow_mut());
        // Every borrow is released: dropping closures may run arbitrary code.
        drop(signals);
        drop(io);
        drop(timers);
        drop(ready);
        drop(hooks);
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.state.get() != State::Closed {
            self.shutdown();
        }
    }
}
