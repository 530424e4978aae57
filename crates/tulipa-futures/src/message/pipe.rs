//! The two ends of a pipe: [`Sender`] and [`Recver`], and the [`Pair`] that holds one of each.

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::cancel;
use crate::error::{Error, Result};
use crate::message::chan::{lock, Chan, OfferState, Start, Wakes};

pub(crate) type Shared<T> = Arc<Mutex<Chan<T>>>;

pub(crate) fn new_pipe<T>(cap: usize) -> (Sender<T>, Recver<T>) {
    let shared = Arc::new(Mutex::new(Chan::new(cap)));
    (
        Sender {
            shared: shared.clone(),
        },
        Recver {
            shared,
            stream_slot: AtomicU64::new(0),
        },
    )
}

/// Where a pipe's state lives: a `Mutex` for the pipes of this module, which cross threads, a
/// `RefCell` for the local pipes of [`local`](super::local). The state machine (`Chan`) and the
/// waits built on it (`SendGuard`, `RecvSlot`) are the same for both.
pub(crate) trait ChanCell<T> {
    /// Runs `f` with exclusive access to the state. `f` runs no user code.
    fn with<R>(&self, f: impl FnOnce(&mut Chan<T>) -> R) -> R;
}

impl<T> ChanCell<T> for Mutex<Chan<T>> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut Chan<T>) -> R) -> R {
        f(&mut lock(self))
    }
}

impl<T> ChanCell<T> for std::cell::RefCell<Chan<T>> {
    #[inline]
    fn with<R>(&self, f: impl FnOnce(&mut Chan<T>) -> R) -> R {
        // Never re-entered: no user code runs inside (wakers and drops come after).
        f(&mut self.borrow_mut())
    }
}

/// Runs `f` on the locked state, then wakes what it collected and drops what it set aside, in
/// that order and outside the lock.
#[inline]
pub(crate) fn with_chan<T, R, C: ChanCell<T> + ?Sized>(
    shared: &C,
    f: impl FnOnce(&mut Chan<T>, &mut Wakes, &mut Vec<T>) -> R,
) -> R {
    let mut wakes = Wakes::default();
    let mut drop_later = Vec::new();
    let r = shared.with(|ch| f(ch, &mut wakes, &mut drop_later));
    wakes.run();
    drop(drop_later);
    r
}

/// The sending end of a pipe (vanilla's `Sender`). Cheap to clone; every clone sends into the
/// same pipe, and blocked senders are served first come, first served.
///
/// Dropping the last `Sender` closes the pipe: the receivers get the items still in it, then
/// [`Error::Closed`].
pub struct Sender<T> {
    pub(crate) shared: Shared<T>,
}

/// The receiving end of a pipe (vanilla's `Recver`). Cheap to clone; every clone receives from
/// the same pipe, each item goes to exactly one of them, and waiting receivers are served first
/// come, first served.
///
/// Dropping the last `Recver` closes the pipe and drops the items buffered in it: senders get
/// [`Error::Closed`]. A `Recver` is also a [`Stream`] that ends when the pipe is closed and
/// drained.
pub struct Recver<T> {
    pub(crate) shared: Shared<T>,
    /// The waiter id of the pending `Stream::poll_next`, 0 for none.
    stream_slot: AtomicU64,
}

/// Why [`Sender::try_send`] failed, with the item it could not send.
pub struct TrySendError<T> {
    item: T,
    error: Error,
}

impl<T> TrySendError<T> {
    pub(crate) fn new(item: T, error: Error) -> Self {
        TrySendError { item, error }
    }

    /// The item that was not sent.
    pub fn into_inner(self) -> T {
        self.item
    }

    /// [`Error::WouldBlock`] (no room now) or [`Error::Closed`].
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// True when the pipe is closed.
    pub fn is_closed(&self) -> bool {
        self.error.is_closed()
    }
}

impl<T> fmt::Debug for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TrySendError")
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for TrySendError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "try_send failed: {}", self.error)
    }
}

impl<T> std::error::Error for TrySendError<T> {}

impl<T> From<TrySendError<T>> for Error {
    fn from(e: TrySendError<T>) -> Error {
        e.error
    }
}

impl<T> Sender<T> {
    /// Sends `item`, waiting until a receiver has taken it (a [`pipe`](super::pipe)), or until
    /// there is room in the buffer (a [`buffered`](super::buffered) pipe). Blocked senders are
    /// served in the order they started to wait.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the pipe is closed, before or while waiting: the item was not sent
    /// and is dropped (vanilla raises `Closed`). [`Error::Cancelled`] when the task is cancelled
    /// while waiting: the item was not sent and is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: `Err(Cancelled)` (or dropping the future) means the item was not sent and no
    /// receiver will see it. If a receiver took the item just before the cancellation arrived,
    /// the send returns `Ok(())` and the cancellation is delivered by the task's next Tulipa
    /// await instead, so a send never reports failure for an item that was delivered.
    ///
    /// # Examples
    ///
    /// ```
    /// use tulipa_futures::{message, run, spawn};
    ///
    /// run(async {
    ///     let (tx, rx) = message::pipe();
    ///     let sent = spawn(async move { tx.send("hi").await })?;
    ///     assert_eq!(rx.recv().await?, "hi");
    ///     sent.await?; // completes once the item was taken
    ///     Ok(())
    /// })?;
    /// # Ok::<(), tulipa_futures::Error>(())
    /// ```
    pub async fn send(&self, item: T) -> Result<()> {
        let mut guard = SendGuard {
            shared: &*self.shared,
            offer: None,
            item: std::marker::PhantomData,
        };
        let mut item = Some(item);
        poll_fn(|cx| guard.poll(&mut item, cx)).await
    }

    /// Sends `item` only if that needs no waiting: there is room in the buffer, or (on a
    /// rendezvous pipe) a receiver is waiting without an item reserved for it, and no other
    /// sender is queued ahead.
    ///
    /// An item sent to a waiting receiver that then gives up stays in the pipe for the next one.
    ///
    /// # Errors
    ///
    /// [`TrySendError`] with the item and [`Error::WouldBlock`] or [`Error::Closed`].
    pub fn try_send(&self, item: T) -> std::result::Result<(), TrySendError<T>> {
        with_chan(&*self.shared, |ch, wakes, _| ch.try_send(item, wakes))
            .map_err(|(item, error)| TrySendError { item, error })
    }

    /// Closes the pipe (from either end it is the same pipe): sends fail from now on, blocked
    /// senders get [`Error::Closed`] (their items are dropped), receivers get the items still
    /// buffered and then [`Error::Closed`].
    pub fn close(&self) {
        close(&self.shared, None);
    }

    /// Closes the pipe as [`close`](Sender::close) does, but receivers get `error` instead of
    /// [`Error::Closed`] once the buffer is drained (vanilla's sending of an exception down a
    /// pipe). Does nothing if the pipe is already closed.
    pub fn close_with(&self, error: Error) {
        close(&self.shared, Some(error));
    }

    /// True once the pipe is closed (items may still be buffered for the receivers).
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).is_closed()
    }

    /// Waits until the pipe is closed, for example to stop producing once every receiver is
    /// gone.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the task is cancelled while waiting.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it takes nothing.
    pub async fn closed(&self) -> Result<()> {
        let mut guard = ClosedGuard {
            shared: &self.shared,
            id: 0,
        };
        poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                guard.leave();
                return Poll::Ready(Err(e));
            }
            guard.poll(cx).map(Ok)
        })
        .await
    }

    /// True when both are ends of the same pipe.
    pub fn same_pipe(&self, other: &Sender<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// True when a `try_send` would not fail with `WouldBlock` (there is room, or the pipe is
    /// closed).
    pub fn is_ready(&self) -> bool {
        lock(&self.shared).send_ready()
    }
}

fn close<T>(shared: &Mutex<Chan<T>>, error: Option<Error>) {
    with_chan(shared, |ch, wakes, drop_later| {
        ch.close(error, wakes, drop_later);
    });
}

/// A pending send's offer, withdrawn if the send is dropped before it finished.
pub(crate) struct SendGuard<'a, T, C: ChanCell<T> + ?Sized = Mutex<Chan<T>>> {
    pub(crate) shared: &'a C,
    pub(crate) offer: Option<u64>,
    pub(crate) item: std::marker::PhantomData<fn(T)>,
}

impl<T, C: ChanCell<T> + ?Sized> SendGuard<'_, T, C> {
    pub(crate) fn poll(&mut self, item: &mut Option<T>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let Some(id) = self.offer else {
            if let Some(e) = cancel::take_cancellation() {
                return Poll::Ready(Err(e));
            }
            let Some(it) = item.take() else {
                return Poll::Ready(Ok(()));
            };
            return match with_chan(self.shared, |ch, wakes, _| {
                ch.start_send(it, cx.waker(), wakes)
            }) {
                Start::Done => Poll::Ready(Ok(())),
                Start::Offered(id) => {
                    self.offer = Some(id);
                    Poll::Pending
                }
                Start::Closed(it) => {
                    drop(it);
                    Poll::Ready(Err(Error::Closed))
                }
            };
        };
        // Whether the item was delivered is checked before the cancellation (see `send`).
        let state = with_chan(self.shared, |ch, wakes, _| {
            match ch.poll_offer(id, Some(cx.waker()), false, wakes) {
                OfferState::Waiting => match cancel::take_cancellation() {
                    Some(e) => (ch.poll_offer(id, None, true, wakes), Some(e)),
                    None => (OfferState::Waiting, None),
                },
                other => (other, None),
            }
        });
        match state {
            (OfferState::Delivered, _) => {
                self.offer = None;
                Poll::Ready(Ok(()))
            }
            (OfferState::Waiting, _) => Poll::Pending,
            (OfferState::Gone(it), cancelled) => {
                self.offer = None;
                drop(it);
                Poll::Ready(Err(cancelled.unwrap_or(Error::Closed)))
            }
        }
    }
}

impl<T, C: ChanCell<T> + ?Sized> Drop for SendGuard<'_, T, C> {
    fn drop(&mut self) {
        if let Some(id) = self.offer.take() {
            let state = with_chan(self.shared, |ch, wakes, _| {
                ch.poll_offer(id, None, true, wakes)
            });
            drop(state);
        }
    }
}

/// A `Sender::closed` registration, removed however the wait ends.
struct ClosedGuard<'a, T> {
    shared: &'a Mutex<Chan<T>>,
    id: u64,
}

impl<T> ClosedGuard<'_, T> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut ch = lock(self.shared);
        if ch.is_closed() {
            self.id = 0;
            return Poll::Ready(());
        }
        if self.id == 0 {
            self.id = ch.next_id();
        }
        ch.on_close.register(self.id, cx.waker());
        Poll::Pending
    }

    fn leave(&mut self) {
        if self.id != 0 {
            lock(self.shared).on_close.remove(self.id);
            self.id = 0;
        }
    }
}

impl<T> Drop for ClosedGuard<'_, T> {
    fn drop(&mut self) {
        self.leave();
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        lock(&self.shared).senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        with_chan(&*self.shared, |ch, wakes, drop_later| {
            ch.senders -= 1;
            if ch.senders == 0 {
                ch.close(None, wakes, drop_later);
            }
        });
    }
}

impl<T> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_chan("Sender", &self.shared, f)
    }
}

fn debug_chan<T>(name: &str, shared: &Mutex<Chan<T>>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let ch = lock(shared);
    f.debug_struct(name)
        .field("capacity", &ch.capacity())
        .field("buffered", &ch.buffered())
        .field("waiting_senders", &ch.waiting_senders())
        .field("waiting_recvers", &ch.waiting_recvers())
        .field("senders", &ch.senders)
        .field("recvers", &ch.recvers)
        .field("closed", &ch.is_closed())
        .finish()
}

/// A receiver's place in the waiter queue, left however the wait ends (also on drop).
pub(crate) struct RecvSlot<'a, T, C: ChanCell<T> + ?Sized = Mutex<Chan<T>>> {
    pub(crate) shared: &'a C,
    pub(crate) id: Option<u64>,
    pub(crate) item: std::marker::PhantomData<fn() -> T>,
}

impl<T, C: ChanCell<T> + ?Sized> RecvSlot<'_, T, C> {
    /// One attempt; see `Chan::poll_recv`. Does not look at cancellation.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let id = &mut self.id;
        match with_chan(self.shared, |ch, wakes, _| {
            ch.poll_recv(id, cx.waker(), wakes)
        }) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    pub(crate) fn leave(&mut self) {
        if self.id.is_some() {
            let id = &mut self.id;
            with_chan(self.shared, |ch, wakes, _| ch.leave(id, wakes));
        }
    }
}

impl<T, C: ChanCell<T> + ?Sized> Drop for RecvSlot<'_, T, C> {
    fn drop(&mut self) {
        self.leave();
    }
}

impl<T> Recver<T> {
    /// Receives the next item, waiting until one is sent. Waiting receivers are served in the
    /// order they started to wait.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the pipe is closed and every buffered item has been received (or
    /// the error given to [`Sender::close_with`]); [`Error::Cancelled`] when the task is
    /// cancelled while waiting.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled receive has taken nothing, and an item that had been reserved
    /// for it goes to the next waiting receiver.
    ///
    /// # Examples
    ///
    /// ```
    /// use tulipa_futures::{message, run, Error};
    ///
    /// run(async {
    ///     let (tx, rx) = message::buffered(2);
    ///     tx.send(1).await?;
    ///     tx.send(2).await?;
    ///     drop(tx); // closes the pipe; the buffered items are still delivered
    ///     assert_eq!(rx.recv().await?, 1);
    ///     assert_eq!(rx.recv().await?, 2);
    ///     assert!(matches!(rx.recv().await, Err(Error::Closed)));
    ///     Ok(())
    /// })?;
    /// # Ok::<(), Error>(())
    /// ```
    pub async fn recv(&self) -> Result<T> {
        self.withdraw_stream();
        let mut slot = RecvSlot {
            shared: &*self.shared,
            id: None,
            item: std::marker::PhantomData,
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

    /// Receives an item only if one is there for the taking (not reserved for a receiver that
    /// waits).
    ///
    /// # Errors
    ///
    /// [`Error::WouldBlock`] when there is none; [`Error::Closed`] (or the `close_with` error)
    /// when the pipe is closed and drained.
    pub fn try_recv(&self) -> Result<T> {
        self.withdraw_stream();
        with_chan(&*self.shared, |ch, wakes, _| ch.try_recv(wakes))
    }

    /// Closes the pipe; see [`Sender::close`]. The items still buffered can still be received.
    pub fn close(&self) {
        close(&self.shared, None);
    }

    /// True once the pipe is closed (items may still be buffered; [`recv`](Recver::recv) returns
    /// them before [`Error::Closed`]).
    pub fn is_closed(&self) -> bool {
        lock(&self.shared).is_closed()
    }

    /// Items ready to be received: buffered ones plus those of blocked senders.
    pub fn len(&self) -> usize {
        lock(&self.shared).available()
    }

    /// True when [`len`](Recver::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when both are ends of the same pipe.
    pub fn same_pipe(&self, other: &Recver<T>) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Gives up a waiter place left by a `Stream::poll_next` that returned `Pending`.
    fn withdraw_stream(&self) {
        let id = self.stream_slot.swap(0, Ordering::AcqRel);
        if id != 0 {
            let mut slot = Some(id);
            with_chan(&*self.shared, |ch, wakes, _| ch.leave(&mut slot, wakes));
        }
    }
}

/// The items of the pipe until it is closed and drained.
///
/// A `poll_next` that returns `Pending` keeps a place in the receivers' queue (and possibly an
/// item reserved for it) until the stream is polled again, [`recv`](Recver::recv) or
/// [`try_recv`](Recver::try_recv) is called on this `Recver`, or it is dropped; a stream that is
/// no longer polled should be dropped so the next receiver gets its turn. `poll_next` does not
/// deliver task cancellation (its item has no room for an error); the Tulipa awaitable driving
/// the stream does (for example [`Select::next`](crate::select::Select::next)). The stream also
/// ends, rather than yields an error, when the pipe was closed with
/// [`close_with`](Sender::close_with).
impl<T> Stream for Recver<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let this = self.get_mut();
        let mut id = match *this.stream_slot.get_mut() {
            0 => None,
            id => Some(id),
        };
        let r = with_chan(&*this.shared, |ch, wakes, _| {
            ch.poll_recv(&mut id, cx.waker(), wakes)
        });
        *this.stream_slot.get_mut() = id.unwrap_or(0);
        match r {
            Some(Ok(item)) => Poll::Ready(Some(item)),
            Some(Err(_)) => Poll::Ready(None),
            None => Poll::Pending,
        }
    }
}

impl<T> Clone for Recver<T> {
    fn clone(&self) -> Self {
        lock(&self.shared).recvers += 1;
        Recver {
            shared: self.shared.clone(),
            stream_slot: AtomicU64::new(0),
        }
    }
}

impl<T> Drop for Recver<T> {
    fn drop(&mut self) {
        let stream = std::mem::replace(self.stream_slot.get_mut(), 0);
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

impl<T> fmt::Debug for Recver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_chan("Recver", &self.shared, f)
    }
}

/// A [`Sender`] and a [`Recver`] held together (vanilla's `Pair`), possibly of two different
/// pipes and item types: what [`threads::spawn`](crate::threads::spawn) hands each side.
pub struct Pair<S, R = S> {
    /// The sending end.
    pub sender: Sender<S>,
    /// The receiving end.
    pub recver: Recver<R>,
}

impl<S, R> Pair<S, R> {
    /// Holds `sender` and `recver` together.
    pub fn new(sender: Sender<S>, recver: Recver<R>) -> Self {
        Pair { sender, recver }
    }

    /// [`Sender::send`] on the sending end.
    ///
    /// # Errors
    ///
    /// As [`Sender::send`].
    pub async fn send(&self, item: S) -> Result<()> {
        self.sender.send(item).await
    }

    /// [`Recver::recv`] on the receiving end.
    ///
    /// # Errors
    ///
    /// As [`Recver::recv`].
    pub async fn recv(&self) -> Result<R> {
        self.recver.recv().await
    }

    /// [`Sender::try_send`] on the sending end.
    ///
    /// # Errors
    ///
    /// As [`Sender::try_send`].
    pub fn try_send(&self, item: S) -> std::result::Result<(), TrySendError<S>> {
        self.sender.try_send(item)
    }

    /// [`Recver::try_recv`] on the receiving end.
    ///
    /// # Errors
    ///
    /// As [`Recver::try_recv`].
    pub fn try_recv(&self) -> Result<R> {
        self.recver.try_recv()
    }

    /// Closes both ends' pipes (vanilla's `Pair.close`).
    pub fn close(&self) {
        self.sender.close();
        self.recver.close();
    }

    /// The two ends.
    pub fn split(self) -> (Sender<S>, Recver<R>) {
        (self.sender, self.recver)
    }
}

impl<S, R> From<(Sender<S>, Recver<R>)> for Pair<S, R> {
    fn from((sender, recver): (Sender<S>, Recver<R>)) -> Self {
        Pair { sender, recver }
    }
}

impl<S, R> fmt::Debug for Pair<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("sender", &self.sender)
            .field("recver", &self.recver)
            .finish()
    }
}
