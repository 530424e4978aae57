//! Suite `tasks`: tasks and futures (`tulipa-futures`) against the peers' tasks, one module per
//! runtime ([`tulipa`], [`tokio`], [`smol`]), the same five workloads in each.
//!
//! - `spawn`: [`SPAWNS`] trivial tasks spawned from inside the main task, then each awaited;
//! - `tasks`: [`TASKS`] tasks, each awaiting its own one-shot future completed before the spawn;
//! - `resolve`: [`RESOLVES`] tasks, each awaiting a pending one-shot future that one resolver
//!   task (spawned after them) completes;
//! - `executor`: [`EXECUTOR_ROUND_TRIPS`] calls of a trivial closure on a thread pool, each
//!   awaited before the next;
//! - `pending_memory`: [`PENDING`] tasks each awaiting a future nobody completes; the resident set
//!   grown from before the first spawn to when all of them are pending, per task.
//!
//! Times start inside the main task (the runtime already exists) and cover spawning and running.

pub mod smol;
pub mod tokio;
pub mod tulipa;

use std::time::Instant;

use super::common;

/// Tasks in the `spawn` workload.
pub const SPAWNS: u64 = 1_000_000;
/// Tasks in the `tasks` workload.
pub const TASKS: u64 = 200_000;
/// Tasks (and futures) in the `resolve` workload.
pub const RESOLVES: u64 = 200_000;
/// Round trips in the `executor` workload.
pub const EXECUTOR_ROUND_TRIPS: u64 = 20_000;
/// Pending tasks in the `pending_memory` workload.
pub const PENDING: u64 = 100_000;

/// `n` as a `Vec` capacity.
fn cap(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Nanoseconds since `t0`, for round-trip lists.
fn ns_since(t0: Instant) -> u64 {
    u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The current `VmRSS`, or an error where `/proc/self/status` cannot tell.
fn rss_kib() -> std::io::Result<u64> {
    common::rss_kib()
        .ok_or_else(|| std::io::Error::other("cannot read VmRSS from /proc/self/status"))
}

/// An error unless `got == want`.
fn check(runtime: &str, what: &str, got: u64, want: u64) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{runtime}: {what}: {got}, expected {want}"))
    }
}
