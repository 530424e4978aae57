//! `gather` and `shield` (asyncio's `tasks.gather`, `tasks.shield`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
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
/// children go on.
///
/// Cancelling the returned future cancels every child that is not done, passing the message
/// on. As any failure, the first child that ends cancelled then fails the gather at once with
/// its `Err(Cancelled)`, carrying that message; if every child ends otherwise (the children
/// suppressed the cancellation with values), the gather still ends `Err(Cancelled)` with the
/// message, once the last one has finished (asyncio's `_GatheringFuture`).
///
/// # Repeated futures
///
/// A future passed more than once (the same future, as [`Future::ptr_eq`] tells) is awaited and
/// cancelled once, as in asyncio. asyncio puts the same result object in each of its slots; here
/// awaiting moves the value out (`T` need not be `Clone`), so the value goes to the future's
/// first slot and each later slot holds [`Error::InvalidState`] saying that the future appears
/// more than once: `gather` then fails with that error, [`gather_settled`] keeps it in the slot.
/// An error or cancellation is cloned into every slot of its future.
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
    })?;
    Ok(plain)
}

/// As [`gather`], but errors and cancellations of children are returned in their slots instead of
/// failing the gather (asyncio's `return_exceptions=True`).
///
/// Cancelling the returned future cancels every child that is not done; the gather then ends
/// `Err(Cancelled)` once they have all finished, with the last child's cancellation (or, if that
/// child ended otherwise, the message the gather was cancelled with). A future passed more than
/// once gets its value in its first slot and [`Error::InvalidState`] in the later ones; see
/// [`gather`].
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

/// The error of a slot whose future already appeared in an earlier slot and ended with a value.
const REPEATED: &str = "a future appears more than once in gather: its value can be moved out \
                        only once, to its first slot";

fn gather_inner<T: 'static>(
    fs: impl IntoIterator<Item = impl Into<Future<T>>>,
    return_exceptions: bool,
    at: &'static std::panic::Location<'static>,
) -> Result<Future<Vec<Result<T>>>> {
    // Each distinct future is awaited (and cancelled) once, however often it is passed, as
    // asyncio does; `slots` maps every argument to its distinct child.
    let mut children: Vec<Future<T>> = Vec::new();
    let mut seen: HashMap<*const (), usize> = HashMap::new();
    let slots: Vec<usize> = fs
        .into_iter()
        .map(|f| {
            let f: Future<T> = f.into();
            *seen.entry(f.addr()).or_insert_with(|| {
                children.push(f);
                children.len() - 1
            })
        })
        .collect();
    drop(seen);
    let lp = match children.first() {
        Some(c) => c.get_loop().clone(),
        None => EventLoop::running()?,
    };
    // `Some(message)` once a cancellation of the gather reached a child (asyncio's
    // `_cancel_requested`), with the message it was given.
    let cancel_requested: Rc<RefCell<Option<Option<Arc<str>>>>> = Rc::new(RefCell::new(None));
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
                    *requested.borrow_mut() = Some(msg);
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
    let slots = Rc::new(slots);
    for child in &children {
        let (outer, all, slots, finished, requested) = (
            outer.clone(),
            children.clone(),
            slots.clone(),
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
                // The first child to fail or to be cancelled ends the gather at once.
                match child.exception() {
                    Err(e) | Ok(Some(e)) => {
                        let _ = outer.set_exception(e);
                        return;
                    }
                    Ok(None) => {}
                }
            }
            if finished.get() == total {
                if let Some(msg) = requested.borrow_mut().take() {
                    // Cancelled, but the children ended otherwise: still cancelled, with the
                    // last child's cancellation or the message the gather was cancelled with.
                    let e = match child.exception() {
                        Err(e) => e,
                        _ => Error::Cancelled(Cancelled::new(msg)),
                    };
                    let _ = outer.set_exception(e);
                    return;
                }
                let _ = outer.set_result(collect(&all, &slots));
            }
        })?;
    }
    Ok(outer)
}

/// The outcome of every slot, once every child is done: a value goes to the first slot of its
/// future, an error to each of its slots.
fn collect<T: 'static>(children: &[Future<T>], slots: &[usize]) -> Vec<Result<T>> {
    let mut first = vec![true; children.len()];
    slots
        .iter()
        .map(|&i| {
            let child = &children[i];
            if std::mem::replace(&mut first[i], false) {
                return child.take_result();
            }
            match child.exception() {
                Err(e) | Ok(Some(e)) => Err(e),
                Ok(None) => Err(Error::InvalidState(REPEATED)),
            }
        })
        .collect()
}

/// Protects `fut` from cancellation (asyncio's `shield`): the returned future can be cancelled
/// (and is, when the task awaiting it is cancelled) while `fut` goes on. When `fut` finishes and
/// the shield was not cancelled, the shield gets its outcome (the value is moved). When it was,
/// an error of `fut` counts as retrieved (it is not reported as never retrieved), as in asyncio;
/// a value stays in `fut`.
#[track_caller]
pub fn shield<T: 'static>(fut: impl Into<Future<T>>) -> Future<T> {
    let inner = fut.into();
    if inner.done() {
        return inner;
    }
    let outer: Future<T> = Future::new(inner.get_loop());
    let o = outer.clone();
    // `inner` is pending, so this cannot fail.
    let _ = inner.add_done_callback(move |inner| {
        if o.cancelled() {
            // Whoever cancelled the shield gave up on the outcome: mark an error retrieved, as
            // asyncio's `_inner_done_callback` does, so it is not reported as never retrieved.
            let _ = inner.exception();
            return;
        }
        let _ = match inner.take_result() {
            Ok(v) => o.set_result(v),
            Err(e) => o.set_exception(e),
        };
    });
    outer
}
