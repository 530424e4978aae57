//! The transport examples, run as real processes: `echo_server` and `echo_client`.
//!
//! Both are built once, in one cargo invocation, with the same cargo that runs these tests (as
//! `examples.rs` does for the ticker). The server is started on port 0 and tells its address on
//! its first line; clients are the `echo_client` example and plain `std::net::TcpStream`s. The
//! tests wait on output lines and socket reads, never on the clock; every wait has a generous
//! bound so that a broken example fails its test instead of hanging it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use std::sync::OnceLock;

use std::thread;
use std::time::Duration;
use tulipa_tests::Running;

/// How long any single expected line or read may take (the build is done before).
const BOUND: Duration = Duration::from_secs(60);

const EXAMPLES: [&str; 2] = ["echo_server", "echo_client"];

/// The path of example `name`, both built on first use.
fn example(name: &str) -> &'static Path {
    static BINS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINS.get_or_init(|| tulipa_tests::build_examples(&EXAMPLES))
        .get(name)
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name}"))
}

fn start(name: &str, args: &[&str], stdin: Stdio) -> Running {
    let mut cmd = Command::new(example(name));
    cmd.args(args);
    Running::spawn(cmd, stdin, BOUND)
}

/// Starts `echo_server` on a free port; returns it and its address.
fn start_server() -> (Running, SocketAddr) {
    let server = start("echo_server", &["--addr", "127.0.0.1:0"], Stdio::null());
    let first = server.read_until("the listening line", |l| l.starts_with("listening on "));
    let addr = first
        .last()
        .and_then(|l| l.strip_prefix("listening on "))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("a socket address in {first:?}"));
    (server, addr)
}

/// Runs `echo_client` to the end with `args` and `input` on its stdin.
fn run_client(addr: SocketAddr, args: &[&str], input: &[u8]) -> (ExitStatus, Vec<String>) {
    let addr = addr.to_string();
    let mut all = vec!["--addr", addr.as_str()];
    all.extend_from_slice(args);
    let mut client = start("echo_client", &all, Stdio::piped());
    let mut stdin = client.child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    // Written from a thread, and closed after: the client reads it line by line.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = client.read_to_end();
    let (status, _) = client.wait();
    writer.join().expect("the stdin writer");
    (status, out)
}

/// Sends `data` over a plain TCP connection, half-closes, and reads the echo to EOF.
fn raw_echo(addr: SocketAddr, data: &[u8]) -> Vec<u8> {
    let stream = TcpStream::connect(addr).expect("connecting to echo_server");
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream.set_write_timeout(Some(BOUND)).unwrap();
    let mut tx = stream.try_clone().unwrap();
    let data = data.to_vec();
    // The writer runs alongside the reader: the server echoes while we still send.
    let writer = thread::spawn(move || {
        tx.write_all(&data).unwrap();
        tx.shutdown(Shutdown::Write).unwrap();
    });
    let mut echo = Vec::new();
    (&stream).read_to_end(&mut echo).expect("reading the echo");
    writer.join().expect("the writer thread");
    echo
}

#[test]
fn echo_client_sends_its_arguments_and_prints_the_echoes() {
    let (server, addr) = start_server();
    let (status, out) = run_client(addr, &["hello", "tulipa world", ""], b"");
    assert!(status.success(), "exit status {status}; output: {out:#?}");
    assert_eq!(
        out,
        [
            format!("connected to {addr}"),
            "echo: hello".to_owned(),
            "echo: tulipa world".to_owned(),
            "echo: ".to_owned(),
            "server closed the connection".to_owned(),
        ]
    );
    server.read_until("the connection's end", |l| {
        l.starts_with("closed ") && l.ends_with(" after 20 bytes")
    });
}

#[test]
fn echo_client_reads_lines_from_stdin() {
    let (server, addr) = start_server();
    let (status, out) = run_client(addr, &[], b"first line\nsecond line\nno newline at the end");
    assert!(status.success(), "exit status {status}; output: {out:#?}");
    assert_eq!(
        &out[1..],
        [
            "echo: first line",
            "echo: second line",
            "echo: no newline at the end",
            "server closed the connection",
        ]
    );
    drop(server);
}

#[test]
fn echo_server_echoes_every_byte_of_a_large_transfer() {
    let (server, addr) = start_server();
    let data: Vec<u8> = (0..8usize << 20)
        .map(|i| (i * 31 + i / 997) as u8)
        .collect();
    let echo = raw_echo(addr, &data);
    assert_eq!(echo.len(), data.len());
    assert!(echo == data, "the echo differs from what was sent");
    let n = data.len();
    server.read_until("the connection's end", |l| {
        l.starts_with("closed ") && l.ends_with(&format!(" after {n} bytes"))
    });
}

#[test]
fn echo_server_stops_on_sigint_closing_open_connections() {
    let (mut server, addr) = start_server();
    // One finished connection, and one left open across the SIGINT.
    assert_eq!(raw_echo(addr, b"ping\n"), b"ping\n");
    let mut open = TcpStream::connect(addr).unwrap();
    open.set_read_timeout(Some(BOUND)).unwrap();
    open.write_all(b"still here\n").unwrap();
    let mut buf = [0u8; 11];
    open.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"still here\n");

    server.interrupt();
    // The server closes the open connection: our side reads EOF.
    let mut rest = Vec::new();
    open.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    let out = server.read_to_end();
    let (status, _) = server.wait();
    assert!(status.success(), "exit status {status}; output: {out:#?}");
    assert!(
        out.iter().any(|l| l == "SIGINT received, closing"),
        "{out:#?}"
    );
    assert!(
        out.iter()
            .any(|l| l.starts_with("closed ") && l.ends_with(" after 11 bytes")),
        "the open connection is closed and reported: {out:#?}"
    );
    assert_eq!(
        out.last().map(String::as_str),
        Some("goodbye: served 2 connection(s), echoed 16 bytes")
    );
}

#[test]
fn echo_client_fails_cleanly_when_nobody_listens() {
    // Port 1 (tcpmux) on the loopback: nothing listens there.
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let (status, out) = run_client(addr, &["x"], b"");
    assert!(!status.success(), "output: {out:#?}");
    assert!(out.is_empty(), "{out:#?}");
}
