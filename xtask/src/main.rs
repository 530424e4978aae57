//! `cargo xtask …`: Tulipa's tooling.
//!
//! - `layers`: check the layering rule from `cargo metadata`;
//! - `ci`: fmt, clippy, layers, doc, test, in order, stopping at the first failure;
//! - `bench loop`: Tulipa's event loop against tokio and smol, one process per measurement;
//! - `bench tasks`: Tulipa's tasks and futures (`tulipa-futures`) against tokio's and smol's;
//! - `bench echo`: TCP echo servers (Tulipa, tokio, smol, raw epoll) under one load generator;
//! - `bench channels`: Tulipa's pipes (`tulipa_futures::message`) against tokio's `mpsc` and
//!   `async-channel`;
//! - `bench tls`: TLS echo servers (Tulipa, tokio with tokio-rustls) under one load generator.

use std::process::ExitCode;

use xtask::bench::{self, Runtime, Workload};

mod children;
mod ci;
mod echo;
mod layers;
mod report;
mod runner;
mod tls;
mod workspace;

const HELP: &str = "\
usage: cargo xtask <command>

commands:
  layers       check the layering rule of the Tulipa crates (from cargo metadata)
  ci           cargo fmt --check, clippy -D warnings, layers, doc -D warnings, test
  bench loop   event-loop benchmark: Tulipa vs tokio vs smol, one child process per measurement
               options: --reps N (5), --workload NAME, --runtime NAME (repeatable), --no-pin
               workloads: callbacks, timers, timers_cancel, threadsafe_latency
  bench tasks  tasks and futures (tulipa-futures) vs tokio vs smol, same options
               workloads: spawn, tasks, resolve, executor, pending_memory
  bench echo   TCP echo servers (Tulipa Protocol, tokio, smol, raw epoll) in their own processes
               (core 0) under one load generator (core 1): msgs/s and p99 for 64 B / 1 KiB,
               1 or 16 in flight; server CPU at 100k msgs/s; RSS of 10,000 idle connections
               options: --reps N (3), --server NAME, --conns N (50), --duration S (3),
               --warmup S (0.5), --rate R (100000), --idle N (10000), --only PART, --no-pin
  bench channels  message pipes (tulipa-futures) vs tokio mpsc vs async-channel, same options
               workloads: pipe_local, pipe_threads (pinned to cores 0,1), rendezvous_local
  bench tls    TLS echo servers (Tulipa Protocol, tokio + tokio-rustls) in their own processes
               (core 0) under one tokio-rustls load generator (core 1): MB/s of 64 KiB echoes
               over 4 connections; handshakes/s (new connection, 64 B round trip, close)
               options: --reps N (5), --workload throughput|handshakes, --server NAME,
               --conns N (4), --clients N (8), --size B (65536), --duration S (3),
               --warmup S (0.5), --full-verify, --no-pin";

/// The hidden `bench-child <runtime> <workload>`: one measurement, one JSON line.
fn bench_child(args: &[String]) -> Result<(), String> {
    let [runtime, workload] = args else {
        return Err("usage: xtask bench-child <runtime> <workload>".to_string());
    };
    let runtime: Runtime = runtime.parse()?;
    let workload: Workload = workload.parse()?;
    let sample =
        bench::measure(runtime, workload).map_err(|e| format!("{runtime} {workload}: {e}"))?;
    println!("{}", sample.to_json(runtime, workload));
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("layers") => layers::run(),
        Some("ci") => ci::run(),
        Some("bench") if args.get(1).is_some_and(|a| a == "echo") => echo::run(&args[2..]),
        Some("bench") if args.get(1).is_some_and(|a| a == "tls") => tls::run(&args[2..]),
        Some("bench") => runner::run(&args[1..]),
        Some("echo-server") => echo::server_main(&args[1..]),
        Some("echo-load") => echo::load_main(&args[1..]),
        Some("tls-server") => tls::server_main(&args[1..]),
        Some("tls-load") => tls::load_main(&args[1..]),
        Some("bench-child") => bench_child(&args[1..]),
        None | Some("help" | "-h" | "--help") => {
            println!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n{HELP}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}
