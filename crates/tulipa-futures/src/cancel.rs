//! How a task's cancellation reaches the code it runs (asyncio's `Task.cancel` delivery).
//!
//! While a task's future is being polled, the task is the *current task* of its thread. Every
//! Tulipa awaitable starts its `poll` with [`take_cancellation`]: if the current task has a
//! cancellation request not yet delivered, the awaitable undoes whatever it started (removes its
//! waiter, cancels its timer) and returns `Err(Cancelled)`. That is how a request is delivered
//! exactly once, from the next Tulipa awaitable the task polls, with nothing lost.
//!
//! An awaitable that is itself a Tulipa future registers as the task's *waited-on future*
//! ([`waiting_on`]): cancelling the task then cancels that future (or, for a task, requests its
//! cancellation) instead, exactly as asyncio cancels `_fut_waiter`; the cancellation then arrives
//! as that future's own result once it has finished cleaning up.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use crate::error::Error;
use crate::task::TaskOps;

thread_local! {
    static CURRENT: RefCell<Option<Rc<dyn TaskOps>>> = const { RefCell::new(None) };
    /// How many tasks of this thread hold a cancellation request not yet delivered.
    static REQUESTS: Cell<usize> = const { Cell::new(0) };
}

/// A task's cancellation requests: how many are pending (asyncio's `_num_cancels_requested`,
/// Python 3.11's `Task.cancelling()`) and whether one is not yet delivered (asyncio's
/// `_must_cancel`), packed in one word to keep every task 8 bytes smaller.
///
/// The thread counts the tasks whose "not yet delivered" flag is set, so that
/// [`take_cancellation`], which every Tulipa awaitable calls at the start of every poll, answers
/// "nothing pending" with one thread-local read instead of a look at the current task. A task's
/// state never leaves its thread (it is `!Send`), so the flag is set, cleared and dropped on the
/// thread that counts it.
pub(crate) struct CancelRequests(Cell<u32>);

/// The "not yet delivered" flag; the other bits count the requests.
const MUST_CANCEL: u32 = 1 << 31;

impl CancelRequests {
    pub(crate) fn new() -> Self {
        CancelRequests(Cell::new(0))
    }

    /// The number of pending requests.
    pub(crate) fn count(&self) -> u32 {
        self.0.get() & !MUST_CANCEL
    }

    /// Sets the number of pending requests (saturating at 2^31 - 1).
    pub(crate) fn set_count(&self, n: u32) {
        self.0
            .set((self.0.get() & MUST_CANCEL) | n.min(!MUST_CANCEL));
    }

    /// True when a request is waiting to be delivered.
    pub(crate) fn must_cancel(&self) -> bool {
        self.0.get() & MUST_CANCEL != 0
    }

    pub(crate) fn set_must_cancel(&self, value: bool) {
        if self.must_cancel() != value {
            self.0.set(self.0.get() ^ MUST_CANCEL);
            count(value);
        }
    }

    /// Sets the "not yet delivered" flag to `value`, returning the old value.
    pub(crate) fn replace_must_cancel(&self, value: bool) -> bool {
        let old = self.must_cancel();
        self.set_must_cancel(value);
        old
    }
}

impl Drop for CancelRequests {
    fn drop(&mut self) {
        if self.must_cancel() {
            count(false);
        }
    }
}

fn count(up: bool) {
    // `try_with`: a task dropped while the thread's locals are being destroyed has nobody left
    // to answer.
    let _ = REQUESTS.try_with(|r| {
        r.set(if up {
            r.get() + 1
        } else {
            r.get().saturating_sub(1)
        })
    });
}

/// Something a task can be waiting on that can be cancelled on its behalf.
pub(crate) trait CancelTarget {
    /// Cancels it; true if that will complete the wait (the task need not be woken directly).
    fn cancel_target(self: Rc<Self>, msg: Option<std::sync::Arc<str>>) -> bool;
}

/// Makes `task` the current task until the guard drops.
pub(crate) fn enter(task: Rc<dyn TaskOps>) -> EnterGuard {
    let prev = CURRENT.with(|c| c.replace(Some(task)));
    EnterGuard { prev }
}

pub(crate) struct EnterGuard {
    prev: Option<Rc<dyn TaskOps>>,
}

impl Drop for EnterGuard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        let cur = CURRENT.with(|c| c.replace(prev));
        drop(cur);
    }
}

/// The current task, if a task is being polled on this thread.
pub(crate) fn current() -> Option<Rc<dyn TaskOps>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Takes the current task's pending cancellation, if any: the `Err(Cancelled)` an awaitable must
/// return now. Returns `None` outside tasks and when nothing is pending.
///
/// Layers above use this at the start of every awaitable's `poll` (see the module docs).
#[inline]
pub fn take_cancellation() -> Option<Error> {
    if REQUESTS.with(Cell::get) == 0 {
        return None;
    }
    take_slow()
}

#[inline(never)]
fn take_slow() -> Option<Error> {
    CURRENT.with(|c| c.borrow().as_ref().and_then(|t| t.take_pending_cancel()))
}

/// Records that the current task now waits on `target` (see the module docs).
pub(crate) fn waiting_on(target: Rc<dyn CancelTarget>) {
    CURRENT.with(|c| {
        if let Some(t) = c.borrow().as_ref() {
            t.set_waiting_on(Some(target));
        }
    });
}
