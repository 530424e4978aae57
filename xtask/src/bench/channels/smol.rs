//! The `channels` workloads on smol's parts: `async_channel::bounded` (capacity 1024, or 1 for
//! `rendezvous_local`: async-channel has no rendezvous channel); one loop is a `LocalExecutor`
//! run by `async_io::block_on` (what `smol::block_on` is) with the producer spawned on it;
//! `pipe_threads` is two threads, each `async_io::block_on` on its own future.

use std::error::Error;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use async_channel::{Receiver, Sender};
use async_executor::LocalExecutor;
use async_io::block_on;

use super::{check, thread_name};
use crate::bench::{BenchResult, Sample, Workload};

type Outcome<T> = Result<T, Box<dyn Error>>;

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When a task fails or `workload` is not of suite `channels`.
pub fn run(workload: Workload) -> BenchResult {
    match workload {
        Workload::PipeLocal | Workload::PipeShared => local(super::ITEMS, super::CAPACITY),
        Workload::PipeThreads => threads(super::ITEMS, super::CAPACITY),
        Workload::RendezvousLocal => local(super::RENDEZVOUS_ITEMS, 1),
        _ => Err(crate::bench::wrong_suite(workload, "bench::channels::smol")),
    }
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
async fn consume(rx: &Receiver<u64>, n: u64) -> Outcome<u64> {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(rx.recv().await?);
    }
    Ok(sum)
}

/// `n` items through `bounded(cap)` from a producer task to the main future of a `LocalExecutor`.
///
/// # Errors
///
/// When the producer fails or the sum is wrong.
pub fn local(n: u64, cap: usize) -> BenchResult {
    let ex = LocalExecutor::new();
    let (elapsed, sum) = block_on(ex.run(async {
        let start = Instant::now();
        let (tx, rx) = async_channel::bounded(cap);
        let producer = ex.spawn(produce(tx, n));
        let sum = consume(&rx, n).await?;
        let elapsed = start.elapsed();
        if !producer.await {
            return Err("smol: the producer's receiver went away".into());
        }
        Outcome::Ok((elapsed, sum))
    }))?;
    check("smol", sum, n)?;
    Ok(Sample::new(n, elapsed))
}

/// `n` items through `bounded(cap)` from `block_on` on a producer thread to `block_on` on this
/// thread.
///
/// # Errors
///
/// When the producer thread cannot start or panics, or the sum is wrong.
pub fn threads(n: u64, cap: usize) -> BenchResult {
    let (tx, rx) = async_channel::bounded(cap);
    let barrier = Arc::new(Barrier::new(2));
    let ready = barrier.clone();
    let producer = thread::Builder::new()
        .name(thread_name("smol", "producer"))
        .spawn(move || {
            block_on(async move {
                ready.wait();
                produce(tx, n).await
            })
        })?;
    let consumed = block_on(async move {
        barrier.wait();
        let start = Instant::now();
        let sum = consume(&rx, n).await?;
        Outcome::Ok((start.elapsed(), sum))
    });
    let sent_all = producer
        .join()
        .map_err(|_| "smol: the producer thread panicked")?;
    let (elapsed, sum) = consumed?;
    if !sent_all {
        return Err("smol: the producer's receiver went away".into());
    }
    check("smol", sum, n)?;
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
