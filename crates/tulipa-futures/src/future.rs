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
use std::task::{Context, Poll};

use tulipa_loop::{Completion, DoneNotifier, EventLoop, ExceptionContext};

use crate::cancel::{self, CancelTarget};
use crate::error::{Cancelled, Error, Result};
use crate::task::TaskData;
use crate::waiters::Waiters;

/// Identifies a done callback for [`Future::remove_done_callback`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackId(u64);

type DoneCallback<T> = Box<dyn FnOnce(&Future<T>)>;

pub(crate) enum State<T> {
    Pending,
    Done(Result<T>),
    /// Done with `Ok`, and the value was moved out by an await or `take_result`.
    Taken,
}

pub(crate) struct Slot<T: 'static> {
    pub(crate) state: State<T>,
    /// Who to wake when done (one awaiter is the common case: no allocation).
    waiters: Waiters,
    /// Done callbacks, allocated on first use: most futures (every task awaited directly) have none.
    callbacks: Option<Box<Callbacks<T>>>,
    retrieved: bool,
}

pub(crate) struct Callbacks<T: 'static> {
    list: Vec<(u64, DoneCallback<T>)>,
    next_id: u64,
}

/// What cancelling means for this future.
pub(crate) enum Kind {
    Plain,
    Task(TaskData),
    /// Cancelling runs this instead (gather cancels its children).
    Custom(Box<dyn Fn(Option<Arc<str>>) -> bool>),
}

pub(crate) struct Inner<T: 'static> {
    pub(crate) lp: EventLoop,
    pub(crate) slot: RefCell<Slot<T>>,
    pub(crate) kind: Kind,
    pub(crate) created_at: &'static Location<'static>,
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
    pub(crate) inner: Rc<Inner<T>>,
}

impl<T: 'static> Clone for Future<T> {
    fn clone(&self) -> Self {
        Future {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> Future<T> {
    /// A pending future on `lp` (asyncio's `loop.create_future()`).
    #[track_caller]
    pub fn new(lp: &EventLoop) -> Self {
        Self::with_kind(lp.clone(), Kind::Plain, Location::caller())
    }

    pub(crate) fn with_kind(
        lp: EventLoop,
        kind: Kind,
        created_at: &'static Location<'static>,
    ) -> Self {
        Future {
            inner: Rc::new(Inner {
                lp,
                slot: RefCell::new(Slot {
                    state: State::Pending,
                    waiters: Waiters::None,
                    callbacks: None,
                    retrieved: false,
                }),
                kind,
                created_at,
            }),
        }
    }

    /// The loop this future is bound to.
    pub fn get_loop(&self) -> &EventLoop {
        &self.inner.lp
    }

    /// True once done (result, error or cancelled).
    pub fn done(&self) -> bool {
        !matches!(self.inner.slot.borrow().state, State::Pending)
    }

    /// True if done by cancellation.
    pub fn cancelled(&self) -> bool {
        matches!(
            self.inner.slot.borrow().state,
            State::Done(Err(Error::Cancelled(_)))
        )
    }

    /// Marks the future done with `value` and schedules its callbacks.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when already done, or when this is a task (a task's result comes
    /// from its own future).
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
        if matches!(self.inner.kind, Kind::Task(_)) {
            return Err(Error::InvalidState(
                "a task's outcome is set by its own future",
            ));
        }
        if self.inner.complete(r) {
            Ok(())
        } else {
            Err(Error::InvalidState("the future is already done"))
        }
    }

    /// Cancels the future: if pending, it becomes done with [`Error::Cancelled`] carrying `msg`,
    /// and its callbacks are scheduled. Returns false when already done. For a task this is a
    /// cancellation *request*; see [`Task::cancel`](crate::Task::cancel).
    pub fn cancel(&self, msg: Option<&str>) -> bool {
        self.inner.clone().cancel_target(msg.map(Arc::from))
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
        let mut s = self.inner.slot.borrow_mut();
        match &s.state {
            State::Pending => Err(Error::InvalidState("the result is not ready")),
            State::Taken => Err(Error::InvalidState("the result was already taken")),
            State::Done(Ok(v)) => Ok(v.clone()),
            State::Done(Err(e)) => {
                let e = e.clone();
                s.retrieved = true;
                Err(e)
            }
        }
    }

    /// Moves the result out (for `T` that is not `Clone`); errors as [`result`](Future::result).
    ///
    /// # Errors
    ///
    /// As [`result`](Future::result).
    pub fn take_result(&self) -> Result<T> {
        match self.inner.try_take() {
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
        let mut s = self.inner.slot.borrow_mut();
        match &s.state {
            State::Pending => Err(Error::InvalidState("the exception is not set yet")),
            State::Done(Err(e @ Error::Cancelled(_))) => Err(e.clone()),
            State::Done(Err(e)) => {
                let e = e.clone();
                s.retrieved = true;
                Ok(Some(e))
            }
            State::Done(Ok(_)) | State::Taken => Ok(None),
        }
    }

    /// Adds a callback run with this future once it is done. It is always scheduled through the
    /// loop's `call_soon`, never called inline, even if the future is already done.
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + 'static) -> CallbackId {
        let mut s = self.inner.slot.borrow_mut();
        if !matches!(s.state, State::Pending) {
            drop(s);
            self.inner.schedule_callback(self.clone(), Box::new(f));
            // Already scheduled: nothing can remove it, so any id will do.
            return CallbackId(0);
        }
        let cbs = s.callbacks.get_or_insert_with(|| {
            Box::new(Callbacks {
                list: Vec::new(),
                next_id: 0,
            })
        });
        cbs.next_id += 1;
        let id = cbs.next_id;
        cbs.list.push((id, Box::new(f)));
        CallbackId(id)
    }

    /// Removes a done callback that has not been scheduled yet; returns whether it was found.
    pub fn remove_done_callback(&self, id: CallbackId) -> bool {
        let removed = (|| {
            let mut s = self.inner.slot.borrow_mut();
            let cbs = s.callbacks.as_mut()?;
            let pos = cbs.list.iter().position(|(i, _)| *i == id.0);
            pos.map(|p| cbs.list.remove(p))
        })();
        removed.is_some()
    }

    /// Where the future (or task) was created.
    pub fn created_at(&self) -> &'static Location<'static> {
        self.inner.created_at
    }

    /// True when both handles refer to the same future.
    pub fn ptr_eq(&self, other: &Future<T>) -> bool {
        Rc::ptr_eq(&self.inner, &other.inner)
    }
}

impl<T: 'static> Inner<T> {
    /// Completes the future; false if it was already done. Wakes awaiters, schedules callbacks.
    pub(crate) fn complete(self: &Rc<Self>, r: Result<T>) -> bool {
        let (waiters, callbacks) = {
            let mut s = self.slot.borrow_mut();
            if !matches!(s.state, State::Pending) {
                return false;
            }
            s.state = State::Done(r);
            (
                std::mem::take(&mut s.waiters),
                std::mem::take(&mut s.callbacks),
            )
        };
        waiters.wake_all();
        if let Some(callbacks) = callbacks.filter(|c| !c.list.is_empty()) {
            let me = Future {
                inner: self.clone(),
            };
            for (_, cb) in callbacks.list {
                self.schedule_callback(me.clone(), cb);
            }
        }
        true
    }

    fn schedule_callback(&self, fut: Future<T>, cb: DoneCallback<T>) {
        if let Err(e) = self.lp.call_soon(move || cb(&fut)) {
            tracing::debug!(error = %e, created_at = %self.created_at, "done callback dropped: loop closed");
        }
    }

    /// Moves the outcome out if done.
    pub(crate) fn try_take(&self) -> Option<Result<T>> {
        let mut s = self.slot.borrow_mut();
        match std::mem::replace(&mut s.state, State::Taken) {
            State::Pending => {
                s.state = State::Pending;
                None
            }
            State::Taken => Some(Err(Error::InvalidState("the result was already taken"))),
            State::Done(Ok(v)) => Some(Ok(v)),
            State::Done(Err(e)) => {
                s.retrieved = true;
                s.state = State::Done(Err(e.clone()));
                Some(Err(e))
            }
        }
    }

    pub(crate) fn poll_outcome(self: &Rc<Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if let Some(e) = cancel::take_cancellation() {
            return Poll::Ready(Err(e));
        }
        if let Some(r) = self.try_take() {
            return Poll::Ready(r);
        }
        self.slot.borrow_mut().waiters.register(cx.waker());
        cancel::waiting_on(self.clone());
        Poll::Pending
    }

    /// Registers `cx` to be woken when done; true if already done. Takes nothing.
    pub(crate) fn poll_done(&self, cx: &mut Context<'_>) -> bool {
        let mut s = self.slot.borrow_mut();
        if matches!(s.state, State::Pending) {
            s.waiters.register(cx.waker());
            false
        } else {
            true
        }
    }
}

impl<T: 'static> CancelTarget for Inner<T> {
    fn cancel_target(self: Rc<Self>, msg: Option<Arc<str>>) -> bool {
        match &self.kind {
            Kind::Plain => self.complete(Err(Error::Cancelled(Cancelled::new(msg)))),
            Kind::Task(td) => td.request_cancel(self.is_pending(), msg),
            Kind::Custom(f) => self.is_pending() && f(msg),
        }
    }
}

impl<T: 'static> Inner<T> {
    /// Done with an error other than cancellation (does not mark it retrieved).
    pub(crate) fn has_error(&self) -> bool {
        matches!(&self.slot.borrow().state, State::Done(Err(e)) if !e.is_cancelled())
    }

    pub(crate) fn is_pending(&self) -> bool {
        matches!(self.slot.borrow().state, State::Pending)
    }
}

impl<T: 'static> std::future::Future for Future<T> {
    type Output = Result<T>;

    /// # Cancel safety
    ///
    /// Cancel-safe: a cancellation of the awaiting task is delivered before the outcome is
    /// touched, so the value stays in the future.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.inner.poll_outcome(cx)
    }
}

impl<T: 'static> Completion for Future<T> {
    type Output = Result<T>;
    fn notify_when_done(&mut self, done: DoneNotifier) {
        self.add_done_callback(move |_| done.notify());
    }
    fn take_output(&mut self) -> Option<Result<T>> {
        self.inner.try_take()
    }
}

#[cfg(test)]
impl<T: 'static> Future<T> {
    /// Done callbacks registered and not yet run.
    pub(crate) fn callback_count(&self) -> usize {
        self.inner
            .slot
            .borrow()
            .callbacks
            .as_ref()
            .map_or(0, |c| c.list.len())
    }
}

impl<T: 'static> fmt::Debug for Future<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.inner.slot.borrow();
        let state = match &s.state {
            State::Pending => "pending",
            State::Done(Ok(_)) | State::Taken => "finished",
            State::Done(Err(Error::Cancelled(_))) => "cancelled",
            State::Done(Err(_)) => "failed",
        };
        f.debug_struct("Future")
            .field("state", &state)
            .field("created_at", &format_args!("{}", self.inner.created_at))
            .finish()
    }
}

impl<T: 'static> Drop for Inner<T> {
    fn drop(&mut self) {
        let s = self.slot.get_mut();
        if let State::Done(Err(e)) = &s.state {
            if !s.retrieved && !e.is_cancelled() {
                let what = match &self.kind {
                    Kind::Task(td) => format!("task '{}'", td.name()),
                    _ => "future".to_owned(),
                };
                let ctx = ExceptionContext::new(format!("{what}: exception was never retrieved"))
                    .with_error(e.clone())
                    .with_location(self.created_at)
                    .with_source(what);
                self.lp.call_exception_handler(ctx);
            }
        }
    }
}
