//! The TLS examples, run as real processes: `tls_echo_server` and `tls_echo_client`.
//!
//! Both are built once, in one cargo invocation, with the same cargo that runs these tests (as
//! `examples_transport.rs` does for the plain echo pair). The server is started on port 0; it
//! prints the path of the self-signed certificate it made, then its address. Its clients are
//! the `tls_echo_client` example and Python's standard `ssl` module (skipped with a printed
//! line when `python3` is missing); `openssl req` makes a certificate and key for the
//! `--cert`/`--key` test (skipped likewise without `openssl`). The tests wait on output lines,
//! never on the clock; every wait has a generous bound so that a broken example fails its test
//! instead of hanging it.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use std::sync::OnceLock;

use std::thread;
use std::time::Duration;
use tulipa_tests::Running;

/// How long any single expected line may take (the build is done before).
const BOUND: Duration = Duration::from_secs(60);

const EXAMPLES: [&str; 2] = ["tls_echo_server", "tls_echo_client"];

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

/// A running `tls_echo_server`, its address and the certificate file it printed.
struct Server {
    run: Running,
    addr: SocketAddr,
    cert: PathBuf,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut all = vec!["--addr", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let run = start("tls_echo_server", &all, Stdio::null());
        let first = run.read_until("the listening line", |l| l.starts_with("listening on "));
        let cert = first
            .iter()
            .find_map(|l| l.strip_prefix("certificate: "))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("a certificate line in {first:?}"));
        let addr = first
            .last()
            .and_then(|l| l.strip_prefix("listening on "))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("a socket address in {first:?}"));
        Server { run, addr, cert }
    }

    /// Stops the server with SIGINT; returns the rest of its output after checking that it
    /// exited with 0 and logged no error.
    fn stop(mut self) -> Vec<String> {
        self.run.interrupt();
        let out = self.run.read_to_end();
        let (status, stderr) = self.run.wait();
        assert!(status.success(), "exit status {status}; output: {out:#?}");
        assert!(
            !stderr.contains("ERROR"),
            "the server logged an error:\n{stderr}"
        );
        assert!(
            out.iter().any(|l| l == "SIGINT received, closing"),
            "{out:#?}"
        );
        out
    }
}

/// Runs `tls_echo_client` to the end with `args` and `input` on its stdin.
fn run_client(server: &Server, args: &[&str], input: &[u8]) -> (ExitStatus, Vec<String>, String) {
    let addr = server.addr.to_string();
    let mut all = vec!["--addr", addr.as_str()];
    all.extend_from_slice(args);
    let mut client = start("tls_echo_client", &all, Stdio::piped());
    let mut stdin = client.child.stdin.take().expect("stdin is piped");
    let input = input.to_vec();
    // Written from a thread, and closed after: the client reads it line by line.
    let writer = thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = client.read_to_end();
    let (status, stderr) = client.wait();
    writer.join().expect("the stdin writer");
    (status, out, stderr)
}

/// True when `python3` with its `ssl` module runs; otherwise says why the test is skipped.
fn have_python_ssl() -> bool {
    match Command::new("python3")
        .args(["-c", "import ssl"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => true,
        Ok(s) => {
            println!("skipped: python3 has no usable ssl module ({s})");
            false
        }
        Err(e) => {
            println!("skipped: python3 not found ({e})");
            false
        }
    }
}

/// Python's `ssl` as a client: verifies the server against `cafile` as `localhost`, sends a
/// line and prints the echo and the version. Then `close` shuts TLS down from its side
/// (`unwrap`: close_notify both ways), `wait` waits for the server to end the stream and says
/// how it ended (`end eof` is a clean close_notify).
const PY_CLIENT: &str = r#"
import socket, ssl, sys
port, cafile, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=cafile)
raw = socket.create_connection(("127.0.0.1", port), timeout=60)
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
s.sendall(b"hello from python\n")
got = b""
while not got.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
print("echo", got.decode().rstrip("\n"), flush=True)
print("version", s.version(), flush=True)
if mode == "close":
    try:
        s.unwrap()
        print("shutdown clean")
    except (ssl.SSLError, OSError) as e:
        print("shutdown", type(e).__name__, e)
else:
    try:
        rest = s.recv(4096)
        print("end", "eof" if rest == b"" else "data")
    except (ssl.SSLError, OSError) as e:
        print("end", type(e).__name__, e)
"#;

fn python_client(server: &Server, mode: &str) -> Running {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", PY_CLIENT, &server.addr.port().to_string()])
        .arg(&server.cert)
        .arg(mode);
    Running::spawn(cmd, Stdio::null(), BOUND)
}

#[test]
fn tls_echo_client_trusts_the_printed_certificate_and_prints_the_echoes() {
    let server = Server::start(&[]);
    let cafile = server.cert.to_str().unwrap().to_owned();
    let (status, out, stderr) = run_client(
        &server,
        &[
            "--cafile",
            &cafile,
            "--name",
            "localhost",
            "hello",
            "tulipa world",
            "",
        ],
        b"",
    );
    assert!(status.success(), "exit status {status}; {out:#?}\n{stderr}");
    assert!(
        out[0].starts_with(&format!("connected to {} (TLSv1_3, ", server.addr)),
        "{out:#?}"
    );
    assert_eq!(
        &out[1..],
        ["echo: hello", "echo: tulipa world", "echo: ", "closed"]
    );
    let rest = server.stop();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("closed ") && l.ends_with(" after 20 bytes")),
        "{rest:#?}"
    );
    assert_eq!(
        rest.last().map(String::as_str),
        Some("goodbye: served 1 connection(s), echoed 20 bytes")
    );
}

#[test]
fn tls_echo_client_reads_lines_from_stdin_and_sends_sni() {
    let server = Server::start(&[]);
    let cafile = server.cert.to_str().unwrap().to_owned();
    // No --name: the name is the host of --addr, an IP address, which TLS does not send as
    // SNI; the certificate covers 127.0.0.1 too.
    let (status, out, stderr) = run_client(
        &server,
        &["--cafile", &cafile],
        b"first line\nsecond line\nno newline at the end",
    );
    assert!(status.success(), "exit status {status}; {out:#?}\n{stderr}");
    assert_eq!(
        &out[1..],
        [
            "echo: first line",
            "echo: second line",
            "echo: no newline at the end",
            "closed",
        ]
    );
    let rest = server.stop();
    assert!(
        rest.iter().any(|l| l.starts_with("connection from ")
            && l.contains("(TLSv1_3, ")
            && l.ends_with(", SNI none)")),
        "{rest:#?}"
    );
}

#[test]
fn tls_echo_client_without_the_certificate_refuses_the_server() {
    let server = Server::start(&[]);
    // The webpki roots do not include a certificate made a moment ago.
    let (status, out, stderr) = run_client(&server, &["--name", "localhost", "x"], b"");
    assert!(!status.success(), "{out:#?}");
    assert!(out.is_empty(), "{out:#?}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    // The server drops the failed handshake quietly (no error log, checked by `stop`).
    let rest = server.stop();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("goodbye: served 0 connection(s), echoed 0 bytes")
    );
}

#[test]
fn python_ssl_client_verifies_the_example_server_and_shuts_down_cleanly() {
    if !have_python_ssl() {
        return;
    }
    let server = Server::start(&[]);
    let mut py = python_client(&server, "close");
    let out = py.read_to_end();
    let (status, stderr) = py.wait();
    assert!(status.success(), "{status}: {out:#?}\n{stderr}");
    assert_eq!(
        out,
        [
            "echo hello from python",
            "version TLSv1.3",
            "shutdown clean"
        ]
    );
    let rest = server.stop();
    assert!(
        rest.iter()
            .any(|l| l.starts_with("connection from ") && l.ends_with(", SNI localhost)")),
        "{rest:#?}"
    );
}

#[test]
fn sigint_closes_open_tls_connections_with_close_notify_and_removes_the_certificate() {
    let server = Server::start(&[]);
    let cert = server.cert.clone();
    assert!(cert.exists(), "the certificate file {}", cert.display());
    let mut py = None;
    if have_python_ssl() {
        // A connection left open across the SIGINT.
        let client = python_client(&server, "wait");
        client.read_until("the echo", |l| l == "echo hello from python");
        py = Some(client);
    }
    let rest = server.stop();
    assert!(
        !cert.exists(),
        "the server removes the certificate it made: {}",
        cert.display()
    );
    if let Some(mut client) = py {
        let out = client.read_to_end();
        let (status, stderr) = client.wait();
        assert!(status.success(), "{status}: {out:#?}\n{stderr}");
        assert_eq!(
            out.last().map(String::as_str),
            Some("end eof"),
            "the server's close is a TLS close: {out:#?}"
        );
        assert!(
            rest.iter()
                .any(|l| l.starts_with("closed ") && l.ends_with(" after 18 bytes")),
            "{rest:#?}"
        );
    }
}

/// A directory of the test's own, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("tulipa-examples-tls-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn tls_echo_server_serves_a_certificate_and_key_made_by_openssl() {
    let dir = TempDir::new("openssl");
    let (cert, key) = (dir.0.join("cert.pem"), dir.0.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        // `req -x509` makes a CA by default, which webpki refuses as a server's certificate.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match made {
        Err(_) => {
            println!("skipped: openssl not found");
            return;
        }
        Ok(o) if !o.status.success() => {
            println!(
                "skipped: openssl req failed: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            return;
        }
        Ok(_) => {}
    }
    let (cert_s, key_s) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let server = Server::start(&["--cert", cert_s, "--key", key_s]);
    assert_eq!(
        server.cert, cert,
        "the server names the certificate it was given"
    );
    let (status, out, stderr) = run_client(
        &server,
        &["--cafile", cert_s, "--name", "localhost", "made by openssl"],
        b"",
    );
    assert!(status.success(), "exit status {status}; {out:#?}\n{stderr}");
    assert_eq!(&out[1..], ["echo: made by openssl", "closed"]);
    server.stop();
    assert!(cert.exists(), "a certificate it was given is not removed");
}
