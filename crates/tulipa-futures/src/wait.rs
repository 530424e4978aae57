//! `wait` and `as_completed` (PEP 3156 "Waiting for Multiple Coroutines").

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tulipa_loop::{EventLoop, TimerHandle};

use crate::cancel;
use crate::error::{Error, Result};
use crate::future::{CallbackId, Future};
use crate::task::TaskRef;

/// When [`wait`] returns (asyncio's `FIRST_COMPLETED`, `FIRST_EXCEPTION`, `ALL_COMPLETED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnWhen {
    /// As soon as any future is done.
    FirstCompleted,
    /// As soon as any future fails (cancellation does not count), or all are done.
    FirstException,
    /// When all futures are done.
    AllCompleted,
}

/// Futures that are done and futures that are still pending, as [`wait`] returns them.
pub type DonePending<T> = (Vec<Future<T>>, Vec<Future<T>>);

fn dedup<T>(fs: impl IntoIterator<Item = impl Into<Future<T>>>) -> Vec<Future<T>> {
    let mut out: Vec<Future<T>> = Vec::new();
    for f in fs {
        let f = f.into();
        if !out.iter().any(|g| g.ptr_eq(&f)) {
            out.push(f);
        }
    }
    out
}

fn satisfied<T>(fs: &[Future<T>], when: ReturnWhen) -> bool {
    match when {
        ReturnWhen::FirstCompleted => fs.iter().any(Future::done),
        ReturnWhen::AllCompleted => fs.iter().all(Future::done),
        ReturnWhen::FirstException => {
            fs.iter().all(Future::done) || fs.iter().any(|f| f.core().has_error())
        }
    }
}

/// Removes done callbacks and the timer on every exit path, including drop.
struct Registrations<T: 'static> {
    callbacks: Vec<(Future<T>, CallbackId)>,
    timer: Option<TimerHandle>,
}

impl<T: 'static> Registrations<T> {
    /// Removes the done callbacks from every future and cancels the timer.
    fn remove_all(&mut self) {
        for (f, id) in self.callbacks.drain(..) {
            f.remove_done_callback(id);
        }
        if let Some(t) = self.timer.take() {
            t.cancel();
        }
    }
}

impl<T: 'static> Drop for Registrations<T> {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// Waits for the futures (or tasks) until `return_when` holds or `timeout` passes, and returns
/// `(done, pending)`. Pending futures are **not** cancelled. Duplicates count once.
///
/// # Cancel safety
///
/// Cancel-safe: the futures are not touched; the wait's own callbacks are removed.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for an empty set; [`Error::Cancelled`] when the waiting task is
/// cancelled. A timeout is not an error: the pending futures come back in `pending`.
pub async fn wait<T: 'static>(
    fs: impl IntoIterator<Item = impl Into<Future<T>>>,
    timeout: Option<Duration>,
    return_when: ReturnWhen,
) -> Result<DonePending<T>> {
    let fs = dedup(fs);
    let Some(first) = fs.first() else {
        return Err(Error::InvalidArgument("wait() needs at least one future"));
    };
    let lp = first.get_loop().clone();
    if !satisfied(&fs, return_when) && timeout != Some(Duration::ZERO) {
        let waiter: Future<()> = Future::new(&lp);
        let pending = Rc::new(Cell::new(fs.iter().filter(|f| !f.done()).count()));
        let mut regs = Registrations {
            callbacks: Vec::new(),
            timer: None,
        };
        for f in fs.iter().filter(|f| !f.done()) {
            let (w, pending) = (waiter.clone(), pending.clone());
            let id = f.add_done_callback(move |f| {
                pending.set(pending.get() - 1);
                let fire = pending.get() == 0
                    || return_when == ReturnWhen::FirstCompleted
                    || (return_when == ReturnWhen::FirstException && f.core().has_error());
                if fire {
                    let _ = w.set_result(());
                }
            })?;
            regs.callbacks.push((f.clone(), id));
        }
        if let Some(d) = timeout {
            let w = waiter.clone();
            regs.timer = Some(lp.call_later(d, move || {
                let _ = w.set_result(());
            })?);
        }
        waiter.await?;
        drop(regs);
    } else if let Some(e) = cancel::take_cancellation() {
        return Err(e);
    }
    Ok(fs.into_iter().partition(Future::done))
}

/// Waits until `task` is done, without touching its outcome and without cancelling it when the
/// waiter is cancelled (used when a loop shuts down).
pub(crate) async fn until_done(task: &TaskRef) -> Result<()> {
    poll_fn(|cx| {
        if let Some(e) = cancel::take_cancellation() {
            return Poll::Ready(Err(e));
        }
        if task.poll_done(cx) {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    })
    .await
}

struct Shared<T: 'static> {
    done: RefCell<VecDeque<Future<T>>>,
    waker: RefCell<Option<Waker>>,
    timed_out: Cell<bool>,
}

impl<T: 'static> Shared<T> {
    fn wake(&self) {
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

/// Yields futures in the order they complete (asyncio's `as_completed`); see [`as_completed`].
///
/// It is a [`futures_core::Stream`] of `Result<Future<T>>`, and has an inherent
/// [`next`](AsCompleted::next).
pub struct AsCompleted<T: 'static> {
    shared: Rc<Shared<T>>,
    left: usize,
    regs: Registrations<T>,
}

/// Returns a stream that yields each future (or task) as it completes, in completion order.
/// After `timeout`, it yields one `Err(Timeout)` and ends.
///
/// # Errors
///
/// [`Error::Loop`] when the timeout cannot be scheduled (the loop is closed).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use tulipa_futures::{as_completed, run, sleep, spawn};
///
/// run(async {
///     let slow = spawn(async { sleep(Duration::from_millis(20)).await?; Ok("slow") })?;
///     let fast = spawn(async { sleep(Duration::from_millis(1)).await?; Ok("fast") })?;
///     let mut order = Vec::new();
///     let mut done = as_completed([slow, fast], None)?;
///     while let Some(f) = done.next().await {
///         order.push(f?.take_result()?);
///     }
///     assert_eq!(order, ["fast", "slow"]);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn as_completed<T: 'static>(
    fs: impl IntoIterator<Item = impl Into<Future<T>>>,
    timeout: Option<Duration>,
) -> Result<AsCompleted<T>> {
    let fs = dedup(fs);
    let shared = Rc::new(Shared {
        done: RefCell::new(VecDeque::new()),
        waker: RefCell::new(None),
        timed_out: Cell::new(false),
    });
    let mut regs = Registrations {
        callbacks: Vec::new(),
        timer: None,
    };
    for f in &fs {
        let s = shared.clone();
        let id = f.add_done_callback(move |f| {
            s.done.borrow_mut().push_back(f.clone());
            s.wake();
        })?;
        regs.callbacks.push((f.clone(), id));
    }
    if let (Some(d), Some(f)) = (timeout, fs.first()) {
        let lp: EventLoop = f.get_loop().clone();
        let s = shared.clone();
        regs.timer = Some(lp.call_later(d, move || {
            s.timed_out.set(true);
            s.wake();
        })?);
    }
    Ok(AsCompleted {
        shared,
        left: fs.len(),
        regs,
    })
}

impl<T: 'static> AsCompleted<T> {
    /// The next completed future; `Some(Err(Timeout))` once the timeout passed; `None` at the end.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancellation is returned as `Some(Err(Cancelled))` and no future is lost.
    pub async fn next(&mut self) -> Option<Result<Future<T>>> {
        poll_fn(|cx| self.poll_next_item(cx)).await
    }

    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Future<T>>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if let Some(e) = cancel::take_cancellation() {
            return Poll::Ready(Some(Err(e)));
        }
        if let Some(f) = self.shared.done.borrow_mut().pop_front() {
            self.left -= 1;
            return Poll::Ready(Some(Ok(f)));
        }
        if self.shared.timed_out.get() {
            self.left = 0;
            // The futures still pending keep running; they must not keep our callbacks.
            self.regs.remove_all();
            return Poll::Ready(Some(Err(Error::Timeout)));
        }
        *self.shared.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<T: 'static> futures_core::Stream for AsCompleted<T> {
    type Item = Result<Future<T>>;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_item(cx)
    }
}

impl<T: 'static> fmt::Debug for AsCompleted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AsCompleted")
            .field("left", &self.left)
            .field("ready", &self.shared.done.borrow().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_completed_timeout_leaves_no_callback_on_the_pending_futures() {
        let lp = EventLoop::new_virtual().unwrap();
        let never: Future<u32> = Future::new(&lp);
        let probe = never.clone();
        let task = crate::spawn_on(&lp, async move {
            let mut it = as_completed([never], Some(Duration::from_millis(1)))?;
            assert!(matches!(it.next().await, Some(Err(Error::Timeout))));
            Ok(it)
        })
        .unwrap();
        let it = lp.run_until_complete(task).unwrap().unwrap();
        // The iterator is still alive: only the timeout path can have removed the callback.
        assert_eq!(probe.callback_count(), 0);
        drop(it);
        lp.close().unwrap();
    }
}
