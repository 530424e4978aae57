//! `cargo xtask bench loop|tasks|channels`: builds the release `xtask`, runs one child process per
//! measurement (`xtask bench-child <runtime> <workload>`), and prints the medians as Markdown
//! tables ([`report`](crate::report)).

use std::path::Path;

use serde_json::Value;
use xtask::bench::{Runtime, Suite, Workload};

use crate::children::{build_release, command, json_result, taskset_works};
use crate::report::{self, Row};

const USAGE: &str = "usage: cargo xtask bench loop|tasks|channels [--reps N] [--workload NAME]... \
                     [--runtime NAME]... [--no-pin]";

struct Options {
    reps: usize,
    workloads: Vec<Workload>,
    runtimes: Vec<Runtime>,
    pin: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut it = args.iter();
    let suite: Suite = it
        .next()
        .ok_or_else(|| USAGE.to_string())?
        .parse()
        .map_err(|e| format!("{e}\n{USAGE}"))?;
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
            "--workload" => {
                let w: Workload = value()?.parse()?;
                if w.suite() != suite {
                    return Err(format!(
                        "workload `{w}` belongs to `bench {}`",
                        w.suite().name()
                    ));
                }
                o.workloads.push(w);
            }
            "--runtime" => o.runtimes.push(value()?.parse()?),
            "--no-pin" => o.pin = false,
            _ => return Err(format!("unknown argument `{arg}`\n{USAGE}")),
        }
    }
    if o.reps == 0 {
        return Err("--reps must be at least 1".to_string());
    }
    if o.workloads.is_empty() {
        o.workloads = suite.workloads();
    }
    if o.runtimes.is_empty() {
        o.runtimes = Runtime::ALL.to_vec();
    }
    Ok(o)
}

fn run_child(exe: &Path, pin: bool, runtime: Runtime, workload: Workload) -> Result<Value, String> {
    let mut cmd = command(exe, pin.then_some("1"));
    cmd.args(["bench-child", runtime.name(), workload.name()]);
    json_result(cmd, &format!("bench-child {runtime} {workload}"))
}

/// How the children were pinned, for the report.
fn pin_note(pin: bool, workloads: &[Workload]) -> String {
    if !pin {
        return ", not pinned".to_string();
    }
    let mut by_cpus: Vec<(&str, Vec<&str>)> = Vec::new();
    for w in workloads {
        match by_cpus.iter_mut().find(|(cpus, _)| *cpus == w.pin_cpus()) {
            Some((_, names)) => names.push(w.name()),
            None => by_cpus.push((w.pin_cpus(), vec![w.name()])),
        }
    }
    if let [(cpus, _)] = by_cpus.as_slice() {
        return format!(", each pinned with `taskset -c {cpus}`");
    }
    let parts: Vec<String> = by_cpus
        .iter()
        .map(|(cpus, names)| format!("`taskset -c {cpus}` for {}", names.join(", ")))
        .collect();
    format!(", pinned: {}", parts.join("; "))
}

/// Runs the benchmark as `args` (after `bench`) say.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let exe = build_release()?;
    let pin = o.pin && taskset_works("1");
    let mut rows: Vec<Row> = Vec::new();
    for &workload in &o.workloads {
        for &runtime in &o.runtimes {
            rows.push(Row::new(workload, runtime));
        }
    }
    // Repetitions outermost, so that slow drift of the machine spreads over every runtime.
    for rep in 1..=o.reps {
        for row in rows.iter_mut() {
            let v = run_child(&exe, pin, row.runtime, row.workload)?;
            row.add(&v)?;
            eprintln!(
                "bench: rep {rep}/{} {:<18} {:<6} {}",
                o.reps,
                row.workload.name(),
                row.runtime.name(),
                row.last()
            );
        }
    }
    println!();
    println!("Machine: {}", report::machine());
    println!(
        "Command: cargo xtask bench {} (each cell: median of {} child processes{}; release build).",
        args.join(" "),
        o.reps,
        pin_note(pin, &o.workloads)
    );
    println!();
    report::print_tables(&rows);
    Ok(())
}
