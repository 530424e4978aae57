//! `cargo xtask bench tls`: TLS echo servers on Tulipa (the plain echo `Protocol` served with
//! `ServerOptions::tls`, one loop) and tokio (current-thread runtime, tokio-rustls), each in its
//! own process pinned to core 0, driven by one load generator process pinned to core 1 (see
//! [`load`]), for two workloads:
//!
//! - `throughput`: 64 KiB messages echoed over 4 long connections, MB/s;
//! - `handshakes`: new connections (full handshake, one 64-byte round trip, close) from 8
//!   concurrent clients, handshakes per second.
//!
//! Both servers get the same certificate (rcgen's self-signed default, ECDSA P-256, made once
//! by this parent process and handed to the children as PEM files in a temporary directory) and
//! the same server configuration ([`servers::config`]); every side uses rustls 0.23 with the
//! `ring` provider. The load generator accepts exactly that certificate without verifying
//! signatures (unless `--full-verify`): verifying the certificate's and the handshake's ECDSA
//! signatures costs the client more than signing costs the server, and the one core of the load
//! generator would then limit the handshake rate of both servers alike.
//!
//! Repetitions are the outer loop; each cell starts a fresh server, runs the load generator,
//! then kills the server, which also has a watchdog of its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use xtask::bench::common::median;

use crate::children::{build_release, command, json_result, known_server, taskset_works, Server};
use crate::report;

pub(crate) mod load;
pub(crate) mod servers;

use load::Mode;

const USAGE: &str =
    "usage: cargo xtask bench tls [--reps N] [--workload throughput|handshakes]... \
                     [--server tulipa|tokio]... [--conns N] [--clients N] [--size BYTES] \
                     [--duration SECS] [--warmup SECS] [--full-verify] [--no-pin]";

struct Options {
    reps: usize,
    workloads: Vec<Mode>,
    servers: Vec<String>,
    conns: usize,
    clients: usize,
    size: usize,
    duration: f64,
    warmup: f64,
    full_verify: bool,
    pin: bool,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        reps: 5,
        workloads: Vec::new(),
        servers: Vec::new(),
        conns: 4,
        clients: 8,
        size: 64 * 1024,
        duration: 3.0,
        warmup: 0.5,
        full_verify: false,
        pin: true,
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
            "--workload" => o.workloads.push(Mode::parse(value()?)?),
            "--server" => o.servers.push(known_server(value()?, &servers::SERVERS)?),
            "--conns" => o.conns = value()?.parse().map_err(|e| bad(&e))?,
            "--clients" => o.clients = value()?.parse().map_err(|e| bad(&e))?,
            "--size" => o.size = value()?.parse().map_err(|e| bad(&e))?,
            "--duration" => o.duration = value()?.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| bad(&e))?,
            "--full-verify" => o.full_verify = true,
            "--no-pin" => o.pin = false,
            _ => return Err(format!("unknown argument `{arg}`\n{USAGE}")),
        }
    }
    if o.reps == 0
        || o.conns == 0
        || o.clients == 0
        || o.size == 0
        || o.duration <= 0.0
        || o.duration > 60.0
        || !(0.0..=10.0).contains(&o.warmup)
    {
        return Err(format!(
            "need --reps, --conns, --clients, --size ≥ 1, 0 < --duration ≤ 60, \
             0 ≤ --warmup ≤ 10\n{USAGE}"
        ));
    }
    if o.workloads.is_empty() {
        o.workloads = vec![Mode::Throughput, Mode::Handshakes];
    }
    if o.servers.is_empty() {
        o.servers = servers::SERVERS.iter().map(|s| s.to_string()).collect();
    }
    Ok(o)
}

/// Value of `--flag` in `args`, if any.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
}

/// The hidden `xtask tls-server <name> --cert FILE --key FILE [--lifetime SECS]`.
pub(crate) fn server_main(args: &[String]) -> Result<(), String> {
    const SERVER_USAGE: &str =
        "usage: xtask tls-server <name> --cert FILE --key FILE [--lifetime SECS]";
    let name = args.first().ok_or(SERVER_USAGE)?;
    let cert = flag(args, "--cert").ok_or(SERVER_USAGE)?;
    let key = flag(args, "--key").ok_or(SERVER_USAGE)?;
    let lifetime = match flag(args, "--lifetime") {
        Some(s) => s.parse::<f64>().map_err(|e| format!("--lifetime: {e}"))?,
        None => 300.0,
    };
    let config = servers::config(Path::new(cert), Path::new(key))?;
    servers::serve(name, config, Duration::from_secs_f64(lifetime))
}

/// The hidden `xtask tls-load --addr A --cafile FILE --mode throughput|handshakes [--conns N]
/// [--size B] [--warmup S] [--duration S] [--server-pid P] [--full-verify]`.
pub(crate) fn load_main(args: &[String]) -> Result<(), String> {
    let mut o = load::LoadOptions {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        cafile: PathBuf::new(),
        mode: Mode::Throughput,
        conns: 4,
        size: 64 * 1024,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(3),
        server_pid: None,
        full_verify: false,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--full-verify" {
            o.full_verify = true;
            continue;
        }
        let v = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{arg} {v}: {e}");
        match arg.as_str() {
            "--addr" => o.addr = v.parse().map_err(|e| bad(&e))?,
            "--cafile" => o.cafile = PathBuf::from(v),
            "--mode" => o.mode = Mode::parse(v)?,
            "--conns" => o.conns = v.parse().map_err(|e| bad(&e))?,
            "--size" => o.size = v.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = Duration::from_secs_f64(v.parse().map_err(|e| bad(&e))?),
            "--duration" => {
                o.duration = Duration::from_secs_f64(v.parse().map_err(|e| bad(&e))?);
            }
            "--server-pid" => o.server_pid = Some(v.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("tls-load: unknown argument `{arg}`")),
        }
    }
    if o.cafile.as_os_str().is_empty() || o.size == 0 || o.conns == 0 {
        return Err("tls-load: needs --cafile, and --size, --conns ≥ 1".to_string());
    }
    println!("{}", load::run(&o)?);
    Ok(())
}

/// The certificate and key of one run, as PEM files in a directory removed on drop.
struct Identity {
    dir: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Identity {
    /// rcgen's default self-signed certificate (ECDSA P-256) for `localhost` and 127.0.0.1.
    fn make() -> Result<Identity, String> {
        let names = vec![load::SERVER_NAME.to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).map_err(|e| format!("rcgen: {e}"))?;
        let dir = std::env::temp_dir().join(format!("tulipa-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let id = Identity {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            dir,
        };
        std::fs::write(&id.cert, made.cert.pem())
            .map_err(|e| format!("{}: {e}", id.cert.display()))?;
        std::fs::write(&id.key, made.signing_key.serialize_pem())
            .map_err(|e| format!("{}: {e}", id.key.display()))?;
        Ok(id)
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run_load(
    exe: &Path,
    pin: bool,
    server: &Server,
    id: &Identity,
    args: &[String],
) -> Result<Value, String> {
    let mut cmd = command(exe, pin.then_some("1"));
    cmd.arg("tls-load")
        .args(["--addr", &server.addr().to_string()])
        .args(["--server-pid", &server.pid().to_string()])
        .arg("--cafile")
        .arg(&id.cert)
        .args(args);
    json_result(cmd, &format!("tls-load {}", args.join(" ")))
}

/// One workload on one server, every repetition.
struct Cell {
    mode: Mode,
    server: String,
    args: Vec<String>,
    samples: Vec<Value>,
}

impl Cell {
    fn key(&self) -> &'static str {
        match self.mode {
            Mode::Throughput => "mb_per_s",
            Mode::Handshakes => "handshakes_per_s",
        }
    }

    fn values(&self, key: &str) -> Vec<f64> {
        self.samples
            .iter()
            .filter_map(|v| v[key].as_f64())
            .collect()
    }

    fn median(&self, key: &str) -> Option<f64> {
        median(&self.values(key))
    }

    /// Server CPU seconds per unit of work (per MB, per handshake), median over the runs.
    fn cpu_per_unit(&self) -> Option<f64> {
        let per: Vec<f64> = self
            .samples
            .iter()
            .filter_map(|v| Some(v["server_cpu"].as_f64()? / v[self.key()].as_f64()?.max(1e-9)))
            .collect();
        median(&per)
    }

    fn label(&self, o: &Options) -> String {
        match self.mode {
            Mode::Throughput => format!(
                "throughput ({} messages, {} connections)",
                fmt_size(o.size),
                o.conns
            ),
            Mode::Handshakes => format!("handshakes ({} clients)", o.clients),
        }
    }
}

fn fmt_size(bytes: usize) -> String {
    match (bytes / 1024, bytes % 1024) {
        (k, 0) if k > 0 => format!("{k} KiB"),
        _ => format!("{bytes} B"),
    }
}

fn fmt_rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1} k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Tulipa's median of `key` over this cell's (or of `pick` for the CPU ratio), "–" for Tulipa.
fn ratio(cells: &[Cell], cell: &Cell, pick: fn(&Cell) -> Option<f64>) -> String {
    let tulipa = cells
        .iter()
        .find(|c| c.mode == cell.mode && c.server == "tulipa")
        .and_then(pick);
    match (cell.server.as_str(), tulipa, pick(cell)) {
        ("tulipa", _, _) | (_, None, _) | (_, _, None) => "–".to_string(),
        (_, Some(t), Some(p)) => format!("{:.2}×", t / p.max(1e-12)),
    }
}

/// Runs the benchmark as `args` (after `bench tls`) say.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let exe = build_release()?;
    let pin = o.pin && taskset_works("0,1");
    let id = Identity::make()?;
    let secs = |v: f64| format!("{v}");
    let mut cells: Vec<Cell> = Vec::new();
    for &mode in &o.workloads {
        let (conns, size) = match mode {
            Mode::Throughput => (o.conns, o.size),
            Mode::Handshakes => (o.clients, 64),
        };
        let mut largs: Vec<String> = vec![
            "--mode".into(),
            mode.name().into(),
            "--conns".into(),
            conns.to_string(),
            "--size".into(),
            size.to_string(),
            "--warmup".into(),
            secs(o.warmup),
            "--duration".into(),
            secs(o.duration),
        ];
        if o.full_verify {
            largs.push("--full-verify".into());
        }
        for s in &o.servers {
            cells.push(Cell {
                mode,
                server: s.clone(),
                args: largs.clone(),
                samples: Vec::new(),
            });
        }
    }
    // Repetitions outermost, so that drift of a shared machine spreads over both servers.
    for rep in 1..=o.reps {
        for cell in cells.iter_mut() {
            let mut cmd = command(&exe, pin.then_some("0"));
            cmd.args(["tls-server", &cell.server, "--lifetime", "120"])
                .arg("--cert")
                .arg(&id.cert)
                .arg("--key")
                .arg(&id.key);
            let server = Server::start(cmd, &cell.server)?;
            let v = run_load(&exe, pin, &server, &id, &cell.args)
                .map_err(|e| format!("{} on {}: {e}", cell.mode.name(), cell.server))?;
            drop(server);
            eprintln!(
                "bench: rep {rep}/{} {:<10} {:<6} {v}",
                o.reps,
                cell.mode.name(),
                cell.server
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
    let verify = if o.full_verify {
        "the client verifies the certificate and signatures (webpki)"
    } else {
        "the client accepts exactly the server's certificate, signatures not verified"
    };
    let shown: String = args.iter().map(|a| format!(" {a}")).collect();
    println!(
        "Command: cargo xtask bench tls{shown} (each cell: median of {} runs, a fresh server \
         process each; {pinning}; {verify}; release build).",
        o.reps,
    );
    if let Some(s) = cells
        .iter()
        .find_map(|c| c.samples.first()?["session"].as_str().map(str::to_owned))
    {
        println!("Session: {s}.");
    }
    println!();
    println!(
        "| workload | server | rate (median) | min – max | p50 / p99 | server CPU | load-generator CPU \
         | server CPU per unit | Tulipa / tokio (rate) | Tulipa / tokio (CPU per unit; below 1 = less) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for c in &cells {
        let key = c.key();
        let v = c.values(key);
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0.0f64), |(l, h), x| (l.min(*x), h.max(*x)));
        let (unit, per, latency) = match c.mode {
            Mode::Throughput => ("MB/s", "ms per MB", "round trip"),
            Mode::Handshakes => ("handshakes/s", "µs per handshake", "connect + handshake"),
        };
        let per_unit = c.cpu_per_unit().map_or("–".to_string(), |x| match c.mode {
            Mode::Throughput => format!("{:.3} {per}", x * 1e3),
            Mode::Handshakes => format!("{:.1} {per}", x * 1e6),
        });
        println!(
            "| {} | {} | {} {unit} | {} – {} | {:.0} / {:.0} µs ({latency}) | {:.0} % | {:.0} % | {per_unit} | {} | {} |",
            c.label(&o),
            c.server,
            fmt_rate(c.median(key).unwrap_or(0.0)),
            fmt_rate(lo),
            fmt_rate(hi),
            c.median("p50_us").unwrap_or(0.0),
            c.median("p99_us").unwrap_or(0.0),
            c.median("server_cpu").unwrap_or(0.0) * 100.0,
            c.median("load_cpu").unwrap_or(0.0) * 100.0,
            ratio(&cells, c, |c| c.median(c.key())),
            ratio(&cells, c, Cell::cpu_per_unit),
        );
    }
    Ok(())
}
