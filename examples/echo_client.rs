//! # echo_client — a line-by-line echo client with streams
//!
//! ```text
//! cargo run --release --example echo_client -- --addr 127.0.0.1:8888 hello "two words"
//! printf 'one\ntwo\n' | cargo run --release --example echo_client -- --addr 127.0.0.1:8888
//! ```
//!
//! Sends each line (the arguments after the options, or else the lines of stdin), waits for its
//! echo and prints it as `echo: LINE`. At the end it half-closes the connection (`write_eof`),
//! reads until the server closes its side, and exits with 0; with 1 if an echo differs.
//!
//! The coroutine style of PEP 3156, on top of the same transports as `echo_server`'s protocol:
//! [`open_connection`] gives a [`StreamReader`](tulipa_transport::streams::StreamReader) and a
//! [`StreamWriter`](tulipa_transport::streams::StreamWriter); `readline` waits for a whole line;
//! `drain` waits while the transport's write buffer is over its high watermark.
//!
//! Stdin is read on the loop's thread pool (`run_in_executor`), one line at a time, so the loop
//! never blocks on the terminal.

use std::io::{self, BufRead};
use std::process::ExitCode;

use tulipa_futures::rt::EventLoop;
use tulipa_futures::run_in_executor;
use tulipa_transport::streams::{open_connection, DEFAULT_LIMIT};

const USAGE: &str = "\
usage: echo_client [--addr HOST:PORT] [LINE...]

  --addr HOST:PORT   the echo server (default 127.0.0.1:8888)
  LINE...            lines to send; without any, the lines of stdin";

struct Options {
    host: String,
    port: u16,
    lines: Vec<String>,
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
            eprintln!("echo_client: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match tulipa_futures::run(talk(options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("echo_client: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Sends the lines and checks the echoes; `Ok(false)` if one differed.
async fn talk(options: Options) -> tulipa_futures::Result<bool> {
    let lp = EventLoop::running()?;
    let (reader, writer) = open_connection(&options.host, options.port, DEFAULT_LIMIT).await?;
    if let Some(peer) = writer.transport().peer_addr() {
        println!("connected to {peer}");
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
        writer.write(line.as_bytes())?;
        writer.write(b"\n")?;
        writer.drain().await?;
        let echo = reader.readline().await?;
        let echo = String::from_utf8_lossy(&echo);
        let echo = echo.trim_end_matches('\n');
        println!("echo: {echo}");
        if echo != line {
            eprintln!("echo_client: sent {line:?}, got back {echo:?}");
            all_equal = false;
        }
    }
    // Half-close: the server sees EOF, flushes and closes its side; we read to that end.
    writer.write_eof()?;
    let rest = reader.read_to_end().await?;
    if !rest.is_empty() {
        eprintln!("echo_client: {} unexpected bytes at the end", rest.len());
        all_equal = false;
    }
    println!("server closed the connection");
    writer.close();
    writer.wait_closed().await?;
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
    let mut addr = String::from("127.0.0.1:8888");
    let mut lines = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--addr" => addr = args.next().ok_or("--addr needs HOST:PORT")?,
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
        lines,
    }))
}
