//! The `tasks` workloads on tokio's current-thread runtime (no I/O or time driver: these
//! workloads need neither): `tokio::spawn` from inside `block_on`, `JoinHandle`s awaited,
//! `tokio::sync::oneshot` for the futures, `spawn_blocking` for the pool.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ::tokio::runtime::{Builder, Runtime};
use ::tokio::sync::oneshot;
use ::tokio::task::{spawn_blocking, yield_now, JoinHandle};

use super::{cap, check, ns_since, rss_kib};
use crate::bench::{BenchResult, Sample, Workload};

type Outcome<T> = Result<T, Box<dyn Error>>;

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When the runtime cannot be built, a task fails, or `workload` is not of suite `tasks`.
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
            Err(crate::bench::wrong_suite(workload, "bench::tasks::tokio"))
        }
    }
}

fn runtime() -> std::io::Result<Runtime> {
    Builder::new_current_thread().build()
}

/// Awaits every receiving task in order; the sum of their values.
async fn sum_all(handles: Vec<JoinHandle<Result<u32, oneshot::error::RecvError>>>) -> Outcome<u64> {
    let mut sum = 0;
    for h in handles {
        sum += u64::from(h.await??);
    }
    Ok(sum)
}

/// `n` tasks `tokio::spawn(async {})`, the `JoinHandle`s kept in a `Vec`, then each awaited.
///
/// # Errors
///
/// When the runtime cannot be built or a task fails.
pub fn spawn_tasks(n: u64) -> BenchResult {
    let rt = runtime()?;
    rt.block_on(async move {
        let start = Instant::now();
        let mut handles = Vec::with_capacity(cap(n));
        for _ in 0..n {
            handles.push(::tokio::spawn(async {}));
        }
        for h in handles {
            h.await?;
        }
        Ok(Sample::new(n, start.elapsed()))
    })
}

/// `n` tasks, each awaiting the receiver of its own `oneshot` channel on which `send(1)` was
/// called before the spawn; each task awaited.
///
/// # Errors
///
/// When the runtime cannot be built or a task fails.
// A task whose body awaits the future, as the workload says (not the future as the task).
#[allow(clippy::redundant_async_block)]
pub fn completed(n: u64) -> BenchResult {
    let rt = runtime()?;
    let (sample, sum) = rt.block_on(async move {
        let start = Instant::now();
        let mut handles = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let (tx, rx) = oneshot::channel::<u32>();
            tx.send(1).map_err(|_| "oneshot send failed")?;
            handles.push(::tokio::spawn(async move { rx.await }));
        }
        let sum = sum_all(handles).await?;
        Outcome::Ok((Sample::new(n, start.elapsed()), sum))
    })?;
    check("tokio", "sum of the task results", sum, n)?;
    Ok(sample)
}

/// `n` `oneshot` channels, `n` tasks each awaiting a receiver, then one resolver task sending 1
/// on every sender; every task awaited.
///
/// # Errors
///
/// When the runtime cannot be built or a task fails.
// A task whose body awaits the future, as the workload says (not the future as the task).
#[allow(clippy::redundant_async_block)]
pub fn resolve(n: u64) -> BenchResult {
    let rt = runtime()?;
    let (sample, sum) = rt.block_on(async move {
        let start = Instant::now();
        let mut senders = Vec::with_capacity(cap(n));
        let mut waiters = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let (tx, rx) = oneshot::channel::<u32>();
            senders.push(tx);
            waiters.push(::tokio::spawn(async move { rx.await }));
        }
        let resolver = ::tokio::spawn(async move {
            for tx in senders {
                // A receiver cannot be gone: every waiter awaits its own until it has the value.
                let _ = tx.send(1);
            }
        });
        let sum = sum_all(waiters).await?;
        resolver.await?;
        Outcome::Ok((Sample::new(n, start.elapsed()), sum))
    })?;
    check("tokio", "sum of the task results", sum, n)?;
    Ok(sample)
}

/// `n` round trips `spawn_blocking(|| 1).await`, one after the other, on the runtime's blocking
/// pool.
///
/// # Errors
///
/// When the runtime cannot be built or a blocking task fails.
pub fn executor(n: u64) -> BenchResult {
    let rt = runtime()?;
    let (took, elapsed, sum) = rt.block_on(async move {
        let mut took = Vec::with_capacity(cap(n));
        let mut sum = 0u64;
        let start = Instant::now();
        for _ in 0..n {
            let t0 = Instant::now();
            sum += u64::from(spawn_blocking(|| 1u32).await?);
            took.push(ns_since(t0));
        }
        Outcome::Ok((took, start.elapsed(), sum))
    })?;
    check("tokio", "sum of the results", sum, n)?;
    Ok(Sample::from_round_trips(&took, elapsed))
}

/// `n` tasks each awaiting a `oneshot` receiver whose sender is kept (in a `Vec`) and never
/// used; the `JoinHandle`s are dropped (tasks detached). The main task yields until all have
/// started, then reads `VmRSS`.
///
/// # Errors
///
/// When the runtime cannot be built or `/proc/self/status` cannot be read.
pub fn pending_memory(n: u64) -> BenchResult {
    let rt = runtime()?;
    rt.block_on(async move {
        let started = Arc::new(AtomicU64::new(0));
        let before = rss_kib()?;
        let start = Instant::now();
        let mut senders = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let (tx, rx) = oneshot::channel::<u32>();
            senders.push(tx);
            let s = started.clone();
            drop(::tokio::spawn(async move {
                s.fetch_add(1, Ordering::Relaxed);
                rx.await
            }));
        }
        while started.load(Ordering::Relaxed) < n {
            yield_now().await;
        }
        let elapsed = start.elapsed();
        let after = rss_kib()?;
        drop(senders);
        Ok(Sample::from_rss(n, before, after, elapsed))
    })
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
