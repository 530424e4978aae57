//! vanilla's pipe conveniences: [`producer`], [`pulse`], and its [`spawn_later`].

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tulipa_loop::EventLoop;

use crate::error::Result;
use crate::message::pipe::{new_pipe, Recver, Sender};
use crate::sleep::{sleep, sleep_until};
use crate::task::{spawn, Task};

/// Spawns `f(sender)` as a task on the running loop and returns the recver of its rendezvous
/// pipe (vanilla's `h.producer`).
///
/// The pipe closes when the producer is done and its sender is gone. When `f` fails, the pipe
/// is closed with that error, which the receiver gets after the items sent before it; a producer
/// that fails because the pipe was closed (every recver gone), or that was cancelled, just
/// closes it.
///
/// # Errors
///
/// [`Error::Loop`](crate::Error::Loop) when no loop runs on this thread.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run};
///
/// run(async {
///     let counter = message::producer(|tx| async move {
///         for i in 0..3 { tx.send(i).await?; }
///         Ok(())
///     })?;
///     let mut got = Vec::new();
///     while let Ok(i) = counter.recv().await { got.push(i); }
///     assert_eq!(got, [0, 1, 2]);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn producer<T, F, Fut>(f: F) -> Result<Recver<T>>
where
    T: 'static,
    F: FnOnce(Sender<T>) -> Fut,
    Fut: Future<Output = Result<()>> + 'static,
{
    let (tx, rx) = new_pipe(0);
    let keep = tx.clone();
    let work = f(tx);
    let task = spawn(async move {
        match work.await {
            Err(e) if !e.is_closed() && !e.is_cancelled() => keep.close_with(e),
            _ => drop(keep),
        }
        Ok(())
    })?;
    drop(task);
    Ok(rx)
}

/// A recver that gets a clone of `item` every `interval` on the running loop's clock (vanilla's
/// `h.pulse`), until its pipe is closed: dropping the last recver stops the timer task at once.
///
/// The pipe is a rendezvous, so a tick waits for a receiver. Ticks are due at whole multiples of
/// `interval` from now. A receiver late by a period or more gets no burst of missed ticks: it
/// gets the one tick that waited for it, and the next comes a full `interval` later.
///
/// # Precision
///
/// As [`sleep_until`]: never early. Under a virtual-time loop no real time passes.
///
/// # Errors
///
/// [`Error::Loop`](crate::Error::Loop) when no loop runs on this thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tulipa_futures::{message, run_until_complete};
/// use tulipa_loop::EventLoop;
///
/// let lp = EventLoop::new_virtual()?;
/// let start = lp.time();
/// let lp2 = lp.clone();
/// let elapsed = run_until_complete(&lp, async move {
///     let ticks = message::pulse(Duration::from_secs(60), "tick")?;
///     for _ in 0..3 { assert_eq!(ticks.recv().await?, "tick"); }
///     Ok(lp2.time() - start)
/// })?;
/// assert_eq!(elapsed, Duration::from_secs(180));
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn pulse<T: Clone + 'static>(interval: Duration, item: T) -> Result<Recver<T>> {
    // Fails early, outside the task, when no loop runs here.
    let start = EventLoop::running()?.time();
    producer(move |tx| async move {
        let mut due = start + interval;
        loop {
            if !until_or_closed(&tx, sleep_until(due)).await? {
                return Ok(());
            }
            tx.send(item.clone()).await?;
            due += interval;
            let now = EventLoop::running()?.time();
            if due <= now {
                // Late by a period or more: drop the missed ticks rather than burst.
                due = now + interval;
            }
        }
    })
}

/// Waits for `fut`; `Ok(false)` if `tx`'s pipe closes first.
async fn until_or_closed<T>(tx: &Sender<T>, fut: impl Future<Output = Result<()>>) -> Result<bool> {
    let mut fut = pin!(fut);
    let mut closed = pin!(tx.closed());
    poll_fn(|cx| {
        if let Poll::Ready(r) = fut.as_mut().poll(cx) {
            return Poll::Ready(r.map(|()| true));
        }
        match closed.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|()| false)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Spawns `fut` as a task on the running loop after `delay` (vanilla's `h.spawn_later`). The
/// task exists at once (it can be cancelled while it waits); `fut` starts when the delay is over.
///
/// # Errors
///
/// [`Error::Loop`](crate::Error::Loop) when no loop runs on this thread.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tulipa_futures::{message, run};
///
/// let v = run(async {
///     message::spawn_later(Duration::from_millis(1), async { Ok(5) })?.await
/// })?;
/// assert_eq!(v, 5);
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[track_caller]
pub fn spawn_later<F, T>(delay: Duration, fut: F) -> Result<Task<T>>
where
    F: Future<Output = Result<T>> + 'static,
    T: 'static,
{
    spawn(async move {
        sleep(delay).await?;
        fut.await
    })
}
