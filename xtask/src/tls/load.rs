//! The load generator of `cargo xtask bench tls` (the hidden `xtask tls-load`): one
//! implementation for every server, a tokio current-thread runtime with tokio-rustls (the same
//! rustls and `ring` provider as the servers), one task per connection, so that one core drives
//! every connection.
//!
//! - `--mode throughput`: `--conns` connections (made before the clock starts), each sending
//!   one `--size`-byte message at a time and reading its echo (writing and reading concurrently,
//!   so no buffer size can deadlock it), for `--warmup` then `--duration` seconds. Messages
//!   whose echo completes in the measured window count; reports MB/s (10^6 bytes of payload
//!   echoed per second) and the round trip per message.
//! - `--mode handshakes`: `--conns` concurrent clients, each in a loop: connect, TLS handshake
//!   (a full one: the client keeps no sessions, so it never resumes), one `--size`-byte round
//!   trip, `close_notify` and shutdown of its write side, then it reads until the server's end
//!   of stream, so the server has finished with the connection before the next one starts.
//!   Reports connections completed per second and the connect + handshake time of each.
//!
//! Both report the CPU use of the server process (`--server-pid`) and of this process over
//! the window (one core = 1.0), so a reader can tell which side was the bottleneck. The client
//! does not verify the server's signatures unless `--full-verify` is given: it accepts exactly
//! the certificate in `--cafile` (compared byte for byte) and skips the ECDSA verifications,
//! which would otherwise cost the one client core more than the signing costs the server
//! (see the module docs of [`super`]).
//!
//! Prints one JSON line. Every run is bounded: a watchdog exits the process 30 s after the end
//! of the window.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::echo::load::cpu_seconds;

/// The name the client asks for (SNI) and the certificate is made for.
pub(crate) const SERVER_NAME: &str = "localhost";

/// The two workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Echo of large messages over a few long connections.
    Throughput,
    /// New connections, one small round trip each.
    Handshakes,
}

impl Mode {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Throughput => "throughput",
            Mode::Handshakes => "handshakes",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Mode, String> {
        match s {
            "throughput" => Ok(Mode::Throughput),
            "handshakes" => Ok(Mode::Handshakes),
            other => Err(format!(
                "unknown workload `{other}` (known: throughput, handshakes)"
            )),
        }
    }
}

/// What to do; see the module docs.
#[derive(Debug)]
pub(crate) struct LoadOptions {
    pub(crate) addr: SocketAddr,
    pub(crate) cafile: PathBuf,
    pub(crate) mode: Mode,
    pub(crate) conns: usize,
    pub(crate) size: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) server_pid: Option<u32>,
    pub(crate) full_verify: bool,
}

/// Accepts exactly one certificate, compared byte for byte, and no signature checks: the
/// server's key is not verified to be in use, which a benchmark on loopback does not need.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    schemes: Vec<SignatureScheme>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes.clone()
    }
}

/// The client configuration: trusting the certificate of `--cafile`, either fully verified
/// (webpki, signatures) or pinned; no session resumption.
fn client_config(o: &LoadOptions) -> Result<Arc<ClientConfig>, String> {
    let certs = tulipa_transport::tls::load_certs(&o.cafile).map_err(|e| e.to_string())?;
    let mut cfg = if o.full_verify {
        let mut roots = rustls::RootCertStore::empty();
        for c in certs {
            roots.add(c).map_err(|e| format!("--cafile: {e}"))?;
        }
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth()
    } else {
        let cert = certs.into_iter().next().ok_or("--cafile: no certificate")?;
        let schemes = rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes();
        ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { cert, schemes }))
            .with_no_client_auth()
    };
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// Connects and completes the handshake.
async fn connect(connector: &TlsConnector, addr: SocketAddr) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let name = ServerName::try_from(SERVER_NAME).map_err(io::Error::other)?;
    connector.connect(name, tcp).await
}

/// What the session negotiated, for the report.
fn session(s: &TlsStream<TcpStream>) -> String {
    let conn = s.get_ref().1;
    format!(
        "{}, {}, {}",
        conn.protocol_version()
            .map_or("?".to_string(), |v| format!("{v:?}")),
        conn.negotiated_cipher_suite()
            .map_or("?".to_string(), |c| format!("{:?}", c.suite())),
        conn.negotiated_key_exchange_group()
            .map_or("?".to_string(), |g| format!("{:?}", g.name())),
    )
}

/// The CPU use (one core = 1.0) of the server and of this process over the window, measured
/// by a thread that sleeps until the window opens and again until it closes.
fn cpu_sampler(
    server_pid: Option<u32>,
    window_start: Instant,
    end: Instant,
) -> std::thread::JoinHandle<(Option<f64>, Option<f64>)> {
    std::thread::spawn(move || {
        let me = std::process::id();
        let sleep_until = |t: Instant| {
            let now = Instant::now();
            if t > now {
                std::thread::sleep(t - now);
            }
        };
        sleep_until(window_start);
        let t0 = Instant::now();
        let server0 = server_pid.and_then(cpu_seconds);
        let me0 = cpu_seconds(me);
        sleep_until(end);
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        let server1 = server_pid.and_then(cpu_seconds);
        let me1 = cpu_seconds(me);
        let use_of = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / secs);
        (use_of(server0, server1), use_of(me0, me1))
    })
}

/// What one connection task measured inside the window.
#[derive(Default)]
struct Tally {
    done: u64,
    latencies_ns: Vec<u64>,
    close_errors: u64,
}

fn in_window(t: Instant, start: Instant, end: Instant) -> bool {
    t >= start && t < end
}

/// Runs the load as `o` says and returns the JSON line.
pub(crate) fn run(o: &LoadOptions) -> Result<String, String> {
    let config = client_config(o)?;
    let limit = o.warmup + o.duration + Duration::from_secs(30);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("tls-load: still running after {limit:?}, exiting");
        std::process::exit(3);
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("tls-load: runtime: {e}"))?;
    rt.block_on(drive(o, TlsConnector::from(config)))
        .map_err(|e| format!("tls-load {}: {e}", o.mode.name()))
}

async fn drive(o: &LoadOptions, connector: TlsConnector) -> io::Result<String> {
    // Throughput: the connections exist before the clock starts.
    let mut streams = Vec::new();
    let mut negotiated = String::new();
    if o.mode == Mode::Throughput {
        for _ in 0..o.conns {
            let s = connect(&connector, o.addr).await?;
            negotiated = session(&s);
            streams.push(s);
        }
    } else {
        // One connection to learn what is negotiated; not timed.
        let mut s = connect(&connector, o.addr).await?;
        negotiated = session(&s);
        let _ = s.shutdown().await;
    }
    let start = Instant::now();
    let window_start = start + o.warmup;
    let end = window_start + o.duration;
    let sampler = cpu_sampler(o.server_pid, window_start, end);
    let mut tasks = Vec::new();
    match o.mode {
        Mode::Throughput => {
            for s in streams {
                tasks.push(tokio::spawn(echo_loop(s, o.size, window_start, end)));
            }
        }
        Mode::Handshakes => {
            for _ in 0..o.conns {
                tasks.push(tokio::spawn(handshake_loop(
                    connector.clone(),
                    o.addr,
                    o.size,
                    window_start,
                    end,
                )));
            }
        }
    }
    let mut all = Tally::default();
    for t in tasks {
        let tally = t.await.map_err(io::Error::other)??;
        all.done += tally.done;
        all.close_errors += tally.close_errors;
        all.latencies_ns.extend(tally.latencies_ns);
    }
    let (server_cpu, load_cpu) = sampler.join().unwrap_or((None, None));
    let window = o.duration.as_secs_f64();
    all.latencies_ns.sort_unstable();
    let pct = |p: f64| -> f64 {
        let v = &all.latencies_ns;
        if v.is_empty() {
            return 0.0;
        }
        let k = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len());
        v[k - 1] as f64 / 1000.0
    };
    let cpu = |c: Option<f64>| c.map_or("null".to_string(), |c| format!("{c:.4}"));
    let rate = all.done as f64 / window;
    let head = match o.mode {
        Mode::Throughput => format!(
            "\"mb_per_s\":{:.2},\"msgs_per_s\":{rate:.1}",
            rate * o.size as f64 / 1e6
        ),
        Mode::Handshakes => format!(
            "\"handshakes_per_s\":{rate:.1},\"close_errors\":{}",
            all.close_errors
        ),
    };
    Ok(format!(
        "{{{head},\"p50_us\":{:.1},\"p99_us\":{:.1},\"server_cpu\":{},\"load_cpu\":{},\"session\":\"{negotiated}\"}}",
        pct(0.50),
        pct(0.99),
        cpu(server_cpu),
        cpu(load_cpu),
    ))
}

/// One long connection: a message out, its echo back, again until `end`.
async fn echo_loop(
    stream: TlsStream<TcpStream>,
    size: usize,
    window_start: Instant,
    end: Instant,
) -> io::Result<Tally> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let message = vec![b'x'; size];
    let mut echo = vec![0u8; size];
    let mut tally = Tally::default();
    loop {
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let write = async {
            wr.write_all(&message).await?;
            wr.flush().await
        };
        let read = rd.read_exact(&mut echo);
        let (w, r) = futures_lite::future::zip(write, read).await;
        w?;
        r?;
        let now = Instant::now();
        if in_window(now, window_start, end) {
            tally.done += 1;
            tally
                .latencies_ns
                .push(now.duration_since(sent).as_nanos() as u64);
        }
    }
    Ok(tally)
}

/// One client: new connection, handshake, one round trip, close; again until `end`.
async fn handshake_loop(
    connector: TlsConnector,
    addr: SocketAddr,
    size: usize,
    window_start: Instant,
    end: Instant,
) -> io::Result<Tally> {
    let message = vec![b'x'; size];
    let mut echo = vec![0u8; size];
    let mut rest = [0u8; 512];
    let mut tally = Tally::default();
    loop {
        let began = Instant::now();
        if began >= end {
            break;
        }
        let mut s = connect(&connector, addr).await?;
        let handshaken = Instant::now();
        s.write_all(&message).await?;
        s.flush().await?;
        s.read_exact(&mut echo).await?;
        // close_notify and our FIN, then wait for the server's close.
        s.shutdown().await?;
        let closed_cleanly = loop {
            match s.read(&mut rest).await {
                Ok(0) => break true,
                Ok(_) => {}
                Err(_) => break false,
            }
        };
        drop(s);
        let now = Instant::now();
        if in_window(now, window_start, end) {
            tally.done += 1;
            tally
                .latencies_ns
                .push(handshaken.duration_since(began).as_nanos() as u64);
            if !closed_cleanly {
                tally.close_errors += 1;
            }
        }
    }
    Ok(tally)
}
