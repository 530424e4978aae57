//! The benchmark: the same workloads on Tulipa and on its peers (tokio's current-thread runtime,
//! smol's executors on `async-io`), in three suites (see [`Suite`]).
//!
//! Suite `loop`: each workload of each runtime lives in that runtime's module ([`tulipa`],
//! [`tokio`], [`smol`]). Suites `tasks` and `channels`: in [`tasks`]'s and [`channels`]'s modules
//! of the same names. One process
//! measures one workload on one runtime ([`measure`]) and prints one JSON line
//! ([`Sample::to_json`]); `cargo xtask bench loop|tasks|channels` runs such processes and
//! compares.

pub mod channels;
pub mod common;
pub mod smol;
pub mod tasks;
pub mod tokio;
pub mod tulipa;
mod workload;

use std::error::Error;
use std::time::Duration;

pub use workload::{Runtime, Suite, Workload};

/// What a workload function returns when it fails.
pub type BenchResult = Result<Sample, Box<dyn Error>>;

/// One measurement of one workload.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Operations done (callbacks, timers, tasks, round trips).
    pub ops: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Median round-trip time in microseconds (round-trip workloads only).
    pub median_us: Option<f64>,
    /// 99th-percentile round-trip time in microseconds (round-trip workloads only).
    pub p99_us: Option<f64>,
    /// Resident memory added per pending task, in bytes (memory workloads only).
    pub bytes_per_task: Option<f64>,
}

impl Sample {
    /// A throughput sample.
    pub fn new(ops: u64, elapsed: Duration) -> Self {
        Sample {
            ops,
            elapsed,
            median_us: None,
            p99_us: None,
            bytes_per_task: None,
        }
    }

    /// A latency sample from per-round-trip nanoseconds and the total time.
    pub fn from_round_trips(took_ns: &[u64], elapsed: Duration) -> Self {
        Sample {
            median_us: common::median(took_ns).map(|ns| ns as f64 / 1e3),
            p99_us: common::percentile(took_ns, 99).map(|ns| ns as f64 / 1e3),
            ..Sample::new(took_ns.len() as u64, elapsed)
        }
    }

    /// A memory sample: `tasks` pending tasks grew the resident set from `before_kib` to
    /// `after_kib` (both `VmRSS`) in `elapsed`.
    pub fn from_rss(tasks: u64, before_kib: u64, after_kib: u64, elapsed: Duration) -> Self {
        let grown = after_kib.saturating_sub(before_kib) as f64 * 1024.0;
        Sample {
            bytes_per_task: Some(grown / tasks.max(1) as f64),
            ..Sample::new(tasks, elapsed)
        }
    }

    /// Operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The one JSON line a bench child prints, with this process's peak RSS.
    pub fn to_json(&self, runtime: Runtime, workload: Workload) -> String {
        serde_json::json!({
            "runtime": runtime.name(),
            "bench": workload.name(),
            "ops": self.ops,
            "secs": self.elapsed.as_secs_f64(),
            "ops_per_s": self.ops_per_s().round() as u64,
            "median_us": self.median_us,
            "p99_us": self.p99_us,
            "bytes_per_task": self.bytes_per_task,
            "peak_rss_kib": common::peak_rss_kib(),
        })
        .to_string()
    }
}

/// Runs `workload` on `runtime` once, in this process.
///
/// # Errors
///
/// When the runtime cannot be set up or fails during the run.
pub fn measure(runtime: Runtime, workload: Workload) -> BenchResult {
    match (workload.suite(), runtime) {
        (Suite::Loop, Runtime::Tulipa) => tulipa::run(workload),
        (Suite::Loop, Runtime::Tokio) => tokio::run(workload),
        (Suite::Loop, Runtime::Smol) => smol::run(workload),
        (Suite::Tasks, Runtime::Tulipa) => tasks::tulipa::run(workload),
        (Suite::Tasks, Runtime::Tokio) => tasks::tokio::run(workload),
        (Suite::Tasks, Runtime::Smol) => tasks::smol::run(workload),
        (Suite::Channels, Runtime::Tulipa) => channels::tulipa::run(workload),
        (Suite::Channels, Runtime::Tokio) => channels::tokio::run(workload),
        (Suite::Channels, Runtime::Smol) => channels::smol::run(workload),
    }
}

/// The error of a runtime module's `run` given a workload of the other suite.
fn wrong_suite(workload: Workload, module: &str) -> Box<dyn Error> {
    format!(
        "{module}: `{workload}` belongs to suite `{}`",
        workload.suite().name()
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_are_refused() {
        assert!("nope".parse::<Workload>().is_err());
        assert!("nope".parse::<Runtime>().is_err());
        assert!("nope".parse::<Suite>().is_err());
    }

    #[test]
    fn json_line_has_the_fields() {
        let s = Sample::new(10, Duration::from_millis(5));
        let v: serde_json::Value =
            serde_json::from_str(&s.to_json(Runtime::Tulipa, Workload::Callbacks)).unwrap();
        assert_eq!(v["bench"], "callbacks");
        assert_eq!(v["ops_per_s"], 2000);
        assert!(v["bytes_per_task"].is_null());
    }

    #[test]
    fn rss_growth_is_divided_per_task() {
        let s = Sample::from_rss(1000, 100, 200, Duration::from_millis(1));
        assert_eq!(s.bytes_per_task, Some(102.4));
        let shrunk = Sample::from_rss(1000, 200, 100, Duration::from_millis(1));
        assert_eq!(shrunk.bytes_per_task, Some(0.0));
    }
}
