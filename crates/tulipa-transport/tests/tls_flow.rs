//! Flow control and the end of a connection through the TLS layer, on real sockets.
//!
//! - A server that stops reading makes the client's protocol get `pause_writing` once the
//!   (ciphertext) write buffer passes the high watermark, and `resume_writing` once the server
//!   reads again; every byte still arrives.
//! - 16 MiB each way at once, checked byte for byte, both senders obeying flow control.
//! - `close` sends `close_notify` and `abort` does not: seen by a peer that drives rustls by hand
//!   over a plain TCP transport, so it can tell a TLS end of stream from a bare TCP one.
//! - `close` is a TLS shutdown as in asyncio's `sslproto.py`: `connection_lost(None)` comes only
//!   after the peer's `close_notify` (the hand-driven peer decides when to answer), data the
//!   peer sends meanwhile is dropped, a paused reader still hears the answer, a TCP close
//!   without `close_notify` ends the shutdown cleanly and a reset ends it with the reset; a
//!   protocol that closes from `eof_received` after the peer's `close_notify` waits for nothing.
//! - `Server::close_clients` sends `close_notify` to TLS clients (a hand-driven rustls client
//!   sees a clean TLS end), and gives up on a silent one after `ServerOptions::tls_shutdown_timeout`.
//! - `write_eof` is an error over TLS; writing after `close`, `abort` or the peer's close is
//!   [`Error::Closed`].
//! - A peer that never reads, or reads but never answers `close_notify`, cannot hold a closing
//!   connection open longer than the shutdown timeout, and `connection_lost` then gets
//!   asyncio's `TimeoutError` (on a virtual-time loop, over a socket pair).
//! - 30 TLS connect/close cycles leave as many open file descriptors as before.
//!
//! Every wait is on a protocol callback (an [`Event`]), bounded so that a broken transport fails
//! the test instead of hanging it; nothing sleeps. The tests take turns through [`SERIAL`]
//! because one of them counts the process's open file descriptors.

use std::cell::{Cell, RefCell};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConnection};
use tulipa_futures::sync::Event;
use tulipa_futures::{spawn, Task};
use tulipa_transport::flow::DEFAULT_HIGH_WATER;
use tulipa_transport::tls::{self, TlsSide};
use tulipa_transport::{
    create_connection, create_server, Buffered, BufferedProtocol, ConnectOptions, Error, Protocol,
    Server, ServerOptions, Transport,
};

/// Held by each test for its whole run: one test counts the process's open fds.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The bound on a whole test body.
const BOUND: Duration = Duration::from_secs(120);

/// The bound on one wait for a protocol callback, shorter than [`BOUND`] so its message wins.
const STEP_BOUND: Duration = Duration::from_secs(60);

const MIB: usize = 1024 * 1024;

// ---- certificates and configurations -----------------------------------------------------------

struct Identity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn identity() -> Identity {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    Identity {
        cert: ck.cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
    }
}

impl Identity {
    fn server_config(&self) -> Arc<tls::ServerConfig> {
        tls::server_config(vec![self.cert.clone()], self.key.clone_key(), &[]).unwrap()
    }

    fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert.clone()).unwrap();
        Arc::new(
            ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }

    fn connect_options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::default();
        o.tls = Some(self.client_config());
        o.server_hostname = Some("localhost".into());
        o
    }

    fn server_options(&self) -> ServerOptions {
        let mut o = ServerOptions::default();
        o.tls = Some(self.server_config());
        o
    }
}

// ---- a recording protocol ----------------------------------------------------------------------

/// Byte `i` of the test stream `seed`: long-period, so a lost, doubled or reordered chunk shows.
fn byte(seed: u8, i: usize) -> u8 {
    ((i.wrapping_mul(31) + i / 4093 + usize::from(seed)) % 251) as u8
}

fn pattern(seed: u8, range: std::ops::Range<usize>) -> Vec<u8> {
    range.map(|i| byte(seed, i)).collect()
}

/// What one connection's protocol was told.
#[derive(Default)]
struct Log {
    /// The calls by name, consecutive `data` calls collapsed.
    calls: RefCell<Vec<&'static str>>,
    transport: RefCell<Option<Transport>>,
    error: RefCell<Option<Error>>,
    /// Bytes received; kept unless `expect` is set.
    bytes: RefCell<Vec<u8>>,
    received: Cell<usize>,
    /// Check the incoming bytes against this test stream instead of keeping them.
    expect: Cell<Option<u8>>,
    /// The first offset where the incoming bytes differ from `expect`.
    mismatch: Cell<Option<usize>>,
    /// Between `pause_writing` and `resume_writing`.
    paused: Cell<bool>,
    /// The write-buffer size at each `pause_writing` / `resume_writing`.
    flow_sizes: RefCell<Vec<usize>>,
    /// Pause reading in `connection_made`.
    pause_reading_at_start: Cell<bool>,
    /// Close the transport from `eof_received`.
    close_on_eof: Cell<bool>,
    /// The protocol was dropped (by the transport, at the end).
    dropped: Cell<bool>,
    changed: Event,
}

impl Log {
    fn new() -> Rc<Log> {
        Rc::new(Log::default())
    }

    fn push(&self, call: &'static str) {
        let mut calls = self.calls.borrow_mut();
        if !(call == "data" && calls.last() == Some(&"data")) {
            calls.push(call);
        }
        drop(calls);
        self.changed.set();
    }

    fn calls(&self) -> Vec<&'static str> {
        self.calls.borrow().clone()
    }

    fn count(&self, call: &str) -> usize {
        self.calls.borrow().iter().filter(|c| **c == call).count()
    }

    fn lost(&self) -> bool {
        self.count("lost") > 0
    }

    fn transport(&self) -> Transport {
        self.transport
            .borrow()
            .clone()
            .expect("connection_made ran")
    }

    /// Waits on the log's change notifications until `cond` holds.
    async fn wait_for(
        &self,
        what: &str,
        cond: impl Fn(&Log) -> bool,
    ) -> tulipa_futures::Result<()> {
        let waiting = async {
            loop {
                self.changed.clear();
                if cond(self) {
                    return Ok(());
                }
                self.changed.wait().await?;
            }
        };
        match tulipa_futures::timeout(STEP_BOUND, waiting).await {
            Err(e) if e.is_timeout() => panic!(
                "timed out waiting for {what}; calls so far: {:?}, {} bytes received",
                self.calls(),
                self.received.get()
            ),
            r => r,
        }
    }

    async fn wait_lost(&self) -> tulipa_futures::Result<()> {
        self.wait_for("connection_lost", Log::lost).await
    }

    async fn wait_bytes(&self, n: usize) -> tulipa_futures::Result<()> {
        self.wait_for(&format!("{n} bytes"), |l| l.received.get() >= n)
            .await
    }
}

/// A protocol that records its calls into a [`Log`].
struct Rec(Rc<Log>);

impl Protocol for Rec {
    fn connection_made(&mut self, t: Transport) {
        if self.0.pause_reading_at_start.get() {
            t.pause_reading();
        }
        *self.0.transport.borrow_mut() = Some(t);
        self.0.push("made");
    }

    fn data_received(&mut self, data: &[u8]) {
        let log = &self.0;
        assert!(
            !log.lost() && log.count("eof") == 0,
            "data after eof or loss: {:?}",
            log.calls()
        );
        let start = log.received.get();
        match log.expect.get() {
            Some(seed) if log.mismatch.get().is_none() => {
                if let Some(k) = (0..data.len()).find(|&k| data[k] != byte(seed, start + k)) {
                    log.mismatch.set(Some(start + k));
                }
            }
            Some(_) => {}
            None => log.bytes.borrow_mut().extend_from_slice(data),
        }
        log.received.set(start + data.len());
        log.push("data");
    }

    fn eof_received(&mut self) -> bool {
        self.0.push("eof");
        if self.0.close_on_eof.get() {
            self.0.transport().close();
        }
        false
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        assert!(!self.0.lost(), "connection_lost twice");
        *self.0.error.borrow_mut() = exc;
        self.0.transport.borrow_mut().take();
        self.0.push("lost");
    }

    fn pause_writing(&mut self) {
        assert!(!self.0.paused.replace(true), "pause_writing twice in a row");
        let size = self.0.transport().get_write_buffer_size();
        self.0.flow_sizes.borrow_mut().push(size);
        self.0.push("pause_writing");
    }

    fn resume_writing(&mut self) {
        assert!(
            self.0.paused.replace(false),
            "resume_writing without a pause"
        );
        let size = self.0.transport().get_write_buffer_size();
        self.0.flow_sizes.borrow_mut().push(size);
        self.0.push("resume_writing");
    }
}

impl Drop for Rec {
    fn drop(&mut self) {
        self.0.dropped.set(true);
        self.0.changed.set();
    }
}

/// A TLS server whose connections each get a fresh [`Log`], prepared by `setup`; the logs are
/// kept in accept order.
async fn tls_server(
    id: &Identity,
    setup: impl Fn(&Log) + 'static,
) -> tulipa_transport::Result<(Server, Rc<RefCell<Vec<Rc<Log>>>>, u16)> {
    let logs = Rc::new(RefCell::new(Vec::new()));
    let l2 = logs.clone();
    let server = create_server(
        move || {
            let log = Log::new();
            setup(&log);
            l2.borrow_mut().push(log.clone());
            Rec(log)
        },
        "127.0.0.1",
        0,
        id.server_options(),
    )
    .await?;
    let port = server.local_addr().expect("a TCP server").port();
    Ok((server, logs, port))
}

/// Connects a TLS client with a fresh [`Log`] to `port`.
async fn tls_client(id: &Identity, port: u16) -> tulipa_transport::Result<(Transport, Rc<Log>)> {
    let log = Log::new();
    let l2 = log.clone();
    let t = create_connection(move || Rec(l2), "127.0.0.1", port, id.connect_options()).await?;
    Ok((t, log))
}

/// The server side of the `n`th connection, once its `connection_made` has run.
async fn accepted(logs: &Rc<RefCell<Vec<Rc<Log>>>>, n: usize) -> tulipa_futures::Result<Rc<Log>> {
    // The server accepted (and made the protocol) before it could answer the client's hello,
    // so by the time the client's handshake is done the log exists; its `connection_made`
    // comes with the client's last handshake message.
    let log = logs
        .borrow()
        .get(n - 1)
        .cloned()
        .unwrap_or_else(|| panic!("the server has not accepted connection {n}"));
    log.wait_for("the server's connection_made", |l| l.count("made") == 1)
        .await?;
    Ok(log)
}

/// Writes `total` bytes of test stream `seed`, pausing between `pause_writing` and
/// `resume_writing` as a well-behaved writer does.
async fn send_stream(
    t: Transport,
    log: Rc<Log>,
    seed: u8,
    total: usize,
) -> tulipa_futures::Result<()> {
    const CHUNK: usize = 256 * 1024;
    let mut off = 0;
    while off < total {
        log.wait_for("resume_writing", |l| !l.paused.get()).await?;
        let n = CHUNK.min(total - off);
        t.write(&pattern(seed, off..off + n))?;
        off += n;
    }
    Ok(())
}

/// Bytes waiting in the socket's receive queue (`MSG_PEEK`), without taking them.
fn peek_len(t: &Transport) -> usize {
    t.with_socket(|s| {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 64 * 1024];
        s.peek(&mut buf).unwrap_or(0)
    })
    .unwrap_or(0)
}

/// Yields to the loop until `cond` holds (for states no callback reports, such as bytes in a
/// socket's receive queue); bounded by the caller's [`run`].
async fn until(cond: impl Fn() -> bool) -> tulipa_futures::Result<()> {
    while !cond() {
        tulipa_futures::sleep(Duration::ZERO).await?;
    }
    Ok(())
}

/// Runs `body` on a fresh loop, bounded by [`BOUND`], one test at a time; panics on error.
fn run<F>(body: F)
where
    F: std::future::Future<Output = tulipa_futures::Result<()>> + 'static,
{
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tulipa_futures::run(async move { tulipa_futures::timeout(BOUND, body).await })
        .unwrap_or_else(|e| panic!("test body failed: {e}"));
}

// ---- writing and reading -----------------------------------------------------------------------

#[test]
fn tls_writes_go_straight_into_the_socket_and_keep_their_order() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |l| l.expect.set(Some(4))).await?;
        let (t, clog) = tls_client(&id, port).await?;
        let slog = accepted(&logs, 1).await?;

        // Nothing buffered and a socket with room: the records go straight into it.
        t.write(&pattern(4, 0..100))?;
        assert_eq!(t.get_write_buffer_size(), 0);
        t.writelines(&[&pattern(4, 100..5_000), b"", &pattern(4, 5_000..6_000)])?;
        assert_eq!(t.get_write_buffer_size(), 0);
        slog.wait_bytes(6_000).await?;

        // More than rustls takes at once (64 KiB) and more than the socket may take: what it
        // leaves is buffered, and what comes after queues behind it.
        let mut end = 6_000;
        for round in 0..4 {
            let big = pattern(4, end..end + 300_000 + round);
            let tail = pattern(4, end + big.len()..end + big.len() + 7);
            t.writelines(&[&big, &tail])?;
            end += big.len() + tail.len();
            t.write(&pattern(4, end..end + 1))?;
            end += 1;
        }
        slog.wait_bytes(end).await?;
        assert_eq!(slog.mismatch.get(), None, "every byte, in order");
        assert_eq!(slog.received.get(), end);
        assert_eq!(t.get_write_buffer_size(), 0);
        t.close();
        clog.wait_lost().await?;
        slog.wait_lost().await?;
        assert!(clog.error.borrow().is_none() && slog.error.borrow().is_none());
        server.close();
        Ok(())
    });
}

/// A `BufferedProtocol` with a small buffer that checks test stream `seed` as it arrives.
struct SmallBuffer {
    buf: Vec<u8>,
    seed: u8,
    log: Rc<Log>,
    /// The largest `buffer_updated` seen.
    largest: Rc<Cell<usize>>,
}

impl BufferedProtocol for SmallBuffer {
    fn connection_made(&mut self, t: Transport) {
        *self.log.transport.borrow_mut() = Some(t);
        self.log.push("made");
    }

    fn get_buffer(&mut self, size_hint: usize) -> &mut [u8] {
        assert!(size_hint > 0);
        &mut self.buf
    }

    fn buffer_updated(&mut self, n: usize) {
        let log = &self.log;
        let start = log.received.get();
        if log.mismatch.get().is_none() {
            if let Some(k) = (0..n).find(|&k| self.buf[k] != byte(self.seed, start + k)) {
                log.mismatch.set(Some(start + k));
            }
        }
        self.largest.set(self.largest.get().max(n));
        log.received.set(start + n);
        log.push("data");
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        *self.log.error.borrow_mut() = exc;
        self.log.transport.borrow_mut().take();
        self.log.push("lost");
    }
}

#[test]
fn a_buffered_protocol_over_tls_gets_every_byte_through_its_own_buffer() {
    run(async {
        const TOTAL: usize = 300_000;
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;
        let (clog, largest) = (Log::new(), Rc::new(Cell::new(0)));
        let (l2, g2) = (clog.clone(), largest.clone());
        let t = create_connection(
            move || {
                Buffered(SmallBuffer {
                    buf: vec![0; 4096],
                    seed: 5,
                    log: l2,
                    largest: g2,
                })
            },
            "127.0.0.1",
            port,
            id.connect_options(),
        )
        .await?;
        let slog = accepted(&logs, 1).await?;
        slog.transport().write(&pattern(5, 0..TOTAL))?;
        clog.wait_bytes(TOTAL).await?;
        assert_eq!(clog.mismatch.get(), None, "every byte, in order");
        assert!(largest.get() <= 4096, "at most the buffer offered");
        t.close();
        clog.wait_lost().await?;
        slog.wait_lost().await?;
        assert!(clog.error.borrow().is_none());
        server.close();
        Ok(())
    });
}

// ---- flow control ------------------------------------------------------------------------------

#[test]
fn a_server_that_stops_reading_pauses_the_tls_writer_until_it_reads_again() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |l| {
            l.pause_reading_at_start.set(true);
            l.expect.set(Some(1));
        })
        .await?;
        let (t, clog) = tls_client(&id, port).await?;
        let slog = accepted(&logs, 1).await?;
        assert!(!slog.transport().is_reading(), "the server paused reading");
        let (low, high) = t.get_write_buffer_limits();
        assert_eq!(high, DEFAULT_HIGH_WATER);

        // Write until the client is told to stop; the kernel's buffers take a few MiB first.
        const CHUNK: usize = 64 * 1024;
        let mut sent = 0;
        while !clog.paused.get() {
            assert!(
                sent < 512 * MIB,
                "no pause_writing after {sent} bytes to a peer that does not read"
            );
            t.write(&pattern(1, sent..sent + CHUNK))?;
            sent += CHUNK;
        }
        assert_eq!(clog.calls(), ["made", "pause_writing"]);
        let at_pause = clog.flow_sizes.borrow()[0];
        assert!(at_pause > high, "paused at {at_pause} bytes buffered");

        // Nothing drains while the server does not read: no resume however often the loop runs.
        for _ in 0..50 {
            tulipa_futures::sleep(Duration::ZERO).await?;
        }
        assert_eq!(clog.calls(), ["made", "pause_writing"]);
        assert!(t.get_write_buffer_size() > high);
        assert!(slog.received.get() < sent);

        slog.transport().resume_reading();
        clog.wait_for("resume_writing", |l| l.count("resume_writing") == 1)
            .await?;
        let at_resume = clog.flow_sizes.borrow()[1];
        assert!(at_resume <= low, "resumed at {at_resume} bytes buffered");

        // Every byte arrives, in order.
        slog.wait_bytes(sent).await?;
        assert_eq!(slog.mismatch.get(), None);
        t.close();
        clog.wait_lost().await?;
        slog.wait_lost().await?;
        assert_eq!(
            clog.calls(),
            ["made", "pause_writing", "resume_writing", "lost"]
        );
        assert_eq!(slog.calls(), ["made", "data", "eof", "lost"]);
        assert!(clog.error.borrow().is_none() && slog.error.borrow().is_none());
        assert_eq!(slog.received.get(), sent);
        server.close();
        Ok(())
    });
}

#[test]
fn sixteen_mib_each_way_at_once_arrive_byte_for_byte() {
    run(async {
        const TOTAL: usize = 16 * MIB;
        let id = identity();
        let (server, logs, port) = tls_server(&id, |l| l.expect.set(Some(2))).await?;
        let (t, clog) = tls_client(&id, port).await?;
        clog.expect.set(Some(3));
        let slog = accepted(&logs, 1).await?;

        let up: Task<()> = spawn(send_stream(t.clone(), clog.clone(), 2, TOTAL))?;
        let down: Task<()> = spawn(send_stream(slog.transport(), slog.clone(), 3, TOTAL))?;
        up.await?;
        down.await?;
        slog.wait_bytes(TOTAL).await?;
        clog.wait_bytes(TOTAL).await?;
        assert_eq!(slog.mismatch.get(), None, "client to server");
        assert_eq!(clog.mismatch.get(), None, "server to client");
        assert_eq!(slog.received.get(), TOTAL);
        assert_eq!(clog.received.get(), TOTAL);
        // Pauses and resumes (if any) came in pairs.
        for log in [&clog, &slog] {
            assert_eq!(log.count("pause_writing"), log.count("resume_writing"));
        }

        t.close();
        clog.wait_lost().await?;
        slog.wait_lost().await?;
        assert_eq!(slog.calls().last(), Some(&"lost"));
        assert!(slog.calls().contains(&"eof"), "{:?}", slog.calls());
        assert!(clog.error.borrow().is_none() && slog.error.borrow().is_none());
        server.close();
        Ok(())
    });
}

// ---- the end of a connection -------------------------------------------------------------------

/// The rustls end of a peer driven by hand over a plain TCP transport, shared between its
/// protocol ([`RawTlsPeer`]) and the test, so the test can decide when (and whether) the peer
/// answers a `close_notify`.
struct RawTls {
    conn: RefCell<rustls::Connection>,
    /// Answer the other side's `close_notify` with ours as soon as it arrives, as a
    /// well-behaved TLS peer does; when false the test answers (or not) with `close_notify`.
    answer: bool,
    /// Echo the plaintext back.
    echo: bool,
    /// `"close_notify"` or `"truncated"`: how the TLS stream ended, asked of rustls at the end
    /// of the TCP stream (a TLS transport does not tell its protocol).
    ending: RefCell<Option<String>>,
}

impl RawTls {
    fn new(conn: impl Into<rustls::Connection>, answer: bool, echo: bool) -> Rc<RawTls> {
        Rc::new(RawTls {
            conn: RefCell::new(conn.into()),
            answer,
            echo,
            ending: RefCell::new(None),
        })
    }

    /// Sends whatever rustls has to send through `t`.
    fn send_pending(&self, t: &Transport) {
        let mut out = Vec::new();
        {
            let mut conn = self.conn.borrow_mut();
            while conn.wants_write() {
                conn.write_tls(&mut out).unwrap();
            }
        }
        if !out.is_empty() {
            let _ = t.write(&out);
        }
    }

    /// Sends application data.
    fn write(&self, t: &Transport, data: &[u8]) {
        self.conn.borrow_mut().writer().write_all(data).unwrap();
        self.send_pending(t);
    }

    /// Sends our `close_notify`.
    fn close_notify(&self, t: &Transport) {
        self.conn.borrow_mut().send_close_notify();
        self.send_pending(t);
    }

    fn ending(&self) -> Option<String> {
        self.ending.borrow().clone()
    }
}

/// The protocol of a [`RawTls`] peer. Its log records `made`, `data`, `close_notify` (the
/// other side's arrived), `eof` (the TCP end) and `lost`.
struct RawTlsPeer {
    tls: Rc<RawTls>,
    transport: Option<Transport>,
    log: Rc<Log>,
}

impl Protocol for RawTlsPeer {
    fn connection_made(&mut self, t: Transport) {
        // A client's hello goes out at once; a server has nothing to say yet.
        self.tls.send_pending(&t);
        *self.log.transport.borrow_mut() = Some(t.clone());
        self.transport = Some(t);
        self.log.push("made");
    }

    fn data_received(&mut self, mut data: &[u8]) {
        let mut plain = Vec::new();
        let mut closed = false;
        {
            let mut conn = self.tls.conn.borrow_mut();
            while !data.is_empty() {
                conn.read_tls(&mut data).unwrap();
                conn.process_new_packets()
                    .expect("the other side speaks TLS");
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match conn.reader().read(&mut buf) {
                        Ok(0) => {
                            closed = true;
                            break;
                        }
                        Ok(n) => plain.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => panic!("reading plaintext: {e}"),
                    }
                }
            }
        }
        let t = self.transport.clone().expect("connection_made ran");
        if !plain.is_empty() {
            if self.tls.echo {
                self.tls
                    .conn
                    .borrow_mut()
                    .writer()
                    .write_all(&plain)
                    .unwrap();
            }
            self.log.bytes.borrow_mut().extend_from_slice(&plain);
            self.log.received.set(self.log.received.get() + plain.len());
            self.log.push("data");
        }
        self.tls.send_pending(&t);
        if closed && self.log.count("close_notify") == 0 {
            self.log.push("close_notify");
            if self.tls.answer {
                self.tls.close_notify(&t);
            }
        }
    }

    fn eof_received(&mut self) -> bool {
        // Tell rustls the TCP stream ended, then read: `Ok(0)` after a close_notify,
        // `UnexpectedEof` without one.
        let mut conn = self.tls.conn.borrow_mut();
        let _ = conn.read_tls(&mut &b""[..]);
        let _ = conn.process_new_packets();
        let end = match conn.reader().read(&mut [0u8; 1]) {
            Ok(0) => "close_notify".to_string(),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => "truncated".to_string(),
            other => format!("unexpected: {other:?}"),
        };
        drop(conn);
        *self.tls.ending.borrow_mut() = Some(end);
        self.log.push("eof");
        false
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        *self.log.error.borrow_mut() = exc;
        self.transport = None;
        self.log.push("lost");
    }
}

/// A plain TCP server whose one connection is a [`RawTls`] TLS server (echoing), answering
/// `close_notify` by itself when `answer`.
async fn raw_tls_server(
    id: &Identity,
    answer: bool,
) -> tulipa_transport::Result<(Server, u16, Rc<Log>, Rc<RefCell<Option<Rc<RawTls>>>>)> {
    let cfg = id.server_config();
    let plog = Log::new();
    let slot: Rc<RefCell<Option<Rc<RawTls>>>> = Rc::new(RefCell::new(None));
    let (pl, sl) = (plog.clone(), slot.clone());
    let server = create_server(
        move || {
            let tls = RawTls::new(ServerConnection::new(cfg.clone()).unwrap(), answer, true);
            *sl.borrow_mut() = Some(tls.clone());
            RawTlsPeer {
                tls,
                transport: None,
                log: pl.clone(),
            }
        },
        "127.0.0.1",
        0,
        ServerOptions::default(),
    )
    .await?;
    let port = server.local_addr().unwrap().port();
    Ok((server, port, plog, slot))
}

/// A Tulipa TLS client of a [`raw_tls_server`], after one line went there and back: the echo
/// comes after the peer's session tickets, so once it is here the client has read everything
/// (an abort then closes the socket with a FIN, not a reset).
async fn client_of_raw_peer(
    id: &Identity,
    answer: bool,
) -> tulipa_futures::Result<(Server, Transport, Rc<Log>, Rc<Log>, Rc<RawTls>)> {
    let (server, port, plog, slot) = raw_tls_server(id, answer).await?;
    let (t, clog) = tls_client(id, port).await?;
    t.write(b"hello, raw rustls\n")?;
    clog.wait_bytes(18).await?;
    assert_eq!(&*clog.bytes.borrow(), b"hello, raw rustls\n");
    let tls = slot.borrow().clone().expect("the peer was made");
    Ok((server, t, clog, plog, tls))
}

/// Connects a TLS client to a [`RawTlsPeer`] that answers `close_notify`, exchanges a line, ends
/// the connection with `close` (or `abort`) and returns how the peer saw the TLS stream end.
async fn end_seen_by_raw_peer(abort: bool) -> tulipa_futures::Result<String> {
    let id = identity();
    let (server, t, clog, plog, tls) = client_of_raw_peer(&id, true).await?;
    if abort {
        t.abort();
    } else {
        t.close();
    }
    clog.wait_lost().await?;
    assert!(clog.error.borrow().is_none(), "{:?}", clog.error.borrow());
    plog.wait_lost().await?;
    if abort {
        assert_eq!(plog.calls(), ["made", "data", "eof", "lost"]);
    } else {
        assert_eq!(
            plog.calls(),
            ["made", "data", "close_notify", "eof", "lost"]
        );
    }
    server.close();
    let end = tls.ending().expect("the peer saw the end");
    Ok(end)
}

#[test]
fn close_sends_close_notify_before_the_tcp_end() {
    run(async {
        assert_eq!(end_seen_by_raw_peer(false).await?, "close_notify");
        Ok(())
    });
}

#[test]
fn abort_ends_the_tcp_stream_without_close_notify() {
    run(async {
        assert_eq!(end_seen_by_raw_peer(true).await?, "truncated");
        Ok(())
    });
}

#[test]
fn close_waits_for_the_peers_close_notify_and_delivers_nothing_meanwhile() {
    run(async {
        let id = identity();
        let (server, t, clog, plog, tls) = client_of_raw_peer(&id, false).await?;
        t.close();
        assert!(t.is_closing());
        assert!(
            !t.is_reading(),
            "nothing more is read for the user after close"
        );
        // Our close_notify reached the peer, which does not answer yet.
        plog.wait_for("the client's close_notify", |l| {
            l.count("close_notify") == 1
        })
        .await?;
        assert!(!clog.lost(), "connection_lost before the peer answered");
        // What the peer sends meanwhile is read (the client reads on for the answer) and
        // dropped: wait until it has left the client's socket.
        let peer = plog.transport();
        tls.write(&peer, b"late data, never delivered");
        until(|| peek_len(&t) == 0).await?;
        assert!(!clog.lost(), "connection_lost before the peer answered");
        assert_eq!(&*clog.bytes.borrow(), b"hello, raw rustls\n");

        tls.close_notify(&peer);
        clog.wait_lost().await?;
        assert_eq!(clog.calls(), ["made", "data", "lost"]);
        assert!(clog.error.borrow().is_none(), "{:?}", clog.error.borrow());
        assert_eq!(&*clog.bytes.borrow(), b"hello, raw rustls\n");
        // Only then the client's socket closed: the peer sees the TCP end after a clean TLS end.
        plog.wait_lost().await?;
        assert_eq!(
            plog.calls(),
            ["made", "data", "close_notify", "eof", "lost"]
        );
        assert_eq!(tls.ending().as_deref(), Some("close_notify"));
        server.close();
        Ok(())
    });
}

#[test]
fn a_peer_that_closes_tcp_without_answering_ends_the_shutdown_cleanly() {
    run(async {
        let id = identity();
        let (server, t, clog, plog, _tls) = client_of_raw_peer(&id, false).await?;
        t.close();
        plog.wait_for("the client's close_notify", |l| {
            l.count("close_notify") == 1
        })
        .await?;
        assert!(!clog.lost());
        // A plain TCP close (FIN), no close_notify: asyncio ends the shutdown without error.
        plog.transport().close();
        clog.wait_lost().await?;
        assert_eq!(clog.calls(), ["made", "data", "lost"]);
        assert!(clog.error.borrow().is_none(), "{:?}", clog.error.borrow());
        server.close();
        Ok(())
    });
}

#[test]
fn a_peer_that_resets_during_the_shutdown_ends_it_with_the_reset() {
    run(async {
        let id = identity();
        let (server, t, clog, plog, _tls) = client_of_raw_peer(&id, false).await?;
        t.close();
        plog.wait_for("the client's close_notify", |l| {
            l.count("close_notify") == 1
        })
        .await?;
        assert!(!clog.lost());
        // SO_LINGER 0: closing the socket sends a reset.
        let peer = plog.transport();
        peer.with_socket(|s| s.set_linger(Some(Duration::ZERO)).unwrap());
        peer.abort();
        clog.wait_lost().await?;
        assert_eq!(clog.calls(), ["made", "data", "lost"]);
        let err = clog
            .error
            .borrow()
            .clone()
            .expect("the reset reaches connection_lost");
        assert_eq!(
            err.io_kind(),
            Some(io::ErrorKind::ConnectionReset),
            "{err:?}"
        );
        server.close();
        Ok(())
    });
}

#[test]
fn close_reads_the_peers_answer_even_when_the_user_paused_reading() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;
        let (t, clog) = tls_client(&id, port).await?;
        let slog = accepted(&logs, 1).await?;
        t.pause_reading();
        assert!(!t.is_reading());
        t.close();
        // Pausing or resuming a closing TLS transport changes nothing for the user.
        t.resume_reading();
        assert!(!t.is_reading());
        t.pause_reading();
        slog.wait_lost().await?;
        clog.wait_lost().await?;
        assert_eq!(slog.calls(), ["made", "eof", "lost"]);
        assert_eq!(clog.calls(), ["made", "lost"]);
        assert!(
            clog.error.borrow().is_none(),
            "the server's answer was read: {:?}",
            clog.error.borrow()
        );
        server.close();
        Ok(())
    });
}

#[test]
fn closing_from_eof_received_after_the_peers_close_notify_waits_for_nothing() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |l| l.close_on_eof.set(true)).await?;
        // The client is rustls by hand: it sends close_notify, then keeps its TCP end open.
        let (raw, plog, tls) = raw_tls_client(&id, port, false).await?;
        let slog = accepted(&logs, 1).await?;
        tls.close_notify(&raw);
        // The server's protocol closes from eof_received: the client's close_notify is already
        // there, so the server answers and closes its socket without waiting for anything more
        // (a wait would end only with the 30 s timeout, as a timeout error).
        slog.wait_lost().await?;
        assert_eq!(slog.calls(), ["made", "eof", "lost"]);
        assert!(slog.error.borrow().is_none(), "{:?}", slog.error.borrow());
        plog.wait_lost().await?;
        assert_eq!(plog.calls(), ["made", "close_notify", "eof", "lost"]);
        assert_eq!(tls.ending().as_deref(), Some("close_notify"));
        server.close();
        Ok(())
    });
}

/// A client driven by hand with rustls over a plain TCP transport, connected to a Tulipa TLS
/// server on `port`; it answers `close_notify` when `answer`.
async fn raw_tls_client(
    id: &Identity,
    port: u16,
    answer: bool,
) -> tulipa_transport::Result<(Transport, Rc<Log>, Rc<RawTls>)> {
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = RawTls::new(
        ClientConnection::new(id.client_config(), name).unwrap(),
        answer,
        false,
    );
    let plog = Log::new();
    let (tl, pl) = (tls.clone(), plog.clone());
    let t = create_connection(
        move || RawTlsPeer {
            tls: tl,
            transport: None,
            log: pl,
        },
        "127.0.0.1",
        port,
        ConnectOptions::default(),
    )
    .await?;
    Ok((t, plog, tls))
}

#[test]
fn close_clients_sends_close_notify_to_tls_clients() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;
        let (_raw, plog, tls) = raw_tls_client(&id, port, true).await?;
        let slog = accepted(&logs, 1).await?;
        server.close();
        server.close_clients();
        assert!(slog.transport().is_closing());
        plog.wait_for("the server's close_notify", |l| {
            l.count("close_notify") == 1 || l.lost()
        })
        .await?;
        assert_eq!(plog.count("close_notify"), 1, "{:?}", plog.calls());
        slog.wait_lost().await?;
        assert_eq!(slog.calls(), ["made", "lost"]);
        assert!(slog.error.borrow().is_none(), "{:?}", slog.error.borrow());
        plog.wait_lost().await?;
        assert_eq!(plog.calls(), ["made", "close_notify", "eof", "lost"]);
        assert_eq!(
            tls.ending().as_deref(),
            Some("close_notify"),
            "the client sees a clean TLS end, not a truncated stream"
        );
        server.wait_closed().await?;
        Ok(())
    });
}

#[test]
fn close_clients_gives_up_on_a_client_that_never_answers_after_the_servers_shutdown_timeout() {
    run(async {
        let id = identity();
        let limit = Duration::from_millis(200);
        let logs = Rc::new(RefCell::new(Vec::new()));
        let l2 = logs.clone();
        let mut o = id.server_options();
        o.tls_shutdown_timeout = limit;
        let server = create_server(
            move || {
                let log = Log::new();
                l2.borrow_mut().push(log.clone());
                Rec(log)
            },
            "127.0.0.1",
            0,
            o,
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (raw, plog, _tls) = raw_tls_client(&id, port, false).await?;
        let slog = accepted(&logs, 1).await?;
        let start = std::time::Instant::now();
        server.close_clients();
        plog.wait_for("the server's close_notify", |l| {
            l.count("close_notify") == 1 || l.lost()
        })
        .await?;
        assert_eq!(plog.count("close_notify"), 1, "{:?}", plog.calls());
        slog.wait_lost().await?;
        assert!(
            start.elapsed() >= limit,
            "gave up after {:?}",
            start.elapsed()
        );
        assert_eq!(slog.calls(), ["made", "lost"]);
        let err = slog.error.borrow().clone().expect("a timeout error");
        assert!(
            matches!(&err, Error::Futures(e) if e.is_timeout()),
            "asyncio's TimeoutError: {err:?}"
        );
        // The client sees its TCP stream end without a second word.
        plog.wait_lost().await?;
        raw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn a_zero_shutdown_timeout_is_refused() {
    run(async {
        let id = identity();
        let mut o = id.server_options();
        o.tls_shutdown_timeout = Duration::ZERO;
        let err = create_server(|| Rec(Log::new()), "127.0.0.1", 0, o)
            .await
            .expect_err("a zero shutdown timeout");
        assert!(
            matches!(
                &err,
                Error::Futures(tulipa_futures::Error::InvalidArgument(_))
            ),
            "{err:?}"
        );
        let (server, _logs, port) = tls_server(&id, |_| {}).await?;
        let (t, clog) = tls_client(&id, port).await?;
        assert!(t.set_tls_shutdown_timeout(Duration::ZERO).is_err());
        t.set_tls_shutdown_timeout(Duration::from_secs(1))?;
        t.close();
        clog.wait_lost().await?;
        server.close();
        Ok(())
    });
}

#[test]
fn a_tulipa_peer_sees_eof_then_a_clean_loss_after_close() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;
        let (t, clog) = tls_client(&id, port).await?;
        let slog = accepted(&logs, 1).await?;
        t.write(b"last words")?;
        t.close();
        assert!(t.is_closing());
        slog.wait_lost().await?;
        clog.wait_lost().await?;
        assert_eq!(slog.calls(), ["made", "data", "eof", "lost"]);
        assert_eq!(&*slog.bytes.borrow(), b"last words");
        assert!(slog.error.borrow().is_none(), "{:?}", slog.error.borrow());
        assert_eq!(clog.calls(), ["made", "lost"]);
        assert!(clog.error.borrow().is_none());
        server.close();
        Ok(())
    });
}

#[test]
fn after_abort_a_tulipa_peer_loses_the_connection_once_and_the_aborter_gets_none() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;
        let (t, clog) = tls_client(&id, port).await?;
        let slog = accepted(&logs, 1).await?;
        t.write(b"before abort")?;
        slog.wait_bytes(12).await?;
        t.abort();
        assert!(t.is_closing());
        clog.wait_lost().await?;
        slog.wait_lost().await?;
        assert_eq!(clog.calls(), ["made", "lost"]);
        assert!(clog.error.borrow().is_none(), "abort reports no error");
        // What the server's protocol sees of a truncated TLS stream: like asyncio's sslproto,
        // Tulipa reports the bare TCP end as an ordinary end of stream (the raw-rustls tests
        // above show the difference on the wire). It is the end, exactly once, after the data.
        assert_eq!(slog.calls().first(), Some(&"made"));
        assert_eq!(slog.calls().last(), Some(&"lost"));
        assert_eq!(slog.count("lost"), 1);
        assert_eq!(&*slog.bytes.borrow(), b"before abort");
        server.close();
        Ok(())
    });
}

#[test]
fn write_eof_is_an_error_over_tls_and_the_connection_goes_on() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;
        let (t, _clog) = tls_client(&id, port).await?;
        let slog = accepted(&logs, 1).await?;
        assert!(!t.can_write_eof());
        assert!(!slog.transport().can_write_eof());
        let err = t.write_eof().expect_err("no half-close over TLS");
        assert_eq!(err.io_kind(), Some(io::ErrorKind::Unsupported), "{err}");
        assert!(!t.is_closing(), "a refused write_eof closes nothing");
        t.write(b"still here")?;
        slog.wait_bytes(10).await?;
        assert_eq!(&*slog.bytes.borrow(), b"still here");
        t.close();
        slog.wait_lost().await?;
        server.close();
        Ok(())
    });
}

#[test]
fn writing_after_close_abort_or_the_peers_close_is_closed() {
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;

        // After close: at once, and after the connection is gone.
        let (t, clog) = tls_client(&id, port).await?;
        t.close();
        assert!(matches!(t.write(b"x"), Err(Error::Closed)));
        assert!(matches!(t.writelines(&[b"a", b"b"]), Err(Error::Closed)));
        clog.wait_lost().await?;
        assert!(matches!(t.write(b"x"), Err(Error::Closed)));

        // After abort.
        let (t, clog) = tls_client(&id, port).await?;
        t.abort();
        assert!(matches!(t.write(b"x"), Err(Error::Closed)));
        clog.wait_lost().await?;
        assert!(matches!(t.write(b"x"), Err(Error::Closed)));

        // After the peer closed: its close_notify ends the connection here too.
        let (t, clog) = tls_client(&id, port).await?;
        let slog = accepted(&logs, 3).await?;
        slog.transport().close();
        clog.wait_lost().await?;
        assert_eq!(clog.calls(), ["made", "eof", "lost"]);
        assert!(clog.error.borrow().is_none());
        assert!(matches!(t.write(b"x"), Err(Error::Closed)));
        server.close();
        Ok(())
    });
}

#[test]
fn a_handshake_failing_on_the_server_side_is_no_unretrieved_exception() {
    run(async {
        // Everything the loop would report as unhandled.
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let reports = Rc::new(RefCell::new(Vec::<String>::new()));
        let r2 = reports.clone();
        lp.set_exception_handler(Some(
            move |_: &tulipa_futures::rt::EventLoop, ctx: &tulipa_futures::rt::ExceptionContext| {
                r2.borrow_mut()
                    .push(format!("{}: {:?}", ctx.message, ctx.error));
            },
        ));
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;
        // A client that trusts another certificate refuses the server's with an alert.
        let stranger = identity();
        let err = create_connection(
            || Rec(Log::new()),
            "127.0.0.1",
            port,
            stranger.connect_options(),
        )
        .await
        .expect_err("an untrusted server");
        assert!(matches!(err, Error::Tls { .. }), "{err:?}");
        // The server's side gives up on the alert; its protocol never saw connection_made and
        // is dropped with the connection. Nobody awaits an accepted connection's handshake, so
        // its failure must not come back as an exception never retrieved.
        let slog = logs.borrow().first().cloned().expect("the server accepted");
        slog.wait_for("the server's protocol to be dropped", |l| l.dropped.get())
            .await?;
        assert!(slog.calls().is_empty(), "{:?}", slog.calls());
        assert!(reports.borrow().is_empty(), "{:#?}", reports.borrow());
        server.close();
        Ok(())
    });
}

// ---- the shutdown timeout, on virtual time -----------------------------------------------------

/// Two plain transports on the ends of a socket pair, each recording into its log.
async fn plain_socket_pair() -> tulipa_futures::Result<((Transport, Rc<Log>), (Transport, Rc<Log>))>
{
    let lp = tulipa_futures::rt::EventLoop::running()?;
    let (a, b) = UnixStream::pair().unwrap();
    let (alog, blog) = (Log::new(), Log::new());
    let (at, amade) = Transport::from_socket(&lp, a.into(), Box::new(Rec(alog.clone())))?;
    let (bt, bmade) = Transport::from_socket(&lp, b.into(), Box::new(Rec(blog.clone())))?;
    amade.await?;
    bmade.await?;
    Ok(((at, alog), (bt, blog)))
}

/// Plain transports on the two ends of a socket pair, upgraded to TLS with `start_tls`: a pair
/// whose bytes are in the peer's queue as soon as `send` returns, which is what a virtual-time
/// loop needs (it never waits for the kernel).
async fn tls_socket_pair(
    id: &Identity,
) -> tulipa_futures::Result<((Transport, Rc<Log>), (Transport, Rc<Log>))> {
    let ((ct, clog), (st, slog)) = plain_socket_pair().await?;
    // The server side switches first, so the client's hello finds TLS there.
    let server_cfg = id.server_config();
    let server_side: Task<Transport> =
        spawn(async move { Ok(tls::start_tls(&st, TlsSide::Server(server_cfg)).await?) })?;
    let ct = tls::start_tls(
        &ct,
        TlsSide::Client {
            config: id.client_config(),
            server_name: "localhost".into(),
        },
    )
    .await?;
    let st = server_side.await?;
    Ok(((ct, clog), (st, slog)))
}

#[test]
fn close_gives_up_on_a_peer_that_never_reads_after_the_shutdown_timeout() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lp = tulipa_loop::EventLoop::new_virtual().unwrap();
    let lp2 = lp.clone();
    tulipa_futures::run_until_complete(&lp, async move {
        let id = identity();
        let ((t, clog), (st, slog)) = tls_socket_pair(&id).await?;
        st.pause_reading();
        let mut sent = 0;
        while !clog.paused.get() {
            assert!(sent < 64 * MIB, "no pause_writing after {sent} bytes");
            t.write(&pattern(4, sent..sent + 64 * 1024))?;
            sent += 64 * 1024;
        }
        let start = lp2.time();
        t.close();
        // The close_notify waits behind the unread data; only the timeout ends the wait.
        clog.wait_lost().await?;
        let waited = lp2.time() - start;
        assert!(
            waited >= tls::SHUTDOWN_TIMEOUT,
            "closed after {waited:?} of virtual time"
        );
        assert!(waited < tls::SHUTDOWN_TIMEOUT + Duration::from_secs(1));
        assert_eq!(clog.calls(), ["made", "pause_writing", "lost"]);
        let err = clog.error.borrow().clone().expect("a timeout error");
        assert!(
            matches!(&err, Error::Futures(e) if e.is_timeout()),
            "asyncio's TimeoutError: {err:?}"
        );
        st.abort();
        slog.wait_lost().await?;
        Ok(())
    })
    .unwrap_or_else(|e| panic!("test body failed: {e}"));
    lp.close().unwrap();
}

#[test]
fn close_gives_up_on_a_peer_that_never_answers_after_the_shutdown_timeout() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lp = tulipa_loop::EventLoop::new_virtual().unwrap();
    let lp2 = lp.clone();
    tulipa_futures::run_until_complete(&lp, async move {
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let id = identity();
        // A rustls server by hand on one end of a socket pair: it reads everything, echoes,
        // and never answers close_notify.
        let (a, b) = UnixStream::pair().unwrap();
        let plog = Log::new();
        let tls = RawTls::new(
            ServerConnection::new(id.server_config()).unwrap(),
            false,
            true,
        );
        let peer = RawTlsPeer {
            tls: tls.clone(),
            transport: None,
            log: plog.clone(),
        };
        let (pt, pmade) = Transport::from_socket(&lp, b.into(), Box::new(peer))?;
        let clog = Log::new();
        let (ct, cmade) = Transport::from_socket(&lp, a.into(), Box::new(Rec(clog.clone())))?;
        pmade.await?;
        cmade.await?;
        let t = tls::start_tls(
            &ct,
            TlsSide::Client {
                config: id.client_config(),
                server_name: "localhost".into(),
            },
        )
        .await?;
        let limit = Duration::from_secs(5);
        t.set_tls_shutdown_timeout(limit)?;
        t.write(b"ping")?;
        clog.wait_bytes(4).await?;

        let start = lp2.time();
        t.close();
        plog.wait_for("the client's close_notify", |l| {
            l.count("close_notify") == 1
        })
        .await?;
        clog.wait_lost().await?;
        let waited = lp2.time() - start;
        assert!(waited >= limit, "gave up after {waited:?} of virtual time");
        assert!(waited < limit + Duration::from_secs(1), "{waited:?}");
        assert_eq!(clog.calls(), ["made", "data", "lost"]);
        let err = clog.error.borrow().clone().expect("a timeout error");
        assert!(
            matches!(&err, Error::Futures(e) if e.is_timeout()),
            "asyncio's TimeoutError: {err:?}"
        );
        // The aborted client's socket is closed: the peer sees a TLS stream whose
        // close_notify came, then the TCP end.
        plog.wait_lost().await?;
        assert_eq!(tls.ending().as_deref(), Some("close_notify"));
        drop(pt);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("test body failed: {e}"));
    lp.close().unwrap();
}

/// Runs `body` on a fresh virtual-time loop, serialised with the other tests; a failure panics.
fn on_virtual_loop<F>(body: impl FnOnce(tulipa_loop::EventLoop) -> F)
where
    F: std::future::Future<Output = tulipa_futures::Result<()>> + 'static,
{
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let lp = tulipa_loop::EventLoop::new_virtual().unwrap();
    tulipa_futures::run_until_complete(&lp, body(lp.clone()))
        .unwrap_or_else(|e| panic!("test body failed: {e}"));
    lp.close().unwrap();
}

/// A task upgrading `t` to a TLS client of `localhost` with `start_tls`.
fn spawn_client_upgrade(t: &Transport, id: &Identity) -> tulipa_futures::Result<Task<Transport>> {
    let (t, config) = (t.clone(), id.client_config());
    spawn(async move {
        let side = TlsSide::Client {
            config,
            server_name: "localhost".into(),
        };
        Ok(tls::start_tls(&t, side).await?)
    })
}

#[test]
fn start_tls_with_a_bad_server_name_leaves_the_plain_connection_as_it_was() {
    on_virtual_loop(|_| async move {
        let id = identity();
        let ((ct, clog), (pt, plog)) = plain_socket_pair().await?;
        let err = tls::start_tls(
            &ct,
            TlsSide::Client {
                config: id.client_config(),
                server_name: "not a name!".into(),
            },
        )
        .await
        .expect_err("an invalid server name");
        assert!(matches!(err, Error::Tls { .. }), "{err:?}");
        // The protocol is still in place and the connection still plain, both ways.
        assert!(!clog.dropped.get(), "start_tls dropped the protocol");
        pt.write(b"still plain")?;
        clog.wait_bytes(11).await?;
        assert_eq!(clog.bytes.borrow().as_slice(), b"still plain");
        ct.write(b"ok")?;
        plog.wait_bytes(2).await?;
        assert_eq!(clog.calls(), ["made", "data"]);
        ct.close();
        pt.close();
        clog.wait_lost().await?;
        plog.wait_lost().await?;
        Ok(())
    });
}

#[test]
fn cancelling_start_tls_during_the_handshake_aborts_the_connection_at_once() {
    on_virtual_loop(|lp2| async move {
        let id = identity();
        let ((ct, clog), (_pt, plog)) = plain_socket_pair().await?;
        // The peer stays plain and never answers the ClientHello.
        let upgrade = spawn_client_upgrade(&ct, &id)?;
        plog.wait_bytes(1).await?;
        assert!(!upgrade.done());
        let start = lp2.time();
        upgrade.cancel(Some("gave up"));
        let err = upgrade.clone().await.expect_err("cancelled");
        assert!(err.is_cancelled(), "{err:?}");
        // Aborted now, not when the handshake timeout fires.
        clog.wait_lost().await?;
        plog.wait_for("end of stream", |l| l.count("eof") + l.count("lost") > 0)
            .await?;
        assert!(
            lp2.time() - start < tls::HANDSHAKE_TIMEOUT,
            "lost only after {:?}",
            lp2.time() - start
        );
        assert!(ct.is_closing());
        assert_eq!(clog.calls(), ["made", "lost"]);
        Ok(())
    });
}

#[test]
fn a_start_tls_handshake_that_fails_ends_the_connection_and_tells_the_protocol_once() {
    on_virtual_loop(|_| async move {
        let id = identity();
        let ((ct, clog), (pt, plog)) = plain_socket_pair().await?;
        let upgrade = spawn_client_upgrade(&ct, &id)?;
        // The peer answers the ClientHello with plain text.
        plog.wait_bytes(1).await?;
        pt.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")?;
        let err = upgrade.clone().await.expect_err("not TLS");
        assert!(
            err.to_string().contains("TLS") || err.to_string().contains("tls"),
            "{err}"
        );
        clog.wait_lost().await?;
        assert_eq!(clog.calls(), ["made", "lost"]);
        assert!(
            clog.error.borrow().is_some(),
            "connection_lost got the failure"
        );
        assert!(ct.is_closing());
        plog.wait_lost().await?;
        Ok(())
    });
}

#[test]
fn start_tls_reads_the_handshake_even_if_the_protocol_paused_reading() {
    on_virtual_loop(|lp| async move {
        let id = identity();
        let ((ct, _clog), (st, _slog)) = plain_socket_pair().await?;
        ct.pause_reading();
        st.pause_reading();
        let start = lp.time();
        let server_cfg = id.server_config();
        let server_side: Task<Transport> =
            spawn(async move { Ok(tls::start_tls(&st, TlsSide::Server(server_cfg)).await?) })?;
        let client = spawn_client_upgrade(&ct, &id)?.await?;
        let server = server_side.await?;
        assert!(
            lp.time() - start < tls::HANDSHAKE_TIMEOUT,
            "the handshake waited {:?}",
            lp.time() - start
        );
        assert!(client.is_reading() && server.is_reading());
        client.abort();
        server.abort();
        Ok(())
    });
}

#[test]
fn a_dropped_start_tls_is_no_unretrieved_exception() {
    // The future is dropped (the task aborted), not cancelled: nobody awaits the handshake any
    // more, and its failure ("the connection was lost") must not be reported as unretrieved.
    on_virtual_loop(|lp| async move {
        let reports = Rc::new(RefCell::new(Vec::<String>::new()));
        let r2 = reports.clone();
        lp.set_exception_handler(Some(
            move |_: &tulipa_loop::EventLoop, ctx: &tulipa_loop::ExceptionContext| {
                r2.borrow_mut()
                    .push(format!("{}: {:?}", ctx.message, ctx.error));
            },
        ));
        let id = identity();
        let ((ct, clog), (_pt, plog)) = plain_socket_pair().await?;
        let upgrade = spawn_client_upgrade(&ct, &id)?;
        plog.wait_bytes(1).await?;
        upgrade.abort();
        clog.wait_lost().await?;
        drop(upgrade);
        drop(ct);
        for _ in 0..5 {
            tulipa_futures::sleep(Duration::ZERO).await?;
        }
        assert!(reports.borrow().is_empty(), "{:#?}", reports.borrow());
        Ok(())
    });
}

// ---- file descriptors --------------------------------------------------------------------------

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("reading /proc/self/fd")
        .count()
}

#[test]
fn thirty_tls_connect_close_cycles_leave_no_fd_behind() {
    if !std::path::Path::new("/proc/self/fd").exists() {
        println!("skipped: no /proc/self/fd on this system");
        return;
    }
    run(async {
        let id = identity();
        let (server, logs, port) = tls_server(&id, |_| {}).await?;
        let cycle = |n: usize| {
            let (logs, id) = (logs.clone(), &id);
            async move {
                let (t, clog) = tls_client(id, port).await?;
                let slog = accepted(&logs, n).await?;
                t.write(b"ping")?;
                slog.wait_bytes(4).await?;
                t.close();
                clog.wait_lost().await?;
                slog.wait_lost().await?;
                Ok::<(), tulipa_futures::Error>(())
            }
        };
        // One warm-up cycle, so that only per-connection fds are compared.
        cycle(1).await?;
        let before = open_fds();
        for n in 2..=31 {
            cycle(n).await?;
        }
        assert_eq!(open_fds(), before, "fds after 30 TLS connections");
        server.close();
        Ok(())
    });
}
