//! The `tasks` workloads on `tulipa-futures`: every workload is the main task of
//! [`tulipa_futures::run`] (asyncio's `asyncio.run`), which spawns with [`spawn`] and awaits
//! [`Task`]s and [`Future`]s; `executor` uses [`run_in_executor`] with the default pool.
//!
//! `tulipa-micro` runs these same functions.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulipa_futures::rt::EventLoop;
use tulipa_futures::{run_in_executor, sleep, spawn, Future, Task};

use super::{cap, check, ns_since, rss_kib};
use crate::bench::{BenchResult, Sample, Workload};

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When the loop fails, a task fails, or `workload` is not of suite `tasks`.
pub fn run(workload: Workload) -> BenchResult {
    match workload {
        Workload::Spawn => spawn_tasks(super::SPAWNS),
        Workload::Tasks => completed(super::TASKS),
        Workload::Resolve => resolve(super::RESOLVES),
        Workload::Executor => executor(super::EXECUTOR_ROUND_TRIPS),
        Workload::PendingMemory => pending_memory(super::PENDING),
        Workload::Callbacks
        | Workload::Timers
        | Workload::TimersCancel
        | Workload::ThreadsafeLatency
        | Workload::PipeLocal
        | Workload::PipeShared
        | Workload::PipeThreads
        | Workload::RendezvousLocal => {
            Err(crate::bench::wrong_suite(workload, "bench::tasks::tulipa"))
        }
    }
}

/// Awaits every task in order; the sum of their values.
async fn sum_all(tasks: Vec<Task<u32>>) -> tulipa_futures::Result<u64> {
    let mut sum = 0;
    for t in tasks {
        sum += u64::from(t.await?);
    }
    Ok(sum)
}

/// `n` tasks `spawn(async { Ok(()) })`, kept in a `Vec`, then each awaited.
///
/// # Errors
///
/// When the loop or a task fails.
pub fn spawn_tasks(n: u64) -> BenchResult {
    let sample = tulipa_futures::run(async move {
        let start = Instant::now();
        let mut tasks: Vec<Task<()>> = Vec::with_capacity(cap(n));
        for _ in 0..n {
            tasks.push(spawn(async { Ok(()) })?);
        }
        for t in tasks {
            t.await?;
        }
        Ok(Sample::new(n, start.elapsed()))
    })?;
    Ok(sample)
}

/// `n` tasks, each awaiting its own `Future<u32>` on which `set_result(1)` was called before the
/// spawn (an `Ok` value is moved out by the await, so the futures cannot be shared). Each task
/// is awaited; the values must add up to `n`.
///
/// # Errors
///
/// When the loop or a task fails.
// A task whose body awaits the future, as the workload says (not the future as the task).
#[allow(clippy::redundant_async_block)]
pub fn completed(n: u64) -> BenchResult {
    let (sample, sum) = tulipa_futures::run(async move {
        let lp = EventLoop::running()?;
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let fut: Future<u32> = Future::new(&lp);
            fut.set_result(1)?;
            tasks.push(spawn(async move { fut.await })?);
        }
        let sum = sum_all(tasks).await?;
        Ok((Sample::new(n, start.elapsed()), sum))
    })?;
    check("tulipa", "sum of the task results", sum, n)?;
    Ok(sample)
}

/// `n` pending `Future<u32>`s, `n` tasks each awaiting one, then one resolver task calling
/// `set_result(1)` on each (spawned last, so it runs after every waiter is pending). Every task
/// is awaited.
///
/// # Errors
///
/// When the loop or a task fails.
// A task whose body awaits the future, as the workload says (not the future as the task).
#[allow(clippy::redundant_async_block)]
pub fn resolve(n: u64) -> BenchResult {
    let (sample, sum) = tulipa_futures::run(async move {
        let lp = EventLoop::running()?;
        let start = Instant::now();
        let mut futs: Vec<Future<u32>> = Vec::with_capacity(cap(n));
        let mut waiters = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let fut = Future::new(&lp);
            futs.push(fut.clone());
            waiters.push(spawn(async move { fut.await })?);
        }
        let resolver = spawn(async move {
            for f in futs {
                f.set_result(1)?;
            }
            Ok(())
        })?;
        let sum = sum_all(waiters).await?;
        resolver.await?;
        Ok((Sample::new(n, start.elapsed()), sum))
    })?;
    check("tulipa", "sum of the task results", sum, n)?;
    Ok(sample)
}

/// `n` round trips `run_in_executor(&lp, None, || 1).await`, one after the other, on the loop's
/// default `ThreadPoolExecutor`.
///
/// # Errors
///
/// When the loop, the pool or a task fails.
pub fn executor(n: u64) -> BenchResult {
    let (took, elapsed, sum) = tulipa_futures::run(async move {
        let lp = EventLoop::running()?;
        let mut took = Vec::with_capacity(cap(n));
        let mut sum = 0u64;
        let start = Instant::now();
        for _ in 0..n {
            let t0 = Instant::now();
            sum += u64::from(run_in_executor(&lp, None, || 1u32)?.await?);
            took.push(ns_since(t0));
        }
        Ok((took, start.elapsed(), sum))
    })?;
    check("tulipa", "sum of the results", sum, n)?;
    Ok(Sample::from_round_trips(&took, elapsed))
}

/// `n` tasks each awaiting its own `Future<u32>` that is never completed (the main task keeps
/// the futures in a `Vec`, drops the `Task` handles); the main task yields (`sleep(0)`) until all
/// have started. Reports the `VmRSS` grown from before the first spawn. `run` cancels the
/// tasks afterwards.
///
/// # Errors
///
/// When the loop fails or `/proc/self/status` cannot be read.
pub fn pending_memory(n: u64) -> BenchResult {
    let sample = tulipa_futures::run(async move {
        let lp = EventLoop::running()?;
        let started = Rc::new(Cell::new(0u64));
        let before = rss_kib()?;
        let start = Instant::now();
        let mut futs: Vec<Future<u32>> = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let fut = Future::new(&lp);
            futs.push(fut.clone());
            let s = started.clone();
            drop(spawn(async move {
                s.set(s.get() + 1);
                fut.await
            })?);
        }
        while started.get() < n {
            sleep(Duration::ZERO).await?;
        }
        let elapsed = start.elapsed();
        let after = rss_kib()?;
        drop(futs);
        Ok(Sample::from_rss(n, before, after, elapsed))
    })?;
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_complete() {
        assert_eq!(spawn_tasks(1000).unwrap().ops, 1000);
        assert_eq!(completed(1000).unwrap().ops, 1000);
        assert_eq!(resolve(1000).unwrap().ops, 1000);
        assert_eq!(executor(50).unwrap().ops, 50);
        assert!(pending_memory(1000).unwrap().bytes_per_task.is_some());
    }
}
