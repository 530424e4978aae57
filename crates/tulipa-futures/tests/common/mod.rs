//! Helpers shared by the tulipa-futures tests (a module, not a test target): a fresh
//! virtual-time loop per test ([`block_on`]), steps of the other tasks ([`ticks`]), the loop's
//! clock ([`now`], [`elapsed`]), short names for durations, result predicates and the small
//! tasks several files sleep and count with.

#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulipa_futures::rt::EventLoop;
use tulipa_futures::{run_until_complete, sleep, spawn, Result, Task};

/// Runs `fut` as the main task of a fresh virtual-time loop and returns its value.
pub(crate) fn block_on<T: 'static>(
    fut: impl std::future::Future<Output = Result<T>> + 'static,
) -> T {
    let lp = EventLoop::new_virtual().expect("a virtual-time loop");
    let out = run_until_complete(&lp, fut);
    let _ = lp.close();
    out.expect("the test's main task failed")
}

/// Lets every other ready task take `n` steps.
pub(crate) async fn ticks(n: usize) -> Result<()> {
    for _ in 0..n {
        sleep(Duration::ZERO).await?;
    }
    Ok(())
}

/// The running loop.
pub(crate) fn running() -> EventLoop {
    EventLoop::running().expect("inside a running loop")
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The running loop's clock (virtual time in these tests).
pub(crate) fn now() -> Instant {
    running().time()
}

/// Virtual time since `start` on the running loop.
pub(crate) fn elapsed(start: Instant) -> Duration {
    now() - start
}

pub(crate) fn is_cancelled<T>(r: &Result<T>) -> bool {
    matches!(r, Err(e) if e.is_cancelled())
}

pub(crate) fn flag() -> Rc<Cell<bool>> {
    Rc::new(Cell::new(false))
}

/// A task that sleeps `n` seconds, then returns `n`.
pub(crate) fn after(n: u64) -> Result<Task<u64>> {
    spawn(async move {
        sleep(secs(n)).await?;
        Ok(n)
    })
}

/// Sleeps `d`; when cancelled, bumps `count` and propagates.
pub(crate) async fn count_cancel(d: Duration, count: Rc<Cell<u32>>) -> Result<()> {
    let r = sleep(d).await;
    if r.is_err() {
        count.set(count.get() + 1);
    }
    r
}
