//! The workloads on tokio's current-thread runtime: every callback is a spawned task
//! (`tokio::spawn`), every timer a task awaiting `tokio::time::sleep`.

use std::pin::pin;
use std::thread;
use std::time::Instant;

use ::tokio::runtime::{Builder, Runtime};
use ::tokio::time::sleep;
use futures_lite::future::poll_once;

use super::common::{self, Countdown, Delays, DropSignal};
use super::{BenchResult, Sample, Workload};

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When the runtime cannot be built, a thread panics, or `workload` is not of suite `loop`.
pub fn run(workload: Workload) -> BenchResult {
    match workload {
        Workload::Callbacks => callbacks(common::CALLBACKS),
        Workload::Timers => timers(common::TIMERS),
        Workload::TimersCancel => timers_cancel(common::TIMERS),
        Workload::ThreadsafeLatency => threadsafe_latency(common::ROUND_TRIPS),
        Workload::Spawn
        | Workload::Tasks
        | Workload::Resolve
        | Workload::Executor
        | Workload::PendingMemory
        | Workload::PipeLocal
        | Workload::PipeShared
        | Workload::PipeThreads
        | Workload::RendezvousLocal => Err(super::wrong_suite(workload, "bench::tokio")),
    }
}

fn runtime() -> std::io::Result<Runtime> {
    Builder::new_current_thread().enable_time().build()
}

/// `n` trivial tasks spawned from inside `block_on`, each counting down; waits for the last.
///
/// # Errors
///
/// When the runtime cannot be built.
pub fn callbacks(n: u64) -> BenchResult {
    let rt = runtime()?;
    let done = Countdown::new(n);
    let start = Instant::now();
    rt.block_on(async {
        for _ in 0..n {
            let done = done.clone();
            ::tokio::spawn(async move { done.done() });
        }
        done.wait().await;
    });
    Ok(Sample::new(n, start.elapsed()))
}

/// `n` tasks, each sleeping one of the deterministic 0–10 ms [`Delays`].
///
/// # Errors
///
/// When the runtime cannot be built.
pub fn timers(n: u64) -> BenchResult {
    let rt = runtime()?;
    let done = Countdown::new(n);
    let start = Instant::now();
    rt.block_on(async {
        for delay in Delays::new().take(usize::try_from(n).unwrap_or(usize::MAX)) {
            let done = done.clone();
            ::tokio::spawn(async move {
                sleep(delay).await;
                done.done();
            });
        }
        done.wait().await;
    });
    Ok(Sample::new(n, start.elapsed()))
}

/// `n` tasks each arming a 10 s `sleep` (polled once, so it sits in the timer wheel), then
/// `JoinHandle::abort` on each, until the runtime has dropped every one.
///
/// # Errors
///
/// When the runtime cannot be built.
pub fn timers_cancel(n: u64) -> BenchResult {
    let rt = runtime()?;
    let (armed, dropped) = (Countdown::new(n), Countdown::new(n));
    let start = Instant::now();
    rt.block_on(async {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                let (armed, signal) = (armed.clone(), DropSignal(dropped.clone()));
                ::tokio::spawn(async move {
                    let _signal = signal;
                    let mut timer = pin!(sleep(common::CANCEL_AHEAD));
                    let _ = poll_once(timer.as_mut()).await;
                    armed.done();
                    timer.await;
                })
            })
            .collect();
        armed.wait().await;
        for h in &handles {
            h.abort();
        }
        drop(handles);
        dropped.wait().await;
    });
    Ok(Sample::new(n, start.elapsed()))
}

/// `n` round trips: another thread calls `Handle::spawn` into the runtime, which sits in
/// `block_on`; the task answers through a channel.
///
/// # Errors
///
/// When the runtime cannot be built or the measuring thread panics.
pub fn threadsafe_latency(n: u64) -> BenchResult {
    let rt = runtime()?;
    let handle = rt.handle().clone();
    let finished = Countdown::new(1);
    let fin = finished.clone();
    let worker = thread::spawn(move || {
        let result = common::round_trips(n, |reply| {
            handle.spawn(async move { reply.send() });
            true
        });
        fin.done();
        result
    });
    rt.block_on(finished.wait());
    let (took, elapsed) = worker.join().map_err(|_| "the measuring thread panicked")?;
    Ok(Sample::from_round_trips(&took, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_complete() {
        assert_eq!(callbacks(1000).unwrap().ops, 1000);
        assert_eq!(timers(500).unwrap().ops, 500);
        assert_eq!(timers_cancel(500).unwrap().ops, 500);
        assert_eq!(threadsafe_latency(50).unwrap().ops, 50);
    }
}
