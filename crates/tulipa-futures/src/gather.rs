//! `gather` and `shield` (asyncio's `tasks.gather`, `tasks.shield`).

use std::cell::Cell;
use std::panic::Location;
use std::rc::Rc;
use std::sync::Arc;

use tulipa_loop::EventLoop;

use crate::error::{Cancelled, Error, Result};
use crate::future::Future;

/// Runs the futures (or tasks) concurrently and returns a future of all their values, in the
/// order given (asyncio's `gather`).
///
/// The first child that fails (or is cancelled) fails the gather at once with its error; the other
/// children go on. Cancelling the returned future cancels every child that is not done; the
/// gather then ends cancelled once they have finished.
///
/// # Errors
///
/// [`Error::Loop`] when `fs` is empty and no loop runs on this thread.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{gather, run, spawn};
///
/// let v = run(async {
///     let a = spawn(async { Ok(1) })?;
///     let b = spawn(async { Ok(2) })?;
///     gather([a, b])?.await
/// })?;
/// assert_eq!(v, [1, 2]);
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[track_caller]
pub fn gather<T: 'static>(
    fs: impl IntoIterator<Item = impl Into<Future<T>>>,
) -> Result<Future<Vec<T>>> {
    let outer = gather_inner(fs, false, Location::caller())?;
    // Present `Vec<Result<T>>` as `Vec<T>`: with `return_exceptions` off every slot is `Ok`.
    let lp = outer.get_loop().clone();
    let plain: Future<Vec<T>> = Future::with_custom_cancel(
        lp,
        {
            let o = outer.clone();
            move |msg| o.cancel(msg.as_deref())
        },
        Location::caller(),
    );
    let p2 = plain.clone();
    outer.add_done_callback(move |o| {
        let r = o
            .take_result()
            .and_then(|v| v.into_iter().collect::<Result<Vec<T>>>());
        let _ = match r {
            Ok(v) => p2.set_result(v),
            Err(e) => p2.set_exception(e),
        };
    });
    Ok(plain)
}

/// As [`gather`], but errors and cancellations of children are returned in their slots instead of
/// failing the gather (asyncio's `return_exceptions=True`).
///
/// # Errors
///
/// As [`gather`].
#[track_caller]
pub fn gather_settled<T: 'static>(
    fs: impl IntoIterator<Item = impl Into<Future<T>>>,
) -> Result<Future<Vec<Result<T>>>> {
    gather_inner(fs, true, Location::caller())
}

fn gather_inner<T: 'static>(
    fs: impl IntoIterator<Item = impl Into<Future<T>>>,
    return_exceptions: bool,
    at: &'static std::panic::Location<'static>,
) -> Result<Future<Vec<Result<T>>>> {
    let children: Vec<Future<T>> = fs.into_iter().map(Into::into).collect();
    let lp = match children.first() {
        Some(c) => c.get_loop().clone(),
        None => EventLoop::running()?,
    };
    let cancel_requested = Rc::new(Cell::new(false));
    let outer: Future<Vec<Result<T>>> = Future::with_custom_cancel(
        lp,
        {
            let children = children.clone();
            let requested = cancel_requested.clone();
            move |msg: Option<Arc<str>>| {
                let mut any = false;
                for c in &children {
                    any |= c.cancel(msg.as_deref());
                }
                if any {
                    requested.set(true);
                }
                any
            }
        },
        at,
    );
    if children.is_empty() {
        let _ = outer.set_result(Vec::new());
        return Ok(outer);
    }
    let finished = Rc::new(Cell::new(0usize));
    let total = children.len();
    for child in &children {
        let (outer, all, finished, requested) = (
            outer.clone(),
            children.clone(),
            finished.clone(),
            cancel_requested.clone(),
        );
        child.add_done_callback(move |child| {
            finished.set(finished.get() + 1);
            if outer.done() {
                // Mark a late error as seen: the gather already reported the first one.
                let _ = child.exception();
                return;
            }
            if !return_exceptions {
                if let Err(e) = child.exception() {
                    let _ = outer.set_exception(e);
                    return;
                }
                if let Ok(Some(e)) = child.exception() {
                    let _ = outer.set_exception(e);
                    return;
                }
            }
            if finished.get() == total {
                if requested.get() {
                    let _ = outer.set_exception(Error::Cancelled(Cancelled::default()));
                    return;
                }
                let results = all.iter().map(Future::take_result).collect();
                let _ = outer.set_result(results);
            }
        });
    }
    Ok(outer)
}

/// Protects `fut` from cancellation (asyncio's `shield`): the returned future can be cancelled
/// (and is, when the task awaiting it is cancelled) while `fut` goes on. When `fut` finishes and
/// the shield was not cancelled, the shield gets its outcome (the value is moved).
#[track_caller]
pub fn shield<T: 'static>(fut: impl Into<Future<T>>) -> Future<T> {
    let inner = fut.into();
    if inner.done() {
        return inner;
    }
    let outer: Future<T> = Future::new(inner.get_loop());
    let o = outer.clone();
    inner.add_done_callback(move |inner| {
        if o.cancelled() {
            // Nobody will read it through the shield; an error is still reported if unread.
            return;
        }
        let _ = match inner.take_result() {
            Ok(v) => o.set_result(v),
            Err(e) => o.set_exception(e),
        };
    });
    outer
}
