//! Low-level hooks for the layers above (`tulipa-futures` builds its tasks on these).
//!
//! Tasks are [`async_task`] runnables: one allocation per task. The loop runs them from its ready
//! queue like callbacks. A [`Scheduler`] is the `Send + Sync` schedule function for a task's waker:
//! a wake on the loop's own thread while it runs is a plain push onto the ready queue (no lock, no
//! syscall); a wake from anywhere else goes through the loop's thread-safe queue.

use std::fmt;
use std::sync::Arc;

pub use async_task::Runnable;

use crate::event_loop::{push_local_task, EventLoop};
use crate::loop_handle::{LoopHandle, Remote, RemoteJob};

/// Schedules task runnables onto one loop from any thread.
///
/// One pointer: it sits in every task's allocation (the loop's id is read through it, from a
/// cache line all tasks of the loop share).
#[derive(Clone)]
pub struct Scheduler {
    remote: Arc<Remote>,
}

impl Scheduler {
    /// The scheduler of `lp`.
    pub fn new(lp: &EventLoop) -> Self {
        Scheduler {
            remote: lp.core.remote.clone(),
        }
    }

    /// The scheduler of the loop behind `handle`.
    pub fn from_handle(handle: &LoopHandle) -> Self {
        Scheduler {
            remote: handle.remote.clone(),
        }
    }

    /// Queues `runnable` on the loop. On a closed loop the runnable is dropped, which cancels its
    /// task.
    pub fn schedule(&self, runnable: Runnable) {
        let runnable = match push_local_task(self.remote.id, runnable) {
            Ok(()) => return,
            Err(r) => r,
        };
        // Dropping the runnable on a closed loop is the documented outcome.
        let _ = self.remote.push(RemoteJob::Task(runnable));
    }

    /// The id of the loop this scheduler feeds.
    pub fn loop_id(&self) -> u64 {
        self.remote.id
    }
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("loop_id", &self.remote.id)
            .finish()
    }
}

/// Queues `runnable` directly on `lp`'s ready queue (the first schedule of a new task, made on the
/// loop's thread). On a closed loop the runnable is dropped, cancelling its task.
pub fn push_runnable(lp: &EventLoop, runnable: Runnable) {
    if !lp.is_closed() {
        lp.push_runnable(runnable);
    }
}
