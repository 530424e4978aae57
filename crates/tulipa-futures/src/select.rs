//! mitogen's `Select`: scatter/gather over many receivers.
//!
//! A [`Select`] owns a set of *sources* — Tulipa futures and tasks (one message: their outcome),
//! any [`futures_core::Stream`] such as a `message::Recver` (many messages), and other
//! selects (nesting) — and hands out messages as they arrive with [`Select::get`], each tagged
//! with the [`MemberId`] of the source that produced it. With `oneshot`, a source leaves the
//! select once it delivered one message, so iterating with [`Select::next`] until `None` collects
//! exactly one result per source (mitogen's scatter/gather idiom). A source that is exhausted (a
//! closed stream, a future already delivered) leaves the select too.
//!
//! The select owns its sources; dropping it drops them, so nothing stays registered anywhere
//! (mitogen's `close`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future as _};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tulipa_loop::EventLoop;

use crate::cancel;
use crate::error::{Error, Result};
use crate::future::Future;

/// Identifies a source in a [`Select`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemberId(u64);

/// Something a [`Select`] can take messages from.
pub trait Source<T> {
    /// `Ready(Some(msg))` for a message, `Ready(None)` once exhausted, `Pending` (with `cx`
    /// registered) otherwise. Must be cancel-safe: a message is only taken when returned.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>>;
}

/// A future or task as a source: one message, its outcome.
#[derive(Debug)]
pub struct FutureSource<T: 'static> {
    fut: Option<Future<T>>,
}

impl<T: 'static> Source<Result<T>> for FutureSource<T> {
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        let Some(f) = &self.fut else {
            return Poll::Ready(None);
        };
        if !f.core().poll_done(cx) {
            return Poll::Pending;
        }
        let r = f.take_result();
        self.fut = None;
        Poll::Ready(Some(r))
    }
}

/// A stream as a source.
#[derive(Debug)]
pub struct StreamSource<S>(pub S);

impl<S: Stream + Unpin> Source<S::Item> for StreamSource<S> {
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        Pin::new(&mut self.0).poll_next(cx)
    }
}

struct Member<T> {
    id: MemberId,
    src: Box<dyn Source<T>>,
}

/// Scatter/gather over many sources (mitogen's `Select`); see the [module docs](self).
///
/// # Examples
///
/// Gathering one result from each of several tasks, in completion order:
///
/// ```
/// use std::time::Duration;
/// use tulipa_futures::{run, sleep, spawn, select::Select};
///
/// run(async {
///     let mut select = Select::new(true);
///     for ms in [30u64, 10, 20] {
///         select.add_future(spawn(async move { sleep(Duration::from_millis(ms)).await?; Ok(ms) })?);
///     }
///     let mut total = Vec::new();
///     while let Some(msg) = select.next().await {
///         let (_source, value) = msg?;
///         total.push(value?);
///     }
///     assert_eq!(total, [10, 20, 30]);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub struct Select<T: 'static> {
    members: RefCell<Vec<Member<T>>>,
    oneshot: bool,
    next_id: Cell<u64>,
    start: Cell<usize>,
}

impl<T: 'static> Select<T> {
    /// An empty select. With `oneshot`, each source leaves after its first message.
    pub fn new(oneshot: bool) -> Self {
        Select {
            members: RefCell::new(Vec::new()),
            oneshot,
            next_id: Cell::new(0),
            start: Cell::new(0),
        }
    }

    /// Adds a source; returns its id.
    pub fn add(&self, src: impl Source<T> + 'static) -> MemberId {
        let id = MemberId(self.next_id.get() + 1);
        self.next_id.set(id.0);
        self.members.borrow_mut().push(Member {
            id,
            src: Box::new(src),
        });
        id
    }

    /// Adds a stream (for example a `message::Recver`).
    pub fn add_stream<S: Stream<Item = T> + Unpin + 'static>(&self, s: S) -> MemberId {
        self.add(StreamSource(s))
    }

    /// Removes a source; returns whether it was there. A message it already delivered into the
    /// select is not taken back (there is none: messages are taken only by `get`).
    pub fn remove(&self, id: MemberId) -> bool {
        let removed = {
            let mut m = self.members.borrow_mut();
            m.iter().position(|x| x.id == id).map(|i| m.remove(i))
        };
        removed.is_some()
    }

    /// True when no source is left (mitogen's `not select`).
    pub fn is_empty(&self) -> bool {
        self.members.borrow().is_empty()
    }

    /// Number of sources.
    pub fn len(&self) -> usize {
        self.members.borrow().len()
    }

    /// Polls the sources once, fairly (the starting point rotates).
    pub fn poll_get(&self, cx: &mut Context<'_>) -> Poll<Option<(MemberId, T)>> {
        let mut members = self.members.borrow_mut();
        if members.is_empty() {
            return Poll::Ready(None);
        }
        // One round over every source, starting at `pos`. Removing the source at `pos` shifts the
        // ones after it down by one, so the next source to poll is then at `pos` itself (or at 0
        // when the removed one was last): every source is polled once per round, none skipped.
        let mut pos = self.start.get() % members.len();
        let mut left = members.len();
        while left > 0 {
            match members[pos].src.poll_message(cx) {
                Poll::Ready(Some(msg)) => {
                    let id = members[pos].id;
                    if self.oneshot {
                        // The next source has moved into `pos`: start there next time.
                        members.remove(pos);
                        self.start.set(pos);
                    } else {
                        self.start.set(pos + 1);
                    }
                    return Poll::Ready(Some((id, msg)));
                }
                Poll::Ready(None) => {
                    members.remove(pos);
                    left -= 1;
                    if members.is_empty() {
                        return Poll::Ready(None);
                    }
                    if pos == members.len() {
                        pos = 0;
                    }
                }
                Poll::Pending => {
                    left -= 1;
                    pos = (pos + 1) % members.len();
                }
            }
        }
        Poll::Pending
    }

    /// The next message from any source, with the id of its source; `None` when no source is
    /// left.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no message is taken from any source unless it is returned.
    pub async fn next(&self) -> Option<Result<(MemberId, T)>> {
        poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                return Poll::Ready(Some(Err(e)));
            }
            self.poll_get(cx).map(|o| o.map(Ok))
        })
        .await
    }

    /// The next message, waiting at most `limit` (mitogen's `get(timeout)`).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when nothing arrived in time; [`Error::InvalidState`] when the select
    /// has no source; [`Error::Cancelled`] when cancelled.
    pub async fn get(&self, limit: Option<Duration>) -> Result<(MemberId, T)> {
        let next = async {
            match self.next().await {
                Some(r) => r,
                None => Err(Error::InvalidState("the select has no source")),
            }
        };
        // A limit too large for the clock (`Duration::MAX`) is no limit.
        let deadline = match limit {
            Some(d) => EventLoop::running()?.time().checked_add(d),
            None => None,
        };
        match deadline {
            None => next.await,
            Some(deadline) => {
                // A timer on the running loop; the wait stays cancel-safe because `next` is.
                let mut next = std::pin::pin!(next);
                let mut sleep = std::pin::pin!(crate::sleep_until(deadline));
                poll_fn(|cx| {
                    if let Poll::Ready(r) = next.as_mut().poll(cx) {
                        return Poll::Ready(r);
                    }
                    match sleep.as_mut().poll(cx) {
                        Poll::Ready(Ok(())) => Poll::Ready(Err(Error::Timeout)),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    }
                })
                .await
            }
        }
    }
}

impl<T: 'static> Select<Result<T>> {
    /// Adds a future or task (one message: its outcome).
    pub fn add_future(&self, f: impl Into<Future<T>>) -> MemberId {
        self.add(FutureSource {
            fut: Some(f.into()),
        })
    }
}

/// A select nested in another yields the inner source's id with each message.
impl<T: 'static> Source<(MemberId, T)> for Select<T> {
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Option<(MemberId, T)>> {
        self.poll_get(cx)
    }
}

impl<T: 'static> futures_core::Stream for Select<T> {
    type Item = (MemberId, T);
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.poll_get(cx)
    }
}

impl<T> fmt::Debug for Select<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Select")
            .field("sources", &self.members.borrow().len())
            .field("oneshot", &self.oneshot)
            .finish()
    }
}
