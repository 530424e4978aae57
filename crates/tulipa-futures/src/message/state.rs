//! `State<T>`: an observable value (vanilla's `h.state()`).

use std::fmt;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use crate::cancel;
use crate::error::Result;
use crate::message::chan::{lock, set_waker, Wakes};

struct Waiter<T> {
    id: u64,
    waker: Option<Waker>,
    /// The value set while it waited: it gets that one even if the state is cleared or set again
    /// before it runs.
    got: Option<Arc<T>>,
}

struct Inner<T> {
    value: Option<Arc<T>>,
    waiters: Vec<Waiter<T>>,
    next_id: u64,
}

/// A value that can be set, cleared and waited for (vanilla's `State`): [`recv`](State::recv)
/// returns the current value at once when there is one, or waits until one is
/// [`set`](State::set). Unlike a pipe's item, the value stays: every receiver gets a clone.
///
/// A cheap handle (`Clone`); `Send + Sync` when `T` is, so loops on different threads can share
/// one.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message::State, run, spawn};
///
/// run(async {
///     let done = State::new();
///     let watcher = { let done = done.clone(); spawn(async move { done.recv().await })? };
///     done.set("finished");
///     assert_eq!(watcher.await?, "finished");
///     assert_eq!(done.recv().await?, "finished"); // still set: returns at once
///     done.clear();
///     assert_eq!(done.get(), None);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub struct State<T> {
    inner: Arc<Mutex<Inner<T>>>,
}

impl<T> Clone for State<T> {
    fn clone(&self) -> Self {
        State {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Clone> Default for State<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> State<T> {
    /// A state with no value.
    pub fn new() -> Self {
        State {
            inner: Arc::new(Mutex::new(Inner {
                value: None,
                waiters: Vec::new(),
                next_id: 1,
            })),
        }
    }

    /// A state holding `value`.
    pub fn with_value(value: T) -> Self {
        let s = Self::new();
        s.set(value);
        s
    }

    /// Sets the value and wakes every waiting receiver (each gets this value).
    pub fn set(&self, value: T) {
        let value = Arc::new(value);
        let mut wakes = Wakes::default();
        let old = {
            let mut inner = lock(&self.inner);
            for w in inner.waiters.iter_mut() {
                w.got = Some(value.clone());
                if let Some(k) = w.waker.take() {
                    wakes.push(k);
                }
            }
            inner.value.replace(value)
        };
        wakes.run();
        drop(old);
    }

    /// Clears the value; receivers wait again until the next [`set`](State::set).
    pub fn clear(&self) {
        let old = lock(&self.inner).value.take();
        drop(old);
    }

    /// A clone of the value, if set.
    pub fn get(&self) -> Option<T> {
        let v = lock(&self.inner).value.clone();
        v.map(|v| T::clone(&v))
    }

    /// True while a value is set.
    pub fn is_set(&self) -> bool {
        lock(&self.inner).value.is_some()
    }

    /// The value: at once when set, else once it is set.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`](crate::Error::Cancelled) when the task is cancelled while waiting.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it takes nothing (the value stays for everyone).
    pub async fn recv(&self) -> Result<T> {
        let mut guard = Guard {
            inner: &self.inner,
            id: 0,
        };
        let got = poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                guard.leave();
                return Poll::Ready(Err(e));
            }
            let mut inner = lock(guard.inner);
            if guard.id != 0 {
                if let Some(p) = inner.waiters.iter().position(|w| w.id == guard.id) {
                    if let Some(v) = inner.waiters[p].got.take() {
                        inner.waiters.swap_remove(p);
                        guard.id = 0;
                        return Poll::Ready(Ok(v));
                    }
                    set_waker(&mut inner.waiters[p].waker, cx.waker());
                    return Poll::Pending;
                }
            }
            if let Some(v) = inner.value.clone() {
                return Poll::Ready(Ok(v));
            }
            let id = inner.next_id;
            inner.next_id += 1;
            inner.waiters.push(Waiter {
                id,
                waker: Some(cx.waker().clone()),
                got: None,
            });
            guard.id = id;
            Poll::Pending
        })
        .await?;
        // Cloned outside the lock: `T::clone` is user code.
        Ok(T::clone(&got))
    }
}

/// A `State::recv` waiter, removed however the wait ends.
struct Guard<'a, T> {
    inner: &'a Mutex<Inner<T>>,
    id: u64,
}

impl<T> Guard<'_, T> {
    fn leave(&mut self) {
        if self.id != 0 {
            let removed = {
                let mut inner = lock(self.inner);
                let p = inner.waiters.iter().position(|w| w.id == self.id);
                p.map(|p| inner.waiters.swap_remove(p))
            };
            self.id = 0;
            drop(removed);
        }
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        self.leave();
    }
}

impl<T> fmt::Debug for State<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = lock(&self.inner);
        f.debug_struct("State")
            .field("set", &inner.value.is_some())
            .field("waiters", &inner.waiters.len())
            .finish()
    }
}
