//! The `tasks` workloads on smol's parts: a `LocalExecutor` run by `async_io::block_on` (what
//! `smol::block_on` is), `async_channel::bounded(1)` for the one-shot futures (smol has no
//! oneshot of its own).
//!
//! `executor`: smol's own pool is the `blocking` crate, which is not a dependency here; instead a
//! minimal pool of one worker thread fed by an `async_channel`, answering on a `bounded(1)`
//! channel per call — what `blocking::unblock` does in essence, without its thread management.

use std::cell::Cell;
use std::error::Error;
use std::rc::Rc;
use std::thread;
use std::time::Instant;

use async_channel::{Receiver, RecvError, Sender};
use async_executor::{LocalExecutor, Task};
use async_io::block_on;
use futures_lite::future::yield_now;

use super::{cap, check, ns_since, rss_kib};
use crate::bench::{BenchResult, Sample, Workload};

type Outcome<T> = Result<T, Box<dyn Error>>;

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When a task fails or `workload` is not of suite `tasks`.
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
            Err(crate::bench::wrong_suite(workload, "bench::tasks::smol"))
        }
    }
}

/// Awaits every receiving task in order; the sum of their values.
async fn sum_all(tasks: Vec<Task<Result<u32, RecvError>>>) -> Outcome<u64> {
    let mut sum = 0;
    for t in tasks {
        sum += u64::from(t.await?);
    }
    Ok(sum)
}

/// `n` tasks `ex.spawn(async {})`, the `Task`s kept in a `Vec`, then each awaited.
///
/// # Errors
///
/// Never; the signature matches the other runtimes.
pub fn spawn_tasks(n: u64) -> BenchResult {
    let ex = LocalExecutor::new();
    let elapsed = block_on(ex.run(async {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(cap(n));
        for _ in 0..n {
            tasks.push(ex.spawn(async {}));
        }
        for t in tasks {
            t.await;
        }
        start.elapsed()
    }));
    Ok(Sample::new(n, elapsed))
}

/// `n` tasks, each awaiting `recv` on its own `bounded(1)` channel into which 1 was sent (and
/// whose sender was dropped) before the spawn; each task awaited.
///
/// # Errors
///
/// When a send or a task fails.
pub fn completed(n: u64) -> BenchResult {
    let ex = LocalExecutor::new();
    let (elapsed, sum) = block_on(ex.run(async {
        let start = Instant::now();
        let mut tasks = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let (tx, rx) = async_channel::bounded::<u32>(1);
            tx.try_send(1)?;
            tasks.push(ex.spawn(async move { rx.recv().await }));
        }
        let sum = sum_all(tasks).await?;
        Outcome::Ok((start.elapsed(), sum))
    }))?;
    check("smol", "sum of the task results", sum, n)?;
    Ok(Sample::new(n, elapsed))
}

/// `n` `bounded(1)` channels, `n` tasks each awaiting `recv`, then one resolver task sending 1
/// into every channel; every task awaited.
///
/// # Errors
///
/// When a send or a task fails.
pub fn resolve(n: u64) -> BenchResult {
    let ex = LocalExecutor::new();
    let (elapsed, sum) = block_on(ex.run(async {
        let start = Instant::now();
        let mut senders: Vec<Sender<u32>> = Vec::with_capacity(cap(n));
        let mut waiters = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let (tx, rx) = async_channel::bounded::<u32>(1);
            senders.push(tx);
            waiters.push(ex.spawn(async move { rx.recv().await }));
        }
        let resolver = ex.spawn(async move {
            for tx in senders {
                tx.try_send(1)?;
            }
            Outcome::Ok(())
        });
        let sum = sum_all(waiters).await?;
        resolver.await?;
        Outcome::Ok((start.elapsed(), sum))
    }))?;
    check("smol", "sum of the task results", sum, n)?;
    Ok(Sample::new(n, elapsed))
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the worker behind `jobs`; resolves with its value.
async fn unblock(jobs: &Sender<Job>, f: impl FnOnce() -> u32 + Send + 'static) -> Outcome<u32> {
    let (tx, rx) = async_channel::bounded(1);
    jobs.try_send(Box::new(move || {
        // The caller waits for the answer; it can only be gone if it failed.
        let _ = tx.try_send(f());
    }))
    .map_err(|_| "the worker thread is gone")?;
    Ok(rx.recv().await?)
}

fn worker(jobs: Receiver<Job>) {
    while let Ok(job) = jobs.recv_blocking() {
        job();
    }
}

/// `n` round trips to a one-thread pool (`unblock` above), one after the other, from a task on the
/// `LocalExecutor`.
///
/// # Errors
///
/// When the worker thread cannot start or dies.
pub fn executor(n: u64) -> BenchResult {
    let (jobs, queue) = async_channel::unbounded::<Job>();
    let pool = thread::Builder::new()
        .name("smol-bench-pool".into())
        .spawn(move || worker(queue))?;
    let ex = LocalExecutor::new();
    let outcome = block_on(ex.run(async {
        let mut took = Vec::with_capacity(cap(n));
        let mut sum = 0u64;
        let start = Instant::now();
        for _ in 0..n {
            let t0 = Instant::now();
            sum += u64::from(unblock(&jobs, || 1).await?);
            took.push(ns_since(t0));
        }
        Outcome::Ok((took, start.elapsed(), sum))
    }));
    drop(jobs);
    pool.join().map_err(|_| "the pool thread panicked")?;
    let (took, elapsed, sum) = outcome?;
    check("smol", "sum of the results", sum, n)?;
    Ok(Sample::from_round_trips(&took, elapsed))
}

/// `n` tasks each awaiting `recv` on a `bounded(1)` channel whose sender is kept (in a `Vec`)
/// and never used; the tasks are detached. The main future yields until all have started, then
/// reads `VmRSS`.
///
/// # Errors
///
/// When `/proc/self/status` cannot be read.
pub fn pending_memory(n: u64) -> BenchResult {
    let ex = LocalExecutor::new();
    block_on(ex.run(async {
        let started = Rc::new(Cell::new(0u64));
        let before = rss_kib()?;
        let start = Instant::now();
        let mut senders: Vec<Sender<u32>> = Vec::with_capacity(cap(n));
        for _ in 0..n {
            let (tx, rx) = async_channel::bounded::<u32>(1);
            senders.push(tx);
            let s = started.clone();
            ex.spawn(async move {
                s.set(s.get() + 1);
                rx.recv().await
            })
            .detach();
        }
        while started.get() < n {
            yield_now().await;
        }
        let elapsed = start.elapsed();
        let after = rss_kib()?;
        drop(senders);
        Ok(Sample::from_rss(n, before, after, elapsed))
    }))
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
