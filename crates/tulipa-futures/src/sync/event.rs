//! `Event` (asyncio's `locks.Event`): a flag tasks can wait for.

use std::cell::Cell;
use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use crate::cancel;
use crate::error::Result;
use crate::sync::waitq::{WaitQueue, Waiting};

struct State {
    set: Cell<bool>,
    waiters: WaitQueue,
}

/// A flag that tasks wait for: [`set`](Event::set) wakes every waiter; [`clear`](Event::clear)
/// resets it. A cheap handle (`Clone`).
///
/// # Examples
///
/// ```
/// use tulipa_futures::{run, spawn, sync::Event};
///
/// run(async {
///     let ev = Event::new();
///     let e2 = ev.clone();
///     let w = spawn(async move { e2.wait().await?; Ok("woken") })?;
///     ev.set();
///     assert_eq!(w.await?, "woken");
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[derive(Clone)]
pub struct Event {
    state: Rc<State>,
}

impl Default for Event {
    fn default() -> Self {
        Self::new()
    }
}

impl Event {
    /// A cleared event.
    pub fn new() -> Self {
        Event {
            state: Rc::new(State {
                set: Cell::new(false),
                waiters: WaitQueue::default(),
            }),
        }
    }

    /// True while set.
    pub fn is_set(&self) -> bool {
        self.state.set.get()
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        if !self.state.set.replace(true) {
            self.state.waiters.grant_all();
        }
    }

    /// Clears the flag; later waiters wait again.
    pub fn clear(&self) {
        self.state.set.set(false);
    }

    /// Waits until the flag is set (returns at once if it is).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it takes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`](crate::Error::Cancelled) when the task is cancelled while waiting.
    pub async fn wait(&self) -> Result<()> {
        let st = &*self.state;
        let mut waiting = Waiting::new(&st.waiters);
        poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                waiting.leave();
                return Poll::Ready(Err(e));
            }
            if st.set.get() || waiting.poll(cx.waker()) {
                waiting.leave();
                return Poll::Ready(Ok(()));
            }
            Poll::Pending
        })
        .await
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .field("waiters", &self.state.waiters.len())
            .finish()
    }
}
