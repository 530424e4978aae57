//! The stream_echo, chat and udp_echo examples, run as real processes and talked to with std
//! sockets.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use tulipa_tests::Running;

const EXAMPLES: [&str; 3] = ["stream_echo", "chat", "udp_echo"];

/// Bound for any single read, so a broken example fails its test instead of hanging it.
const BOUND: Duration = Duration::from_secs(30);

fn example(name: &str) -> PathBuf {
    static BINS: OnceLock<HashMap<String, PathBuf>> = OnceLock::new();
    BINS.get_or_init(|| tulipa_tests::build_examples(&EXAMPLES))
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name}"))
}

/// A server example started on port 0; its first stdout line names the address. Every read
/// of its output waits at most [`BOUND`] (a reader thread; see [`Running`]), so an example that
/// never prints fails the test instead of hanging it; it is killed on drop.
struct Server {
    run: Running,
    addr: String,
}

impl Server {
    fn start(name: &str, prefix: &str) -> Server {
        let mut cmd = Command::new(example(name));
        cmd.args(["--addr", "127.0.0.1:0"]);
        let run = Running::spawn(cmd, Stdio::null(), BOUND);
        let line = run
            .read_until(&format!("{name}'s first line"), |_| true)
            .pop()
            .expect("read_until returns the line it waited for");
        let addr = line
            .trim()
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{name} printed {line:?}"))
            .to_owned();
        Server { run, addr }
    }

    /// SIGINT, then the goodbye line and a clean exit.
    fn stop(mut self) {
        self.run.interrupt();
        let rest = self.run.read_to_end().join("\n");
        assert!(rest.contains("bye"), "goodbye line: {rest:?}");
        let (status, stderr) = self.run.wait();
        assert!(status.success(), "{status}; stderr: {stderr}");
    }
}

fn connect(addr: &str) -> (TcpStream, BufReader<TcpStream>) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(BOUND)).unwrap();
    let r = BufReader::new(s.try_clone().unwrap());
    (s, r)
}

#[test]
fn stream_echo_echoes_lines_until_the_client_closes() {
    let server = Server::start("stream_echo", "listening on ");
    let (mut s, mut r) = connect(&server.addr);
    for text in ["first line\n", "second, longer line\n"] {
        s.write_all(text.as_bytes()).unwrap();
        let mut back = String::new();
        r.read_line(&mut back).unwrap();
        assert_eq!(back, text);
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the server closes after our EOF");
    server.stop();
}

#[test]
fn chat_relays_each_line_to_the_other_clients() {
    let server = Server::start("chat", "chat on ");
    let (mut a, mut ar) = connect(&server.addr);
    let mut prompt = [0u8; 6];
    ar.read_exact(&mut prompt).unwrap();
    assert_eq!(&prompt, b"name? ");
    a.write_all(b"alice\n").unwrap();
    let (mut b, mut br) = connect(&server.addr);
    br.read_exact(&mut prompt).unwrap();
    b.write_all(b"bob\n").unwrap();
    let mut line = String::new();
    ar.read_line(&mut line).unwrap();
    assert_eq!(line, "* bob joined\n");
    a.write_all(b"hello bob\n").unwrap();
    line.clear();
    br.read_line(&mut line).unwrap();
    assert_eq!(line, "alice: hello bob\n");
    drop((b, br));
    line.clear();
    ar.read_line(&mut line).unwrap();
    assert_eq!(line, "* bob left\n");
    server.stop();
}

/// Reads one line from `r` and checks it.
fn expect_line(r: &mut BufReader<TcpStream>, want: &str) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, want);
}

/// Connects and answers the prompt with `name`.
fn join(addr: &str, name: &str) -> (TcpStream, BufReader<TcpStream>) {
    let (mut s, mut r) = connect(addr);
    let mut prompt = [0u8; 6];
    r.read_exact(&mut prompt).unwrap();
    assert_eq!(&prompt, b"name? ");
    s.write_all(format!("{name}\n").as_bytes()).unwrap();
    (s, r)
}

#[test]
fn chat_lets_clients_that_fail_leave_and_goes_on() {
    let server = Server::start("chat", "chat on ");
    let (mut a, mut ar) = join(&server.addr, "alice");
    let (_b, mut br) = join(&server.addr, "bob");
    expect_line(&mut ar, "* bob joined\n");
    // Carol vanishes abruptly: she closes with bytes unread in her socket (her prompt), so the
    // kernel resets the connection and her handler's readline fails.
    let (mut c, cr) = connect(&server.addr);
    c.write_all(b"carol\n").unwrap();
    expect_line(&mut ar, "* carol joined\n");
    expect_line(&mut br, "* carol joined\n");
    drop((c, cr));
    expect_line(&mut ar, "* carol left\n");
    expect_line(&mut br, "* carol left\n");
    // Dave sends a line over the server's limit (64 KiB): his handler fails too.
    let (mut d, _dr) = join(&server.addr, "dave");
    expect_line(&mut ar, "* dave joined\n");
    expect_line(&mut br, "* dave joined\n");
    let _ = d.write_all(&[b'x'; 70 * 1024]); // the server may reset before taking it all
    expect_line(&mut ar, "* dave left\n");
    expect_line(&mut br, "* dave left\n");
    // The room goes on without them.
    a.write_all(b"still here\n").unwrap();
    expect_line(&mut br, "alice: still here\n");
    server.stop();
}

#[test]
fn udp_echo_sends_every_datagram_back_to_its_sender() {
    let server = Server::start("udp_echo", "udp echo on ");
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(BOUND)).unwrap();
    for payload in [&b"ping"[..], &[7u8; 1400][..]] {
        client.send_to(payload, &server.addr).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], payload);
        assert_eq!(from.to_string(), server.addr);
    }
    server.stop();
}
