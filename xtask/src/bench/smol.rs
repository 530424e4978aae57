//! The workloads on smol's parts: `async-executor` executors driven by `async_io::block_on`
//! (which is what `smol::block_on` is), timers from `async_io::Timer`.

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use async_executor::{Executor, LocalExecutor, Task};
use async_io::{block_on, Timer};
use futures_lite::future::poll_once;

use super::common::{self, Countdown, Delays, DropSignal};
use super::{BenchResult, Sample, Workload};

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When a thread panics or `workload` is not of suite `loop`.
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
        | Workload::RendezvousLocal => Err(super::wrong_suite(workload, "bench::smol")),
    }
}

/// `n` trivial tasks spawned on a `LocalExecutor` from inside its `run`, each counting down.
///
/// # Errors
///
/// Never; the signature matches the other runtimes.
pub fn callbacks(n: u64) -> BenchResult {
    let ex = LocalExecutor::new();
    let done = Countdown::new(n);
    let start = Instant::now();
    block_on(ex.run(async {
        for _ in 0..n {
            let done = done.clone();
            ex.spawn(async move { done.done() }).detach();
        }
        done.wait().await;
    }));
    Ok(Sample::new(n, start.elapsed()))
}

/// `n` tasks, each awaiting an `async_io::Timer` of the deterministic 0–10 ms [`Delays`].
///
/// # Errors
///
/// Never; the signature matches the other runtimes.
pub fn timers(n: u64) -> BenchResult {
    let ex = LocalExecutor::new();
    let done = Countdown::new(n);
    let start = Instant::now();
    block_on(ex.run(async {
        for delay in Delays::new().take(usize::try_from(n).unwrap_or(usize::MAX)) {
            let done = done.clone();
            ex.spawn(async move {
                Timer::after(delay).await;
                done.done();
            })
            .detach();
        }
        done.wait().await;
    }));
    Ok(Sample::new(n, start.elapsed()))
}

/// `n` tasks each arming a 10 s `Timer` (polled once, so it is registered with the reactor),
/// then every `Task` dropped (which cancels it), until the executor has dropped every future.
///
/// # Errors
///
/// Never; the signature matches the other runtimes.
pub fn timers_cancel(n: u64) -> BenchResult {
    let ex = LocalExecutor::new();
    let (armed, dropped) = (Countdown::new(n), Countdown::new(n));
    let start = Instant::now();
    block_on(ex.run(async {
        let tasks: Vec<Task<()>> = (0..n)
            .map(|_| {
                let (armed, signal) = (armed.clone(), DropSignal(dropped.clone()));
                ex.spawn(async move {
                    let _signal = signal;
                    let mut timer = Timer::after(common::CANCEL_AHEAD);
                    let _ = poll_once(&mut timer).await;
                    armed.done();
                    timer.await;
                })
            })
            .collect();
        armed.wait().await;
        drop(tasks);
        dropped.wait().await;
    }));
    Ok(Sample::new(n, start.elapsed()))
}

/// `n` round trips: another thread calls `Executor::spawn` on the executor that the main
/// thread runs in `block_on`; the task answers through a channel.
///
/// # Errors
///
/// When the measuring thread panics.
pub fn threadsafe_latency(n: u64) -> BenchResult {
    let ex: Arc<Executor<'static>> = Arc::new(Executor::new());
    let finished = Countdown::new(1);
    let (remote, fin) = (ex.clone(), finished.clone());
    let worker = thread::spawn(move || {
        let result = common::round_trips(n, |reply| {
            remote.spawn(async move { reply.send() }).detach();
            true
        });
        fin.done();
        result
    });
    block_on(ex.run(finished.wait()));
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
