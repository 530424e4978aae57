//! Executors: a thread pool, `run_in_executor`, and [`ConcurrentFuture`] for results produced on
//! other threads (asyncio's `run_in_executor`, `wrap_future`, PEP 3148's `Future`).
//!
//! Blocking work goes to a [`ThreadPoolExecutor`]; its result comes back as a [`ConcurrentFuture`]
//! (thread-safe, with a blocking [`result`](ConcurrentFuture::result)), which a loop awaits like
//! any future: the waker of the awaiting task is `Send`, so the worker thread wakes the loop
//! directly through its thread-safe queue.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tulipa_loop::{EventLoop, LoopHandle};

use crate::cancel;
use crate::error::{Error, Result};
use crate::task::{all_tasks, spawn_on, Task};
use crate::waiters::Waiters;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks cannot leave them inconsistent (no user code runs under
    // them), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

enum Stage<T> {
    Pending,
    Running,
    Finished(Result<T>),
    Taken,
}

type CfCallback<T> = Box<dyn FnOnce(&ConcurrentFuture<T>) + Send>;

struct CfState<T> {
    stage: Stage<T>,
    callbacks: Vec<CfCallback<T>>,
    /// Every task awaiting it (clones can be awaited by several tasks, on several loops).
    waiters: Waiters,
}

struct CfShared<T> {
    state: Mutex<CfState<T>>,
    cond: Condvar,
}

/// A thread-safe future (PEP 3148's `concurrent.futures.Future`): set from any thread, waited
/// for by blocking ([`result`](ConcurrentFuture::result)) or by awaiting it on a loop.
pub struct ConcurrentFuture<T> {
    shared: Arc<CfShared<T>>,
}

impl<T> Clone for ConcurrentFuture<T> {
    fn clone(&self) -> Self {
        ConcurrentFuture {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send + 'static> Default for ConcurrentFuture<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Send + 'static> ConcurrentFuture<T> {
    /// A pending future.
    pub fn new() -> Self {
        ConcurrentFuture {
            shared: Arc::new(CfShared {
                state: Mutex::new(CfState {
                    stage: Stage::Pending,
                    callbacks: Vec::new(),
                    waiters: Waiters::default(),
                }),
                cond: Condvar::new(),
            }),
        }
    }

    /// Cancels the future unless it is running or done. Returns whether it is cancelled.
    pub fn cancel(&self) -> bool {
        let mut s = lock(&self.shared.state);
        match s.stage {
            Stage::Pending => {}
            Stage::Finished(Err(Error::Cancelled(_))) => return true,
            _ => return false,
        }
        s.stage = Stage::Finished(Err(Error::cancelled(None)));
        self.finish_locked(s);
        true
    }

    /// True if cancelled.
    pub fn cancelled(&self) -> bool {
        matches!(
            lock(&self.shared.state).stage,
            Stage::Finished(Err(Error::Cancelled(_)))
        )
    }

    /// True while running.
    pub fn running(&self) -> bool {
        matches!(lock(&self.shared.state).stage, Stage::Running)
    }

    /// True once done.
    pub fn done(&self) -> bool {
        matches!(
            lock(&self.shared.state).stage,
            Stage::Finished(_) | Stage::Taken
        )
    }

    /// Marks the future running; false if it was cancelled (then the work must not run).
    pub fn set_running_or_notify_cancel(&self) -> bool {
        let mut s = lock(&self.shared.state);
        match s.stage {
            Stage::Pending => {
                s.stage = Stage::Running;
                true
            }
            _ => false,
        }
    }

    /// Sets the result.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when already done.
    pub fn set_result(&self, value: T) -> Result<()> {
        self.set(Ok(value))
    }

    /// Sets an error.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when already done.
    pub fn set_exception(&self, error: Error) -> Result<()> {
        self.set(Err(error))
    }

    fn set(&self, r: Result<T>) -> Result<()> {
        let mut s = lock(&self.shared.state);
        if matches!(s.stage, Stage::Finished(_) | Stage::Taken) {
            return Err(Error::InvalidState("the future is already done"));
        }
        s.stage = Stage::Finished(r);
        self.finish_locked(s);
        Ok(())
    }

    fn finish_locked(&self, mut s: MutexGuard<'_, CfState<T>>) {
        let callbacks = std::mem::take(&mut s.callbacks);
        let waiters = std::mem::take(&mut s.waiters);
        drop(s);
        self.shared.cond.notify_all();
        waiters.wake_all();
        for cb in callbacks {
            if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| cb(self))) {
                tracing::error!(panic = %tulipa_loop::panic_message(&*p), "a ConcurrentFuture done callback panicked");
            }
        }
    }

    /// Calls `f` (on whichever thread completes the future, or now if done).
    pub fn add_done_callback(&self, f: impl FnOnce(&ConcurrentFuture<T>) + Send + 'static) {
        let mut s = lock(&self.shared.state);
        if matches!(s.stage, Stage::Finished(_) | Stage::Taken) {
            drop(s);
            f(self);
        } else {
            s.callbacks.push(Box::new(f));
        }
    }

    /// Blocks until done (or `timeout` passes) and moves the result out. A `timeout` too large
    /// for the clock (such as `Duration::MAX`) waits without a limit.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when `timeout` passed; the future's error; [`Error::InvalidState`] when
    /// the value was already taken.
    pub fn take_result(&self, timeout: Option<Duration>) -> Result<T> {
        let s = self.wait_done(timeout)?;
        Self::take_locked(s)
    }

    /// Blocks until done (or `timeout` passes) and returns a clone of the result.
    ///
    /// # Errors
    ///
    /// As [`take_result`](ConcurrentFuture::take_result).
    pub fn result(&self, timeout: Option<Duration>) -> Result<T>
    where
        T: Clone,
    {
        let s = self.wait_done(timeout)?;
        match &s.stage {
            Stage::Finished(r) => r.clone(),
            _ => Err(Error::InvalidState("the result was already taken")),
        }
    }

    fn wait_done(&self, timeout: Option<Duration>) -> Result<MutexGuard<'_, CfState<T>>> {
        // A timeout too large for the clock (`Duration::MAX`) is no timeout.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut s = lock(&self.shared.state);
        while matches!(s.stage, Stage::Pending | Stage::Running) {
            s = match deadline {
                None => self.shared.cond.wait(s).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(Error::Timeout);
                    }
                    self.shared
                        .cond
                        .wait_timeout(s, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        Ok(s)
    }

    fn take_locked(mut s: MutexGuard<'_, CfState<T>>) -> Result<T> {
        match std::mem::replace(&mut s.stage, Stage::Taken) {
            Stage::Finished(Ok(v)) => Ok(v),
            Stage::Finished(Err(e)) => {
                s.stage = Stage::Finished(Err(e.clone()));
                Err(e)
            }
            other => {
                s.stage = other;
                Err(Error::InvalidState("the result was already taken"))
            }
        }
    }
}

impl<T: Send + 'static> std::future::Future for ConcurrentFuture<T> {
    type Output = Result<T>;

    /// # Cancel safety
    ///
    /// When the awaiting task is cancelled, the future is cancelled too if its work has not
    /// started; work already running finishes and its result is dropped.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        if let Some(e) = cancel::take_cancellation() {
            self.cancel();
            return Poll::Ready(Err(e));
        }
        let mut s = lock(&self.shared.state);
        if matches!(s.stage, Stage::Pending | Stage::Running) {
            s.waiters.register(cx.waker());
            return Poll::Pending;
        }
        Poll::Ready(Self::take_locked(s))
    }
}

impl<T> fmt::Debug for ConcurrentFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.shared.state);
        let stage = match &s.stage {
            Stage::Pending => "pending",
            Stage::Running => "running",
            Stage::Finished(Ok(_)) | Stage::Taken => "finished",
            Stage::Finished(Err(Error::Cancelled(_))) => "cancelled",
            Stage::Finished(Err(_)) => "failed",
        };
        f.debug_struct("ConcurrentFuture")
            .field("stage", &stage)
            .finish()
    }
}

/// A queued call; `false` means "cancelled before it started".
type Job = Box<dyn FnOnce(bool) + Send>;

struct PoolQueue {
    jobs: VecDeque<Job>,
    shutdown: bool,
    /// Workers waiting for work that no submission has reserved yet. A submission reserves one
    /// (as CPython's `_idle_semaphore.acquire(timeout=0)`) and only starts a thread when none is
    /// left, so a burst of submissions never counts the same idle worker twice.
    idle: usize,
    /// Reservations not yet picked up: each wakes one idle worker.
    wakeups: usize,
    threads: Vec<JoinHandle<()>>,
}

struct Pool {
    queue: Mutex<PoolQueue>,
    cond: Condvar,
    max_workers: usize,
    name: String,
}

/// A pool of worker threads for blocking work (asyncio's default `ThreadPoolExecutor`).
///
/// Threads start on demand up to `max_workers` and wait for work when idle.
#[derive(Clone)]
pub struct ThreadPoolExecutor {
    pool: Arc<Pool>,
}

/// asyncio's default pool size: `min(32, cores + 4)`.
pub fn default_max_workers() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores + 4).min(32)
}

impl ThreadPoolExecutor {
    /// A pool of at most `max_workers` threads (at least one), named `name-N`.
    pub fn new(max_workers: usize, name: &str) -> Self {
        ThreadPoolExecutor {
            pool: Arc::new(Pool {
                queue: Mutex::new(PoolQueue {
                    jobs: VecDeque::new(),
                    shutdown: false,
                    idle: 0,
                    wakeups: 0,
                    threads: Vec::new(),
                }),
                cond: Condvar::new(),
                max_workers: max_workers.max(1),
                name: name.to_owned(),
            }),
        }
    }

    /// The pool's size limit.
    pub fn max_workers(&self) -> usize {
        self.pool.max_workers
    }

    /// Runs `f` on a worker thread. A panic in `f` becomes [`Error::Panicked`].
    ///
    /// # Errors
    ///
    /// [`Error::ExecutorShutdown`] after [`shutdown`](ThreadPoolExecutor::shutdown); [`Error::Io`]
    /// when no worker thread could be started.
    pub fn submit<T, F>(&self, f: F) -> Result<ConcurrentFuture<T>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let cf = ConcurrentFuture::new();
        let out = cf.clone();
        let job: Job = Box::new(move |run: bool| {
            if !run {
                out.cancel();
                return;
            }
            if !out.set_running_or_notify_cancel() {
                return;
            }
            let r = panic::catch_unwind(AssertUnwindSafe(f))
                .map_err(|p| Error::Panicked(Arc::from(tulipa_loop::panic_message(&*p))));
            let _ = match r {
                Ok(v) => out.set_result(v),
                Err(e) => out.set_exception(e),
            };
        });
        let mut q = lock(&self.pool.queue);
        if q.shutdown {
            return Err(Error::ExecutorShutdown);
        }
        if q.idle > 0 {
            // Reserve an idle worker for this job.
            q.idle -= 1;
            q.wakeups += 1;
            q.jobs.push_back(job);
            drop(q);
            self.pool.cond.notify_one();
        } else if q.threads.len() < self.pool.max_workers {
            // Queued only once its thread exists: a failed spawn must not leave the job behind.
            // The new thread waits for the lock, held until the job is queued.
            let pool = self.pool.clone();
            let name = format!("{}-{}", self.pool.name, q.threads.len());
            let t = std::thread::Builder::new()
                .name(name)
                .spawn(move || worker(&pool))
                .inspect_err(|e| {
                    tracing::warn!(pool = %self.pool.name, error = %e, "worker thread not started");
                })?;
            q.threads.push(t);
            q.jobs.push_back(job);
        } else {
            // Every worker is busy: the first to finish takes it.
            q.jobs.push_back(job);
        }
        Ok(cf)
    }

    /// Stops accepting work. With `cancel_pending`, queued work that has not started is cancelled.
    /// With `wait`, blocks until every worker has finished.
    pub fn shutdown(&self, wait: bool, cancel_pending: bool) {
        let (threads, cancelled) = {
            let mut q = lock(&self.pool.queue);
            q.shutdown = true;
            let cancelled = if cancel_pending {
                std::mem::take(&mut q.jobs)
            } else {
                VecDeque::new()
            };
            // Without `wait` the threads stay listed, so a later `shutdown(true, ..)` still
            // joins them (as Python's executor does).
            let threads = if wait {
                std::mem::take(&mut q.threads)
            } else {
                Vec::new()
            };
            (threads, cancelled)
        };
        for job in cancelled {
            job(false);
        }
        self.pool.cond.notify_all();
        if wait {
            for t in threads {
                let _ = t.join();
            }
        }
    }
}

fn worker(pool: &Pool) {
    loop {
        let job = {
            let mut q = lock(&pool.queue);
            loop {
                if let Some(j) = q.jobs.pop_front() {
                    break j;
                }
                if q.shutdown {
                    return;
                }
                q.idle += 1;
                while q.wakeups == 0 && !q.shutdown {
                    q = pool.cond.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                if q.wakeups > 0 {
                    // Reserved by a submission (which already took us off `idle`).
                    q.wakeups -= 1;
                } else {
                    q.idle -= 1;
                }
            }
        };
        job(true);
    }
}

impl fmt::Debug for ThreadPoolExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = lock(&self.pool.queue);
        f.debug_struct("ThreadPoolExecutor")
            .field("name", &self.pool.name)
            .field("max_workers", &self.pool.max_workers)
            .field("threads", &q.threads.len())
            .field("queued", &q.jobs.len())
            .field("shutdown", &q.shutdown)
            .finish()
    }
}

thread_local! {
    static DEFAULT: RefCell<HashMap<u64, ThreadPoolExecutor>> = RefCell::new(HashMap::new());
}

/// Replaces `lp`'s default executor (used by [`run_in_executor`] with `None`).
pub fn set_default_executor(lp: &EventLoop, executor: ThreadPoolExecutor) {
    let old = DEFAULT.with(|d| d.borrow_mut().insert(lp.id(), executor));
    drop(old);
}

fn default_executor(lp: &EventLoop) -> ThreadPoolExecutor {
    DEFAULT.with(|d| {
        d.borrow_mut()
            .entry(lp.id())
            .or_insert_with(|| ThreadPoolExecutor::new(default_max_workers(), "tulipa-executor"))
            .clone()
    })
}

/// Runs blocking `f` on `executor` (or `lp`'s default pool) and returns a task on `lp` that
/// completes with its result (asyncio's `loop.run_in_executor`).
///
/// Cancelling the task cancels the work if it has not started yet.
///
/// # Errors
///
/// [`Error::ExecutorShutdown`] after the executor was shut down; [`Error::Loop`] when `lp` is
/// closed.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{run, run_in_executor};
/// use tulipa_loop::EventLoop;
///
/// let n = run(async {
///     let lp = EventLoop::running()?;
///     run_in_executor(&lp, None, || (1..=10u64).product::<u64>())?.await
/// })?;
/// assert_eq!(n, 3_628_800);
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn run_in_executor<T, F>(
    lp: &EventLoop,
    executor: Option<&ThreadPoolExecutor>,
    f: F,
) -> Result<Task<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let cf = match executor {
        Some(e) => e.submit(f)?,
        None => default_executor(lp).submit(f)?,
    };
    wrap_future(lp, cf)
}

/// Wraps a [`ConcurrentFuture`] as a task on `lp` (asyncio's `wrap_future`).
///
/// # Errors
///
/// [`Error::Loop`] when `lp` is closed.
pub fn wrap_future<T: Send + 'static>(lp: &EventLoop, cf: ConcurrentFuture<T>) -> Result<Task<T>> {
    spawn_on(lp, cf)
}

/// Shuts `lp`'s default executor down and waits for its threads without blocking the loop
/// (asyncio's `loop.shutdown_default_executor`).
///
/// # Errors
///
/// [`Error::Cancelled`] when the waiting task is cancelled (the shutdown goes on).
pub async fn shutdown_default_executor(lp: &EventLoop) -> Result<()> {
    let Some(exec) = DEFAULT.with(|d| d.borrow_mut().remove(&lp.id())) else {
        return Ok(());
    };
    let done = ConcurrentFuture::new();
    let d2 = done.clone();
    std::thread::Builder::new()
        .name("tulipa-executor-shutdown".into())
        .spawn(move || {
            exec.shutdown(true, false);
            let _ = d2.set_result(());
        })?;
    done.await
}

pub(crate) fn shutdown_default_executor_blocking(lp: &EventLoop) {
    if let Some(exec) = DEFAULT.with(|d| d.borrow_mut().remove(&lp.id())) {
        exec.shutdown(true, false);
    }
}

/// Spawns a `Send` future on the loop behind `handle` from any thread and returns a thread-safe
/// future of its outcome (asyncio's `run_coroutine_threadsafe`). Cancelling the returned future
/// cancels the task.
///
/// The returned future always completes: if the loop closes before it spawned the future, it
/// fails with [`Error::Loop`]; if the loop closes while the task is pending (which aborts the
/// task), it fails with [`Error::Cancelled`].
///
/// # Errors
///
/// [`Error::Loop`] when the loop is closed.
pub fn spawn_threadsafe<F, T>(handle: &LoopHandle, fut: F) -> Result<ConcurrentFuture<T>>
where
    F: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let cf = ConcurrentFuture::new();
    // Armed until the call runs: a loop that closes first drops the call, and the caller must
    // hear of it rather than wait forever.
    let mut not_run = Unfinished {
        out: Some(cf.clone()),
        error: || tulipa_loop::Error::Closed.into(),
    };
    let door = handle.clone();
    handle.call_soon_threadsafe(move || {
        let Some(out) = not_run.out.take() else {
            return;
        };
        // Armed until the future finished: a loop that closes aborts its pending tasks, and
        // the task's done callback can no longer run then.
        let mut aborted = Unfinished {
            out: Some(out.clone()),
            error: || Error::Cancelled(crate::error::Cancelled::new(None)),
        };
        let fut = async move {
            let r = fut.await;
            aborted.disarm();
            r
        };
        let lp = match EventLoop::running() {
            Ok(lp) => lp,
            Err(e) => {
                let _ = out.set_exception(e.into());
                return;
            }
        };
        let task = match spawn_on(&lp, fut) {
            Ok(t) => t,
            Err(e) => {
                let _ = out.set_exception(e);
                return;
            }
        };
        let id = task.id();
        let o2 = out.clone();
        // The task was just spawned, so it is pending and this cannot fail.
        let _ = task.add_done_callback(move |t| {
            let _ = match t.take_result() {
                Ok(v) => o2.set_result(v),
                Err(e) => o2.set_exception(e),
            };
        });
        // Cancellation from the caller's side reaches the task through the loop's door.
        out.add_done_callback(move |cf| {
            if cf.cancelled() {
                let _ = door.call_soon_threadsafe(move || {
                    if let Ok(lp) = EventLoop::running() {
                        if let Some(t) = all_tasks(&lp).into_iter().find(|t| t.id() == id) {
                            t.cancel(None);
                        }
                    }
                });
            }
        });
    })?;
    Ok(cf)
}

/// Completes `out` with `error()` when dropped while still holding it.
struct Unfinished<T: Send + 'static> {
    out: Option<ConcurrentFuture<T>>,
    error: fn() -> Error,
}

impl<T: Send + 'static> Unfinished<T> {
    fn disarm(&mut self) {
        self.out = None;
    }
}

impl<T: Send + 'static> Drop for Unfinished<T> {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            // Already done (for example cancelled by the caller): nothing to report.
            let _ = out.set_exception((self.error)());
        }
    }
}
