//! The event-loop benchmark: the same workloads on Tulipa and on its peers (tokio's
//! current-thread runtime, smol's executors on `async-io`).
//!
//! Each workload of each runtime lives in that runtime's module ([`tulipa`], [`tokio`],
//! [`smol`]). One process measures one workload on one runtime ([`measure`]) and prints one
//! JSON line ([`Sample::to_json`]); `cargo xtask bench loop` runs such processes and compares.

pub mod common;
pub mod smol;
pub mod tokio;
pub mod tulipa;

use std::error::Error;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What a workload function returns when it fails.
pub type BenchResult = Result<Sample, Box<dyn Error>>;

/// A workload of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 1,000,000 callbacks (`call_soon`) or trivial tasks, each bumping a counter.
    Callbacks,
    /// 200,000 timers with pseudo-random 0–10 ms delays, run until all fired.
    Timers,
    /// 200,000 timers 10 s ahead, scheduled then cancelled.
    TimersCancel,
    /// 20,000 round trips from another thread onto the loop and back.
    ThreadsafeLatency,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 4] = [
        Workload::Callbacks,
        Workload::Timers,
        Workload::TimersCancel,
        Workload::ThreadsafeLatency,
    ];

    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Callbacks => "callbacks",
            Workload::Timers => "timers",
            Workload::TimersCancel => "timers_cancel",
            Workload::ThreadsafeLatency => "threadsafe_latency",
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                format!(
                    "unknown workload `{s}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// A runtime under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `tulipa-loop`.
    Tulipa,
    /// tokio's current-thread runtime.
    Tokio,
    /// smol: `async-executor` on `async-io`.
    Smol,
}

impl Runtime {
    /// Every runtime, Tulipa first.
    pub const ALL: [Runtime; 3] = [Runtime::Tulipa, Runtime::Tokio, Runtime::Smol];

    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Tulipa => "tulipa",
            Runtime::Tokio => "tokio",
            Runtime::Smol => "smol",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Runtime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Runtime::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown runtime `{s}` (expected tulipa, tokio or smol)"))
    }
}

/// One measurement of one workload.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Operations done (callbacks, timers, round trips).
    pub ops: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Median round-trip time in microseconds (latency workload only).
    pub median_us: Option<f64>,
    /// 99th-percentile round-trip time in microseconds (latency workload only).
    pub p99_us: Option<f64>,
}

impl Sample {
    /// A throughput sample.
    pub fn new(ops: u64, elapsed: Duration) -> Self {
        Sample {
            ops,
            elapsed,
            median_us: None,
            p99_us: None,
        }
    }

    /// A latency sample from per-round-trip nanoseconds and the total time.
    pub fn from_round_trips(took_ns: &[u64], elapsed: Duration) -> Self {
        Sample {
            ops: took_ns.len() as u64,
            elapsed,
            median_us: common::median(took_ns).map(|ns| ns as f64 / 1e3),
            p99_us: common::percentile(took_ns, 99).map(|ns| ns as f64 / 1e3),
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
    match runtime {
        Runtime::Tulipa => tulipa::run(workload),
        Runtime::Tokio => tokio::run(workload),
        Runtime::Smol => smol::run(workload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(w.name().parse::<Workload>(), Ok(w));
        }
        for r in Runtime::ALL {
            assert_eq!(r.name().parse::<Runtime>(), Ok(r));
        }
        assert!("nope".parse::<Workload>().is_err());
    }

    #[test]
    fn json_line_has_the_fields() {
        let s = Sample::new(10, Duration::from_millis(5));
        let v: serde_json::Value =
            serde_json::from_str(&s.to_json(Runtime::Tulipa, Workload::Callbacks)).unwrap();
        assert_eq!(v["bench"], "callbacks");
        assert_eq!(v["ops_per_s"], 2000);
    }
}
