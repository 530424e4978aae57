//! `Lock` (asyncio's `locks.Lock`): a mutual-exclusion lock for tasks of one loop.

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use crate::cancel;
use crate::error::{Error, Result};
use crate::sync::waitq::{WaitQueue, Waiting};

pub(crate) struct LockState {
    locked: Cell<bool>,
    waiters: WaitQueue,
}

/// A mutual-exclusion lock for tasks on one loop; FIFO fair: a task that arrives while others wait
/// queues behind them, even if the lock is momentarily free (no barging).
///
/// `Lock` is a cheap handle (`Clone`); clones are the same lock. [`acquire`](Lock::acquire) gives a
/// [`LockGuard`] that releases when dropped.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{run, spawn, sync::Lock};
///
/// run(async {
///     let lock = Lock::new();
///     let guard = lock.acquire().await?;
///     let l2 = lock.clone();
///     let waiter = spawn(async move { let _g = l2.acquire().await?; Ok("got it") })?;
///     assert!(lock.locked());
///     drop(guard);
///     assert_eq!(waiter.await?, "got it");
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[derive(Clone)]
pub struct Lock {
    state: Rc<LockState>,
}

impl Default for Lock {
    fn default() -> Self {
        Self::new()
    }
}

impl Lock {
    /// An unlocked lock.
    pub fn new() -> Self {
        Lock {
            state: Rc::new(LockState {
                locked: Cell::new(false),
                waiters: WaitQueue::default(),
            }),
        }
    }

    /// True when both handles are the same lock.
    pub fn ptr_eq(&self, other: &Lock) -> bool {
        Rc::ptr_eq(&self.state, &other.state)
    }

    /// True while held.
    pub fn locked(&self) -> bool {
        self.state.locked.get()
    }

    /// Waits until the lock is free and this task's turn has come, then takes it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled acquire returns `Err(Cancelled)` without the lock, and if the lock
    /// had just been handed to it, hands it on to the next waiter.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the task is cancelled while waiting.
    pub async fn acquire(&self) -> Result<LockGuard> {
        self.acquire_inner(true).await?;
        Ok(LockGuard {
            lock: Some(self.clone()),
        })
    }

    /// Takes the lock if it is free and nobody waits; never suspends.
    pub fn try_acquire(&self) -> Option<LockGuard> {
        let st = &self.state;
        if !st.locked.get() && st.waiters.is_empty() {
            st.locked.set(true);
            Some(LockGuard {
                lock: Some(self.clone()),
            })
        } else {
            None
        }
    }

    /// Acquires; with `cancellable` false a cancellation is not taken (used by `Condition` to
    /// re-acquire after a wait, which asyncio does even when cancelled).
    pub(crate) async fn acquire_inner(&self, cancellable: bool) -> Result<()> {
        let st = &*self.state;
        if !st.locked.get() && st.waiters.is_empty() {
            if cancellable {
                if let Some(e) = cancel::take_cancellation() {
                    return Err(e);
                }
            }
            st.locked.set(true);
            return Ok(());
        }
        let mut waiting = Abandon {
            state: st,
            waiting: Waiting::new(&st.waiters),
        };
        poll_fn(|cx| {
            if cancellable {
                if let Some(e) = cancel::take_cancellation() {
                    waiting.abandon();
                    return Poll::Ready(Err(e));
                }
            }
            if waiting.waiting.poll(cx.waker()) {
                waiting.waiting.leave();
                st.locked.set(true);
                return Poll::Ready(Ok(()));
            }
            Poll::Pending
        })
        .await
    }

    /// Releases the lock and hands it to the first waiter.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the lock is not held (asyncio raises `RuntimeError`).
    pub fn release(&self) -> Result<()> {
        let st = &self.state;
        if !st.locked.replace(false) {
            return Err(Error::InvalidState("release of an unlocked lock"));
        }
        st.waiters.grant_first();
        Ok(())
    }
}

struct Abandon<'a> {
    state: &'a LockState,
    waiting: Waiting<'a>,
}

impl Abandon<'_> {
    fn abandon(&mut self) {
        if self.waiting.leave() && !self.state.locked.get() {
            self.state.waiters.grant_first();
        }
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.locked())
            .field("waiters", &self.state.waiters.len())
            .finish()
    }
}

/// Holds a [`Lock`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    lock: Option<Lock>,
}

impl LockGuard {
    /// The lock this guard holds.
    pub fn lock(&self) -> Option<&Lock> {
        self.lock.as_ref()
    }

    /// Forgets the lock without releasing it (the lock was released by someone else).
    pub(crate) fn disarm(&mut self) {
        self.lock = None;
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(l) = self.lock.take() {
            let _ = l.release();
        }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard").finish_non_exhaustive()
    }
}
