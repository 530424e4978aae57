//! `Condition` (asyncio's `locks.Condition`).

use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use crate::cancel;
use crate::error::{Error, Result};
use crate::sync::lock::{Lock, LockGuard};
use crate::sync::waitq::{WaitQueue, Waiting};

/// A condition variable for tasks: wait until notified, holding a [`Lock`] around the check.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use tulipa_futures::{run, spawn, sync::Condition};
///
/// run(async {
///     let cond = Condition::new();
///     let ready = Rc::new(Cell::new(false));
///     let (c2, r2) = (cond.clone(), ready.clone());
///     let consumer = spawn(async move {
///         let mut g = c2.acquire().await?;
///         c2.wait_for(&mut g, || r2.get()).await?;
///         Ok("saw it")
///     })?;
///     tulipa_futures::sleep(std::time::Duration::ZERO).await?;
///     let _g = cond.acquire().await?;
///     ready.set(true);
///     cond.notify_all()?;
///     drop(_g);
///     assert_eq!(consumer.await?, "saw it");
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[derive(Clone)]
pub struct Condition {
    lock: Lock,
    waiters: Rc<WaitQueue>,
}

impl Default for Condition {
    fn default() -> Self {
        Self::new()
    }
}

impl Condition {
    /// A condition with its own lock.
    pub fn new() -> Self {
        Self::with_lock(Lock::new())
    }

    /// A condition over an existing lock.
    pub fn with_lock(lock: Lock) -> Self {
        Condition {
            lock,
            waiters: Rc::new(WaitQueue::default()),
        }
    }

    /// The underlying lock.
    pub fn lock(&self) -> &Lock {
        &self.lock
    }

    /// Acquires the underlying lock.
    ///
    /// # Errors
    ///
    /// As [`Lock::acquire`].
    pub async fn acquire(&self) -> Result<LockGuard> {
        self.lock.acquire().await
    }

    fn check_held(&self, guard: &LockGuard) -> Result<()> {
        match guard.lock() {
            Some(l) if l.ptr_eq(&self.lock) && self.lock.locked() => Ok(()),
            _ => Err(Error::InvalidState(
                "the condition's lock is not held by this guard",
            )),
        }
    }

    /// Releases the lock, waits until notified, and re-acquires the lock before returning — also
    /// when cancelled (asyncio does the same), so `guard` holds the lock again on every return.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled wait re-acquires the lock, returns `Err(Cancelled)`, and passes a
    /// notification it had just received on to the next waiter. If this future is *dropped*
    /// before it re-acquired the lock, `guard` is disarmed (it no longer releases anything).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when `guard` does not hold this condition's lock;
    /// [`Error::Cancelled`] when cancelled.
    pub async fn wait(&self, guard: &mut LockGuard) -> Result<()> {
        self.check_held(guard)?;
        self.lock.release()?;
        let mut released = Released {
            guard,
            reacquired: false,
        };
        let waiters = &*self.waiters;
        let mut waiting = Abandon {
            waiters,
            waiting: Waiting::new(waiters),
        };
        let outcome = poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                waiting.abandon();
                return Poll::Ready(Err(e));
            }
            if waiting.waiting.poll(cx.waker()) {
                waiting.waiting.leave();
                return Poll::Ready(Ok(()));
            }
            Poll::Pending
        })
        .await;
        // Re-acquire, ignoring cancellation requests meanwhile (they stay pending and are
        // delivered by the task's next await).
        self.lock.acquire_inner(false).await?;
        released.reacquired = true;
        outcome
    }

    /// Waits until `predicate` is true, checking it under the lock after each notification.
    ///
    /// # Errors
    ///
    /// As [`wait`](Condition::wait).
    pub async fn wait_for(
        &self,
        guard: &mut LockGuard,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<()> {
        while !predicate() {
            self.wait(guard).await?;
        }
        Ok(())
    }

    /// Wakes up to `n` waiters. The lock must be held.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the lock is not held.
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.lock.locked() {
            return Err(Error::InvalidState("notify on an un-acquired condition"));
        }
        self.waiters.grant_n(n);
        Ok(())
    }

    /// Wakes every waiter. The lock must be held.
    ///
    /// # Errors
    ///
    /// As [`notify`](Condition::notify).
    pub fn notify_all(&self) -> Result<()> {
        if !self.lock.locked() {
            return Err(Error::InvalidState("notify on an un-acquired condition"));
        }
        self.waiters.grant_all();
        Ok(())
    }
}

/// Leaves the condition's queue however the wait ends; a notification received just before is
/// passed on to the next waiter, also when the wait is dropped (an aborted task), so it is never
/// swallowed.
struct Abandon<'a> {
    waiters: &'a WaitQueue,
    waiting: Waiting<'a>,
}

impl Abandon<'_> {
    fn abandon(&mut self) {
        if self.waiting.leave() {
            self.waiters.grant_first();
        }
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        self.abandon();
    }
}

/// Disarms the caller's guard if the wait is dropped before the lock is re-acquired.
struct Released<'g> {
    guard: &'g mut LockGuard,
    reacquired: bool,
}

impl Drop for Released<'_> {
    fn drop(&mut self) {
        if !self.reacquired {
            self.guard.disarm();
        }
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("waiters", &self.waiters.len())
            .finish()
    }
}
