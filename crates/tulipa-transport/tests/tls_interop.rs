//! Tulipa's TLS against other TLS implementations, as real processes on 127.0.0.1:
//!
//! - Python's standard `ssl` module (OpenSSL underneath) as a client of a Tulipa TLS server:
//!   the echo, the version Python negotiated, ALPN chosen by the Tulipa server, SNI as the
//!   server saw it, and a clean bidirectional `close_notify` shutdown (`SSLSocket.unwrap`),
//!   from either side (`Server::close_clients` sends `close_notify` and waits for Python's);
//! - a Python `ssl` server for a Tulipa TLS client: certificate verification against the test's
//!   CA, SNI and ALPN as Python saw them, and how the stream ended for Python after the Tulipa
//!   client's `close` (clean `close_notify`) or `abort` (a truncated stream);
//! - `openssl s_client` against a Tulipa TLS server.
//!
//! The certificates come from rcgen: a CA and a leaf for `localhost` and `127.0.0.1` signed by
//! it, written as PEM files into a directory of the test's own. A test whose program is missing
//! prints `skipped: …` and returns.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore};
use tulipa_futures::rt::EventLoop;
use tulipa_futures::run_in_executor;
use tulipa_futures::sync::Event;
use tulipa_transport::streams::{start_server, StreamReader, StreamWriter, DEFAULT_LIMIT};
use tulipa_transport::tls::TlsInfo;
use tulipa_transport::{
    create_connection, create_server, tls, ConnectOptions, Error, Protocol, Server, ServerOptions,
    Transport,
};

/// The bound on a whole test body: a broken peer fails the test instead of hanging it. The
/// Python scripts bound their own socket operations at 30 s.
const BOUND: Duration = Duration::from_secs(90);

// ---- certificates ------------------------------------------------------------------------------

/// A CA, a leaf for `localhost` and `127.0.0.1` signed by it, and their PEM files.
struct Pki {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir =
            std::env::temp_dir().join(format!("tulipa-tls-interop-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the test's certificate directory");

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // Each test's CA has a name of its own: a client trusting another test's CA must see an
        // unknown issuer, not a same-named issuer with a bad signature.
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("Tulipa interop test CA {tag}"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let leaf_key = KeyPair::generate().unwrap();
        let mut leaf_params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();

        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("leaf.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("leaf.key"), leaf_key.serialize_pem()).unwrap();
        Pki {
            dir,
            ca: ca.der().clone(),
            leaf: leaf.der().clone(),
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        }
    }

    fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn leaf_pem(&self) -> PathBuf {
        self.dir.join("leaf.pem")
    }

    fn key_pem(&self) -> PathBuf {
        self.dir.join("leaf.key")
    }

    /// A server configuration from the PEM files, through the crate's own loaders.
    fn server_config(&self, alpn: &[&[u8]]) -> Arc<tls::ServerConfig> {
        let chain = tls::load_certs(self.leaf_pem()).unwrap();
        let key = tls::load_private_key(self.key_pem()).unwrap();
        assert_eq!(chain, std::slice::from_ref(&self.leaf));
        assert_eq!(key.secret_der(), self.key.secret_der());
        tls::server_config(chain, key, alpn).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client configuration trusting only `ca`.
fn client_trusting(ca: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

fn connect_options(cfg: Arc<ClientConfig>, name: &str) -> ConnectOptions {
    let mut o = ConnectOptions::default();
    o.tls = Some(cfg);
    o.server_hostname = Some(name.to_owned());
    o
}

// ---- processes ---------------------------------------------------------------------------------

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

/// Waits for `child` on the loop's executor, so the loop keeps serving meanwhile.
async fn wait_child(child: Child) -> tulipa_futures::Result<Output> {
    let lp = EventLoop::running()?;
    Ok(run_in_executor(&lp, None, move || child.wait_with_output())?.await??)
}

/// Runs `body` on a fresh loop, bounded by [`BOUND`]; panics on error.
fn run<F>(body: F)
where
    F: std::future::Future<Output = tulipa_futures::Result<()>> + 'static,
{
    tulipa_futures::run(async move { tulipa_futures::timeout(BOUND, body).await })
        .unwrap_or_else(|e| panic!("test body failed: {e}"));
}

/// The `key value` lines a script printed, as a map (the first word is the key).
fn report(out: &Output) -> HashMap<String, String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the peer failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn field<'a>(r: &'a HashMap<String, String>, key: &str) -> &'a str {
    r.get(key)
        .unwrap_or_else(|| panic!("the peer printed no {key:?} line: {r:#?}"))
}

// ---- a Tulipa TLS echo server ------------------------------------------------------------------

/// Echoes until EOF, recording what TLS negotiated on the server side.
async fn echo(
    r: StreamReader,
    w: StreamWriter,
    seen: Rc<RefCell<Vec<TlsInfo>>>,
) -> tulipa_transport::Result<()> {
    if let Some(info) = w.transport().tls_info() {
        seen.borrow_mut().push(info);
    }
    loop {
        let chunk = r.read(65536).await?;
        if chunk.is_empty() {
            break;
        }
        w.write(&chunk)?;
        w.drain().await?;
    }
    w.close();
    Ok(())
}

async fn tls_echo_server(
    cfg: Arc<tls::ServerConfig>,
) -> tulipa_transport::Result<(Server, Rc<RefCell<Vec<TlsInfo>>>)> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s2 = seen.clone();
    let mut o = ServerOptions::default();
    o.tls = Some(cfg);
    let server = start_server(
        move |r, w| echo(r, w, s2.clone()),
        "127.0.0.1",
        0,
        DEFAULT_LIMIT,
        o,
    )
    .await?;
    Ok((server, seen))
}

// ---- (a) Python's ssl module as a client -------------------------------------------------------

/// Connects with `ssl.create_default_context(cafile=…)`, sends a line, reads the echo, prints
/// what was negotiated, then shuts TLS down with `unwrap()`: that sends Python's `close_notify`
/// and waits for the server's, so `shutdown clean` means the server answered with its own.
const PY_CLIENT: &str = r#"
import socket, ssl, sys
port, cafile, name, maxver, alpn = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=cafile)
if maxver == "1.2":
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
if alpn:
    ctx.set_alpn_protocols(alpn.split(","))
raw = socket.create_connection(("127.0.0.1", port), timeout=30)
s = ctx.wrap_socket(raw, server_hostname=name, suppress_ragged_eofs=False)
s.sendall(b"hello from python ssl\n")
got = b""
while not got.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    got += chunk
print("echo", got.decode().rstrip("\n"))
print("version", s.version())
print("alpn", s.selected_alpn_protocol())
print("cipher", s.cipher()[0])
print("peer_cn", dict(x[0] for x in s.getpeercert()["subject"])["commonName"])
try:
    s.unwrap()
    print("shutdown clean")
except (ssl.SSLError, OSError) as e:
    print("shutdown", type(e).__name__, e)
"#;

fn python_client(port: u16, cafile: &Path, name: &str, maxver: &str, alpn: &str) -> Child {
    Command::new("python3")
        .args(["-c", PY_CLIENT, &port.to_string()])
        .arg(cafile)
        .args([name, maxver, alpn])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python3")
}

#[test]
fn python_ssl_client_gets_the_echo_tls13_and_the_alpn_the_tulipa_server_chose() {
    if !have_python_ssl() {
        return;
    }
    let pki = Pki::new("py-client-13");
    let cfg = pki.server_config(&[b"tulipa/1"]);
    let cafile = pki.ca_pem();
    run(async move {
        let (server, seen) = tls_echo_server(cfg).await?;
        let port = server.local_addr().unwrap().port();
        // Python offers two protocols; the server knows only the second.
        let out = wait_child(python_client(port, &cafile, "localhost", "", "h2,tulipa/1")).await?;
        server.close();
        let r = report(&out);
        assert_eq!(field(&r, "echo"), "hello from python ssl");
        assert_eq!(field(&r, "version"), "TLSv1.3");
        assert_eq!(field(&r, "alpn"), "tulipa/1");
        assert_eq!(field(&r, "peer_cn"), "localhost");
        assert!(field(&r, "cipher").starts_with("TLS_"), "{r:#?}");
        assert_eq!(
            field(&r, "shutdown"),
            "clean",
            "Python sent close_notify and waited for the Tulipa server's"
        );

        let seen = seen.borrow();
        assert_eq!(seen.len(), 1, "one TLS connection");
        assert_eq!(seen[0].protocol_version.as_deref(), Some("TLSv1_3"));
        assert_eq!(seen[0].alpn_protocol.as_deref(), Some(&b"tulipa/1"[..]));
        assert_eq!(seen[0].server_name.as_deref(), Some("localhost"), "SNI");
        assert!(
            seen[0].peer_certificates.is_empty(),
            "no client certificate"
        );
        Ok(())
    });
}

#[test]
fn python_ssl_client_limited_to_tls12_verifying_the_ip_address() {
    if !have_python_ssl() {
        return;
    }
    let pki = Pki::new("py-client-12");
    let cfg = pki.server_config(&[b"tulipa/1"]);
    let cafile = pki.ca_pem();
    run(async move {
        let (server, seen) = tls_echo_server(cfg).await?;
        let port = server.local_addr().unwrap().port();
        // An IP address as the name: Python checks the certificate's IP SAN and sends no SNI.
        let out = wait_child(python_client(port, &cafile, "127.0.0.1", "1.2", "")).await?;
        server.close();
        let r = report(&out);
        assert_eq!(field(&r, "echo"), "hello from python ssl");
        assert_eq!(field(&r, "version"), "TLSv1.2");
        assert_eq!(field(&r, "alpn"), "None", "Python offered no ALPN");
        assert!(field(&r, "cipher").starts_with("ECDHE-"), "{r:#?}");
        assert_eq!(field(&r, "shutdown"), "clean");

        let seen = seen.borrow();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].protocol_version.as_deref(), Some("TLSv1_2"));
        assert_eq!(seen[0].alpn_protocol, None);
        assert_eq!(seen[0].server_name, None, "no SNI for an IP address");
        Ok(())
    });
}

#[test]
fn python_ssl_client_refuses_a_tulipa_server_it_does_not_trust() {
    if !have_python_ssl() {
        return;
    }
    let pki = Pki::new("py-client-untrusted");
    let other = Pki::new("py-client-other-ca");
    let cfg = pki.server_config(&[]);
    let wrong_ca = other.ca_pem();
    run(async move {
        let (server, seen) = tls_echo_server(cfg).await?;
        let port = server.local_addr().unwrap().port();
        let out = wait_child(python_client(port, &wrong_ca, "localhost", "", "")).await?;
        server.close();
        assert!(!out.status.success(), "the handshake must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("CERTIFICATE_VERIFY_FAILED"),
            "Python's error: {stderr}"
        );
        assert!(
            seen.borrow().is_empty(),
            "no connection reached the handler"
        );
        Ok(())
    });
}

/// Connects, sends `ready`, then waits for the server to end the session: `end eof` is a clean
/// `close_notify` (a bare TCP end raises `SSLEOFError`, `suppress_ragged_eofs=False`); then
/// answers with its own `close_notify` (`unwrap`), which fails if the server's socket is gone.
const PY_WAITING_CLIENT: &str = r#"
import socket, ssl, sys
port, cafile = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=cafile)
raw = socket.create_connection(("127.0.0.1", port), timeout=30)
s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
s.sendall(b"ready\n")
try:
    rest = s.recv(4096)
    print("end", "eof" if rest == b"" else "data", flush=True)
except (ssl.SSLError, OSError) as e:
    print("end", type(e).__name__, e, flush=True)
    sys.exit(0)
try:
    s.unwrap()
    print("answer sent")
except (ssl.SSLError, OSError) as e:
    print("answer", type(e).__name__, e)
"#;

#[test]
fn close_clients_ends_a_python_ssl_client_with_close_notify_and_awaits_its_answer() {
    if !have_python_ssl() {
        return;
    }
    let pki = Pki::new("py-close-clients");
    let cfg = pki.server_config(&[]);
    let cafile = pki.ca_pem();
    run(async move {
        let proto = Collect::default();
        let h = proto.handles();
        let mut o = ServerOptions::default();
        o.tls = Some(cfg);
        let server = create_server(move || proto.handles(), "127.0.0.1", 0, o).await?;
        let port = server.local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-c", PY_WAITING_CLIENT, &port.to_string()])
            .arg(&cafile)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting python3");
        let closed = async {
            // The line arrives after the handshake: the connection is up on both sides.
            h.newline.wait().await?;
            server.close();
            server.close_clients();
            // The server's connection ends only on Python's answer: cleanly, not by the timeout.
            h.lost.wait().await
        }
        .await;
        let out = wait_child(child).await?;
        closed?;
        assert!(h.error.borrow().is_none(), "{:?}", h.error.borrow());
        let r = report(&out);
        assert_eq!(field(&r, "end"), "eof", "close_clients sends close_notify");
        assert_eq!(
            field(&r, "answer"),
            "sent",
            "the server was still there for Python's close_notify"
        );
        server.wait_closed().await?;
        Ok(())
    });
}

// ---- (b) a Python ssl server -------------------------------------------------------------------

/// `PROTOCOL_TLS_SERVER` with the test's PEM files; prints its port, answers one line, then
/// reports how the client ended the stream: `end eof` for a clean `close_notify`, an exception
/// name for a truncated one (`suppress_ragged_eofs=False`, so Python does not hide it).
const PY_SERVER: &str = r#"
import socket, ssl, sys
certfile, keyfile = sys.argv[1], sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(certfile, keyfile)
ctx.set_alpn_protocols(["tulipa/1"])
names = []
ctx.sni_callback = lambda sslobj, name, c: names.append(name)
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(30)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(30)
try:
    s = ctx.wrap_socket(conn, server_side=True, suppress_ragged_eofs=False)
except (ssl.SSLError, OSError) as e:
    print("handshake", type(e).__name__, e, flush=True)
    sys.exit(0)
print("handshake ok")
print("sni", names[0] if names else None)
print("version", s.version())
print("alpn", s.selected_alpn_protocol())
line = b""
while not line.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    line += chunk
s.sendall(b"python says: " + line)
try:
    rest = s.recv(4096)
    print("end", "eof" if rest == b"" else "data")
except (ssl.SSLError, OSError) as e:
    print("end", type(e).__name__, e)
"#;

/// A running Python server and the port it printed.
fn python_server(pki: &Pki) -> (Child, u16) {
    let mut child = Command::new("python3")
        .args(["-c", PY_SERVER])
        .arg(pki.leaf_pem())
        .arg(pki.key_pem())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python3");
    // The port is printed before `accept`, so reading it blocks only until Python is up.
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let port = line.trim().parse().unwrap_or_else(|_| {
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        panic!("the Python server printed {line:?} instead of its port; stderr: {err}")
    });
    child.stdout = Some(stdout.into_inner());
    (child, port)
}

/// Collects what the Tulipa client receives.
#[derive(Default)]
struct Collect {
    got: Rc<RefCell<Vec<u8>>>,
    newline: Event,
    lost: Event,
    error: Rc<RefCell<Option<Error>>>,
}

impl Collect {
    fn handles(&self) -> Collect {
        Collect {
            got: self.got.clone(),
            newline: self.newline.clone(),
            lost: self.lost.clone(),
            error: self.error.clone(),
        }
    }
}

impl Protocol for Collect {
    fn connection_made(&mut self, _t: Transport) {}
    fn data_received(&mut self, data: &[u8]) {
        self.got.borrow_mut().extend_from_slice(data);
        if data.contains(&b'\n') {
            self.newline.set();
        }
    }
    fn connection_lost(&mut self, exc: Option<Error>) {
        *self.error.borrow_mut() = exc;
        self.lost.set();
    }
}

/// Connects a Tulipa client to a fresh Python server, exchanges a line, then ends the
/// connection with `close` (or `abort`); returns what Python reported.
fn tulipa_client_against_python(abort: bool) -> HashMap<String, String> {
    let pki = Pki::new(if abort {
        "py-server-abort"
    } else {
        "py-server"
    });
    let (child, port) = python_server(&pki);
    let ca = pki.ca.clone();
    let leaf = pki.leaf.clone();
    let out = Rc::new(RefCell::new(None));
    let out2 = out.clone();
    run(async move {
        let proto = Collect::default();
        let h = proto.handles();
        let t = create_connection(
            move || proto,
            "127.0.0.1",
            port,
            connect_options(client_trusting(&ca, &[b"h2", b"tulipa/1"]), "localhost"),
        )
        .await?;
        let info = t.tls_info().expect("a TLS transport");
        assert_eq!(info.protocol_version.as_deref(), Some("TLSv1_3"));
        assert_eq!(info.alpn_protocol.as_deref(), Some(&b"tulipa/1"[..]));
        assert_eq!(
            info.peer_certificates,
            [leaf.to_vec()],
            "Python sent the leaf, verified against the CA"
        );

        t.write(b"hello from tulipa\n")?;
        h.newline.wait().await?;
        assert_eq!(&*h.got.borrow(), b"python says: hello from tulipa\n");
        if abort {
            t.abort();
        } else {
            t.close();
        }
        h.lost.wait().await?;
        assert!(h.error.borrow().is_none(), "{:?}", h.error.borrow());
        assert!(
            matches!(t.write(b"late"), Err(Error::Closed)),
            "writing after the end"
        );
        *out2.borrow_mut() = Some(wait_child(child).await?);
        Ok(())
    });
    let out = out.borrow_mut().take().expect("the body ran");
    let r = report(&out);
    assert_eq!(field(&r, "handshake"), "ok", "{r:#?}");
    assert_eq!(field(&r, "sni"), "localhost");
    assert_eq!(field(&r, "version"), "TLSv1.3");
    assert_eq!(field(&r, "alpn"), "tulipa/1");
    r
}

#[test]
fn tulipa_client_verifies_a_python_ssl_server_and_close_sends_close_notify() {
    if !have_python_ssl() {
        return;
    }
    let r = tulipa_client_against_python(false);
    assert_eq!(
        field(&r, "end"),
        "eof",
        "close sends close_notify: Python reads a clean end of stream"
    );
}

#[test]
fn tulipa_client_abort_leaves_the_python_server_a_truncated_stream() {
    if !have_python_ssl() {
        return;
    }
    let r = tulipa_client_against_python(true);
    let end = field(&r, "end");
    // No close_notify: OpenSSL reports the TCP end as a protocol violation (or, if the kernel
    // turned the close into a reset, as a reset); never as a clean end of stream.
    assert!(
        end.starts_with("SSLEOFError") || end.starts_with("ConnectionResetError"),
        "abort must not look like a clean TLS close to Python: {end}"
    );
}

#[test]
fn tulipa_client_refuses_a_python_server_signed_by_another_ca() {
    if !have_python_ssl() {
        return;
    }
    let pki = Pki::new("py-server-untrusted");
    let other = Pki::new("py-server-other-ca");
    let (child, port) = python_server(&pki);
    let wrong_ca = other.ca.clone();
    let out = Rc::new(RefCell::new(None));
    let out2 = out.clone();
    run(async move {
        let r = create_connection(
            Collect::default,
            "127.0.0.1",
            port,
            connect_options(client_trusting(&wrong_ca, &[]), "localhost"),
        )
        .await;
        match r {
            Err(Error::Tls { reason }) => {
                assert!(reason.contains("UnknownIssuer"), "{reason}")
            }
            other => panic!("an untrusted server must fail the connect: {other:?}"),
        }
        *out2.borrow_mut() = Some(wait_child(child).await?);
        Ok(())
    });
    let out = out.borrow_mut().take().expect("the body ran");
    let r = report(&out);
    // rustls sends an alert before closing; OpenSSL names it.
    let handshake = field(&r, "handshake");
    assert!(
        handshake.starts_with("SSLError") && handshake.contains("UNKNOWN_CA"),
        "{handshake}"
    );
}

// ---- (c) openssl s_client ----------------------------------------------------------------------

/// True when the `openssl` command runs; otherwise says why the test is skipped.
fn have_openssl() -> bool {
    match Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(s) if s.success() => true,
        _ => {
            println!("skipped: openssl not found");
            false
        }
    }
}

#[test]
fn openssl_s_client_verifies_and_gets_the_echo() {
    if !have_openssl() {
        return;
    }
    let pki = Pki::new("s-client");
    let cfg = pki.server_config(&[b"tulipa/1"]);
    let cafile = pki.ca_pem();
    run(async move {
        // A line server: answers one line and closes, which ends s_client's session.
        let mut o = ServerOptions::default();
        o.tls = Some(cfg);
        let server = start_server(
            |r, w| async move {
                let line = r.readline().await?;
                w.write(b"tulipa says: ")?;
                w.write(&line)?;
                w.close();
                Ok(())
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            o,
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let mut child = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "localhost", "-verify_hostname", "localhost"])
            .arg("-CAfile")
            .arg(&cafile)
            .args(["-verify_return_error", "-alpn", "h2,tulipa/1"])
            // Keep reading after stdin ends: the server's close ends the session.
            .arg("-ign_eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting openssl s_client");
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(b"hello from s_client\n").unwrap();
        drop(stdin);
        let out = wait_child(child).await?;
        server.close();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "s_client failed ({}): {stdout}\n{stderr}",
            out.status
        );
        assert!(
            stdout.contains("tulipa says: hello from s_client"),
            "{stdout}\n{stderr}"
        );
        for want in [
            "New, TLSv1.3, Cipher is TLS_",
            "Verification: OK",
            "Verified peername: localhost",
            "ALPN protocol: tulipa/1",
            "Verify return code: 0 (ok)",
        ] {
            assert!(
                stdout.contains(want),
                "no {want:?} in s_client's output:\n{stdout}"
            );
        }
        Ok(())
    });
}
