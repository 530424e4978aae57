//! The tables of `cargo xtask bench`: medians per workload and runtime, ratios to Tulipa.

use std::process::Command;

use serde_json::Value;
use xtask::bench::common::median;
use xtask::bench::{Runtime, Workload};

/// What the child processes measured for one workload on one runtime.
pub(crate) struct Row {
    pub(crate) workload: Workload,
    pub(crate) runtime: Runtime,
    ops_per_s: Vec<f64>,
    median_us: Vec<f64>,
    p99_us: Vec<f64>,
    rss_kib: Vec<f64>,
    bytes_per_task: Vec<f64>,
}

impl Row {
    pub(crate) fn new(workload: Workload, runtime: Runtime) -> Self {
        Row {
            workload,
            runtime,
            ops_per_s: Vec::new(),
            median_us: Vec::new(),
            p99_us: Vec::new(),
            rss_kib: Vec::new(),
            bytes_per_task: Vec::new(),
        }
    }

    /// Adds the JSON line of one child.
    pub(crate) fn add(&mut self, v: &Value) -> Result<(), String> {
        let ops = v["ops_per_s"]
            .as_f64()
            .ok_or("bench-child printed no ops_per_s")?;
        self.ops_per_s.push(ops);
        self.median_us.extend(v["median_us"].as_f64());
        self.p99_us.extend(v["p99_us"].as_f64());
        self.rss_kib.extend(v["peak_rss_kib"].as_f64());
        self.bytes_per_task.extend(v["bytes_per_task"].as_f64());
        if self.workload.measures_memory() && self.bytes_per_task.len() != self.ops_per_s.len() {
            return Err(format!(
                "bench-child {} {} printed no bytes_per_task",
                self.runtime, self.workload
            ));
        }
        Ok(())
    }

    /// The last measurement, for the progress lines.
    pub(crate) fn last(&self) -> String {
        match (self.bytes_per_task.last(), self.ops_per_s.last()) {
            (Some(b), _) => format!("{b:>10.0} B/task"),
            (None, Some(ops)) => format!("{:>10} ops/s", fmt_ops(*ops)),
            (None, None) => String::new(),
        }
    }

    fn peak_rss(&self) -> String {
        median(&self.rss_kib).map_or("–".to_string(), |k| format!("{:.1} MiB", k / 1024.0))
    }
}

/// Date, CPU count and model of this machine.
pub(crate) fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{date}; {cpus} CPUs (nproc), {model}")
}

fn fmt_ops(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.1} k", v / 1e3)
    }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// Tulipa's median of `pick` for the workload of `row`, over the peer's: "–" for Tulipa itself.
fn ratio(rows: &[Row], row: &Row, pick: fn(&Row) -> &[f64]) -> String {
    let tulipa = rows
        .iter()
        .find(|r| r.workload == row.workload && r.runtime == Runtime::Tulipa)
        .and_then(|r| median(pick(r)));
    match (row.runtime, tulipa, median(pick(row))) {
        (Runtime::Tulipa, _, _) | (_, None, _) | (_, _, None) => "–".to_string(),
        (_, Some(t), Some(peer)) => format!("{:.2}×", t / peer.max(1e-9)),
    }
}

/// Prints the throughput table (ops/s, ratios Tulipa/peer: above 1 means Tulipa is faster) and,
/// when memory workloads were run, the memory table (bytes per pending task, ratios Tulipa/peer:
/// below 1 means Tulipa uses less).
pub(crate) fn print_tables(rows: &[Row]) {
    let (memory, rates): (Vec<&Row>, Vec<&Row>) =
        rows.iter().partition(|r| r.workload.measures_memory());
    if !rates.is_empty() {
        println!("| workload | runtime | ops/s (median) | min – max | round trip p50 / p99 | peak RSS | Tulipa / peer |");
        println!("|---|---|---:|---:|---:|---:|---:|");
        for row in rates {
            let ops = median(&row.ops_per_s).unwrap_or(0.0);
            let (min, max) = min_max(&row.ops_per_s);
            let latency = match (median(&row.median_us), median(&row.p99_us)) {
                (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1} µs"),
                _ => "–".to_string(),
            };
            println!(
                "| {} | {} | {} | {} – {} | {latency} | {} | {} |",
                row.workload,
                row.runtime,
                fmt_ops(ops),
                fmt_ops(min),
                fmt_ops(max),
                row.peak_rss(),
                ratio(rows, row, |r| &r.ops_per_s)
            );
        }
    }
    if !memory.is_empty() {
        println!();
        println!("| workload | runtime | bytes per pending task (median) | min – max | spawned-to-pending rate | peak RSS | Tulipa / peer (bytes; below 1 = less) |");
        println!("|---|---|---:|---:|---:|---:|---:|");
        for row in memory {
            let bytes = median(&row.bytes_per_task).unwrap_or(0.0);
            let (min, max) = min_max(&row.bytes_per_task);
            println!(
                "| {} | {} | {bytes:.0} B | {min:.0} – {max:.0} B | {} tasks/s | {} | {} |",
                row.workload,
                row.runtime,
                fmt_ops(median(&row.ops_per_s).unwrap_or(0.0)),
                row.peak_rss(),
                ratio(rows, row, |r| &r.bytes_per_task)
            );
        }
    }
}
