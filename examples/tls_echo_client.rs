//! # tls_echo_client — a line-by-line echo client over TLS
//!
//! ```text
//! cargo run --release --example tls_echo_client -- --addr 127.0.0.1:8443 --cafile cert.pem hello
//! printf 'one\ntwo\n' | cargo run --release --example tls_echo_client -- --cafile cert.pem
//! ```
//!
//! Connects with TLS, verifying the server's certificate against `--cafile` (a PEM file of
//! trusted certificates, for example the one `tls_echo_server` prints) or, without it, against
//! the `webpki-roots` Mozilla root store ([`tls::client_config`]). The name checked and sent as
//! SNI is `--name`, by default the host of `--addr`. Then it sends each line (the arguments
//! after the options, or else the lines of stdin), waits for its echo and prints it as
//! `echo: LINE`; at the end it closes the connection (`close_notify`) and exits with 0, or with
//! 1 if an echo differed or the connection failed (a certificate the client does not trust
//! fails the connect with a TLS error).
//!
//! How the pieces fit: [`create_connection`] with [`ConnectOptions::tls`] puts the TLS layer
//! between the socket and the protocol and returns once the handshake is done, with the
//! transport the protocol got. The protocol here, `Lines`, only feeds what arrives into a
//! [`StreamReader`], so the main task can `readline` (this is all asyncio's
//! `open_connection(ssl=…)` does). TLS has no half-close, so where `echo_client` uses
//! `write_eof`, this client closes.
//!
//! Stdin is read on the loop's thread pool (`run_in_executor`), one line at a time, so the loop
//! never blocks on the terminal.

use std::io::{self, BufRead};
use std::process::ExitCode;
use std::sync::Arc;

use rustls::RootCertStore;
use tulipa_futures::rt::EventLoop;
use tulipa_futures::run_in_executor;
use tulipa_futures::sync::Event;
use tulipa_transport::streams::{StreamReader, DEFAULT_LIMIT};
use tulipa_transport::{create_connection, tls, ConnectOptions, Error, Protocol, Transport};

const USAGE: &str = "\
usage: tls_echo_client [--addr HOST:PORT] [--cafile FILE.pem] [--name NAME] [LINE...]

  --addr HOST:PORT   the TLS echo server (default 127.0.0.1:8443)
  --cafile FILE.pem  trust the certificates in this PEM file (default: the webpki roots)
  --name NAME        the server name to verify and send as SNI (default: HOST)
  LINE...            lines to send; without any, the lines of stdin";

struct Options {
    host: String,
    port: u16,
    cafile: Option<String>,
    name: Option<String>,
    lines: Vec<String>,
}

/// Feeds the plaintext that arrives into a [`StreamReader`] (asyncio's `StreamReaderProtocol`,
/// reduced to what a line client needs).
struct Lines {
    reader: StreamReader,
    lost: Event,
}

impl Protocol for Lines {
    fn connection_made(&mut self, _transport: Transport) {}

    fn data_received(&mut self, data: &[u8]) {
        self.reader.feed_data(data);
    }

    fn eof_received(&mut self) -> bool {
        self.reader.feed_eof();
        false
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        match exc {
            Some(e) => self.reader.set_exception(e),
            None => self.reader.feed_eof(),
        }
        self.lost.set();
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_target(false)
        .init();
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("tls_echo_client: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match tulipa_futures::run(talk(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("tls_echo_client: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The client configuration: `--cafile`'s certificates, or the webpki roots.
fn client_config(cafile: Option<&str>) -> tulipa_transport::Result<Arc<tls::ClientConfig>> {
    let Some(path) = cafile else {
        return Ok(tls::client_config(&[]));
    };
    let mut roots = RootCertStore::empty();
    for cert in tls::load_certs(path)? {
        // A certificate rustls cannot use as a root is left out; none left fails below.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(Error::Tls {
            reason: format!("{path}: no usable certificate").into(),
        });
    }
    Ok(Arc::new(
        tls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Sends the lines and checks the echoes; `Ok(false)` if one differed.
async fn talk(options: Options) -> tulipa_futures::Result<bool> {
    let lp = EventLoop::running()?;
    let mut connect = ConnectOptions::default();
    connect.tls = Some(client_config(options.cafile.as_deref())?);
    connect.server_hostname = options.name.clone();

    let reader = StreamReader::new(DEFAULT_LIMIT);
    let lost = Event::new();
    let protocol = Lines {
        reader: reader.clone(),
        lost: lost.clone(),
    };
    let transport =
        create_connection(move || protocol, &options.host, options.port, connect).await?;
    let session = transport.tls_info().map(|i| {
        format!(
            "{}, {}",
            i.protocol_version.unwrap_or_default(),
            i.cipher_suite.unwrap_or_default()
        )
    });
    if let Some(peer) = transport.peer_addr() {
        println!("connected to {peer} ({})", session.unwrap_or_default());
    }

    let mut all_equal = true;
    let use_stdin = options.lines.is_empty();
    let mut from_args = options.lines.into_iter();
    loop {
        let next = if use_stdin {
            stdin_line(&lp).await?
        } else {
            from_args.next()
        };
        let Some(line) = next else { break };
        transport.writelines(&[line.as_bytes(), b"\n"])?;
        let echo = reader.readline().await?;
        let echo = String::from_utf8_lossy(&echo);
        let echo = echo.trim_end_matches('\n');
        println!("echo: {echo}");
        if echo != line {
            eprintln!("tls_echo_client: sent {line:?}, got back {echo:?}");
            all_equal = false;
        }
    }
    // close_notify, then the socket closes; connection_lost follows.
    transport.close();
    lost.wait().await?;
    println!("closed");
    Ok(all_equal)
}

/// The next line of stdin without its line ending, `None` at end of input. Read on the loop's
/// executor, so the loop stays free meanwhile.
async fn stdin_line(lp: &EventLoop) -> tulipa_futures::Result<Option<String>> {
    let (n, line) = run_in_executor(lp, None, || {
        let mut s = String::new();
        io::stdin().lock().read_line(&mut s).map(|n| (n, s))
    })?
    .await??;
    Ok((n > 0).then(|| line.trim_end_matches(['\n', '\r']).to_owned()))
}

/// `Ok(None)` for `--help`.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut addr = String::from("127.0.0.1:8443");
    let (mut cafile, mut name) = (None, None);
    let mut lines = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
            "--cafile" => cafile = Some(args.next().ok_or("--cafile needs a file")?),
            "--name" => name = Some(args.next().ok_or("--name needs a name")?),
            "--" => lines.extend(args.by_ref()),
            _ => lines.push(arg),
        }
    }
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
        cafile,
        name,
        lines,
    }))
}
