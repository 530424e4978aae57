//! Timeouts: `timeout`, `timeout_at`, reschedulable [`TimeoutScope`]s and `wait_for`
//! (asyncio's `timeouts.py` and `tasks.wait_for`, Python 3.11+ semantics).
//!
//! A timeout cancels the task it runs in with [`Task::cancel`](crate::Task::cancel), so the code
//! inside gets `Err(Cancelled)` and can clean up, even with awaits. When that cancellation
//! leaves the scope, the scope turns it into [`Error::Timeout`]; a cancellation that came from
//! elsewhere passes through untouched.
//!
//! A scope dropped before it ended (by a foreign `select`, or with its aborted task) cancels its
//! timer; if the deadline had already passed, it also withdraws the cancellation it requested
//! ([`Task::uncancel`](crate::Task::uncancel)), so no later, unrelated await of the task gets it.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulipa_loop::{EventLoop, Handle};

use crate::error::{Error, Result};
use crate::future::Future;
use crate::task::{current_task, TaskRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Created,
    Entered,
    Expiring,
    Expired,
    Exited,
}

struct ScopeState {
    when: Cell<Option<Instant>>,
    stage: Cell<Stage>,
    timer: RefCell<Option<Handle>>,
    task: RefCell<Option<TaskRef>>,
    cancelling_at_enter: Cell<u32>,
}

/// A timeout that can be moved while it runs (asyncio's `Timeout` context manager).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tulipa_futures::{run, sleep, TimeoutScope};
///
/// let r = run(async {
///     let scope = TimeoutScope::after(Duration::from_millis(5))?;
///     let s2 = scope.clone();
///     scope
///         .run(async move {
///             s2.reschedule(None); // never mind the deadline
///             sleep(Duration::from_millis(20)).await
///         })
///         .await
/// });
/// assert!(r.is_ok());
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[derive(Clone)]
pub struct TimeoutScope {
    state: Rc<ScopeState>,
}

impl TimeoutScope {
    /// A scope that expires at `when` on the loop's clock (`None`: never, until rescheduled).
    pub fn at(when: Option<Instant>) -> Self {
        TimeoutScope {
            state: Rc::new(ScopeState {
                when: Cell::new(when),
                stage: Cell::new(Stage::Created),
                timer: RefCell::new(None),
                task: RefCell::new(None),
                cancelling_at_enter: Cell::new(0),
            }),
        }
    }

    /// A scope that expires `delay` from now on the running loop's clock. A `delay` too large
    /// for the clock (such as `Duration::MAX`) means no deadline, as `sleep` saturates.
    ///
    /// # Errors
    ///
    /// [`Error::Loop`] outside a running loop.
    pub fn after(delay: Duration) -> Result<Self> {
        let lp = EventLoop::running()?;
        Ok(Self::at(lp.time().checked_add(delay)))
    }

    /// The deadline, if any.
    pub fn when(&self) -> Option<Instant> {
        self.state.when.get()
    }

    /// True once the deadline passed while the scope was running.
    pub fn expired(&self) -> bool {
        matches!(self.state.stage.get(), Stage::Expiring | Stage::Expired)
    }

    /// Moves the deadline (`None`: no deadline). A deadline in the past expires the scope on the
    /// next iteration.
    pub fn reschedule(&self, when: Option<Instant>) {
        let st = &self.state;
        st.when.set(when);
        if let Some(t) = st.timer.borrow_mut().take() {
            t.cancel();
        }
        if st.stage.get() != Stage::Entered {
            return;
        }
        let Some(when) = when else { return };
        let Some(task) = st.task.borrow().clone() else {
            return;
        };
        let weak = Rc::downgrade(&self.state);
        let lp = task.get_loop().clone();
        let fire = move || {
            if let Some(st) = weak.upgrade() {
                if st.stage.get() == Stage::Entered {
                    st.stage.set(Stage::Expiring);
                    st.timer.borrow_mut().take();
                    if let Some(t) = st.task.borrow().clone() {
                        t.cancel(None);
                    }
                }
            }
        };
        // A deadline already reached goes in the ready queue, as asyncio's `call_soon`: ahead of
        // the task's next step, so `timeout(0)` expires even around a `sleep(0)`. A timer at
        // "now" would only join the ready queue on the next iteration, behind that step.
        let handle = if when <= lp.time() {
            lp.call_soon(fire)
        } else {
            lp.call_at(when, fire).map(|t| t.handle().clone())
        };
        match handle {
            Ok(h) => *st.timer.borrow_mut() = Some(h),
            Err(e) => tracing::warn!(error = %e, "timeout not scheduled: loop closed"),
        }
    }

    /// Runs `fut` under this scope.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when the deadline cancelled `fut`; [`Error::InvalidState`] outside a task
    /// or when the scope was already used; otherwise whatever `fut` returns.
    ///
    /// # Cancel safety
    ///
    /// Dropping the returned future drops `fut` and cancels the timer; if the deadline had
    /// already passed, the cancellation it requested of the task is withdrawn, so it does not
    /// reach a later await. [`expired`](TimeoutScope::expired) still tells whether it passed.
    pub async fn run<F, T>(&self, fut: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        let st = &self.state;
        if st.stage.get() != Stage::Created {
            return Err(Error::InvalidState("a timeout scope can be run only once"));
        }
        let task = current_task().ok_or(Error::InvalidState("timeouts work only inside a task"))?;
        st.cancelling_at_enter.set(task.cancelling());
        *st.task.borrow_mut() = Some(task.clone());
        st.stage.set(Stage::Entered);
        self.reschedule(st.when.get());
        let mut exit = ExitGuard {
            scope: self,
            finished: false,
        };
        let r = fut.await;
        exit.finished = true;
        drop(exit);
        if st.stage.get() == Stage::Expiring {
            st.stage.set(Stage::Expired);
            if task.uncancel() <= st.cancelling_at_enter.get() {
                if let Err(e) = &r {
                    if e.is_cancelled() {
                        return Err(Error::Timeout);
                    }
                }
            }
        } else {
            st.stage.set(Stage::Exited);
        }
        r
    }
}

/// Cancels the scope's timer however `run` ends. When `run`'s future is dropped before it ends,
/// also withdraws the cancellation an expired timer requested, which nothing else would consume.
struct ExitGuard<'a> {
    scope: &'a TimeoutScope,
    /// `run` reached its end and settles the outcome itself.
    finished: bool,
}

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        let st = &self.scope.state;
        if let Some(t) = st.timer.borrow_mut().take() {
            t.cancel();
        }
        if self.finished {
            return;
        }
        // Dropped early (a foreign `select` took another branch, or the task was aborted).
        if st.stage.get() == Stage::Expiring {
            st.stage.set(Stage::Expired);
            if let Some(task) = st.task.borrow().clone() {
                tracing::debug!(task = %task.name(), "expired timeout scope dropped: withdrawing its cancellation");
                task.uncancel();
            }
        } else {
            st.stage.set(Stage::Exited);
        }
    }
}

impl fmt::Debug for TimeoutScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeoutScope")
            .field("when", &self.state.when.get())
            .field("stage", &self.state.stage.get())
            .finish()
    }
}

/// Runs `fut` with a timeout of `delay` (asyncio's `async with timeout(delay)`). A `delay` too
/// large for the clock (such as `Duration::MAX`) never expires.
///
/// # Errors
///
/// [`Error::Timeout`] when the time ran out (`fut` was cancelled and has finished cleaning up);
/// [`Error::InvalidState`] outside a task; otherwise what `fut` returns.
pub async fn timeout<F, T>(delay: Duration, fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    TimeoutScope::after(delay)?.run(fut).await
}

/// Runs `fut` with a deadline on the loop's clock; see [`timeout`].
///
/// # Errors
///
/// As [`timeout`].
pub async fn timeout_at<F, T>(when: Instant, fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    TimeoutScope::at(Some(when)).run(fut).await
}

/// Waits for a future or task with a timeout (asyncio's `wait_for`). On timeout the inner future
/// is cancelled, and `wait_for` waits for it to finish before returning [`Error::Timeout`].
/// `None` waits without a limit.
///
/// # Errors
///
/// As [`timeout`].
pub async fn wait_for<T: 'static>(fut: impl Into<Future<T>>, limit: Option<Duration>) -> Result<T> {
    let fut = fut.into();
    match limit {
        None => fut.await,
        Some(d) => timeout(d, fut).await,
    }
}
