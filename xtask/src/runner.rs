//! `cargo xtask bench loop`: builds the release `xtask`, runs one child process per measurement
//! (`xtask bench-child <runtime> <workload>`), and prints the medians as a Markdown table.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;
use xtask::bench::common::median;
use xtask::bench::{Runtime, Workload};

use crate::workspace;

const USAGE: &str = "usage: cargo xtask bench loop [--reps N] [--workload NAME]... \
                     [--runtime NAME]... [--no-pin]";

struct Options {
    reps: usize,
    workloads: Vec<Workload>,
    runtimes: Vec<Runtime>,
    pin: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut it = args.iter();
    if it.next().map(String::as_str) != Some("loop") {
        return Err(USAGE.to_string());
    }
    let mut o = Options {
        reps: 5,
        workloads: Vec::new(),
        runtimes: Vec::new(),
        pin: true,
    };
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--reps" => o.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--workload" => o.workloads.push(value()?.parse()?),
            "--runtime" => o.runtimes.push(value()?.parse()?),
            "--no-pin" => o.pin = false,
            _ => return Err(format!("unknown argument `{arg}`\n{USAGE}")),
        }
    }
    if o.reps == 0 {
        return Err("--reps must be at least 1".to_string());
    }
    if o.workloads.is_empty() {
        o.workloads = Workload::ALL.to_vec();
    }
    if o.runtimes.is_empty() {
        o.runtimes = Runtime::ALL.to_vec();
    }
    Ok(o)
}

/// The medians of one workload on one runtime.
struct Row {
    workload: Workload,
    runtime: Runtime,
    ops_per_s: Vec<f64>,
    median_us: Vec<f64>,
    p99_us: Vec<f64>,
    rss_kib: Vec<f64>,
}

fn build_release() -> Result<PathBuf, String> {
    eprintln!(
        "bench: building the release bench binary (cargo build --release -p xtask --bin xtask)"
    );
    let status = workspace::cargo_command()
        .args(["build", "--release", "--package", "xtask", "--bin", "xtask"])
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release -p xtask failed: {status}"));
    }
    let exe = workspace::target_dir(&workspace::metadata()?)?
        .join("release")
        .join("xtask");
    if exe.exists() {
        Ok(exe)
    } else {
        Err(format!("{} is missing after the build", exe.display()))
    }
}

fn taskset_works() -> bool {
    Command::new("taskset")
        .args(["-c", "1", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_child(exe: &Path, pin: bool, runtime: Runtime, workload: Workload) -> Result<Value, String> {
    let mut cmd = if pin {
        let mut c = Command::new("taskset");
        c.args(["-c", "1"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(["bench-child", runtime.name(), workload.name()]);
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    if !out.status.success() {
        return Err(format!(
            "bench-child {runtime} {workload} failed: {}",
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    serde_json::from_str(line)
        .map_err(|e| format!("bench-child {runtime} {workload} printed `{line}`: {e}"))
}

fn machine() -> String {
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

fn print_table(rows: &[Row]) {
    println!("| workload | runtime | ops/s (median) | min – max | round trip p50 / p99 | peak RSS | Tulipa / peer |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for row in rows {
        let ops = median(&row.ops_per_s).unwrap_or(0.0);
        let (min, max) = row
            .ops_per_s
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
        let latency = match (median(&row.median_us), median(&row.p99_us)) {
            (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1} µs"),
            _ => "–".to_string(),
        };
        let rss =
            median(&row.rss_kib).map_or("–".to_string(), |k| format!("{:.1} MiB", k / 1024.0));
        let tulipa = rows
            .iter()
            .find(|r| r.workload == row.workload && r.runtime == Runtime::Tulipa)
            .and_then(|r| median(&r.ops_per_s));
        let ratio = match (row.runtime, tulipa) {
            (Runtime::Tulipa, _) | (_, None) => "–".to_string(),
            (_, Some(t)) => format!("{:.2}×", t / ops.max(1e-9)),
        };
        println!(
            "| {} | {} | {} | {} – {} | {latency} | {rss} | {ratio} |",
            row.workload,
            row.runtime,
            fmt_ops(ops),
            fmt_ops(min),
            fmt_ops(max)
        );
    }
}

/// Runs the benchmark as `args` (after `bench`) say.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let exe = build_release()?;
    let pin = o.pin && taskset_works();
    let mut rows: Vec<Row> = Vec::new();
    for &workload in &o.workloads {
        for &runtime in &o.runtimes {
            rows.push(Row {
                workload,
                runtime,
                ops_per_s: Vec::new(),
                median_us: Vec::new(),
                p99_us: Vec::new(),
                rss_kib: Vec::new(),
            });
        }
    }
    // Repetitions outermost, so that slow drift of the machine spreads over every runtime.
    for rep in 1..=o.reps {
        for row in rows.iter_mut() {
            let v = run_child(&exe, pin, row.runtime, row.workload)?;
            let ops = v["ops_per_s"]
                .as_f64()
                .ok_or("bench-child printed no ops_per_s")?;
            row.ops_per_s.push(ops);
            row.median_us.extend(v["median_us"].as_f64());
            row.p99_us.extend(v["p99_us"].as_f64());
            row.rss_kib.extend(v["peak_rss_kib"].as_f64());
            eprintln!(
                "bench: rep {rep}/{} {:<18} {:<6} {:>10} ops/s",
                o.reps,
                row.workload.name(),
                row.runtime.name(),
                fmt_ops(ops)
            );
        }
    }
    println!();
    println!("Machine: {}", machine());
    println!(
        "Each cell: median of {} child processes{}; release build.",
        o.reps,
        if pin {
            ", each pinned with `taskset -c 1`"
        } else {
            ", not pinned"
        }
    );
    println!();
    print_table(&rows);
    Ok(())
}
