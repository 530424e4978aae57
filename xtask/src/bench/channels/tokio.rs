//! The `channels` workloads on tokio: `tokio::sync::mpsc::channel` (capacity 1024, or 1 for
//! `rendezvous_local`: tokio has no rendezvous channel) on current-thread runtimes without I/O or
//! time drivers; the producer is a `tokio::spawn`ed task (one runtime) or the `block_on` future
//! of a second runtime on another thread (`pipe_threads`).

use std::error::Error;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use ::tokio::runtime::{Builder, Runtime};
use ::tokio::sync::mpsc::{self, Receiver, Sender};

use super::{check, thread_name};
use crate::bench::{BenchResult, Sample, Workload};

type Outcome<T> = Result<T, Box<dyn Error>>;

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When a runtime cannot be built, a task fails, or `workload` is not of suite `channels`.
pub fn run(workload: Workload) -> BenchResult {
    match workload {
        Workload::PipeLocal | Workload::PipeShared => local(super::ITEMS, super::CAPACITY),
        Workload::PipeThreads => threads(super::ITEMS, super::CAPACITY),
        Workload::RendezvousLocal => local(super::RENDEZVOUS_ITEMS, 1),
        _ => Err(crate::bench::wrong_suite(
            workload,
            "bench::channels::tokio",
        )),
    }
}

fn runtime() -> std::io::Result<Runtime> {
    Builder::new_current_thread().build()
}

/// Sends `0..n` into `tx`; false when the receiver went away.
async fn produce(tx: Sender<u64>, n: u64) -> bool {
    for i in 0..n {
        if tx.send(i).await.is_err() {
            return false;
        }
    }
    true
}

/// Receives `n` items from `rx`; their sum.
async fn consume(rx: &mut Receiver<u64>, n: u64) -> Outcome<u64> {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(rx.recv().await.ok_or("tokio: the channel closed early")?);
    }
    Ok(sum)
}

/// `n` items through `mpsc::channel(cap)` from a `tokio::spawn`ed producer to the `block_on`
/// future of one current-thread runtime.
///
/// # Errors
///
/// When the runtime cannot be built, the producer fails, or the sum is wrong.
pub fn local(n: u64, cap: usize) -> BenchResult {
    let rt = runtime()?;
    let (elapsed, sum) = rt.block_on(async move {
        let start = Instant::now();
        let (tx, mut rx) = mpsc::channel(cap);
        let producer = ::tokio::spawn(produce(tx, n));
        let sum = consume(&mut rx, n).await?;
        let elapsed = start.elapsed();
        if !producer.await? {
            return Err("tokio: the producer's receiver went away".into());
        }
        Outcome::Ok((elapsed, sum))
    })?;
    check("tokio", sum, n)?;
    Ok(Sample::new(n, elapsed))
}

/// `n` items through `mpsc::channel(cap)` from the `block_on` future of a current-thread runtime
/// on a producer thread to that of another on this thread.
///
/// # Errors
///
/// When a runtime cannot be built, the producer thread cannot start or panics, or the sum is
/// wrong.
pub fn threads(n: u64, cap: usize) -> BenchResult {
    let (tx, mut rx) = mpsc::channel(cap);
    let barrier = Arc::new(Barrier::new(2));
    let ready = barrier.clone();
    let producer = thread::Builder::new()
        .name(thread_name("tokio", "producer"))
        .spawn(move || {
            let rt = runtime().map_err(|e| e.to_string())?;
            rt.block_on(async move {
                ready.wait();
                produce(tx, n).await
            })
            .then_some(())
            .ok_or_else(|| "tokio: the producer's receiver went away".to_string())
        })?;
    let rt = runtime()?;
    let consumed = rt.block_on(async move {
        barrier.wait();
        let start = Instant::now();
        let sum = consume(&mut rx, n).await?;
        Outcome::Ok((start.elapsed(), sum))
    });
    producer
        .join()
        .map_err(|_| "tokio: the producer thread panicked")??;
    let (elapsed, sum) = consumed?;
    check("tokio", sum, n)?;
    Ok(Sample::new(n, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_complete() {
        assert_eq!(local(5000, 16).unwrap().ops, 5000);
        assert_eq!(local(1000, 1).unwrap().ops, 1000);
        assert_eq!(threads(5000, 16).unwrap().ops, 5000);
    }
}
