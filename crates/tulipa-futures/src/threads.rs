//! Threads with their own loop, one-off blocking calls and thread pools (vanilla's `h.thread`).
//!
//! Tulipa's loops are single-threaded; more cores mean more loops, one per thread, talking
//! through [`message`](crate::message) pipes, which work across threads:
//!
//! - [`spawn`] starts a thread running its own loop ([`run`](crate::run)) and connects it to its
//!   parent with two pipes (vanilla's `h.thread.spawn` and the child hub's `parent`);
//! - [`call`] runs a blocking function on a one-off thread and hands its result back through a
//!   [`Recver`] (vanilla's `h.thread.call`);
//! - [`pool`] gives a reusable [`Pool`] of threads (on a [`ThreadPoolExecutor`]) whose
//!   [`call`](Pool::call) does the same, and whose [`wrap`](Pool::wrap) shares one object among
//!   the pool's threads (vanilla's `Pool.wrap`).
//!
//! A function that panics on another thread closes its result pipe with
//! [`Error::Panicked`]: the receiver gets that error instead of an item.
//!
//! # Examples
//!
//! vanilla's `thread.call(add, 2, 3)`:
//!
//! ```
//! use tulipa_futures::{run, threads};
//!
//! fn add(a: i32, b: i32) -> i32 { a + b }
//!
//! let five = run(async { threads::call(|| add(2, 3))?.recv().await })?;
//! assert_eq!(five, 5);
//! # Ok::<(), tulipa_futures::Error>(())
//! ```

use std::fmt;
use std::future::Future;
use std::ops::Deref;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, Result};
use crate::executor::{ConcurrentFuture, ThreadPoolExecutor};
use crate::message::{buffered, pipe, Pair, Recver, Sender};

fn panicked(payload: &(dyn std::any::Any + Send)) -> Error {
    Error::Panicked(Arc::from(tulipa_loop::panic_message(payload)))
}

/// Sends `f()` through `tx` (a pipe with room for it), or closes it with the panic.
fn deliver<T>(tx: Sender<T>, f: impl FnOnce() -> T) {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => {
            // The pipe has room for this one item; if the recver is gone, nobody wants it.
            let _ = tx.try_send(v);
        }
        Err(p) => tx.close_with(panicked(&*p)),
    }
}

/// The parent's side of a thread started with [`spawn`]: a [`Pair`] to talk to the child
/// (through `Deref`), and [`join`](Child::join) to wait for its end.
pub struct Child<S, R> {
    pair: Pair<S, R>,
    done: ConcurrentFuture<()>,
    thread: Option<JoinHandle<()>>,
}

impl<S, R> Deref for Child<S, R> {
    type Target = Pair<S, R>;
    fn deref(&self) -> &Pair<S, R> {
        &self.pair
    }
}

impl<S, R> Child<S, R> {
    /// The ends, to use apart; the thread keeps running.
    pub fn into_pair(self) -> Pair<S, R> {
        let Child { pair, .. } = self;
        pair
    }

    /// True once the child's loop has finished.
    pub fn is_finished(&self) -> bool {
        self.done.done()
    }

    /// Waits, without blocking the loop, until the child's main future and loop are done, and
    /// returns the child's outcome. The parent's ends are dropped first, so a child waiting on
    /// them sees its pipes close.
    ///
    /// # Errors
    ///
    /// The child's error; [`Error::Panicked`] when it panicked; [`Error::Cancelled`] when the
    /// waiting task is cancelled (the thread goes on).
    pub async fn join(mut self) -> Result<()> {
        let thread = self.thread.take();
        let Child { pair, done, .. } = self;
        drop(pair);
        done.await?;
        if let Some(t) = thread {
            // The thread has set `done` as its last step; this join does not wait long.
            let _ = t.join();
        }
        Ok(())
    }
}

impl<S, R> fmt::Debug for Child<S, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Child")
            .field("pair", &self.pair)
            .field("finished", &self.is_finished())
            .finish()
    }
}

/// Starts a thread with its own loop running `f(parent)` as its main task (vanilla's
/// `h.thread.spawn`) and returns the parent's side.
///
/// `parent` sends `R` items to the parent and receives `S` items from it; the parent's
/// [`Child`] sends `S` and receives `R`. Both pipes are rendezvous pipes. When `f`'s future is
/// done the child's loop ends as [`run`](crate::run) does, and its ends are dropped, closing
/// both pipes; likewise, when the parent drops its side, the child's `recv` gets
/// [`Error::Closed`].
///
/// # Errors
///
/// [`Error::Io`] when the thread cannot be started.
///
/// # Examples
///
/// vanilla's ticker: a child that sends a tick until its parent stops listening.
///
/// ```
/// use std::time::Duration;
/// use tulipa_futures::{message::Pair, run, sleep, threads};
///
/// run(async {
///     // The child sends `u32` ticks to its parent and receives nothing (`()`) from it.
///     let child = threads::spawn(|parent: Pair<u32, ()>| async move {
///         let mut n = 0;
///         loop {
///             n += 1;
///             if parent.send(n).await.is_err() {
///                 return Ok(()); // the parent is gone
///             }
///             sleep(Duration::from_millis(1)).await?;
///         }
///     })?;
///     assert_eq!(child.recv().await?, 1);
///     assert_eq!(child.recv().await?, 2);
///     child.join().await // drops the parent's ends: the child's next send fails, it returns
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn spawn<S, R, F, Fut>(f: F) -> Result<Child<S, R>>
where
    S: Send + 'static,
    R: Send + 'static,
    F: FnOnce(Pair<R, S>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + 'static,
{
    let (to_child, from_parent) = pipe::<S>();
    let (to_parent, from_child) = pipe::<R>();
    let done = ConcurrentFuture::new();
    let finished = done.clone();
    let parent = Pair::new(to_parent, from_parent);
    let thread = std::thread::Builder::new()
        .name("tulipa-thread".into())
        .spawn(move || {
            let outcome = panic::catch_unwind(AssertUnwindSafe(|| {
                crate::run(async move { f(parent).await })
            }))
            .unwrap_or_else(|p| Err(panicked(&*p)));
            let _ = match outcome {
                Ok(()) => finished.set_result(()),
                Err(e) => finished.set_exception(e),
            };
        })?;
    Ok(Child {
        pair: Pair::new(to_child, from_child),
        done,
        thread: Some(thread),
    })
}

/// Runs blocking `f` on a new thread and returns a recver of its single result (vanilla's
/// `h.thread.call`). The pipe closes after the result; if `f` panics it is closed with
/// [`Error::Panicked`] instead.
///
/// # Errors
///
/// [`Error::Io`] when the thread cannot be started.
pub fn call<T, F>(f: F) -> Result<Recver<T>>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = buffered(1);
    std::thread::Builder::new()
        .name("tulipa-call".into())
        .spawn(move || deliver(tx, f))?;
    Ok(rx)
}

/// A pool of `size` threads (vanilla's `h.thread.pool(size)`); see [`Pool`].
pub fn pool(size: usize) -> Pool {
    Pool {
        inner: Arc::new(PoolInner {
            exec: ThreadPoolExecutor::new(size, "tulipa-pool"),
        }),
    }
}

struct PoolInner {
    exec: ThreadPoolExecutor,
}

impl Drop for PoolInner {
    fn drop(&mut self) {
        // Queued calls still run; the threads end once the queue is empty.
        self.exec.shutdown(false, false);
    }
}

/// A reusable pool of threads for blocking calls, each result coming back through a
/// [`Recver`]. A cheap handle (`Clone`); the threads stop once the last handle (and every
/// [`Wrapped`] made from it) is dropped and the queued calls are done.
///
/// # Examples
///
/// vanilla's sleeper example, gathering results in completion order with a
/// [`router`](crate::message::router):
///
/// ```
/// use std::sync::mpsc;
/// use tulipa_futures::{message, run, threads};
///
/// run(async {
///     let p = threads::pool(2);
///     let (gather_tx, gather) = message::router();
///     let (go_slow, wait_slow) = mpsc::channel::<()>();
///     let _a = p.call(move || { wait_slow.recv().ok(); "slow" })?.pipe(gather_tx.clone())?;
///     let _b = p.call(|| "fast")?.pipe(gather_tx)?;
///     assert_eq!(gather.recv().await?, "fast");
///     go_slow.send(()).ok();
///     assert_eq!(gather.recv().await?, "slow");
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
}

impl Pool {
    /// Runs blocking `f` on one of the pool's threads and returns a recver of its single result
    /// (vanilla's `Pool.call`). The pipe closes after the result, or with [`Error::Panicked`]
    /// when `f` panics, or with [`Error::Closed`] alone when the pool was shut down before `f`
    /// could start.
    ///
    /// # Errors
    ///
    /// [`Error::ExecutorShutdown`] after [`shutdown`](Pool::shutdown); [`Error::Io`] when no
    /// thread could be started.
    pub fn call<T, F>(&self, f: F) -> Result<Recver<T>>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = buffered(1);
        // The returned future is not needed: the result travels through the pipe.
        drop(self.inner.exec.submit(move || deliver(tx, f))?);
        Ok(rx)
    }

    /// Wraps `obj` so that calls on it run on the pool's threads (vanilla's `Pool.wrap`). The
    /// object is shared behind an `Arc<Mutex<_>>`: calls on it run one at a time.
    pub fn wrap<O: Send + 'static>(&self, obj: O) -> Wrapped<O> {
        Wrapped {
            obj: Arc::new(Mutex::new(obj)),
            pool: self.clone(),
        }
    }

    /// The number of threads the pool runs at most.
    pub fn size(&self) -> usize {
        self.inner.exec.max_workers()
    }

    /// Stops accepting calls. With `wait`, blocks until the calls already queued are done (do
    /// not do that on a loop's thread while the loop has work).
    pub fn shutdown(&self, wait: bool) {
        self.inner.exec.shutdown(wait, false);
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("executor", &self.inner.exec)
            .finish()
    }
}

/// An object whose calls run on a [`Pool`]'s threads ([`Pool::wrap`]). A cheap handle
/// (`Clone`).
///
/// # Examples
///
/// ```
/// use tulipa_futures::{run, threads};
///
/// run(async {
///     let p = threads::pool(2);
///     let db = p.wrap(vec!["Mike's post"]);
///     let found = db.call(|posts| posts.iter().find(|p| p.starts_with("Mike")).copied())?;
///     assert_eq!(found.recv().await?, Some("Mike's post"));
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub struct Wrapped<O> {
    obj: Arc<Mutex<O>>,
    pool: Pool,
}

impl<O> Clone for Wrapped<O> {
    fn clone(&self) -> Self {
        Wrapped {
            obj: self.obj.clone(),
            pool: self.pool.clone(),
        }
    }
}

impl<O: Send + 'static> Wrapped<O> {
    /// Runs `f` on the object, on one of the pool's threads, and returns a recver of its result
    /// (as [`Pool::call`]). A call that panicked leaves the object as the panic left it; later
    /// calls still run.
    ///
    /// # Errors
    ///
    /// As [`Pool::call`].
    pub fn call<R, F>(&self, f: F) -> Result<Recver<R>>
    where
        R: Send + 'static,
        F: FnOnce(&mut O) -> R + Send + 'static,
    {
        let obj = self.obj.clone();
        self.pool.call(move || {
            let mut guard = obj.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
    }
}

impl<O> fmt::Debug for Wrapped<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wrapped")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}
