//! `Future<T>`: asyncio's Future (PEP 3156 "Futures"), a result slot bound to a loop.
//!
//! A future is pending, then done with a result, an error, or cancelled (a cancelled future is
//! done with [`Error::Cancelled`]). Done callbacks are always scheduled with `call_soon`, never
//! called inline, also when added to a future that is already done. Awaiting a future (it
//! implements `std::future::Future`) gives its outcome; see [`Future`] for who gets the value.

use std::cell::RefCell;
use std::fmt;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use tulipa_loop::{Completion, DoneNotifier, EventLoop, ExceptionContext};

use crate::cancel::{self, CancelTarget};
use crate::error::{Cancelled, Error, Result};
use crate::task::TaskData;
use crate::waiters::Waiters;

/// Identifies a done callback for [`Future::remove_done_callback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type DoneCallback<T> = Box<dyn FnOnce(&Future<T>)>;

/// Where a future is in its life. Waiters and callbacks only exist while it is pending, and the
/// `retrieved` flag only once it is done, so each lives in its variant: the state of a
/// `Future<u32>` is 32 bytes.
pub(crate) enum State<T: 'static> {
    /// Not done: who to wake and which done callbacks to schedule once it is.
    Pending(Waiters<Callbacks<T>>),
    Done {
        result: Result<T>,
        /// The error was read (by an await, `result`, `exception` or `take_result`), so dropping
        /// the future does not report it as never retrieved.
        retrieved: bool,
    },
    /// Done with `Ok`, and the value was moved out by an await or `take_result`.
    Taken,
}

/// Done callbacks, kept in the waiters' side box: allocated on first use, as most futures (every
/// task awaited directly) have none.
pub(crate) struct Callbacks<T: 'static> {
    list: Vec<(u64, DoneCallback<T>)>,
    next_id: u64,
}

impl<T: 'static> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks {
            list: Vec::new(),
            next_id: 0,
        }
    }
}

/// The part of a future that every kind has: its loop, its state and where it was created.
pub(crate) struct Core<T: 'static> {
    pub(crate) lp: EventLoop,
    pub(crate) state: RefCell<State<T>>,
    pub(crate) created_at: &'static Location<'static>,
}

/// One future's allocation: the shared [`Core`], then what its kind adds. A plain future adds
/// nothing (`K = ()`), a task its [`TaskData`], a gather its [`CustomCancel`]; so a plain future
/// does not carry a task's fields. `repr(C)` puts the core first in every kind, so the arms of
/// [`Future::core`] compute the same address and the optimizer can fold the match away.
#[repr(C)]
pub(crate) struct Inner<T: 'static, K: Kind> {
    pub(crate) core: Core<T>,
    pub(crate) kind: K,
}

/// What a kind of future adds to the [`Core`], and what cancelling it means.
pub(crate) trait Kind: Sized + 'static {
    /// The handle for a future of this kind.
    fn wrap<T>(inner: Rc<Inner<T, Self>>) -> Ptr<T>;

    /// Cancels it (asyncio's `cancel`); true if that will complete it.
    fn cancel<T>(inner: Rc<Inner<T, Self>>, msg: Option<Arc<str>>) -> bool;

    /// How a report of a never-retrieved error names it.
    fn describe(&self) -> String {
        "future".to_owned()
    }
}

/// A plain future: cancelling it completes it with [`Error::Cancelled`].
impl Kind for () {
    fn wrap<T>(inner: Rc<Inner<T, Self>>) -> Ptr<T> {
        Ptr::Plain(inner)
    }

    fn cancel<T>(inner: Rc<Inner<T, Self>>, msg: Option<Arc<str>>) -> bool {
        inner.complete(Err(Error::Cancelled(Cancelled::new(msg))))
    }
}

/// A future whose cancellation runs this instead (gather cancels its children).
pub(crate) struct CustomCancel(Box<dyn Fn(Option<Arc<str>>) -> bool>);

impl Kind for CustomCancel {
    fn wrap<T>(inner: Rc<Inner<T, Self>>) -> Ptr<T> {
        Ptr::Custom(inner)
    }

    fn cancel<T>(inner: Rc<Inner<T, Self>>, msg: Option<Arc<str>>) -> bool {
        inner.core.is_pending() && (inner.kind.0)(msg)
    }
}

/// A [`Future`]'s pointer to its allocation, which has one type per kind (16 bytes: the kind
/// and the `Rc`). Each variant is a sized `Rc`, so it turns into `Rc<dyn CancelTarget>` (and a
/// task's into `Rc<dyn TaskOps>`).
pub(crate) enum Ptr<T: 'static> {
    Plain(Rc<Inner<T, ()>>),
    Task(Rc<Inner<T, TaskData>>),
    Custom(Rc<Inner<T, CustomCancel>>),
}

/// Runs `$body` with `$inner` bound to the `Rc` of whichever kind `$ptr` points to.
macro_rules! with_inner {
    ($ptr:expr, $inner:ident => $body:expr) => {
        match $ptr {
            Ptr::Plain($inner) => $body,
            Ptr::Task($inner) => $body,
            Ptr::Custom($inner) => $body,
        }
    };
}

/// A result slot bound to a loop (asyncio's `Future`).
///
/// `Future<T>` is a cheap reference-counted handle: clones share the slot. It is `!Send`; results
/// produced on other threads arrive through
/// [`ConcurrentFuture`](crate::executor::ConcurrentFuture) and [`wrap_future`](crate::wrap_future).
///
/// Awaiting a future returns its outcome. The error of a failed or cancelled future can be read
/// any number of times; an `Ok` value is *moved* to the first await (or
/// [`take_result`](Future::take_result)), and read by clone with [`result`](Future::result) when
/// `T: Clone`.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{Future, spawn_on};
/// use tulipa_loop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// let fut: Future<u32> = Future::new(&lp);
/// let f2 = fut.clone();
/// lp.call_soon(move || { f2.set_result(7).unwrap(); })?;
/// let task = spawn_on(&lp, async move { Ok(fut.await? * 6) })?;
/// assert_eq!(lp.run_until_complete(task)??, 42);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// A `Future` is not `Send`:
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<tulipa_futures::Future<u32>>();
/// ```
#[must_use = "a future does nothing unless completed and awaited or inspected"]
pub struct Future<T: 'static> {
    pub(crate) ptr: Ptr<T>,
}

impl<T: 'static> Clone for Future<T> {
    fn clone(&self) -> Self {
        let ptr = match &self.ptr {
            Ptr::Plain(i) => Ptr::Plain(i.clone()),
            Ptr::Task(i) => Ptr::Task(i.clone()),
            Ptr::Custom(i) => Ptr::Custom(i.clone()),
        };
        Future { ptr }
    }
}

impl<T: 'static> Future<T> {
    /// A pending future on `lp` (asyncio's `loop.create_future()`).
    #[track_caller]
    pub fn new(lp: &EventLoop) -> Self {
        Self::with_kind(lp.clone(), (), Location::caller())
    }

    pub(crate) fn with_kind<K: Kind>(
        lp: EventLoop,
        kind: K,
        created_at: &'static Location<'static>,
    ) -> Self {
        Future {
            ptr: K::wrap(Inner::new(lp, kind, created_at)),
        }
    }

    /// A pending future whose cancellation runs `cancel` instead (which returns whether that
    /// will complete the future).
    pub(crate) fn with_custom_cancel(
        lp: EventLoop,
        cancel: impl Fn(Option<Arc<str>>) -> bool + 'static,
        created_at: &'static Location<'static>,
    ) -> Self {
        Self::with_kind(lp, CustomCancel(Box::new(cancel)), created_at)
    }

    /// The part of the future every kind shares.
    #[inline]
    pub(crate) fn core(&self) -> &Core<T> {
        with_inner!(&self.ptr, i => &i.core)
    }

    /// The loop this future is bound to.
    pub fn get_loop(&self) -> &EventLoop {
        &self.core().lp
    }

    /// True once done (result, error or cancelled).
    pub fn done(&self) -> bool {
        !self.core().is_pending()
    }

    /// True if done by cancellation.
    pub fn cancelled(&self) -> bool {
        self.core().is_cancelled()
    }

    /// Marks the future done with `value` and schedules its callbacks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when already done, or when this is a task (a task's result comes
    /// from its own future). [`tulipa_loop::Error::Closed`] (as [`Error::Loop`]) when the future
    /// has done callbacks and its loop is closed: the future is done, but the callbacks can never
    /// run (asyncio raises `RuntimeError` the same way).
    pub fn set_result(&self, value: T) -> Result<()> {
        self.set_outcome(Ok(value))
    }

    /// Marks the future done with `error` and schedules its callbacks.
    ///
    /// # Errors
    ///
    /// As [`set_result`](Future::set_result).
    pub fn set_exception(&self, error: Error) -> Result<()> {
        self.set_outcome(Err(error))
    }

    fn set_outcome(&self, r: Result<T>) -> Result<()> {
        if matches!(self.ptr, Ptr::Task(_)) {
            return Err(Error::InvalidState(
                "a task's outcome is set by its own future",
            ));
        }
        match self.core().complete(r, || self.clone()) {
            None => Err(Error::InvalidState("the future is already done")),
            Some(0) => Ok(()),
            // asyncio raises here too: the future is done, its callbacks are not.
            Some(_) => Err(tulipa_loop::Error::Closed.into()),
        }
    }

    /// Cancels the future: if pending, it becomes done with [`Error::Cancelled`] carrying `msg`,
    /// and its callbacks are scheduled. Returns false when already done. For a task this is a
    /// cancellation *request*; see [`Task::cancel`](crate::Task::cancel).
    pub fn cancel(&self, msg: Option<&str>) -> bool {
        let msg = msg.map(Arc::from);
        with_inner!(&self.ptr, i => i.clone().cancel_target(msg))
    }

    /// A clone of the result.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] while pending or after the value was moved out; the future's error
    /// when it failed; [`Error::Cancelled`] when it was cancelled.
    pub fn result(&self) -> Result<T>
    where
        T: Clone,
    {
        match &mut *self.core().state.borrow_mut() {
            State::Pending(_) => Err(Error::InvalidState("the result is not ready")),
            State::Taken => Err(Error::InvalidState("the result was already taken")),
            State::Done { result: Ok(v), .. } => Ok(v.clone()),
            State::Done {
                result: Err(e),
                retrieved,
            } => {
                *retrieved = true;
                Err(e.clone())
            }
        }
    }

    /// Moves the result out (for `T` that is not `Clone`); errors as [`result`](Future::result).
    ///
    /// # Errors
    ///
    /// As [`result`](Future::result).
    pub fn take_result(&self) -> Result<T> {
        match self.core().try_take() {
            Some(r) => r,
            None => Err(Error::InvalidState("the result is not ready")),
        }
    }

    /// The error, `Ok(None)` when done with a value.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] while pending; [`Error::Cancelled`] when cancelled.
    pub fn exception(&self) -> Result<Option<Error>> {
        match &mut *self.core().state.borrow_mut() {
            State::Pending(_) => Err(Error::InvalidState("the exception is not set yet")),
            State::Done {
                result: Err(e @ Error::Cancelled(_)),
                ..
            } => Err(e.clone()),
            State::Done {
                result: Err(e),
                retrieved,
            } => {
                *retrieved = true;
                Ok(Some(e.clone()))
            }
            State::Done { result: Ok(_), .. } | State::Taken => Ok(None),
        }
    }

    /// Adds a callback run with this future once it is done. It is always scheduled through the
    /// loop's `call_soon`, never called inline, even if the future is already done.
    ///
    /// A callback added while the future is pending is scheduled when it completes; if its loop
    /// is closed by then, the callback is dropped without running (and logged at debug level),
    /// as the loop can run nothing more.
    ///
    /// # Errors
    ///
    /// [`Error::Loop`] (`Closed`) when the future is already done and its loop is closed, so the
    /// callback could never run (asyncio raises `RuntimeError`); `f` is dropped.
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + 'static) -> Result<CallbackId> {
        let core = self.core();
        let mut s = core.state.borrow_mut();
        let State::Pending(waiters) = &mut *s else {
            drop(s);
            core.lp.call_soon({
                let me = self.clone();
                move || f(&me)
            })?;
            // Already scheduled: nothing can remove it, so any id will do.
            return Ok(CallbackId(0));
        };
        let cbs = waiters.extra_mut();
        cbs.next_id += 1;
        let id = cbs.next_id;
        cbs.list.push((id, Box::new(f)));
        Ok(CallbackId(id))
    }

    /// Removes a done callback that has not been scheduled yet; returns whether it was found.
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        let removed = {
            let mut s = self.core().state.borrow_mut();
            match &mut *s {
                State::Pending(waiters) => waiters.existing_extra_mut().and_then(|cbs| {
                    let pos = cbs.list.iter().position(|(i, _)| *i == id.0);
                    pos.map(|p| cbs.list.remove(p))
                }),
                _ => None,
            }
        };
        removed.is_some()
    }

    /// Where the future (or task) was created.
    pub fn created_at(&self) -> &'static Location<'static> {
        self.core().created_at
    }

    /// True when both handles refer to the same future.
    pub fn ptr_eq(&self, other: &Future<T>) -> bool {
        std::ptr::eq(self.core(), other.core())
    }

    /// The address of the shared slot: equal for handles that are [`ptr_eq`](Future::ptr_eq).
    pub(crate) fn addr(&self) -> *const () {
        std::ptr::from_ref(self.core()).cast()
    }

    /// Awaiting: the outcome if done, else registers `cx` and records this future as what the
    /// current task waits on.
    pub(crate) fn poll_outcome(&self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if let Some(e) = cancel::take_cancellation() {
            return Poll::Ready(Err(e));
        }
        if let Some(r) = self.core().take_or_register(cx.waker()) {
            return Poll::Ready(r);
        }
        let target: Rc<dyn CancelTarget> = with_inner!(&self.ptr, i => i.clone());
        cancel::waiting_on(target);
        Poll::Pending
    }
}

impl<T: 'static, K: Kind> Inner<T, K> {
    pub(crate) fn new(lp: EventLoop, kind: K, created_at: &'static Location<'static>) -> Rc<Self> {
        Rc::new(Inner {
            core: Core {
                lp,
                state: RefCell::new(State::Pending(Waiters::default())),
                created_at,
            },
            kind,
        })
    }

    /// As [`Future::complete`], for whoever holds the typed `Rc` (a task's own future).
    pub(crate) fn complete(self: &Rc<Self>, r: Result<T>) -> bool {
        self.core
            .complete(r, || Future {
                ptr: K::wrap(self.clone()),
            })
            .is_some()
    }
}

impl<T: 'static> Core<T> {
    /// Completes the future; `None` if it was already done, else how many done callbacks could
    /// not be scheduled because the loop is closed. Wakes awaiters, then schedules the callbacks
    /// with the handle `me` makes (only called when there are callbacks).
    fn complete(&self, r: Result<T>, me: impl FnOnce() -> Future<T>) -> Option<usize> {
        let waiters = {
            let mut s = self.state.borrow_mut();
            let State::Pending(waiters) = &mut *s else {
                return None;
            };
            let waiters = std::mem::take(waiters);
            *s = State::Done {
                result: r,
                retrieved: false,
            };
            waiters
        };
        let mut lost = 0;
        if let Some(callbacks) = waiters.wake_all().filter(|c| !c.list.is_empty()) {
            let me = me();
            for (_, cb) in callbacks.list {
                if !self.schedule_callback(me.clone(), cb) {
                    lost += 1;
                }
            }
        }
        Some(lost)
    }

    /// Schedules one done callback; false (and a warning) when the loop is closed.
    fn schedule_callback(&self, fut: Future<T>, cb: DoneCallback<T>) -> bool {
        match self.lp.call_soon(move || cb(&fut)) {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    created_at = %self.created_at,
                    "a future completed after its loop closed: its done callback will never run"
                );
                false
            }
        }
    }

    /// Moves the outcome out if done.
    pub(crate) fn try_take(&self) -> Option<Result<T>> {
        let mut s = self.state.borrow_mut();
        if matches!(*s, State::Pending(_)) {
            return None;
        }
        Some(Self::take_done(&mut s))
    }

    /// Moves the outcome out if done, else registers `w` to be woken when it is: one borrow for
    /// the whole of an await's poll.
    fn take_or_register(&self, w: &Waker) -> Option<Result<T>> {
        let mut s = self.state.borrow_mut();
        if let State::Pending(waiters) = &mut *s {
            waiters.register(w);
            return None;
        }
        Some(Self::take_done(&mut s))
    }

    /// The outcome of a future that is done: the value is moved out, an error is cloned and
    /// marked retrieved.
    fn take_done(s: &mut State<T>) -> Result<T> {
        match std::mem::replace(s, State::Taken) {
            State::Done { result: Ok(v), .. } => Ok(v),
            State::Done { result: Err(e), .. } => {
                *s = State::Done {
                    result: Err(e.clone()),
                    retrieved: true,
                };
                Err(e)
            }
            State::Taken => Err(Error::InvalidState("the result was already taken")),
            pending @ State::Pending(_) => {
                *s = pending;
                Err(Error::InvalidState("the result is not ready"))
            }
        }
    }

    /// Registers `cx` to be woken when done; true if already done. Takes nothing.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> bool {
        match &mut *self.state.borrow_mut() {
            State::Pending(waiters) => {
                waiters.register(cx.waker());
                false
            }
            _ => true,
        }
    }

    /// Done with an error other than cancellation (does not mark it retrieved).
    pub(crate) fn has_error(&self) -> bool {
        matches!(&*self.state.borrow(), State::Done { result: Err(e), .. } if !e.is_cancelled())
    }

    pub(crate) fn is_pending(&self) -> bool {
        matches!(*self.state.borrow(), State::Pending(_))
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        matches!(
            *self.state.borrow(),
            State::Done {
                result: Err(Error::Cancelled(_)),
                ..
            }
        )
    }
}

impl<T: 'static, K: Kind> CancelTarget for Inner<T, K> {
    fn cancel_target(self: Rc<Self>, msg: Option<Arc<str>>) -> bool {
        K::cancel(self, msg)
    }
}

impl<T: 'static> std::future::Future for Future<T> {
    type Output = Result<T>;

    /// # Cancel safety
    ///
    /// Cancel-safe: a cancellation of the awaiting task is delivered before the outcome is
    /// touched, so the value stays in the future.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.poll_outcome(cx)
    }
}

impl<T: 'static> Completion for Future<T> {
    type Output = Result<T>;
    fn notify_when_done(&mut self, done: DoneNotifier) {
        // A done future on a closed loop: the notifier is dropped, which is all a closed loop
        // can do with it.
        let _ = self.add_done_callback(move |_| done.notify());
    }
    fn take_output(&mut self) -> Option<Result<T>> {
        self.core().try_take()
    }
}

#[cfg(test)]
impl<T: 'static> Future<T> {
    /// Done callbacks registered and not yet run.
    pub(crate) fn callback_count(&self) -> usize {
        match &*self.core().state.borrow() {
            State::Pending(waiters) => waiters.existing_extra().map_or(0, |c| c.list.len()),
            _ => 0,
        }
    }
}

impl<T: 'static> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let core = self.core();
        let state = match &*core.state.borrow() {
            State::Pending(_) => "pending",
            State::Done { result: Ok(_), .. } | State::Taken => "finished",
            State::Done {
                result: Err(Error::Cancelled(_)),
                ..
            } => "cancelled",
            State::Done { result: Err(_), .. } => "failed",
        };
        f.debug_struct("Future")
            .field("state", &state)
            .field("created_at", &format_args!("{}", core.created_at))
            .finish()
    }
}

impl<T: 'static, K: Kind> Drop for Inner<T, K> {
    fn drop(&mut self) {
        let core = &mut self.core;
        if let State::Done {
            result: Err(e),
            retrieved: false,
        } = core.state.get_mut()
        {
            if !e.is_cancelled() {
                let what = self.kind.describe();
                let ctx = ExceptionContext::new(format!("{what}: exception was never retrieved"))
                    .with_error(e.clone())
                    .with_location(core.created_at)
                    .with_source(what);
                core.lp.call_exception_handler(ctx);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::*;

    /// The bytes glibc's malloc hands out for an `Rc<X>`: the value plus the two counts, plus
    /// the chunk header, rounded up to 16 (at least 32).
    fn rc_chunk<X>() -> usize {
        ((size_of::<X>() + 16 + 8).div_ceil(16) * 16).max(32)
    }

    #[test]
    fn future_and_task_allocations_stay_small() {
        // A regression here costs every future (or task) of every program; see the layout notes
        // on `State`, `Inner` and `TaskData`.
        assert!(size_of::<State<u32>>() <= 32, "{}", size_of::<State<u32>>());
        assert!(size_of::<Future<u32>>() <= 16);
        let plain = size_of::<Inner<u32, ()>>();
        assert!(plain <= 56, "plain future inner: {plain} B");
        assert!(rc_chunk::<Inner<u32, ()>>() <= 80);
        assert!(rc_chunk::<Inner<(), ()>>() <= 80);
        let task = size_of::<Inner<u32, TaskData>>();
        assert!(task <= 120, "task inner: {task} B");
        assert!(rc_chunk::<Inner<u32, TaskData>>() <= 144);
    }
}
