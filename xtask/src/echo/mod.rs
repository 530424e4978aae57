//! `cargo xtask bench echo`: TCP echo servers on Tulipa (a tulipa-transport `Protocol`), tokio
//! (current thread, one task per connection), smol (`Async<TcpListener>` + `LocalExecutor`) and
//! raw level-triggered epoll, each in its own process pinned to core 0, driven by one load
//! generator process pinned to core 1 (see [`load`]).
//!
//! Every server is killed after its measurement, and has a watchdog of its own; the load
//! generator stops after warm-up + duration.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use xtask::bench::common::median;

use crate::children::{build_release, command, json_result, known_server, taskset_works, Server};
use crate::report;

pub(crate) mod load;
pub(crate) mod servers;

const USAGE: &str = "usage: cargo xtask bench echo [--reps N] [--server NAME]... [--conns N] \
                     [--duration SECS] [--warmup SECS] [--rate MSGS_PER_S] [--idle N] [--no-pin] \
                     [--only throughput|cpu|memory]...";

struct Options {
    reps: usize,
    servers: Vec<String>,
    conns: usize,
    duration: f64,
    warmup: f64,
    rate: f64,
    idle: usize,
    pin: bool,
    parts: Vec<String>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        reps: 3,
        servers: Vec::new(),
        conns: 50,
        duration: 3.0,
        warmup: 0.5,
        rate: 100_000.0,
        idle: 10_000,
        pin: true,
        parts: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))
        };
        let bad = |e: &dyn std::fmt::Display| format!("{arg}: {e}");
        match arg.as_str() {
            "--reps" => o.reps = value()?.parse().map_err(|e| bad(&e))?,
            "--server" => o.servers.push(known_server(value()?, &servers::SERVERS)?),
            "--conns" => o.conns = value()?.parse().map_err(|e| bad(&e))?,
            "--duration" => o.duration = value()?.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| bad(&e))?,
            "--rate" => o.rate = value()?.parse().map_err(|e| bad(&e))?,
            "--idle" => o.idle = value()?.parse().map_err(|e| bad(&e))?,
            "--only" => {
                let p = value()?;
                if !["throughput", "cpu", "memory"].contains(&p.as_str()) {
                    return Err(format!("--only {p}: expected throughput, cpu or memory"));
                }
                o.parts.push(p.clone());
            }
            "--no-pin" => o.pin = false,
            _ => return Err(format!("unknown argument `{arg}`\n{USAGE}")),
        }
    }
    if o.reps == 0 || o.conns == 0 || o.duration <= 0.0 || o.duration > 60.0 || o.warmup < 0.0 {
        return Err(format!(
            "need --reps ≥ 1, --conns ≥ 1, 0 < --duration ≤ 60\n{USAGE}"
        ));
    }
    if o.servers.is_empty() {
        o.servers = servers::SERVERS.iter().map(|s| s.to_string()).collect();
    }
    if o.parts.is_empty() {
        o.parts = vec!["throughput".into(), "cpu".into(), "memory".into()];
    }
    Ok(o)
}

/// The hidden `xtask echo-server <name> [--lifetime SECS]`.
pub(crate) fn server_main(args: &[String]) -> Result<(), String> {
    let name = args.first().ok_or("usage: xtask echo-server <name>")?;
    let lifetime = match args.get(1..3) {
        Some([flag, secs]) if flag == "--lifetime" => secs
            .parse::<f64>()
            .map_err(|e| format!("--lifetime: {e}"))?,
        _ => 300.0,
    };
    servers::serve(name, Duration::from_secs_f64(lifetime))
}

/// The hidden `xtask echo-load --addr A [--conns N] [--size B] [--depth D] [--warmup S]
/// [--duration S] [--rate R] [--idle N] [--server-pid P]`.
pub(crate) fn load_main(args: &[String]) -> Result<(), String> {
    let mut o = load::LoadOptions {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        conns: 50,
        size: 64,
        depth: 1,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(3),
        rate: None,
        idle: None,
        server_pid: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{arg} {v}: {e}");
        match arg.as_str() {
            "--addr" => o.addr = v.parse().map_err(|e| bad(&e))?,
            "--conns" => o.conns = v.parse().map_err(|e| bad(&e))?,
            "--size" => o.size = v.parse().map_err(|e| bad(&e))?,
            "--depth" => o.depth = v.parse().map_err(|e| bad(&e))?,
            "--warmup" => {
                o.warmup = Duration::from_secs_f64(v.parse().map_err(|e| bad(&e))?);
            }
            "--duration" => {
                o.duration = Duration::from_secs_f64(v.parse().map_err(|e| bad(&e))?);
            }
            "--rate" => o.rate = Some(v.parse().map_err(|e| bad(&e))?),
            "--idle" => o.idle = Some(v.parse().map_err(|e| bad(&e))?),
            "--server-pid" => o.server_pid = Some(v.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("echo-load: unknown argument `{arg}`")),
        }
    }
    if o.size == 0 || o.depth == 0 {
        return Err("echo-load: --size and --depth must be at least 1".to_string());
    }
    println!("{}", load::run(&o)?);
    Ok(())
}

fn run_load(exe: &Path, pin: bool, server: &Server, args: &[String]) -> Result<Value, String> {
    let mut cmd = command(exe, pin.then_some("1"));
    cmd.arg("echo-load")
        .args(["--addr", &server.addr().to_string()])
        .args(["--server-pid", &server.pid().to_string()])
        .args(args);
    json_result(cmd, &format!("echo-load {}", args.join(" ")))
}

/// One cell of a table: a row kind on one server, every repetition.
struct Cell {
    row: String,
    server: String,
    args: Vec<String>,
    samples: Vec<Value>,
}

impl Cell {
    fn values(&self, key: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter_map(|v| v[key].as_f64())
            .collect()
    }

    fn median(&self, key: &str) -> Option<f64> {
        median(&self.values(key))
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else {
        format!("{:.1} k", v / 1e3)
    }
}

/// The median over repetitions of Tulipa's `key` over this cell's in the same repetition (the
/// two ran seconds apart, so slow drift of the machine cancels out); "–" for Tulipa itself.
fn paired_ratio(cells: &[Cell], cell: &Cell, key: &str) -> String {
    let Some(tulipa) = cells
        .iter()
        .find(|c| c.row == cell.row && c.server == "tulipa")
    else {
        return "–".to_string();
    };
    if cell.server == "tulipa" {
        return "–".to_string();
    }
    let ratios: Vec<f64> = tulipa
        .samples
        .iter()
        .zip(&cell.samples)
        .filter_map(|(t, p)| Some(t[key].as_f64()? / p[key].as_f64()?.max(1e-9)))
        .collect();
    median(&ratios).map_or_else(|| "–".to_string(), |r| format!("{r:.2}×"))
}

/// Tulipa's median of `key` over this cell's, "–" for Tulipa itself.
fn ratio(cells: &[Cell], cell: &Cell, key: &str) -> String {
    let tulipa = cells
        .iter()
        .find(|c| c.row == cell.row && c.server == "tulipa")
        .and_then(|c| c.median(key));
    match (cell.server.as_str(), tulipa, cell.median(key)) {
        ("tulipa", _, _) | (_, None, _) | (_, _, None) => "–".to_string(),
        (_, Some(t), Some(p)) => format!("{:.2}×", t / p.max(1e-9)),
    }
}

/// Runs the benchmark as `args` (after `bench echo`) say.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let exe = build_release()?;
    let pin = o.pin && taskset_works("0,1");
    let secs = |v: f64| format!("{v}");
    let mut cells: Vec<Cell> = Vec::new();
    let mut add = |row: String, args: Vec<String>| {
        for s in &o.servers {
            cells.push(Cell {
                row: row.clone(),
                server: s.clone(),
                args: args.clone(),
                samples: Vec::new(),
            });
        }
    };
    if o.parts.iter().any(|p| p == "throughput") {
        for (size, label) in [(64, "64 B"), (1024, "1 KiB")] {
            for depth in [1, 16] {
                add(
                    format!("{label}, {depth} in flight"),
                    vec![
                        "--conns".into(),
                        o.conns.to_string(),
                        "--size".into(),
                        size.to_string(),
                        "--depth".into(),
                        depth.to_string(),
                        "--warmup".into(),
                        secs(o.warmup),
                        "--duration".into(),
                        secs(o.duration),
                    ],
                );
            }
        }
    }
    if o.parts.iter().any(|p| p == "cpu") {
        add(
            format!("64 B at {} msgs/s", fmt_rate(o.rate)),
            vec![
                "--conns".into(),
                o.conns.to_string(),
                "--size".into(),
                "64".into(),
                "--rate".into(),
                o.rate.to_string(),
                "--warmup".into(),
                secs(o.warmup),
                "--duration".into(),
                secs(o.duration),
            ],
        );
    }
    if o.parts.iter().any(|p| p == "memory") {
        add(
            format!("{} idle connections", o.idle),
            vec!["--idle".into(), o.idle.to_string()],
        );
    }
    let per_row = o.servers.len();
    for rep in 1..=o.reps {
        // Within each row the servers take turns going first, so that none always runs right
        // after a row change (or always last); a rep's cells of one row run back to back.
        let order: Vec<usize> = (0..cells.len())
            .map(|i| i - i % per_row + (i % per_row + rep - 1) % per_row)
            .collect();
        for &i in &order {
            let cell = &mut cells[i];
            let mut cmd = command(&exe, pin.then_some("0"));
            cmd.args(["echo-server", &cell.server, "--lifetime", "120"]);
            let server = Server::start(cmd, &cell.server)?;
            let v = run_load(&exe, pin, &server, &cell.args)
                .map_err(|e| format!("{} on {}: {e}", cell.row, cell.server))?;
            drop(server);
            eprintln!(
                "bench: rep {rep}/{} {:<24} {:<6} {v}",
                o.reps, cell.row, cell.server
            );
            cell.samples.push(v);
        }
    }

    println!();
    println!("Machine: {}", report::machine());
    let pinning = if pin {
        "servers pinned with `taskset -c 0`, the load generator with `taskset -c 1`"
    } else {
        "not pinned"
    };
    println!(
        "Command: cargo xtask bench echo {} (each cell: median of {} runs, a fresh server process each; \
         {} connections; {pinning}; release build).",
        args.join(" "),
        o.reps,
        o.conns
    );
    let (rates, rest): (Vec<&Cell>, Vec<&Cell>) = cells
        .iter()
        .partition(|c| c.args.iter().any(|a| a == "--depth"));
    let (cpu, memory): (Vec<&Cell>, Vec<&Cell>) = rest
        .into_iter()
        .partition(|c| c.args.iter().any(|a| a == "--rate"));
    if !rates.is_empty() {
        println!();
        println!("| messages | server | msgs/s (median) | min – max | round trip p50 / p99 | server CPU | Tulipa / peer (msgs/s) | paired (median of per-rep ratios) |");
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for c in rates {
            let v = c.values("msgs_per_s");
            let (lo, hi) = v
                .iter()
                .fold((f64::MAX, 0.0f64), |(l, h), x| (l.min(*x), h.max(*x)));
            println!(
                "| {} | {} | {} | {} – {} | {:.0} / {:.0} µs | {:.0} % | {} | {} |",
                c.row,
                c.server,
                fmt_rate(c.median("msgs_per_s").unwrap_or(0.0)),
                fmt_rate(lo),
                fmt_rate(hi),
                c.median("p50_us").unwrap_or(0.0),
                c.median("p99_us").unwrap_or(0.0),
                c.median("server_cpu").unwrap_or(0.0) * 100.0,
                ratio(&cells, c, "msgs_per_s"),
                paired_ratio(&cells, c, "msgs_per_s")
            );
        }
    }
    if !cpu.is_empty() {
        println!();
        println!("| load | server | achieved msgs/s | round trip p50 / p99 | server CPU (one core = 100 %) | CPU µs per message | Tulipa / peer (CPU; below 1 = less) |");
        println!("|---|---|---:|---:|---:|---:|---:|");
        for c in cpu {
            let rate = c.median("msgs_per_s").unwrap_or(0.0);
            let load = c.median("server_cpu").unwrap_or(0.0);
            println!(
                "| {} | {} | {} | {:.0} / {:.0} µs | {:.1} % | {:.2} | {} |",
                c.row,
                c.server,
                fmt_rate(rate),
                c.median("p50_us").unwrap_or(0.0),
                c.median("p99_us").unwrap_or(0.0),
                load * 100.0,
                load * 1e6 / rate.max(1.0),
                ratio(&cells, c, "server_cpu")
            );
        }
    }
    if !memory.is_empty() {
        println!();
        println!("| connections | server | RSS before → after (median) | bytes per connection | Tulipa / peer (bytes; below 1 = less) |");
        println!("|---|---|---:|---:|---:|");
        for c in memory {
            println!(
                "| {} | {} | {:.1} → {:.1} MiB | {:.0} B | {} |",
                c.row,
                c.server,
                c.median("rss_before_kib").unwrap_or(0.0) / 1024.0,
                c.median("rss_after_kib").unwrap_or(0.0) / 1024.0,
                c.median("bytes_per_conn").unwrap_or(0.0),
                ratio(&cells, c, "bytes_per_conn")
            );
        }
    }
    Ok(())
}
