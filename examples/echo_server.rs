//! # echo_server — a TCP echo server with a protocol written from scratch
//!
//! ```text
//! cargo run --release --example echo_server                          # on 127.0.0.1:8888
//! cargo run --release --example echo_server -- --addr 127.0.0.1:0    # on a free port
//! ```
//!
//! Then talk to it with `cargo run --release --example echo_client -- --addr ADDR hello`, or
//! `nc ADDR`, or anything that speaks TCP. Ctrl-C (SIGINT) stops it cleanly.
//!
//! This is PEP 3156's callback style, the layer under streams:
//!
//! - [`create_server`] listens and, for each accepted connection, asks the factory for a fresh
//!   [`Protocol`]: here an `Echo`. The loop then calls it: `connection_made` once,
//!   `data_received` for every chunk that arrives, `eof_received` when the peer stops sending,
//!   `connection_lost` exactly once at the end.
//! - `data_received` writes the bytes straight back. [`Transport::write`] sends at once when it
//!   can and buffers the rest; nothing here waits.
//! - Flow control: a peer that sends but does not read its echoes would make our write buffer
//!   grow without end. The transport says `pause_writing` when its buffer goes over the high
//!   watermark; the protocol then stops *reading* (`pause_reading`) until `resume_writing`, so
//!   the pressure reaches the peer through TCP instead of our memory.
//! - `eof_received` returns `false`: the transport then closes by itself once every echo is
//!   sent, and `connection_lost(None)` follows.
//! - SIGINT goes through the loop's [`add_signal_handler`](EventLoop::add_signal_handler): the
//!   handler is an ordinary callback that sets an [`Event`]; the main task wakes up, closes the
//!   server and its connections, waits for them to be gone, and the program exits with 0.
//!
//! Output (stdout): `listening on ADDR` first, then one line per connection opened and closed,
//! and a summary at the end. Logs go to stderr.

use std::cell::Cell;
use std::io;
use std::process::ExitCode;
use std::rc::Rc;

use tulipa_futures::rt::signal::SIGINT;
use tulipa_futures::rt::EventLoop;
use tulipa_futures::sync::Event;
use tulipa_transport::{create_server, Error, Protocol, ServerOptions, Transport};

const USAGE: &str = "\
usage: echo_server [--addr HOST:PORT]

  --addr HOST:PORT   where to listen (default 127.0.0.1:8888; port 0 picks a free one)

Echoes every byte back until the peer closes; Ctrl-C stops.";

/// Counters shared by every connection (callbacks run one at a time on the loop's thread, so
/// `Cell`s are enough).
#[derive(Default)]
struct Stats {
    connections: Cell<u64>,
    bytes: Cell<u64>,
    open: Cell<u64>,
    /// Set whenever the last open connection is lost.
    idle: Event,
}

/// One connection's protocol.
struct Echo {
    stats: Rc<Stats>,
    transport: Option<Transport>,
    peer: String,
    bytes: u64,
}

impl Echo {
    fn new(stats: Rc<Stats>) -> Echo {
        Echo {
            stats,
            transport: None,
            peer: String::from("?"),
            bytes: 0,
        }
    }
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: Transport) {
        if let Some(peer) = transport.peer_addr() {
            self.peer = peer.to_string();
        }
        println!("connection from {}", self.peer);
        self.stats.connections.set(self.stats.connections.get() + 1);
        self.stats.open.set(self.stats.open.get() + 1);
        self.stats.idle.clear();
        self.transport = Some(transport);
    }

    fn data_received(&mut self, data: &[u8]) {
        let Some(t) = &self.transport else { return };
        // An error here also ends the connection: connection_lost will say why.
        if t.write(data).is_ok() {
            self.bytes += data.len() as u64;
            self.stats
                .bytes
                .set(self.stats.bytes.get() + data.len() as u64);
        }
    }

    fn eof_received(&mut self) -> bool {
        // false: close once the echoes are flushed.
        false
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        match exc {
            None => println!("closed {} after {} bytes", self.peer, self.bytes),
            Some(e) => println!("lost {} after {} bytes: {e}", self.peer, self.bytes),
        }
        // Dropping the transport breaks the transport <-> protocol reference cycle.
        self.transport = None;
        self.stats.open.set(self.stats.open.get() - 1);
        if self.stats.open.get() == 0 {
            self.stats.idle.set();
        }
    }

    fn pause_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.pause_reading();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(t) = &self.transport {
            t.resume_reading();
        }
    }
}

fn main() -> ExitCode {
    // Logs to stderr, so that stdout carries only the program's own output.
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_target(false)
        .init();

    let (host, port) = match parse_args(std::env::args().skip(1)) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("echo_server: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    // `run` makes a loop, runs `serve` as its main task, then cleans up and closes the loop.
    match tulipa_futures::run(serve(host, port)) {
        Ok(stats) => {
            println!(
                "goodbye: served {} connection(s), echoed {} bytes",
                stats.connections.get(),
                stats.bytes.get()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("echo_server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until SIGINT, then closes everything and returns the counters.
async fn serve(host: String, port: u16) -> tulipa_futures::Result<Rc<Stats>> {
    let lp = EventLoop::running()?;
    let stats = Rc::new(Stats::default());
    stats.idle.set(); // no connection yet

    let factory = {
        let stats = stats.clone();
        move || Echo::new(stats.clone())
    };
    let server = create_server(factory, &host, port, ServerOptions::default()).await?;
    for addr in server.sockets() {
        match addr.as_socket() {
            Some(a) => println!("listening on {a}"),
            None => println!("listening on {addr:?}"),
        }
    }

    let stop = Event::new();
    {
        let stop = stop.clone();
        lp.add_signal_handler(SIGINT, move || stop.set())?;
    }
    stop.wait().await?;
    println!("SIGINT received, closing");
    lp.remove_signal_handler(SIGINT)?;

    // Stop listening, close the open connections (their echoes still flush), and wait until
    // every connection_lost has run.
    server.close();
    server.close_clients();
    server.wait_closed().await?;
    stats.idle.wait().await?;
    Ok(stats)
}

/// `Ok(None)` for `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<(String, u16)>, String> {
    let mut addr = String::from("127.0.0.1:8888");
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("--addr {addr:?}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|e| format!("--addr {addr:?}: bad port: {e}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Some((host.to_owned(), port)))
}
