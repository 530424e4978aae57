//! `TaskGroup`: structured concurrency (asyncio's `taskgroups.py`, Python 3.11+).
//!
//! [`task_group`] runs a body that spawns children through the [`TaskGroup`] it is handed, then
//! waits for every child. The first child that fails cancels its siblings and the body (with
//! [`Task::cancel`](crate::Task::cancel), so they can clean up); every failure is collected and
//! returned as one [`Error::Group`]. A cancellation from outside cancels the children too and
//! comes out as `Err(Cancelled)` once they have all finished.
//!
//! The group is cancel-on-drop: if its future is dropped before it finished (its task aborted,
//! or the group dropped by a foreign `select` or timeout), the children still running are
//! cancelled with [`Task::cancel`](crate::Task::cancel) (so they can clean up, as when the group
//! is cancelled; nobody waits for them), and a cancellation the group had requested of its own
//! task is withdrawn with [`uncancel`](crate::Task::uncancel).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use tulipa_loop::EventLoop;

use crate::error::{Error, Result};
use crate::future::Future;
use crate::task::{current_task, spawn_on, Task, TaskRef};

struct State {
    lp: EventLoop,
    parent: TaskRef,
    children: RefCell<Vec<TaskRef>>,
    errors: RefCell<Vec<Error>>,
    aborting: Cell<bool>,
    parent_cancel_requested: Cell<bool>,
    finished: Cell<bool>,
    on_completed: RefCell<Option<Future<()>>>,
}

impl State {
    fn abort(&self) {
        self.aborting.set(true);
        let children = self.children.borrow().clone();
        for c in children {
            c.cancel(None);
        }
    }

    fn child_done(&self, id: u64, error: Option<Error>) {
        self.children.borrow_mut().retain(|c| c.id() != id);
        if self.children.borrow().is_empty() {
            let waiter = self.on_completed.borrow().clone();
            if let Some(w) = waiter {
                let _ = w.set_result(());
            }
        }
        let Some(e) = error else { return };
        self.errors.borrow_mut().push(e);
        if !self.aborting.get() && !self.parent_cancel_requested.get() {
            self.abort();
            if !self.parent.done() {
                self.parent_cancel_requested.set(true);
                self.parent.cancel(None);
            }
        }
    }
}

/// Makes the group cancel-on-drop: when the group's future is dropped before it finished, the
/// remaining children are cancelled and the group's own cancellation request of the parent is
/// withdrawn, so neither outlives the group.
struct DropGuard {
    state: Rc<State>,
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        let st = &self.state;
        if st.finished.replace(true) {
            return;
        }
        tracing::debug!(
            parent = %st.parent.name(),
            children = st.children.borrow().len(),
            "task group dropped before it finished: cancelling its children"
        );
        st.on_completed.borrow_mut().take();
        st.abort();
        if st.parent_cancel_requested.replace(false) {
            st.parent.uncancel();
        }
    }
}

/// The handle a [`task_group`] body spawns its children with.
#[derive(Clone)]
pub struct TaskGroup {
    state: Rc<State>,
}

impl TaskGroup {
    /// Spawns a child of the group.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the group has finished or is shutting down after a failure.
    #[track_caller]
    pub fn spawn<F, T>(&self, fut: F) -> Result<Task<T>>
    where
        F: std::future::Future<Output = Result<T>> + 'static,
        T: 'static,
    {
        let st = &self.state;
        if st.finished.get() {
            return Err(Error::InvalidState("the task group has finished"));
        }
        if st.aborting.get() {
            return Err(Error::InvalidState("the task group is shutting down"));
        }
        let task = spawn_on(&st.lp, fut)?;
        st.children.borrow_mut().push(task.as_task_ref());
        let weak = Rc::downgrade(&self.state);
        let id = task.id();
        task.add_done_callback(move |t| {
            let error = match t.exception() {
                Ok(Some(e)) => Some(e),
                _ => None, // a value, or cancelled
            };
            if let Some(st) = weak.upgrade() {
                st.child_done(id, error);
            }
        })?;
        Ok(task)
    }

    /// Children not done yet.
    pub fn pending(&self) -> usize {
        self.state.children.borrow().len()
    }
}

impl fmt::Debug for TaskGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskGroup")
            .field("pending", &self.pending())
            .field("errors", &self.state.errors.borrow().len())
            .field("aborting", &self.state.aborting.get())
            .finish()
    }
}

/// Runs `body` with a fresh [`TaskGroup`] and waits for all its children (asyncio's
/// `async with TaskGroup() as tg:`).
///
/// # Errors
///
/// [`Error::Group`] with every child failure (and the body's own error, if any) when something
/// failed; `Err(Cancelled)` when cancelled from outside; [`Error::InvalidState`] outside a task.
///
/// # Cancel safety
///
/// Dropping the returned future before it finished cancels the children still running (they
/// get `Err(Cancelled)` and may clean up; nobody waits for them) and withdraws the
/// cancellation the group had requested of its task after a failure. Their outcomes are lost.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tulipa_futures::{run, sleep, task_group, Error};
///
/// let r: Result<(), Error> = run(async {
///     task_group(|tg| async move {
///         tg.spawn(async { sleep(Duration::from_secs(10)).await })?; // cancelled by the failure
///         tg.spawn(async { Err::<(), _>(Error::InvalidArgument("boom")) })?;
///         Ok(())
///     })
///     .await
/// });
/// assert!(matches!(r, Err(Error::Group(errors)) if errors.len() == 1));
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub async fn task_group<F, Fut, T>(body: F) -> Result<T>
where
    F: FnOnce(TaskGroup) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let parent =
        current_task().ok_or(Error::InvalidState("task groups work only inside a task"))?;
    let lp = parent.get_loop().clone();
    let state = Rc::new(State {
        lp: lp.clone(),
        parent: parent.clone(),
        children: RefCell::new(Vec::new()),
        errors: RefCell::new(Vec::new()),
        aborting: Cell::new(false),
        parent_cancel_requested: Cell::new(false),
        finished: Cell::new(false),
        on_completed: RefCell::new(None),
    });
    // Armed until the group finished: dropping the group early takes its children down.
    let _guard = DropGuard {
        state: state.clone(),
    };
    let body_result = body(TaskGroup {
        state: state.clone(),
    })
    .await;

    let mut propagate_cancel: Option<Error> = None;
    if body_result.is_err() && !state.aborting.get() {
        state.abort();
    }
    if let Err(e) = &body_result {
        if e.is_cancelled() {
            // Whether it was ours (the group cancelled the parent) is settled below, once.
            propagate_cancel = Some(e.clone());
        }
    }
    while !state.children.borrow().is_empty() {
        let waiter: Future<()> = Future::new(&lp);
        *state.on_completed.borrow_mut() = Some(waiter.clone());
        if let Err(e) = waiter.await {
            if e.is_cancelled() && !state.aborting.get() {
                // Our own task is being cancelled from outside: take the children down with it.
                propagate_cancel = Some(e);
                state.abort();
            }
        }
        state.on_completed.borrow_mut().take();
    }
    state.finished.set(true);
    // Withdraw our own request exactly once; with none left, the cancellation was only ours.
    if state.parent_cancel_requested.replace(false) && parent.uncancel() == 0 {
        propagate_cancel = None;
    }
    let mut errors = std::mem::take(&mut *state.errors.borrow_mut());
    if let Some(c) = propagate_cancel {
        if errors.is_empty() {
            return Err(c);
        }
    }
    if let Err(e) = &body_result {
        if !e.is_cancelled() {
            errors.push(e.clone());
        }
    }
    if !errors.is_empty() {
        // Errors win over a cancellation from outside, but that request must not be lost:
        // re-arm it (asyncio un-cancels and re-cancels the parent) so the next await delivers it.
        if parent.cancelling() > 0 {
            parent.uncancel();
            parent.cancel(None);
        }
        return Err(Error::Group(errors.into()));
    }
    body_result
}
