//! vanilla's `select`: wait on several pipes at once.
//!
//! [`select`] waits until one of several [`Recver`]s has an item and takes it from that one only.
//! [`select_send`] is the sending side: it puts one item into whichever of several [`Sender`]s can
//! take it first without waiting.
//!
//! vanilla's `select` mixes both kinds of ends in one list and, for a sender, only reports that a
//! receiver is ready, leaving the send to the caller. With several tasks and threads sharing a
//! pipe that readiness could be gone by the time the caller sends, so here the item goes in as
//! part of the select itself, under the pipe's lock: a winning `select_send` has sent.

use std::cell::Cell;
use std::future::poll_fn;
use std::sync::Mutex;
use std::task::Poll;

use crate::cancel;
use crate::error::{Error, Result};
use crate::message::chan::{lock, Chan};
use crate::message::pipe::{with_chan, RecvSlot, Recver, Sender};

thread_local! {
    /// Where the next select on this thread starts looking, so no pipe is always first.
    static START: Cell<usize> = const { Cell::new(0) };
}

fn next_start(n: usize) -> usize {
    START.with(|s| {
        let v = s.get();
        s.set(v.wrapping_add(1));
        v % n
    })
}

/// Waits until one of `recvers` has an item, takes it, and returns it with the index of its
/// recver (vanilla's `select` over recvers).
///
/// Fair: each select starts looking at a different recver (rotating), so a busy pipe does not
/// starve the others. A recver whose pipe is closed and drained is skipped.
///
/// # Errors
///
/// [`Error::Closed`] when every pipe is closed and drained (or the first such pipe's
/// `close_with` error); [`Error::InvalidArgument`] for an empty slice; [`Error::Cancelled`]
/// when the task is cancelled while waiting.
///
/// # Cancel safety
///
/// Cancel-safe: an item is taken only from the recver that wins, and only when `select`
/// returns it. Items reserved for the select by the other pipes go to their next receivers.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run, spawn};
///
/// run(async {
///     let (tx_a, rx_a) = message::pipe::<&str>();
///     let (tx_b, rx_b) = message::pipe::<&str>();
///     let _keep_a_open = tx_a;
///     spawn(async move { tx_b.send("from b").await })?;
///     let (index, item) = message::select(&[&rx_a, &rx_b]).await?;
///     assert_eq!((index, item), (1, "from b"));
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub async fn select<T>(recvers: &[&Recver<T>]) -> Result<(usize, T)> {
    let n = recvers.len();
    if n == 0 {
        return Err(Error::InvalidArgument("select over no recver"));
    }
    let start = next_start(n);
    let mut slots: Vec<RecvSlot<'_, T>> = recvers
        .iter()
        .map(|r| RecvSlot {
            shared: &*r.shared,
            id: None,
            item: std::marker::PhantomData,
        })
        .collect();
    let mut done: Vec<Option<Error>> = vec![None; n];
    poll_fn(|cx| {
        if let Some(e) = cancel::take_cancellation() {
            slots.iter_mut().for_each(RecvSlot::leave);
            return Poll::Ready(Err(e));
        }
        for k in 0..n {
            let i = (start + k) % n;
            if done[i].is_some() {
                continue;
            }
            match slots[i].poll(cx) {
                Poll::Ready(Ok(item)) => {
                    // Leave the other pipes; what they reserved for us goes to their next waiter.
                    slots.iter_mut().for_each(RecvSlot::leave);
                    return Poll::Ready(Ok((i, item)));
                }
                Poll::Ready(Err(e)) => done[i] = Some(e),
                Poll::Pending => {}
            }
        }
        if done.iter().all(Option::is_some) {
            let first = done.iter_mut().find_map(Option::take);
            return Poll::Ready(Err(first.unwrap_or(Error::Closed)));
        }
        Poll::Pending
    })
    .await
}

/// Sends `item` into whichever of `senders` can take it first without waiting, and returns the
/// index of that sender (the sending half of vanilla's `select`).
///
/// A sender can take an item when its pipe has room in its buffer, or (a rendezvous pipe) a
/// receiver waits for an item and none is reserved for it yet, with no other sender queued
/// ahead: exactly when [`Sender::try_send`] succeeds. The item goes in as part of the select, so
/// when it returns `Ok` the item was sent. Fair as [`select`]. A closed pipe is skipped.
///
/// # Errors
///
/// [`Error::Closed`] when every pipe is closed (the item is dropped);
/// [`Error::InvalidArgument`] for an empty slice; [`Error::Cancelled`] when the task is
/// cancelled while waiting (the item is dropped, it was not sent).
///
/// # Cancel safety
///
/// Cancel-safe: a cancelled `select_send` has sent nothing. It holds no place in any queue, so
/// it cannot keep an item or a receiver from anyone.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run};
///
/// run(async {
///     let (full_tx, _full_rx) = message::buffered::<u32>(1);
///     full_tx.send(0).await?; // no more room here
///     let (tx, rx) = message::buffered::<u32>(1);
///     let index = message::select_send(&[&full_tx, &tx], 7).await?;
///     assert_eq!(index, 1);
///     assert_eq!(rx.recv().await?, 7);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub async fn select_send<T>(senders: &[&Sender<T>], item: T) -> Result<usize> {
    let n = senders.len();
    if n == 0 {
        return Err(Error::InvalidArgument("select_send over no sender"));
    }
    let start = next_start(n);
    let mut watch = RoomWatch {
        senders,
        ids: vec![0; n],
    };
    let mut item = Some(item);
    poll_fn(|cx| {
        if let Some(e) = cancel::take_cancellation() {
            watch.leave();
            return Poll::Ready(Err(e));
        }
        let mut open = 0;
        for k in 0..n {
            let i = (start + k) % n;
            let Some(it) = item.take() else {
                return Poll::Ready(Err(Error::InvalidState(
                    "select_send polled after completion",
                )));
            };
            let id = &mut watch.ids[i];
            let r = with_chan(&*senders[i].shared, |ch, wakes, _| {
                match ch.try_send(it, wakes) {
                    Ok(()) => Ok(()),
                    Err((it, e)) => {
                        if !e.is_closed() {
                            if *id == 0 {
                                *id = ch.next_id();
                            }
                            ch.room.register(*id, cx.waker());
                        }
                        Err((it, e))
                    }
                }
            });
            match r {
                Ok(()) => {
                    watch.leave();
                    return Poll::Ready(Ok(i));
                }
                Err((it, e)) => {
                    item = Some(it);
                    if !e.is_closed() {
                        open += 1;
                    }
                }
            }
        }
        if open == 0 {
            watch.leave();
            return Poll::Ready(Err(Error::Closed));
        }
        Poll::Pending
    })
    .await
}

/// `select_send`'s registrations with each pipe's room watchers, removed however it ends.
struct RoomWatch<'a, T> {
    senders: &'a [&'a Sender<T>],
    ids: Vec<u64>,
}

impl<T> RoomWatch<'_, T> {
    fn leave(&mut self) {
        for (s, id) in self.senders.iter().zip(self.ids.iter_mut()) {
            if *id != 0 {
                let shared: &Mutex<Chan<T>> = &s.shared;
                lock(shared).room.remove(*id);
                *id = 0;
            }
        }
    }
}

impl<T> Drop for RoomWatch<'_, T> {
    fn drop(&mut self) {
        self.leave();
    }
}
