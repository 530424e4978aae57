//! # tls_echo_server — the echo server, over TLS
//!
//! ```text
//! cargo run --release --example tls_echo_server                               # 127.0.0.1:8443
//! cargo run --release --example tls_echo_server -- --addr 127.0.0.1:0         # a free port
//! cargo run --release --example tls_echo_server -- --cert cert.pem --key key.pem
//! ```
//!
//! Without `--cert`, the server makes itself a self-signed certificate for `localhost` and
//! `127.0.0.1` with rcgen and writes it (the certificate only, never the key) to a PEM file
//! whose path it prints, so that a client can trust exactly this server:
//!
//! ```text
//! cargo run --release --example tls_echo_client -- --addr 127.0.0.1:8443 --cafile PATH hello
//! openssl s_client -connect 127.0.0.1:8443 -CAfile PATH
//! python3 -c 'import ssl, socket; …ssl.create_default_context(cafile="PATH")…'
//! ```
//!
//! The protocol is `echo_server`'s, unchanged: TLS is a layer *between* the socket transport
//! and the protocol (asyncio's `sslproto.py`), so a protocol written for plain TCP gets
//! plaintext in `data_received`, writes plaintext with [`Transport::write`], and its flow
//! control (`pause_writing` → `pause_reading`) works on the encrypted bytes' buffer. All TLS adds
//! here is [`ServerOptions::tls`] with a configuration from [`tls::server_config`], and
//! [`Transport::tls_info`] to show what each connection negotiated.
//!
//! Ctrl-C (SIGINT, through the loop's [`add_signal_handler`](EventLoop::add_signal_handler))
//! stops listening and closes the open connections with [`Transport::close`], which sends TLS's
//! `close_notify` first so that clients see a clean end of stream; the program waits for every
//! `connection_lost`, removes the certificate file it made, and exits with 0.
//!
//! Output (stdout): `certificate: PATH`, then `listening on ADDR`, one line per connection
//! opened and closed, and a summary at the end. Logs go to stderr.

use std::cell::{Cell, RefCell};
use std::io;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tulipa_futures::rt::signal::SIGINT;
use tulipa_futures::rt::EventLoop;
use tulipa_futures::sync::Event;
use tulipa_transport::{create_server, tls, Error, Protocol, ServerOptions, Transport};

const USAGE: &str = "\
usage: tls_echo_server [--addr HOST:PORT] [--cert FILE.pem --key FILE.pem] [--cert-out FILE.pem]

  --addr HOST:PORT     where to listen (default 127.0.0.1:8443; port 0 picks a free one)
  --cert FILE.pem      the certificate chain to present (PEM)
  --key FILE.pem       its private key (PEM: PKCS#8, PKCS#1 or SEC1)
  --cert-out FILE.pem  without --cert: where to write the self-signed certificate
                       (default: a file in the temporary directory)

Echoes every byte back over TLS until the peer closes; Ctrl-C stops.";

/// Command-line options.
#[derive(Debug)]
struct Options {
    host: String,
    port: u16,
    /// `--cert` and `--key`, or `None` for a self-signed certificate.
    identity: Option<(PathBuf, PathBuf)>,
    cert_out: Option<PathBuf>,
}

/// Counters and the open connections, shared by every connection (callbacks run one at a time
/// on the loop's thread, so `Cell`s are enough).
#[derive(Default)]
struct Stats {
    connections: Cell<u64>,
    bytes: Cell<u64>,
    /// The open connections, by number, for closing them at the end.
    open: RefCell<Vec<(u64, Transport)>>,
    /// Set whenever the last open connection is lost.
    idle: Event,
}

/// One connection's protocol: the same as a plain TCP echo.
struct Echo {
    stats: Rc<Stats>,
    transport: Option<Transport>,
    number: u64,
    peer: String,
    bytes: u64,
}

impl Protocol for Echo {
    fn connection_made(&mut self, transport: Transport) {
        // Over TLS this runs once the handshake is done, so the session can be described.
        if let Some(peer) = transport.peer_addr() {
            self.peer = peer.to_string();
        }
        let session = transport
            .tls_info()
            .map(|i| {
                format!(
                    "{}, {}, SNI {}",
                    i.protocol_version.as_deref().unwrap_or("?"),
                    i.cipher_suite.as_deref().unwrap_or("?"),
                    i.server_name.as_deref().unwrap_or("none"),
                )
            })
            .unwrap_or_default();
        println!("connection from {} ({session})", self.peer);
        let stats = &self.stats;
        self.number = stats.connections.get() + 1;
        stats.connections.set(self.number);
        stats.idle.clear();
        stats
            .open
            .borrow_mut()
            .push((self.number, transport.clone()));
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
        // Over TLS the answer does not matter: the peer's close_notify is answered with ours
        // and the connection closes once the echoes are flushed.
        false
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        match exc {
            None => println!("closed {} after {} bytes", self.peer, self.bytes),
            Some(e) => println!("lost {} after {} bytes: {e}", self.peer, self.bytes),
        }
        // Dropping the transports breaks the transport <-> protocol reference cycle.
        self.transport = None;
        let mut open = self.stats.open.borrow_mut();
        open.retain(|(n, _)| *n != self.number);
        if open.is_empty() {
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

    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tls_echo_server: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let (config, made_cert) = match server_config(&options) {
        Ok(c) => c,
        Err(error) => {
            eprintln!("tls_echo_server: {error}");
            return ExitCode::FAILURE;
        }
    };

    // `run` makes a loop, runs `serve` as its main task, then cleans up and closes the loop.
    let outcome = tulipa_futures::run(serve(options.host, options.port, config));
    if let Some(path) = made_cert {
        // The certificate was only for this run's clients.
        let _ = std::fs::remove_file(path);
    }
    match outcome {
        Ok(stats) => {
            println!(
                "goodbye: served {} connection(s), echoed {} bytes",
                stats.connections.get(),
                stats.bytes.get()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("tls_echo_server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The TLS configuration, from `--cert`/`--key` or a fresh self-signed certificate; prints the
/// certificate's path, and returns it too if this run made the file.
fn server_config(
    options: &Options,
) -> Result<(Arc<tls::ServerConfig>, Option<PathBuf>), Box<dyn std::error::Error>> {
    let (chain, key, path, made) = match &options.identity {
        Some((cert, key)) => (
            tls::load_certs(cert)?,
            tls::load_private_key(key)?,
            cert.clone(),
            None,
        ),
        None => {
            let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
            let made = rcgen::generate_simple_self_signed(names)?;
            let path = options.cert_out.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("tulipa-tls-echo-{}.pem", std::process::id()))
            });
            std::fs::write(&path, made.cert.pem())
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            let key =
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
            let chain: Vec<CertificateDer<'static>> = vec![made.cert.der().clone()];
            (chain, key, path.clone(), Some(path))
        }
    };
    println!("certificate: {}", path.display());
    Ok((tls::server_config(chain, key, &[])?, made))
}

/// Serves until SIGINT, then closes everything and returns the counters.
async fn serve(
    host: String,
    port: u16,
    config: Arc<tls::ServerConfig>,
) -> tulipa_futures::Result<Rc<Stats>> {
    let lp = EventLoop::running()?;
    let stats = Rc::new(Stats::default());
    stats.idle.set(); // no connection yet

    let factory = {
        let stats = stats.clone();
        move || Echo {
            stats: stats.clone(),
            transport: None,
            number: 0,
            peer: String::from("?"),
            bytes: 0,
        }
    };
    let mut options = ServerOptions::default();
    options.tls = Some(config);
    let server = create_server(factory, &host, port, options).await?;
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

    // Stop listening, then close each open connection through its TLS transport: the echoes
    // still buffered go out, then close_notify, and the socket closes once the peer answered
    // (or the shutdown timeout passed). `Server::close_clients` does the same for every client
    // of the server. Wait until every connection_lost has run; a connection still in its
    // handshake goes with the loop.
    server.close();
    let open: Vec<Transport> = stats.open.borrow().iter().map(|(_, t)| t.clone()).collect();
    for t in open {
        t.close();
    }
    stats.idle.wait().await?;
    Ok(stats)
}

/// `Ok(None)` for `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = String::from("127.0.0.1:8443");
    let (mut cert, mut key, mut cert_out) = (None, None, None);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => addr = value("--addr")?,
            "--cert" => cert = Some(PathBuf::from(value("--cert")?)),
            "--key" => key = Some(PathBuf::from(value("--key")?)),
            "--cert-out" => cert_out = Some(PathBuf::from(value("--cert-out")?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("--cert and --key go together".into()),
    };
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("--addr {addr:?}: expected HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|e| format!("--addr {addr:?}: bad port: {e}"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok(Some(Options {
        host: host.to_owned(),
        port,
        identity,
        cert_out,
    }))
}
