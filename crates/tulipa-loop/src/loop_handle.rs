//! The thread-safe door into a loop: [`LoopHandle`] (asyncio's `call_soon_threadsafe`).
//!
//! Other threads push jobs onto a lock-free `concurrent-queue` and wake the poller. Wake-ups are
//! coalesced: an atomic "already notified" flag is set by the first pusher, and only that pusher
//! makes the `notify` syscall; the loop clears the flag *before* draining the queue, so a job pushed
//! after the drain started either is seen by that drain or causes a fresh notification.

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::sys::poller::Poller;
use async_task::Runnable;
use concurrent_queue::ConcurrentQueue;

use crate::error::{Error, Result};

/// A `call_soon_threadsafe` job: the closure, its cancel flag and call site in one allocation.
pub(crate) trait RemoteCall: Send {
    fn cancelled(&self) -> bool;
    fn location(&self) -> &'static Location<'static>;
    fn call(self: Box<Self>);
}

struct Call<F> {
    f: F,
    cancelled: Arc<AtomicBool>,
    location: &'static Location<'static>,
}

impl<F: FnOnce() + Send> RemoteCall for Call<F> {
    fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
    fn location(&self) -> &'static Location<'static> {
        self.location
    }
    fn call(self: Box<Self>) {
        (self.f)();
    }
}

pub(crate) enum RemoteJob {
    Call(Box<dyn RemoteCall>),
    Task(Runnable),
    Stop,
}

pub(crate) struct Remote {
    pub(crate) id: u64,
    queue: ConcurrentQueue<RemoteJob>,
    notified: AtomicBool,
    closed: AtomicBool,
    /// Taken out when the loop closes so that the epoll fd is released even while handles live.
    /// Read only on the (coalesced) notify path, never per job.
    poller: RwLock<Option<Arc<Poller>>>,
}

impl Remote {
    pub(crate) fn new(id: u64, poller: Arc<Poller>) -> Self {
        Remote {
            id,
            queue: ConcurrentQueue::unbounded(),
            notified: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            poller: RwLock::new(Some(poller)),
        }
    }

    pub(crate) fn push(&self, job: RemoteJob) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            forget_task(job);
            return Err(Error::Closed);
        }
        if let Err(e) = self.queue.push(job) {
            forget_task(e.into_inner());
            return Err(Error::Closed);
        }
        self.wake();
        Ok(())
    }

    pub(crate) fn wake(&self) {
        if !self.notified.swap(true, Ordering::SeqCst) {
            let guard = self.poller.read().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = guard.as_ref() {
                if let Err(e) = p.notify() {
                    tracing::error!(loop_id = self.id, error = %e, "failed to wake the event loop");
                }
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Called by the loop after polling: clear the flag first (see the module doc), then drain.
    pub(crate) fn drain(&self, mut f: impl FnMut(RemoteJob)) {
        self.notified.store(false, Ordering::SeqCst);
        while let Ok(job) = self.queue.pop() {
            f(job);
        }
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.poller
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        while let Ok(job) = self.queue.pop() {
            drop(job);
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// A task runnable of a closed loop may be in the hands of another thread here. Dropping it
/// would drop a `!Send` future off its thread (async-task panics on that), so it is leaked
/// instead: the task could never run again anyway.
fn forget_task(job: RemoteJob) {
    if let RemoteJob::Task(r) = job {
        std::mem::forget(r);
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // The last reference may be a `LoopHandle` on another thread; see `forget_task`.
        while let Ok(job) = self.queue.pop() {
            forget_task(job);
        }
    }
}

/// A `Send + Sync + Clone` handle to an [`EventLoop`](crate::EventLoop), usable from any thread.
///
/// Get one with [`EventLoop::loop_handle`](crate::EventLoop::loop_handle). Everything it does is
/// queued onto the loop and wakes it if it is blocked waiting for I/O.
///
/// # Examples
///
/// ```
/// use tulipa_loop::EventLoop;
///
/// let lp = EventLoop::new()?;
/// let door = lp.loop_handle();
/// let worker = std::thread::spawn(move || {
///     door.call_soon_threadsafe(|| println!("hello from the loop's thread")).unwrap();
///     door.stop().unwrap();
/// });
/// lp.run_forever()?; // returns once the other thread's stop arrives
/// worker.join().unwrap();
/// # Ok::<(), tulipa_loop::Error>(())
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    pub(crate) remote: Arc<Remote>,
}

impl LoopHandle {
    /// Schedules `f` to run on the loop's thread, soon; safe to call from any thread.
    ///
    /// Callbacks from one thread run in the order they were scheduled.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the loop is closed.
    #[track_caller]
    pub fn call_soon_threadsafe(
        &self,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<ThreadsafeHandle> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let location = Location::caller();
        self.remote.push(RemoteJob::Call(Box::new(Call {
            f,
            cancelled: cancelled.clone(),
            location,
        })))?;
        Ok(ThreadsafeHandle {
            cancelled,
            location,
        })
    }

    /// Asks the loop to stop, as [`EventLoop::stop`](crate::EventLoop::stop) does.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the loop is closed.
    pub fn stop(&self) -> Result<()> {
        self.remote.push(RemoteJob::Stop)
    }

    /// True once the loop was closed.
    pub fn is_closed(&self) -> bool {
        self.remote.is_closed()
    }

    /// The loop's identifier (the same as [`EventLoop::id`](crate::EventLoop::id)).
    pub fn id(&self) -> u64 {
        self.remote.id
    }
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoopHandle")
            .field("id", &self.remote.id)
            .field("closed", &self.is_closed())
            .finish()
    }
}

/// The handle of a callback scheduled from another thread; `Send + Sync`.
#[derive(Clone)]
pub struct ThreadsafeHandle {
    cancelled: Arc<AtomicBool>,
    location: &'static Location<'static>,
}

impl ThreadsafeHandle {
    /// Cancels the callback if it has not started yet. Idempotent.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    /// True once cancelled.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Where it was scheduled.
    pub fn scheduled_at(&self) -> &'static Location<'static> {
        self.location
    }
}

impl fmt::Debug for ThreadsafeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadsafeHandle")
            .field("cancelled", &self.cancelled())
            .field("scheduled_at", &format_args!("{}", self.location))
            .finish()
    }
}
