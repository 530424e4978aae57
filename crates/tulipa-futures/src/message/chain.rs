//! Chaining pipes with tasks: [`Recver::map`], [`Recver::consume`] and [`Recver::pipe`], and the
//! same on a [`Pair`] (vanilla's `Pair.map`, `Pair.consume`, `Pair.pipe`); how
//! closing travels along a chain is told in the [message module docs](super#chaining).

use std::future::{poll_fn, Future as _};
use std::pin::pin;
use std::task::Poll;

use crate::error::{Error, Result};
use crate::message::pipe::{new_pipe, Pair, Recver, Sender};
use crate::task::{spawn, Task};

/// The next upstream item, or `None` once the downstream pipe is closed.
async fn next_or_closed<T, U>(up: &Recver<T>, down: &Sender<U>) -> Option<Result<T>> {
    let mut recv = pin!(up.recv());
    let mut closed = pin!(down.closed());
    poll_fn(|cx| {
        // `recv` delivers a cancellation first; `closed` is polled only while `recv` waits.
        if let Poll::Ready(r) = recv.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        match closed.as_mut().poll(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

impl<T: 'static> Recver<T> {
    /// A new recver of `f(item)` for every item of this one (vanilla's `Recver.map`): a task on
    /// the running loop takes each item, maps it and sends the result down a new rendezvous
    /// pipe, so back-pressure travels upstream. See [chaining](super#chaining) for closing; when
    /// this pipe was closed with an error, the new one is closed with the same error.
    ///
    /// # Errors
    ///
    /// [`Error::Loop`] when no loop runs on this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use tulipa_futures::{message, run, spawn};
    ///
    /// run(async {
    ///     let (tx, rx) = message::pipe();
    ///     let doubled = rx.map(|i: i32| i * 2)?;
    ///     spawn(async move { tx.send(2).await })?;
    ///     assert_eq!(doubled.recv().await?, 4);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), tulipa_futures::Error>(())
    /// ```
    pub fn map<U: 'static>(self, mut f: impl FnMut(T) -> U + 'static) -> Result<Recver<U>> {
        let (tx, rx) = new_pipe(0);
        let up = self;
        let task = spawn(async move {
            loop {
                match next_or_closed(&up, &tx).await {
                    Some(Ok(item)) => {
                        if let Err(e) = tx.send(f(item)).await {
                            return stop(e);
                        }
                    }
                    Some(Err(Error::Closed)) | None => return Ok(()),
                    Some(Err(e)) if e.is_cancelled() => return Err(e),
                    Some(Err(e)) => {
                        tx.close_with(e);
                        return Ok(());
                    }
                }
            }
        })?;
        drop(task);
        Ok(rx)
    }

    /// Calls `f` on every item, in a task on the running loop, until the pipe is closed and
    /// drained (vanilla's `Recver.consume`). Returns the task: it ends `Ok(())` when the pipe
    /// closed, with the error given to [`close_with`](Sender::close_with) if there was one, or
    /// cancelled.
    ///
    /// # Errors
    ///
    /// [`Error::Loop`] when no loop runs on this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::rc::Rc;
    /// use tulipa_futures::{message, run};
    ///
    /// run(async {
    ///     let (tx, rx) = message::buffered(3);
    ///     let seen = Rc::new(RefCell::new(Vec::new()));
    ///     let sink = { let seen = seen.clone(); rx.consume(move |x| seen.borrow_mut().push(x))? };
    ///     for i in 0..3 { tx.send(i).await?; }
    ///     drop(tx);
    ///     sink.await?;
    ///     assert_eq!(*seen.borrow(), [0, 1, 2]);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), tulipa_futures::Error>(())
    /// ```
    pub fn consume(self, mut f: impl FnMut(T) + 'static) -> Result<Task<()>> {
        spawn(async move {
            loop {
                match self.recv().await {
                    Ok(item) => f(item),
                    Err(Error::Closed) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
    }

    /// Forwards every item of this recver into `target` in a task on the running loop, until
    /// either pipe is closed (vanilla's `Recver.pipe` into a sender). The target pipe is closed
    /// when the task drops `target` and it was the last sender, so several recvers can be piped
    /// into one [`router`](super::router) that stays open while any of them (or any other
    /// sender) remains. Returns the task; it ends with an upstream `close_with` error, if any.
    ///
    /// # Errors
    ///
    /// [`Error::Loop`] when no loop runs on this thread.
    ///
    /// # Examples
    ///
    /// ```
    /// use tulipa_futures::{message, run, Error};
    ///
    /// run(async {
    ///     let (tx1, rx1) = message::buffered(1);
    ///     let (tx2, rx2) = message::pipe();
    ///     let _forwarder = rx1.pipe(tx2)?;
    ///     tx1.send("through").await?;
    ///     drop(tx1);
    ///     assert_eq!(rx2.recv().await?, "through");
    ///     assert!(matches!(rx2.recv().await, Err(Error::Closed)));
    ///     Ok(())
    /// })?;
    /// # Ok::<(), Error>(())
    /// ```
    pub fn pipe(self, target: Sender<T>) -> Result<Task<()>> {
        spawn(async move {
            loop {
                match next_or_closed(&self, &target).await {
                    Some(Ok(item)) => {
                        if let Err(e) = target.send(item).await {
                            return stop(e);
                        }
                    }
                    Some(Err(Error::Closed)) | None => return Ok(()),
                    Some(Err(e)) => return Err(e),
                }
            }
        })
    }
}

impl<S, R: 'static> Pair<S, R> {
    /// This pair with its recver mapped by `f` (vanilla's `Pair.map`): the same sender, and the
    /// recver [`Recver::map`] returns.
    ///
    /// # Errors
    ///
    /// [`Error::Loop`] when no loop runs on this thread.
    ///
    /// # Examples
    ///
    /// vanilla's `h.pipe().map(f)`, sending in at one end and receiving mapped items at the other:
    ///
    /// ```
    /// use tulipa_futures::{message::{self, Pair}, run, spawn};
    ///
    /// run(async {
    ///     let p = Pair::from(message::pipe()).map(|s: &str| s.len())?.pipe(message::buffered(1).into())?;
    ///     p.send("four").await?; // returns once the map task took it
    ///     assert_eq!(p.recv().await?, 4);
    ///     Ok(())
    /// })?;
    /// # Ok::<(), tulipa_futures::Error>(())
    /// ```
    pub fn map<U: 'static>(self, f: impl FnMut(R) -> U + 'static) -> Result<Pair<S, U>> {
        let (sender, recver) = self.split();
        Ok(Pair::new(sender, recver.map(f)?))
    }

    /// This pair's recver piped into `target`'s sender (vanilla's `Pair.pipe`): returns this
    /// pair's sender with `target`'s recver. See [`Recver::pipe`].
    ///
    /// # Errors
    ///
    /// [`Error::Loop`] when no loop runs on this thread.
    pub fn pipe<U>(self, target: Pair<R, U>) -> Result<Pair<S, U>> {
        let (sender, recver) = self.split();
        let (target_sender, target_recver) = target.split();
        drop(recver.pipe(target_sender)?);
        Ok(Pair::new(sender, target_recver))
    }

    /// Consumes this pair's recver with `f` (vanilla's `Pair.consume`) and returns the sender
    /// that feeds it. See [`Recver::consume`].
    ///
    /// # Errors
    ///
    /// [`Error::Loop`] when no loop runs on this thread.
    pub fn consume(self, f: impl FnMut(R) + 'static) -> Result<Sender<S>> {
        let (sender, recver) = self.split();
        drop(recver.consume(f)?);
        Ok(sender)
    }
}

/// How a forwarding task ends when its downstream send failed.
fn stop(e: Error) -> Result<()> {
    if e.is_closed() {
        Ok(())
    } else {
        Err(e)
    }
}
