//! `Barrier` (asyncio's `locks.Barrier`, Python 3.11).

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use crate::error::{Error, Result};
use crate::sync::condition::Condition;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Filling,
    Draining,
    Resetting,
    Broken,
}

struct State {
    parties: usize,
    count: Cell<usize>,
    phase: Cell<Phase>,
}

/// Makes `parties` tasks wait until all of them have arrived, then lets them all go; reusable.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{gather, run, spawn, sync::Barrier};
///
/// run(async {
///     let b = Barrier::new(3);
///     let tasks = (0..3)
///         .map(|_| { let b = b.clone(); spawn(async move { b.wait().await }) })
///         .collect::<Result<Vec<_>, _>>()?;
///     let mut idx = gather(tasks)?.await?;
///     idx.sort();
///     assert_eq!(idx, [0, 1, 2]);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[derive(Clone)]
pub struct Barrier {
    cond: Condition,
    state: Rc<State>,
}

impl Barrier {
    /// A barrier for `parties` tasks (at least one).
    pub fn new(parties: usize) -> Self {
        Barrier {
            cond: Condition::new(),
            state: Rc::new(State {
                parties: parties.max(1),
                count: Cell::new(0),
                phase: Cell::new(Phase::Filling),
            }),
        }
    }

    /// Waits until `parties` tasks wait; returns this task's arrival index (0 ..= parties - 1).
    ///
    /// # Cancel safety
    ///
    /// A cancelled waiter leaves the barrier (it no longer counts) without breaking it.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] when the barrier is aborted or reset while waiting, or was broken
    /// before; [`Error::Cancelled`] when cancelled.
    pub async fn wait(&self) -> Result<usize> {
        let st = &*self.state;
        let mut g = self.cond.acquire().await?;
        // Block while the barrier drains or resets.
        self.cond
            .wait_for(&mut g, || {
                !matches!(st.phase.get(), Phase::Draining | Phase::Resetting)
            })
            .await?;
        if st.phase.get() == Phase::Broken {
            return Err(Error::BrokenBarrier);
        }
        let index = st.count.get();
        st.count.set(index + 1);
        let r = if index + 1 == st.parties {
            st.phase.set(Phase::Draining);
            self.cond.notify_all()
        } else {
            match self
                .cond
                .wait_for(&mut g, || st.phase.get() != Phase::Filling)
                .await
            {
                Ok(()) if matches!(st.phase.get(), Phase::Broken | Phase::Resetting) => {
                    Err(Error::BrokenBarrier)
                }
                other => other,
            }
        };
        st.count.set(st.count.get() - 1);
        if st.count.get() == 0 && matches!(st.phase.get(), Phase::Draining | Phase::Resetting) {
            st.phase.set(Phase::Filling);
        }
        let _ = self.cond.notify_all();
        drop(g);
        r.map(|()| index)
    }

    /// Puts the barrier back to its initial state; tasks waiting now get `BrokenBarrier`.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when cancelled while taking the barrier's lock.
    pub async fn reset(&self) -> Result<()> {
        let _g = self.cond.acquire().await?;
        let st = &*self.state;
        if st.count.get() > 0 {
            if st.phase.get() != Phase::Resetting {
                st.phase.set(Phase::Resetting);
            }
        } else {
            st.phase.set(Phase::Filling);
        }
        self.cond.notify_all()
    }

    /// Breaks the barrier: current and future waiters get `BrokenBarrier` until [`reset`](Barrier::reset).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when cancelled while taking the barrier's lock.
    pub async fn abort(&self) -> Result<()> {
        let _g = self.cond.acquire().await?;
        self.state.phase.set(Phase::Broken);
        self.cond.notify_all()
    }

    /// The number of tasks needed.
    pub fn parties(&self) -> usize {
        self.state.parties
    }

    /// Tasks waiting now (while filling).
    pub fn n_waiting(&self) -> usize {
        if self.state.phase.get() == Phase::Filling {
            self.state.count.get()
        } else {
            0
        }
    }

    /// True once aborted.
    pub fn broken(&self) -> bool {
        self.state.phase.get() == Phase::Broken
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.state.parties)
            .field("waiting", &self.state.count.get())
            .field("phase", &self.state.phase.get())
            .finish()
    }
}
