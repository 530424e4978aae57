//! Pipes between tasks of one loop: [`LocalSender`] and [`LocalRecver`].
//!
//! The same pipe as [`pipe`](super::pipe) and [`buffered`](super::buffered) — the same state
//! machine, the same order, close and cancellation rules — with its state in an `Rc<RefCell<_>>`
//! instead of an `Arc<Mutex<_>>`. Both ends are `!Send`: they stay on the thread (the loop) that
//! made them, and every operation saves the two atomic read-modify-writes of a lock and an
//! unlock, which is most of what a send or a receive costs (see `docs/benchmarks.md`). This is
//! `Rc` against `Arc`: choose the local pipe when both ends live on one loop; the compiler says
//! so if one of them is moved to another thread.
//!
//! What the thread-crossing pipe has and this one leaves out: [`select`](super::select) over
//! several pipes, `Sender::closed`, and [`Pair`](super::Pair).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::cancel;
use crate::error::{Error, Result};
use crate::message::chan::Chan;
use crate::message::pipe::{with_chan, RecvSlot, SendGuard, TrySendError};

type Shared<T> = Rc<RefCell<Chan<T>>>;

/// A rendezvous pipe between tasks of one loop: [`pipe`](super::pipe) without the lock.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run, spawn};
///
/// run(async {
///     let (tx, rx) = message::local_pipe();
///     let sent = spawn(async move { tx.send("hi").await })?;
///     assert_eq!(rx.recv().await?, "hi");
///     sent.await?; // completes once the item was taken
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn local_pipe<T>() -> (LocalSender<T>, LocalRecver<T>) {
    local_buffered(0)
}

/// A pipe with a buffer of `size` items between tasks of one loop: [`buffered`](super::buffered)
/// without the lock. `local_buffered(0)` is [`local_pipe`].
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run, spawn};
///
/// run(async {
///     let (tx, rx) = message::local_buffered(64);
///     let producer = spawn(async move {
///         for i in 0..1000u64 {
///             tx.send(i).await?;
///         }
///         Ok(()) // dropping the last sender closes the pipe
///     })?;
///     let mut sum = 0;
///     while let Ok(i) = rx.recv().await {
///         sum += i;
///     }
///     producer.await?;
///     assert_eq!(sum, 499_500);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn local_buffered<T>(size: usize) -> (LocalSender<T>, LocalRecver<T>) {
    let shared = Rc::new(RefCell::new(Chan::new(size)));
    (
        LocalSender {
            shared: shared.clone(),
        },
        LocalRecver {
            shared,
            stream_slot: Cell::new(0),
        },
    )
}

/// The sending end of a local pipe; see [`Sender`](super::Sender), whose rules it follows.
/// Cheap to clone; dropping the last clone closes the pipe.
pub struct LocalSender<T> {
    shared: Shared<T>,
}

/// The receiving end of a local pipe; see [`Recver`](super::Recver), whose rules it follows.
/// Cheap to clone; dropping the last clone closes the pipe and drops the items still in it. Also
/// a [`Stream`] that ends when the pipe is closed and drained.
pub struct LocalRecver<T> {
    shared: Shared<T>,
    /// The waiter id of the pending `Stream::poll_next`, 0 for none.
    stream_slot: Cell<u64>,
}

impl<T> LocalSender<T> {
    /// Sends `item`, waiting until a receiver took it (rendezvous) or there is room in the
    /// buffer; blocked senders are served in the order they started to wait.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the pipe is closed, before or while waiting (the item is dropped);
    /// [`Error::Cancelled`] when the task is cancelled while waiting (the item was not sent).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`Sender::send`](super::Sender::send): `Err(Cancelled)` or dropping the
    /// future means no receiver will see the item; a send whose item was taken returns `Ok`.
    pub async fn send(&self, item: T) -> Result<()> {
        let mut guard = SendGuard {
            shared: &*self.shared,
            offer: None,
            item: PhantomData,
        };
        let mut item = Some(item);
        poll_fn(|cx| guard.poll(&mut item, cx)).await
    }

    /// Sends `item` only if that needs no waiting; see
    /// [`Sender::try_send`](super::Sender::try_send).
    ///
    /// # Errors
    ///
    /// [`TrySendError`] with the item and [`Error::WouldBlock`] or [`Error::Closed`].
    pub fn try_send(&self, item: T) -> std::result::Result<(), TrySendError<T>> {
        with_chan(&*self.shared, |ch, wakes, _| ch.try_send(item, wakes))
            .map_err(|(item, error)| TrySendError::new(item, error))
    }

    /// Closes the pipe; see [`Sender::close`](super::Sender::close).
    pub fn close(&self) {
        close(&self.shared, None);
    }

    /// Closes the pipe with `error` for the receivers once drained; see
    /// [`Sender::close_with`](super::Sender::close_with).
    pub fn close_with(&self, error: Error) {
        close(&self.shared, Some(error));
    }

    /// True once the pipe is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.borrow().is_closed()
    }

    /// True when both are ends of the same pipe.
    pub fn same_pipe(&self, other: &LocalSender<T>) -> bool {
        Rc::ptr_eq(&self.shared, &other.shared)
    }
}

fn close<T>(shared: &RefCell<Chan<T>>, error: Option<Error>) {
    with_chan(shared, |ch, wakes, drop_later| {
        ch.close(error, wakes, drop_later);
    });
}

impl<T> LocalRecver<T> {
    /// Receives the next item, waiting until one is sent; waiting receivers are served in
    /// order.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] (or the `close_with` error) once the pipe is closed and drained;
    /// [`Error::Cancelled`] when the task is cancelled while waiting.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled receive has taken nothing, and an item reserved for it goes to
    /// the next waiting receiver.
    pub async fn recv(&self) -> Result<T> {
        self.withdraw_stream();
        let mut slot = RecvSlot {
            shared: &*self.shared,
            id: None,
            item: PhantomData,
        };
        poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                slot.leave();
                return Poll::Ready(Err(e));
            }
            slot.poll(cx)
        })
        .await
    }

    /// Receives an item only if one is there for the taking.
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when there is none; [`Error::Closed`] (or the `close_with` error)
    /// when the pipe is closed and drained.
    pub fn try_recv(&self) -> Result<T> {
        self.withdraw_stream();
        with_chan(&*self.shared, |ch, wakes, _| ch.try_recv(wakes))
    }

    /// Closes the pipe; the items still buffered can still be received.
    pub fn close(&self) {
        close(&self.shared, None);
    }

    /// True once the pipe is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.borrow().is_closed()
    }

    /// Items ready to be received: buffered ones plus those of blocked senders.
    pub fn len(&self) -> usize {
        self.shared.borrow().available()
    }

    /// True when [`len`](LocalRecver::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when both are ends of the same pipe.
    pub fn same_pipe(&self, other: &LocalRecver<T>) -> bool {
        Rc::ptr_eq(&self.shared, &other.shared)
    }

    fn withdraw_stream(&self) {
        let id = self.stream_slot.replace(0);
        if id != 0 {
            let mut slot = Some(id);
            with_chan(&*self.shared, |ch, wakes, _| ch.leave(&mut slot, wakes));
        }
    }
}

/// The items of the pipe until it is closed and drained; the rules of
/// [`Recver`](super::Recver)'s `Stream` apply.
impl<T> Stream for LocalRecver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        let mut id = match this.stream_slot.get() {
            0 => None,
            id => Some(id),
        };
        let r = with_chan(&*this.shared, |ch, wakes, _| {
            ch.poll_recv(&mut id, cx.waker(), wakes)
        });
        this.stream_slot.set(id.unwrap_or(0));
        match r {
            Some(Ok(item)) => Poll::Ready(Some(item)),
            Some(Err(_)) => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl<T> Clone for LocalSender<T> {
    fn clone(&self) -> Self {
        self.shared.borrow_mut().senders += 1;
        LocalSender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for LocalSender<T> {
    fn drop(&mut self) {
        with_chan(&*self.shared, |ch, wakes, drop_later| {
            ch.senders -= 1;
            if ch.senders == 0 {
                ch.close(None, wakes, drop_later);
            }
        });
    }
}

impl<T> Clone for LocalRecver<T> {
    fn clone(&self) -> Self {
        self.shared.borrow_mut().recvers += 1;
        LocalRecver {
            shared: self.shared.clone(),
            stream_slot: Cell::new(0),
        }
    }
}

impl<T> Drop for LocalRecver<T> {
    fn drop(&mut self) {
        let stream = self.stream_slot.replace(0);
        with_chan(&*self.shared, |ch, wakes, drop_later| {
            if stream != 0 {
                ch.leave(&mut Some(stream), wakes);
            }
            ch.recvers -= 1;
            if ch.recvers == 0 {
                ch.close(None, wakes, drop_later);
                ch.abandon_items(drop_later);
            }
        });
    }
}

fn debug_chan<T>(name: &str, shared: &RefCell<Chan<T>>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let ch = shared.borrow();
    f.debug_struct(name)
        .field("capacity", &ch.capacity())
        .field("buffered", &ch.buffered())
        .field("waiting_senders", &ch.waiting_senders())
        .field("waiting_recvers", &ch.waiting_recvers())
        .field("closed", &ch.is_closed())
        .finish()
}

impl<T> fmt::Debug for LocalSender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_chan("LocalSender", &self.shared, f)
    }
}

impl<T> fmt::Debug for LocalRecver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_chan("LocalRecver", &self.shared, f)
    }
}
