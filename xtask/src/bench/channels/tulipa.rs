//! The `channels` workloads on `tulipa-futures`: between two tasks of one loop the local pipe
//! ([`message::local_buffered`], capacity 1024, and the rendezvous [`message::local_pipe`]), and
//! the thread-crossing [`message::buffered`] for `pipe_shared` (the same pipe on one loop) and
//! `pipe_threads`. Each loop is run by [`tulipa_futures::run`], the producer a task spawned with
//! [`spawn`] (one loop) or the main task of another thread's loop (`pipe_threads`).
//!
//! `tulipa-micro` runs these same functions.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use tulipa_futures::message::{self, LocalRecver, LocalSender, Recver, Sender};
use tulipa_futures::spawn;

use super::{check, thread_name};
use crate::bench::{BenchResult, Sample, Workload};

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When the loop or a task fails, or `workload` is not of suite `channels`.
pub fn run(workload: Workload) -> BenchResult {
    match workload {
        Workload::PipeLocal => local(super::ITEMS, super::CAPACITY),
        Workload::PipeShared => shared(super::ITEMS, super::CAPACITY),
        Workload::PipeThreads => threads(super::ITEMS, super::CAPACITY),
        Workload::RendezvousLocal => local(super::RENDEZVOUS_ITEMS, 0),
        _ => Err(crate::bench::wrong_suite(
            workload,
            "bench::channels::tulipa",
        )),
    }
}

/// `buffered(cap)`, or the rendezvous `pipe()` for `cap == 0`.
fn channel(cap: usize) -> (Sender<u64>, Recver<u64>) {
    if cap == 0 {
        message::pipe()
    } else {
        message::buffered(cap)
    }
}

/// Sends `0..n` into `tx`.
async fn produce(tx: Sender<u64>, n: u64) -> tulipa_futures::Result<()> {
    for i in 0..n {
        tx.send(i).await?;
    }
    Ok(())
}

/// Receives `n` items from `rx`; their sum.
async fn consume(rx: &Recver<u64>, n: u64) -> tulipa_futures::Result<u64> {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(rx.recv().await?);
    }
    Ok(sum)
}

/// Sends `0..n` into the local `tx`.
async fn produce_local(tx: LocalSender<u64>, n: u64) -> tulipa_futures::Result<()> {
    for i in 0..n {
        tx.send(i).await?;
    }
    Ok(())
}

/// Receives `n` items from the local `rx`; their sum.
async fn consume_local(rx: &LocalRecver<u64>, n: u64) -> tulipa_futures::Result<u64> {
    let mut sum = 0u64;
    for _ in 0..n {
        sum = sum.wrapping_add(rx.recv().await?);
    }
    Ok(sum)
}

/// `n` items through the local pipe `local_buffered(cap)` (`local_pipe()` for `cap == 0`) from
/// a spawned producer task to the main task of one loop.
///
/// # Errors
///
/// When the loop or a task fails, or the sum is wrong.
pub fn local(n: u64, cap: usize) -> BenchResult {
    let (elapsed, sum) = tulipa_futures::run(async move {
        let start = Instant::now();
        let (tx, rx) = if cap == 0 {
            message::local_pipe()
        } else {
            message::local_buffered(cap)
        };
        let producer = spawn(produce_local(tx, n))?;
        let sum = consume_local(&rx, n).await?;
        let elapsed = start.elapsed();
        producer.await?;
        Ok((elapsed, sum))
    })?;
    check("tulipa", sum, n)?;
    Ok(Sample::new(n, elapsed))
}

/// As [`local`], through the thread-crossing `buffered(cap)` (`pipe()` for `cap == 0`).
///
/// # Errors
///
/// When the loop or a task fails, or the sum is wrong.
pub fn shared(n: u64, cap: usize) -> BenchResult {
    let (elapsed, sum) = tulipa_futures::run(async move {
        let start = Instant::now();
        let (tx, rx) = channel(cap);
        let producer = spawn(produce(tx, n))?;
        let sum = consume(&rx, n).await?;
        let elapsed = start.elapsed();
        producer.await?;
        Ok((elapsed, sum))
    })?;
    check("tulipa", sum, n)?;
    Ok(Sample::new(n, elapsed))
}

/// `n` items through `buffered(cap)` from the main task of a loop on a producer thread (the
/// `Sender` moved there) to the main task of a loop on this thread.
///
/// # Errors
///
/// When a loop fails, the producer thread cannot start or panics, or the sum is wrong.
pub fn threads(n: u64, cap: usize) -> BenchResult {
    let (tx, rx) = channel(cap);
    let barrier = Arc::new(Barrier::new(2));
    let ready = barrier.clone();
    let producer = thread::Builder::new()
        .name(thread_name("tulipa", "producer"))
        .spawn(move || {
            tulipa_futures::run(async move {
                ready.wait();
                produce(tx, n).await
            })
            .map_err(|e| e.to_string())
        })?;
    let consumed = tulipa_futures::run(async move {
        barrier.wait();
        let start = Instant::now();
        let sum = consume(&rx, n).await?;
        Ok((start.elapsed(), sum))
    });
    producer
        .join()
        .map_err(|_| "tulipa: the producer thread panicked")??;
    let (elapsed, sum) = consumed?;
    check("tulipa", sum, n)?;
    Ok(Sample::new(n, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_complete() {
        assert_eq!(local(5000, 16).unwrap().ops, 5000);
        assert_eq!(local(1000, 0).unwrap().ops, 1000);
        assert_eq!(shared(5000, 16).unwrap().ops, 5000);
        assert_eq!(shared(1000, 0).unwrap().ops, 1000);
        assert_eq!(threads(5000, 16).unwrap().ops, 5000);
    }
}
