//! `Task<T>`: a Rust future driven by the loop (PEP 3156 "Tasks"), and asyncio's cancellation.
//!
//! A task is an [`async_task`] runnable: one allocation holds the future and its schedule
//! function; the loop runs it from its ready queue. A wake on the loop's own thread is a plain
//! push onto the ready queue, with no lock and no syscall; a wake from another thread goes through
//! the loop's thread-safe queue.
//!
//! **Dropping a `Task` handle does not stop the task.** As in asyncio, a task runs until it is
//! done or cancelled; the loop keeps it alive. Use [`Task::cancel`] (asyncio's way: the task gets
//! `Err(Cancelled)` from its next Tulipa await and can clean up) or [`Task::abort`] (Rust's way:
//! the future is dropped).

use std::cell::Cell;
use std::fmt;
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use pin_project_lite::pin_project;
use tulipa_loop::rt::{self, Scheduler};
use tulipa_loop::{Completion, DoneNotifier, EventLoop};

use crate::cancel::{self, CancelTarget};
use crate::error::{Cancelled, Error, Result};
use crate::future::{Future, Inner, Kind, Ptr};
use crate::registry;

static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

/// What a task adds to a future (asyncio's `Task` attributes): the `kind` of the task's
/// [`Inner`], so plain futures do not carry it. 64 bytes: keep it so (a test in `future.rs`
/// checks), every pending task pays for each word.
pub(crate) struct TaskData {
    id: u64,
    /// Name and cancel message: rarely set, so kept out of line.
    extra: Cell<Option<Box<TaskExtra>>>,
    /// How many cancellation requests are pending, and whether one is yet to be delivered.
    cancels: cancel::CancelRequests,
    registry_slot: Cell<u32>,
    waker: Cell<Option<Waker>>,
    waiting_on: Cell<Option<Rc<dyn CancelTarget>>>,
    handle: Cell<Option<async_task::Task<()>>>,
}

#[derive(Default)]
struct TaskExtra {
    name: Option<String>,
    cancel_msg: Option<Arc<str>>,
}

impl TaskData {
    fn new() -> Self {
        TaskData {
            id: NEXT_TASK.fetch_add(1, Ordering::Relaxed),
            extra: Cell::new(None),
            cancels: cancel::CancelRequests::new(),
            registry_slot: Cell::new(u32::MAX),
            waker: Cell::new(None),
            waiting_on: Cell::new(None),
            handle: Cell::new(None),
        }
    }

    /// Takes the async-task handle; dropping it aborts the task.
    pub(crate) fn take_handle(&self) -> Option<async_task::Task<()>> {
        self.handle.take()
    }

    /// Reads the out-of-line attributes (a `Cell`, not a `RefCell`: 8 bytes smaller).
    fn with_extra<R>(&self, f: impl FnOnce(&Option<Box<TaskExtra>>) -> R) -> R {
        let extra = self.extra.take();
        let r = f(&extra);
        self.extra.set(extra);
        r
    }

    /// Changes the out-of-line attributes, allocating them on first use.
    fn update_extra(&self, f: impl FnOnce(&mut TaskExtra)) {
        let mut extra = self.extra.take().unwrap_or_default();
        f(&mut extra);
        self.extra.set(Some(extra));
    }

    pub(crate) fn name(&self) -> String {
        match self.with_extra(|e| e.as_ref().and_then(|e| e.name.clone())) {
            Some(n) => n,
            None => format!("Task-{}", self.id),
        }
    }

    fn set_name(&self, name: String) {
        self.update_extra(|e| e.name = Some(name));
    }

    fn cancelled_error(&self) -> Error {
        let msg = self.with_extra(|e| e.as_ref().and_then(|e| e.cancel_msg.clone()));
        Error::Cancelled(Cancelled::new(msg))
    }

    /// asyncio's `Task.cancel`: count the request, cancel what the task waits on if that can end
    /// the wait, else mark the request for delivery by the next Tulipa await and wake the task.
    pub(crate) fn request_cancel(&self, pending: bool, msg: Option<Arc<str>>) -> bool {
        if !pending {
            return false;
        }
        self.cancels
            .set_count(self.cancels.count().saturating_add(1));
        let waiting_on = self.waiting_on.take();
        if let Some(target) = waiting_on {
            let forwarded = target.clone().cancel_target(msg.clone());
            // Keep it, as asyncio keeps `_fut_waiter`: an awaited task may swallow this request,
            // and the next one must reach it again rather than abandon the await.
            let newer = self.waiting_on.replace(Some(target));
            if newer.is_some() {
                self.waiting_on.set(newer);
            }
            if forwarded {
                return true;
            }
        }
        self.cancels.set_must_cancel(true);
        if msg.is_some() || self.with_extra(Option::is_some) {
            self.update_extra(|e| e.cancel_msg = msg);
        }
        let waker = self.waker.take();
        if let Some(w) = waker {
            w.wake_by_ref();
            self.waker.set(Some(w));
        }
        true
    }
}

/// The type-erased view of a task used by the current-task machinery and [`TaskRef`].
pub(crate) trait TaskOps {
    fn data(&self) -> &TaskData;
    fn is_done(&self) -> bool;
    fn is_cancelled(&self) -> bool;
    fn cancel_dyn(self: Rc<Self>, msg: Option<Arc<str>>) -> bool;
    fn loop_of(&self) -> &EventLoop;
    fn poll_done_dyn(&self, cx: &mut Context<'_>) -> bool;

    fn take_pending_cancel(&self) -> Option<Error> {
        let d = self.data();
        if d.cancels.replace_must_cancel(false) {
            Some(d.cancelled_error())
        } else {
            None
        }
    }

    fn set_waiting_on(&self, target: Option<Rc<dyn CancelTarget>>) {
        let old = self.data().waiting_on.replace(target);
        drop(old);
    }
}

/// A task: cancelling it is a request (see [`Task::cancel`]).
impl Kind for TaskData {
    fn wrap<T>(inner: Rc<Inner<T, Self>>) -> Ptr<T> {
        Ptr::Task(inner)
    }

    fn cancel<T>(inner: Rc<Inner<T, Self>>, msg: Option<Arc<str>>) -> bool {
        inner.kind.request_cancel(inner.core.is_pending(), msg)
    }

    fn describe(&self) -> String {
        format!("task '{}'", self.name())
    }
}

impl<T: 'static> TaskOps for Inner<T, TaskData> {
    fn data(&self) -> &TaskData {
        &self.kind
    }
    fn is_done(&self) -> bool {
        !self.core.is_pending()
    }
    fn is_cancelled(&self) -> bool {
        self.core.is_cancelled()
    }
    fn cancel_dyn(self: Rc<Self>, msg: Option<Arc<str>>) -> bool {
        self.cancel_target(msg)
    }
    fn loop_of(&self) -> &EventLoop {
        &self.core.lp
    }
    fn poll_done_dyn(&self, cx: &mut Context<'_>) -> bool {
        self.core.poll_done(cx)
    }
}

/// The task behind a [`Task`] handle.
fn task_inner<T>(fut: &Future<T>) -> &Rc<Inner<T, TaskData>> {
    match &fut.ptr {
        Ptr::Task(inner) => inner,
        _ => unreachable_task(),
    }
}

/// A [`Task`] is only made by `spawn_inner`, around a task's future, so this cannot be reached.
#[cold]
fn unreachable_task() -> ! {
    unreachable!("a Task handle always holds a task's future")
}

pin_project! {
    /// What async-task runs: the user's future plus the bookkeeping of its task.
    struct TaskFuture<F, T: 'static> {
        // `None` once dropped without running: a task cancelled before its first step.
        #[pin]
        fut: Option<F>,
        // Declared after `fut`, so dropped after it: the task is marked done only once the
        // user's future (and everything it owns) is gone.
        guard: FinishGuard<T>,
    }
}

struct FinishGuard<T: 'static> {
    inner: Rc<Inner<T, TaskData>>,
}

impl<T: 'static> FinishGuard<T> {
    fn finish(&self, r: Result<T>) {
        let td = &self.inner.kind;
        drop(td.waker.take());
        drop(td.waiting_on.take());
        registry::remove(td.registry_slot.get());
        self.inner.complete(r);
    }
}

impl<T: 'static> Drop for FinishGuard<T> {
    fn drop(&mut self) {
        // Dropped before completing: aborted, or its loop closed with the task pending.
        if self.inner.core.is_pending() {
            self.finish(Err(Error::cancelled(Some("the task was aborted"))));
        }
    }
}

impl<F, T> std::future::Future for TaskFuture<F, T>
where
    F: std::future::Future<Output = Result<T>>,
    T: 'static,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let inner = &this.guard.inner;
        let td = &inner.kind;
        // Kept for `cancel`, which must be able to wake the task; one clone per task.
        let (waker, first_step) = match td.waker.take() {
            Some(w) => (w, false),
            None => (cx.waker().clone(), true),
        };
        td.waker.set(Some(waker));
        drop(td.waiting_on.take());
        if first_step && td.cancels.replace_must_cancel(false) {
            // Cancelled before it ever ran: asyncio throws the CancelledError into the coroutine
            // before its first line, so none of it runs. Here the future is dropped unpolled.
            this.fut.set(None);
            this.guard.finish(Err(td.cancelled_error()));
            return Poll::Ready(());
        }
        let Some(fut) = this.fut.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let polled = {
            let _current = cancel::enter(inner.clone());
            panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx)))
        };
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(Ok(v))) => {
                if td.cancels.replace_must_cancel(false) {
                    // Cancelled during its last step and never awaited again (asyncio does this).
                    Err(td.cancelled_error())
                } else {
                    Ok(v)
                }
            }
            Ok(Poll::Ready(Err(e))) => Err(e),
            Err(payload) => Err(Error::Panicked(Arc::from(tulipa_loop::panic_message(
                &*payload,
            )))),
        };
        this.guard.finish(outcome);
        Poll::Ready(())
    }
}

/// Polls `fut` to completion, turning a panic into its message (used where a panicking piece of
/// user code must not end the surrounding task).
pub(crate) async fn catch_unwind_future<F: std::future::Future>(
    fut: F,
) -> std::result::Result<F::Output, Arc<str>> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        match panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => Poll::Ready(Err(Arc::from(tulipa_loop::panic_message(&*p)))),
        }
    })
    .await
}

/// A future driven by the loop (asyncio's `Task`); also a [`Future<T>`](Future) through `Deref`.
///
/// Create one with [`spawn`] or [`spawn_on`]. Awaiting the task gives its outcome: `Ok(value)`,
/// the error its future returned (a panic becomes [`Error::Panicked`] with the message), or
/// [`Error::Cancelled`]. Dropping the handle does not stop the task: as in asyncio, it runs until it is done or
/// cancelled.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tulipa_futures::{run, sleep, spawn};
///
/// let out = run(async {
///     let child = spawn(async {
///         sleep(Duration::from_secs(3600)).await?;
///         Ok("never")
///     })?;
///     sleep(Duration::ZERO).await?; // let the child start
///     child.cancel(Some("shutting down"));
///     let err = child.clone().await.unwrap_err();
///     assert!(err.is_cancelled());
///     Ok(err.to_string())
/// })?;
/// assert_eq!(out, "cancelled: shutting down");
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[must_use = "dropping a Task does not cancel it; keep it to await or cancel it"]
pub struct Task<T: 'static> {
    fut: Future<T>,
}

impl<T: 'static> Clone for Task<T> {
    fn clone(&self) -> Self {
        Task {
            fut: self.fut.clone(),
        }
    }
}

impl<T: 'static> Deref for Task<T> {
    type Target = Future<T>;
    fn deref(&self) -> &Future<T> {
        &self.fut
    }
}

impl<T: 'static> From<Task<T>> for Future<T> {
    fn from(t: Task<T>) -> Future<T> {
        t.fut
    }
}

/// Spawns `fut` as a task on the loop running on this thread (asyncio's `create_task`).
///
/// # Errors
///
/// [`tulipa_loop::Error::NoRunningLoop`] (as [`Error::Loop`]) when no loop runs here; use
/// [`spawn_on`] before the loop runs.
#[track_caller]
pub fn spawn<F, T>(fut: F) -> Result<Task<T>>
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    let lp = EventLoop::running()?;
    Ok(spawn_inner(&lp, fut, Location::caller()))
}

/// Spawns `fut` as a task on `lp`; it starts on the loop's next iteration.
///
/// # Errors
///
/// [`tulipa_loop::Error::Closed`] (as [`Error::Loop`]) when `lp` is closed.
#[track_caller]
pub fn spawn_on<F, T>(lp: &EventLoop, fut: F) -> Result<Task<T>>
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    if lp.is_closed() {
        return Err(tulipa_loop::Error::Closed.into());
    }
    Ok(spawn_inner(lp, fut, Location::caller()))
}

fn spawn_inner<F, T>(lp: &EventLoop, fut: F, at: &'static Location<'static>) -> Task<T>
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    registry::hook_loop(lp);
    let inner = Inner::new(lp.clone(), TaskData::new(), at);
    let weak: std::rc::Weak<dyn TaskOps> = Rc::downgrade(&inner) as std::rc::Weak<dyn TaskOps>;
    let td = &inner.kind;
    td.registry_slot.set(registry::insert(weak));
    let scheduler = Scheduler::new(lp);
    let wrapped = TaskFuture {
        fut: Some(fut),
        guard: FinishGuard {
            inner: inner.clone(),
        },
    };
    let (runnable, handle) = async_task::spawn_local(wrapped, move |r| scheduler.schedule(r));
    td.handle.set(Some(handle));
    rt::push_runnable(lp, runnable);
    Task {
        fut: Future {
            ptr: Ptr::Task(inner),
        },
    }
}

impl<T: 'static> Task<T> {
    fn data(&self) -> &TaskData {
        &task_inner(&self.fut).kind
    }

    /// A number unique to this task in the process.
    pub fn id(&self) -> u64 {
        self.data().id
    }

    /// The task's name (`Task-<id>` unless set).
    pub fn name(&self) -> String {
        self.data().name()
    }

    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        self.data().set_name(name.into());
    }

    /// Requests cancellation (asyncio's `Task.cancel`). Returns false if the task is done.
    ///
    /// If the task waits on a Tulipa future or task, that is cancelled and the task gets its
    /// `Err(Cancelled)` once it has finished; otherwise the request is delivered as
    /// `Err(Cancelled)` by the next Tulipa awaitable the task polls, exactly once. The task may
    /// clean up (with further awaits) and then return the error (it ends cancelled) or suppress it
    /// with [`uncancel`](Task::uncancel).
    ///
    /// A task blocked in a foreign future that never polls a Tulipa awaitable does not see the
    /// request until it does; [`abort`](Task::abort) stops such a task.
    pub fn cancel(&self, msg: Option<&str>) -> bool {
        self.fut.cancel(msg)
    }

    /// The number of pending cancellation requests (Python 3.11's `Task.cancelling`).
    pub fn cancelling(&self) -> u32 {
        self.data().cancels.count()
    }

    /// Decrements the pending cancellation requests and returns the new count (Python 3.11's
    /// `Task.uncancel`). At zero an undelivered request is withdrawn.
    pub fn uncancel(&self) -> u32 {
        uncancel(self.data())
    }

    /// Stops the task the Rust way: its future is dropped unpolled (its destructors run) and the
    /// task ends cancelled (`Err(Cancelled)`, message "the task was aborted"). A task already done
    /// is left alone.
    ///
    /// Nothing is dropped inside `abort`: it schedules the task, and the loop drops the future
    /// when it runs it. For an idle task that is the loop's next iteration (the caller sees it
    /// done after one `sleep(Duration::ZERO).await`); for a task that aborts itself, right after
    /// its current step returns; if the loop is closed first, when it closes. [`done`] turns true
    /// only then, once the future and everything it owns are gone.
    ///
    /// [`done`]: Future::done
    pub fn abort(&self) {
        let handle = self.data().handle.take();
        drop(handle);
    }

    /// A type-erased handle to this task.
    pub fn as_task_ref(&self) -> TaskRef {
        TaskRef {
            ops: task_inner(&self.fut).clone(),
        }
    }
}

fn uncancel(d: &TaskData) -> u32 {
    let n = d.cancels.count().saturating_sub(1);
    d.cancels.set_count(n);
    if n == 0 {
        d.cancels.set_must_cancel(false);
    }
    n
}

impl<T: 'static> std::future::Future for Task<T> {
    type Output = Result<T>;

    /// # Cancel safety
    ///
    /// As for [`Future`]: the awaited task's outcome stays in it when the awaiting task is
    /// cancelled (and the awaited task is cancelled too, as in asyncio; use
    /// [`shield`](crate::shield) to prevent that).
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.fut.poll_outcome(cx)
    }
}

impl<T: 'static> Completion for Task<T> {
    type Output = Result<T>;
    fn notify_when_done(&mut self, done: DoneNotifier) {
        self.fut.notify_when_done(done);
    }
    fn take_output(&mut self) -> Option<Result<T>> {
        self.fut.take_output()
    }
}

impl<T: 'static> fmt::Debug for Task<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let td = self.data();
        f.debug_struct("Task")
            .field("name", &td.name())
            .field("future", &self.fut)
            .field("cancelling", &td.cancels.count())
            .finish()
    }
}

/// A type-erased handle to a task of any output type ([`current_task`], [`all_tasks`]).
#[derive(Clone)]
pub struct TaskRef {
    ops: Rc<dyn TaskOps>,
}

impl TaskRef {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.ops.data().id
    }
    /// The task's name.
    pub fn name(&self) -> String {
        self.ops.data().name()
    }
    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        self.ops.data().set_name(name.into());
    }
    /// As [`Task::cancel`].
    pub fn cancel(&self, msg: Option<&str>) -> bool {
        self.ops.clone().cancel_dyn(msg.map(Arc::from))
    }
    /// As [`Task::cancelling`].
    pub fn cancelling(&self) -> u32 {
        self.ops.data().cancels.count()
    }
    /// As [`Task::uncancel`].
    pub fn uncancel(&self) -> u32 {
        uncancel(self.ops.data())
    }
    /// True once done.
    pub fn done(&self) -> bool {
        self.ops.is_done()
    }
    /// True if cancelled.
    pub fn cancelled(&self) -> bool {
        self.ops.is_cancelled()
    }
    /// As [`Task::abort`].
    pub fn abort(&self) {
        let handle = self.ops.data().handle.take();
        drop(handle);
    }
    /// The task's loop.
    pub fn get_loop(&self) -> &EventLoop {
        self.ops.loop_of()
    }
    /// Registers `cx` to be woken when the task is done; true if it already is.
    pub fn poll_done(&self, cx: &mut Context<'_>) -> bool {
        self.ops.poll_done_dyn(cx)
    }
    /// True when both refer to the same task.
    pub fn ptr_eq(&self, other: &TaskRef) -> bool {
        self.id() == other.id()
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskRef")
            .field("id", &self.id())
            .field("name", &self.name())
            .field("done", &self.done())
            .finish()
    }
}

/// The task being run on this thread, if any (asyncio's `current_task`).
pub fn current_task() -> Option<TaskRef> {
    cancel::current().map(|ops| TaskRef { ops })
}

/// The tasks of `lp` that are not done yet (asyncio's `all_tasks`).
pub fn all_tasks(lp: &EventLoop) -> Vec<TaskRef> {
    registry::pending(lp.id())
        .into_iter()
        .map(|ops| TaskRef { ops })
        .collect()
}
