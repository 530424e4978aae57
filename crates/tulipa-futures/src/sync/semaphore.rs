//! `Semaphore` and `BoundedSemaphore` (asyncio's `locks.Semaphore`, Python 3.12 fairness).

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use crate::cancel;
use crate::error::{Error, Result};
use crate::sync::waitq::{WaitQueue, Waiting};

struct State {
    value: Cell<usize>,
    bound: Option<usize>,
    waiters: WaitQueue,
}

impl State {
    /// Hands free units to waiters in FIFO order; a unit is reserved at grant time.
    fn wake_next(&self) {
        while self.value.get() > 0 && self.waiters.grant_first() {
            self.value.set(self.value.get() - 1);
        }
    }
}

/// A counter of free units (asyncio's `Semaphore`): [`acquire`](Semaphore::acquire) takes one,
/// waiting while none is free; release gives it back. FIFO fair. A cheap handle (`Clone`).
///
/// # Examples
///
/// ```
/// use tulipa_futures::{run, sync::Semaphore};
///
/// run(async {
///     let sem = Semaphore::new(2);
///     let a = sem.acquire().await?;
///     let _b = sem.acquire().await?;
///     assert!(sem.locked());
///     drop(a);
///     assert!(!sem.locked());
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[derive(Clone)]
pub struct Semaphore {
    state: Rc<State>,
}

impl Semaphore {
    /// A semaphore with `value` free units.
    pub fn new(value: usize) -> Self {
        Self::with_bound(value, None)
    }

    /// A bounded semaphore (asyncio's `BoundedSemaphore`): releasing above `value` is an error.
    pub fn bounded(value: usize) -> Self {
        Self::with_bound(value, Some(value))
    }

    fn with_bound(value: usize, bound: Option<usize>) -> Self {
        Semaphore {
            state: Rc::new(State {
                value: Cell::new(value),
                bound,
                waiters: WaitQueue::default(),
            }),
        }
    }

    /// True when an acquire would wait.
    pub fn locked(&self) -> bool {
        self.state.value.get() == 0 || !self.state.waiters.is_empty()
    }

    /// Free units.
    pub fn value(&self) -> usize {
        self.state.value.get()
    }

    /// Takes a unit, waiting for one; the guard gives it back when dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled acquire takes no unit, and a unit reserved for it just before is
    /// handed on to the next waiter.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the task is cancelled while waiting.
    pub async fn acquire(&self) -> Result<SemaphoreGuard> {
        let st = &*self.state;
        if !self.locked() {
            if let Some(e) = cancel::take_cancellation() {
                return Err(e);
            }
            st.value.set(st.value.get() - 1);
            return Ok(self.guard());
        }
        let mut waiting = Abandon {
            state: st,
            waiting: Waiting::new(&st.waiters),
        };
        poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                waiting.abandon();
                return Poll::Ready(Err(e));
            }
            if waiting.waiting.poll(cx.waker()) {
                // The unit was reserved when granted.
                waiting.waiting.leave();
                // Units released while we were being woken found no un-woken waiter; tasks that
                // queued behind us since then (FIFO) would be stranded with units free. Wake
                // as many as there are free units (asyncio does this in `acquire`'s finally).
                st.wake_next();
                return Poll::Ready(Ok(()));
            }
            Poll::Pending
        })
        .await?;
        Ok(self.guard())
    }

    fn guard(&self) -> SemaphoreGuard {
        SemaphoreGuard {
            sem: Some(self.clone()),
        }
    }

    /// Gives a unit back (for units whose guard was [`forget`](SemaphoreGuard::forget)-ten).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when a bounded semaphore would exceed its initial value.
    pub fn release(&self) -> Result<()> {
        let st = &self.state;
        let v = st.value.get() + 1;
        if let Some(bound) = st.bound {
            // Units reserved for granted waiters are held too.
            if v + st.waiters.granted_count() > bound {
                return Err(Error::InvalidArgument(
                    "BoundedSemaphore released too many times",
                ));
            }
        }
        st.value.set(v);
        st.wake_next();
        Ok(())
    }
}

struct Abandon<'a> {
    state: &'a State,
    waiting: Waiting<'a>,
}

impl Abandon<'_> {
    fn abandon(&mut self) {
        if self.waiting.leave() {
            // The unit reserved for us goes back, then to the next waiter.
            self.state.value.set(self.state.value.get() + 1);
            self.state.wake_next();
        }
    }
}

impl Drop for Abandon<'_> {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore")
            .field("value", &self.value())
            .field("bound", &self.state.bound)
            .field("waiters", &self.state.waiters.len())
            .finish()
    }
}

/// A unit of a [`Semaphore`]; given back when dropped.
#[must_use = "the unit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard {
    sem: Option<Semaphore>,
}

impl SemaphoreGuard {
    /// Keeps the unit taken (give it back later with [`Semaphore::release`]).
    pub fn forget(mut self) {
        self.sem = None;
    }
}

impl Drop for SemaphoreGuard {
    fn drop(&mut self) {
        if let Some(s) = self.sem.take() {
            let _ = s.release();
        }
    }
}

impl fmt::Debug for SemaphoreGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard").finish_non_exhaustive()
    }
}
