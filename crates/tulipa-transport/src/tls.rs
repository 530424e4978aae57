//! TLS for every transport (asyncio's `sslproto.py`), with rustls.
//!
//! TLS is a protocol layered between the socket transport and the user's protocol: the socket
//! transport hands ciphertext to a `TlsProto`, which feeds rustls and hands the plaintext to the
//! user's [`Protocol`]; the user writes plaintext through an ordinary [`Transport`] whose writes
//! go through rustls. So every protocol, the streams API and the layers above get TLS unchanged.
//!
//! - Client: [`ConnectOptions::tls`](crate::ConnectOptions) with a [`ClientConfig`]
//!   ([`client_config`] builds one on the `webpki-roots` Mozilla root store, the
//!   choice documented here: it needs no system files and behaves the same everywhere).
//!   Certificate and name errors surface from `create_connection` as [`Error::Tls`].
//! - Server: [`ServerOptions::tls`](crate::ServerOptions) with a [`ServerConfig`]
//!   ([`server_config`] from PEM files via [`load_certs`] and [`load_private_key`]).
//! - Handshake timeout 60 s and shutdown timeout 30 s, as asyncio (`ssl_handshake_timeout`,
//!   `ssl_shutdown_timeout`): [`ServerOptions::tls_shutdown_timeout`](crate::ServerOptions) for
//!   accepted connections, [`Transport::set_tls_shutdown_timeout`] for any one connection.
//!
//! # The end of a connection
//!
//! As asyncio's `SSLProtocol` (`_start_shutdown`, `_do_flush`, `_do_shutdown`):
//!
//! - `close` is a TLS shutdown. From that moment the user's protocol gets no more
//!   `data_received` (application data still arriving is discarded, as `SSL_shutdown` does);
//!   the plaintext already written goes out (it is encrypted as it is written), then our
//!   `close_notify`; then the connection keeps reading until the peer's `close_notify` (or the
//!   end of its TCP stream) arrives, even if the user had paused reading. Only then is the socket
//!   closed and the user's `connection_lost(None)` called, once. A peer that never answers is
//!   given the shutdown timeout, then the connection is aborted and `connection_lost` gets
//!   asyncio's `TimeoutError` (`Error::Futures(tulipa_futures::Error::Timeout)`). A peer that
//!   closes its TCP connection without `close_notify` meanwhile ends the shutdown cleanly
//!   (`connection_lost(None)`, as asyncio); one that resets it ends it with the reset error.
//!   Unlike asyncio, the closing side's protocol is not told `eof_received` when the peer's
//!   answer comes: after `close`, `connection_lost` is its only callback, as on plain TCP.
//! - `close` during the handshake aborts (asyncio does too): there is no session to shut down.
//! - `abort` sends nothing and closes at once; `connection_lost(None)` follows.
//! - The peer's `close_notify` (or its TCP end) is reported to the user's `eof_received`, then
//!   the connection is closed (asyncio's rule for TLS: `eof_received`'s answer is ignored); a
//!   `close_notify` is answered with ours first. The user may call `close` from
//!   `eof_received`: the peer has already spoken, so nothing more is waited for.
//! - [`Server::close_clients`](crate::Server::close_clients) closes TLS connections through this
//!   layer, so each client gets a `close_notify` (asyncio's closes the socket underneath).
//! - `write_eof` is not supported over TLS ([`Transport::can_write_eof`] is false). Writing once
//!   the connection is closing or lost is [`Error::Closed`]. Errors of the TLS session after the
//!   handshake (a bad record, a fatal alert) reach `connection_lost` as [`Error::Tls`].
//!
//! # Flow control
//!
//! The socket transport's watermarks reach the user protocol as on plain TCP, and the user's
//! `pause_reading` stops reading ciphertext; rustls buffers at most one record's worth of
//! plaintext on each side.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
pub use rustls::{ClientConfig, ServerConfig};
use tulipa_futures::rt::{EventLoop, TimerHandle};
use tulipa_futures::Future;

use crate::error::{Error, Result};
use crate::protocol::Protocol;
use crate::transport::Transport;

/// asyncio's default handshake timeout.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);
/// asyncio's default shutdown timeout.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

thread_local! {
    /// The plaintext of one `data_received` of the socket transport, gathered from rustls for the
    /// user's protocol: one buffer for the thread's TLS connections, taken out while in use, so
    /// it keeps its capacity from one read to the next and costs idle connections nothing.
    static PLAIN: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Hands every record rustls has ready to `w` (the socket, see `Inner::write_with`), which takes
/// all of them.
fn send_records(conn: &mut rustls::Connection, w: &mut dyn Write) -> Result<()> {
    while conn.wants_write() {
        if conn.write_tls(w).map_err(|e| Error::io("TLS write", e))? == 0 {
            break;
        }
    }
    Ok(())
}

fn tls_err(context: &str, e: impl fmt::Display) -> Error {
    Error::Tls {
        reason: Arc::from(format!("{context}: {e}")),
    }
}

/// A client configuration trusting the `webpki-roots` root store, with `alpn` protocols.
pub fn client_config(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut cfg = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// A server configuration from a certificate chain and key, with `alpn` protocols.
///
/// # Errors
///
/// [`Error::Tls`] when the key does not match the certificate or is not supported.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>> {
    let mut cfg = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("server certificate", e))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// Reads a PEM certificate chain (as `openssl req` writes it).
///
/// # Errors
///
/// [`Error::Tls`] when the file cannot be read or holds no certificate.
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| tls_err(&format!("reading {}", path.display()), e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&format!("parsing {}", path.display()), e))?;
    if certs.is_empty() {
        return Err(tls_err(
            &path.display().to_string(),
            "no certificate in the file",
        ));
    }
    Ok(certs)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
///
/// [`Error::Tls`] when the file cannot be read or holds no key.
pub fn load_private_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| tls_err(&format!("reading a key from {}", path.display()), e))
}

/// What was negotiated, for [`Transport::tls_info`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TlsInfo {
    /// For example `TLSv1_3`.
    pub protocol_version: Option<String>,
    /// For example `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: Option<String>,
    /// The ALPN protocol agreed on.
    pub alpn_protocol: Option<Vec<u8>>,
    /// The server name the client asked for (SNI), on the server side.
    pub server_name: Option<String>,
    /// The peer's certificate chain (DER), leaf first.
    pub peer_certificates: Vec<Vec<u8>>,
}

pub(crate) struct TlsState {
    lp: EventLoop,
    conn: RefCell<rustls::Connection>,
    sock: RefCell<Option<Transport>>,
    user: RefCell<Option<Box<dyn Protocol>>>,
    handshake: Future<()>,
    user_made: Cell<bool>,
    /// `close` was called, or the peer's `close_notify` is being answered.
    closing: Cell<bool>,
    /// Our `close_notify` is out and the connection reads on for the peer's (asyncio's
    /// `SHUTDOWN` state); the user's protocol gets no more data.
    awaiting_peer: Cell<bool>,
    /// The peer's `close_notify` or the end of its TCP stream arrived.
    peer_ended: Cell<bool>,
    /// The handshake timer, then the shutdown timer.
    timer: RefCell<Option<TimerHandle>>,
    info: RefCell<Option<TlsInfo>>,
    /// False for `start_tls`: the protocol already had its `connection_made`.
    call_connection_made: Cell<bool>,
    handshake_timeout: Cell<Duration>,
    shutdown_timeout: Cell<Duration>,
}

/// The protocol attached to the socket transport under a TLS connection.
pub(crate) struct TlsProto {
    st: Rc<TlsState>,
}

impl TlsState {
    fn new(lp: &EventLoop, conn: rustls::Connection, user: Box<dyn Protocol>) -> Rc<Self> {
        Rc::new(TlsState {
            lp: lp.clone(),
            conn: RefCell::new(conn),
            sock: RefCell::new(None),
            user: RefCell::new(Some(user)),
            handshake: Future::new(lp),
            user_made: Cell::new(false),
            closing: Cell::new(false),
            awaiting_peer: Cell::new(false),
            peer_ended: Cell::new(false),
            timer: RefCell::new(None),
            info: RefCell::new(None),
            call_connection_made: Cell::new(true),
            handshake_timeout: Cell::new(HANDSHAKE_TIMEOUT),
            shutdown_timeout: Cell::new(SHUTDOWN_TIMEOUT),
        })
    }

    fn sock(&self) -> Option<Transport> {
        self.sock.borrow().clone()
    }

    /// Which connection, for the logs: the socket's fd and the peer's address.
    fn who(&self) -> (RawFd, Option<SocketAddr>) {
        match self.sock.borrow().as_ref() {
            Some(s) => (s.fd(), s.peer_addr()),
            None => (-1, None),
        }
    }

    pub(crate) fn set_shutdown_timeout(&self, timeout: Duration) {
        self.shutdown_timeout.set(timeout);
    }

    /// True once `close` was called or the peer's `close_notify` is being answered.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Sends whatever rustls has to send: straight into the socket, and what it does not take
    /// into the socket transport's buffer.
    fn flush(&self) -> Result<()> {
        if !self.conn.borrow().wants_write() {
            return Ok(());
        }
        let Some(s) = self.sock() else { return Ok(()) };
        s.inner
            .write_with(false, |w| send_records(&mut self.conn.borrow_mut(), w))
    }

    /// Ends the connection on an error: during the handshake the handshake fails (and the
    /// connection is aborted; a `start_tls` protocol, which had its `connection_made`, gets the
    /// error in `connection_lost`); after it, the user's `connection_lost` gets the error
    /// (asyncio's `_fatal_error`).
    fn fail(self: &Rc<Self>, err: Error) {
        if let Some(t) = self.timer.borrow_mut().take() {
            t.cancel();
        }
        self.awaiting_peer.set(false);
        if !self.user_made.get() {
            self.fail_handshake(err.clone());
            if let Some(s) = self.sock() {
                if self.call_connection_made.get() {
                    s.abort();
                } else {
                    // start_tls: the user's protocol knows the connection, and learns why it
                    // ended from its `connection_lost`.
                    s.inner.fatal_error(err);
                }
            }
        } else if let Some(s) = self.sock() {
            let (fd, peer) = self.who();
            tracing::debug!(fd, ?peer, error = %err, "TLS session failed; closing the connection");
            s.inner.fatal_error(err);
        }
    }

    /// Fails the handshake future. Nobody awaits an accepted server connection's handshake (the
    /// user's protocol only ever sees finished ones), so there the failure is logged at debug
    /// level, as asyncio does for handshake errors, and marked as seen: otherwise every client
    /// that gives up on the handshake would be reported as "exception was never retrieved".
    fn fail_handshake(&self, err: Error) {
        let _ = self.handshake.set_exception(err.into());
        let accepted = self.call_connection_made.get()
            && matches!(
                self.conn.try_borrow().as_deref(),
                Ok(rustls::Connection::Server(_))
            );
        if accepted {
            if let Ok(Some(e)) = self.handshake.exception() {
                tracing::debug!(error = %e, "TLS handshake of an accepted connection failed");
            }
        } else if !self.call_connection_made.get() {
            // start_tls: its caller gets the error if it still awaits, and the protocol gets it
            // in `connection_lost`; a dropped start_tls must not be reported as never retrieved.
            let _ = self.handshake.exception();
        }
    }

    fn handshake_done(self: &Rc<Self>) {
        if let Some(t) = self.timer.borrow_mut().take() {
            t.cancel();
        }
        let info = {
            let conn = self.conn.borrow();
            TlsInfo {
                protocol_version: conn.protocol_version().map(|v| format!("{v:?}")),
                cipher_suite: conn
                    .negotiated_cipher_suite()
                    .map(|c| format!("{:?}", c.suite())),
                alpn_protocol: conn.alpn_protocol().map(<[u8]>::to_vec),
                server_name: match &*conn {
                    rustls::Connection::Server(s) => s.server_name().map(str::to_owned),
                    rustls::Connection::Client(_) => None,
                },
                peer_certificates: conn
                    .peer_certificates()
                    .map(|c| c.iter().map(|d| d.to_vec()).collect())
                    .unwrap_or_default(),
            }
        };
        *self.info.borrow_mut() = Some(info);
        self.user_made.set(true);
        let Some(sock) = self.sock() else { return };
        let user_transport = Transport {
            inner: sock.inner.clone(),
            tls: Some(self.clone()),
        };
        if self.call_connection_made.get() {
            if let Some(u) = self.user.borrow_mut().as_mut() {
                u.connection_made(user_transport);
            }
        }
        let _ = self.handshake.set_result(());
    }

    // ---- the user-facing side (called through `Transport` when it carries TLS) ----

    pub(crate) fn write(&self, parts: &[&[u8]]) -> Result<()> {
        // Once the socket is closing or gone (abort, a lost connection) nothing can be sent:
        // say so rather than encrypt into the void.
        let Some(sock) = self.sock() else {
            return Err(Error::Closed);
        };
        if self.closing.get() || sock.is_closing() {
            return Err(Error::Closed);
        }
        // rustls takes up to 64 KiB of plaintext at a time (its buffer limit) and encrypts it as
        // it takes it: each time it is full, its records go out with one vectored send, straight
        // into the socket while the socket transport's buffer is empty, and what the socket does
        // not take goes into that buffer (flow-controlled as on plain TCP).
        sock.inner.write_with(false, |w| {
            let mut conn = self.conn.borrow_mut();
            for p in parts {
                let mut rest: &[u8] = p;
                while !rest.is_empty() {
                    let n = conn
                        .writer()
                        .write(rest)
                        .map_err(|e| Error::io("TLS write", e))?;
                    rest = &rest[n..];
                    if n == 0 {
                        if !conn.wants_write() {
                            return Err(Error::io(
                                "TLS write",
                                io::Error::from(io::ErrorKind::WriteZero),
                            ));
                        }
                        send_records(&mut conn, w)?;
                    }
                }
            }
            send_records(&mut conn, w)
        })
    }

    /// The user's `close`: a TLS shutdown (asyncio's `_start_shutdown`; see the module doc).
    pub(crate) fn close(self: &Rc<Self>) {
        if self.closing.replace(true) {
            return;
        }
        let Some(sock) = self.sock() else { return };
        if sock.is_closing() {
            // Aborted or lost already: there is nobody to say goodbye to.
            return;
        }
        let (fd, peer) = self.who();
        if !self.user_made.get() {
            // No session yet: asyncio aborts a connection closed during its handshake.
            tracing::debug!(fd, ?peer, "TLS close during the handshake: aborting");
            sock.abort();
            return;
        }
        if self.peer_ended.get() {
            // The peer ended first (the user closes from `eof_received`): answer, close.
            tracing::debug!(fd, ?peer, "TLS close after the peer's end: closing");
            self.send_close_notify_best_effort(&sock);
            self.close_socket();
            return;
        }
        // Everything written is already ciphertext in the socket's buffer: close_notify goes
        // after it.
        self.conn.borrow_mut().send_close_notify();
        if let Err(e) = self.flush() {
            self.fail(e);
            return;
        }
        self.awaiting_peer.set(true);
        // The peer's answer must be read even if the user paused reading.
        sock.resume_reading();
        self.arm_shutdown_timer();
        tracing::debug!(
            fd,
            ?peer,
            timeout = ?self.shutdown_timeout.get(),
            "TLS close: close_notify sent, waiting for the peer's"
        );
    }

    /// The peer answered our `close_notify` (or ended its TCP stream, or had ended before):
    /// the shutdown is complete, the socket closes once its buffer drains (asyncio's
    /// `_on_shutdown_complete`).
    fn shutdown_complete(self: &Rc<Self>, how: &'static str) {
        self.awaiting_peer.set(false);
        let (fd, peer) = self.who();
        tracing::debug!(fd, ?peer, how, "TLS shutdown complete; closing the socket");
        self.close_socket();
    }

    /// Queues our `close_notify` and tries to send it at once. Best effort: a peer that ended
    /// the connection may have reset it already (our TLS 1.3 session tickets reaching its
    /// closed socket do that), and failing to send the answer must not turn the peer's clean
    /// close into an error.
    fn send_close_notify_best_effort(&self, s: &Transport) {
        self.conn.borrow_mut().send_close_notify();
        let _ = s.inner.write_with(true, |w| {
            let mut conn = self.conn.borrow_mut();
            while conn.wants_write() {
                if !matches!(conn.write_tls(w), Ok(n) if n > 0) {
                    break;
                }
            }
            Ok(())
        });
    }

    /// The peer sent `close_notify`: answer with ours (RFC 8446 §6.1; asyncio does too), then
    /// close.
    fn answer_close_notify(self: &Rc<Self>) {
        if self.closing.replace(true) {
            return;
        }
        let Some(s) = self.sock() else { return };
        self.send_close_notify_best_effort(&s);
        self.close_socket();
    }

    /// Closes the socket once its buffer drains; a peer that never reads gets aborted after
    /// the shutdown timeout.
    fn close_socket(self: &Rc<Self>) {
        let Some(s) = self.sock() else { return };
        s.close();
        // With nothing buffered, `connection_lost` is already on its way. Otherwise the timer
        // (armed by `close`, or now) bounds the wait; `connection_lost` cancels it, so nothing
        // waits 30 s holding this connection.
        if s.get_write_buffer_size() > 0 && self.timer.borrow().is_none() {
            self.arm_shutdown_timer();
        }
    }

    /// Starts the shutdown timeout (asyncio's `_check_shutdown_timeout`).
    fn arm_shutdown_timer(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let limit = self.shutdown_timeout.get();
        let timer = self.lp.call_later(limit, move || {
            if let Some(st) = weak.upgrade() {
                st.shutdown_timed_out(limit);
            }
        });
        // The handshake is over (or abandoned) by now: its timer, if any, is done with.
        if let Some(old) = self.timer.replace(timer.ok()) {
            old.cancel();
        }
    }

    /// The peer neither answered nor drained our data in time: abort, and the user's
    /// `connection_lost` gets asyncio's `TimeoutError('SSL shutdown timed out')`.
    fn shutdown_timed_out(&self, limit: Duration) {
        self.timer.borrow_mut().take();
        self.awaiting_peer.set(false);
        let Some(s) = self.sock() else { return };
        let (fd, peer) = self.who();
        tracing::debug!(
            fd,
            ?peer,
            timeout = ?limit,
            "TLS shutdown timed out; aborting the connection"
        );
        s.inner
            .fatal_error(Error::Futures(tulipa_futures::Error::Timeout));
    }

    /// Tells the user's protocol that the peer ended its side (once: the connection closes
    /// right after).
    fn deliver_eof(&self) {
        if let Some(u) = self.user.borrow_mut().as_mut() {
            // Its answer is ignored: over TLS the connection closes (asyncio's rule).
            let _ = u.eof_received();
        }
    }

    /// After the socket transport's bytes went through rustls: sends what rustls has to send
    /// (handshake messages, alerts, key updates), finishes the handshake, then hands `plain` to
    /// the user's protocol and reacts to the peer's `close_notify`.
    fn received(self: &Rc<Self>, plain: &[u8], peer_closed: bool) {
        if let Err(e) = self.flush() {
            self.fail(e);
            return;
        }
        if !self.user_made.get() && !self.conn.borrow().is_handshaking() {
            self.handshake_done();
        }
        if self.awaiting_peer.get() {
            // After `close` the user gets no more data (asyncio: `SSL_shutdown` discards it).
            if !plain.is_empty() {
                let (fd, peer) = self.who();
                tracing::trace!(
                    fd,
                    ?peer,
                    bytes = plain.len(),
                    "discarding application data received after close"
                );
            }
            if peer_closed {
                self.peer_ended.set(true);
                self.shutdown_complete("the peer answered close_notify");
            }
            return;
        }
        if !plain.is_empty() {
            if let Some(u) = self.user.borrow_mut().as_mut() {
                u.data_received(plain);
            }
        }
        if peer_closed {
            self.peer_ended.set(true);
            if self.awaiting_peer.get() {
                // The user closed from `data_received` above: this close_notify is the answer.
                self.shutdown_complete("the peer's close_notify came with the last data");
                return;
            }
            self.deliver_eof();
            // Answer the peer's close_notify with ours before closing (RFC 8446 §6.1, and what
            // asyncio does): a peer waiting for it (OpenSSL's `SSL_shutdown`) would otherwise
            // see a truncated stream.
            self.answer_close_notify();
        }
    }

    pub(crate) fn info(&self) -> Option<TlsInfo> {
        self.info.borrow().clone()
    }
}

impl Protocol for TlsProto {
    fn connection_made(&mut self, transport: Transport) {
        let st = &self.st;
        *st.sock.borrow_mut() = Some(transport);
        let weak = Rc::downgrade(st);
        let timer = st.lp.call_later(st.handshake_timeout.get(), move || {
            if let Some(st) = weak.upgrade() {
                if !st.user_made.get() {
                    st.fail(tls_err("handshake", "timed out"));
                }
            }
        });
        *st.timer.borrow_mut() = timer.ok();
        if let Err(e) = st.flush() {
            st.fail(e);
        }
    }

    fn data_received(&mut self, mut data: &[u8]) {
        let st = self.st.clone();
        // The thread's plaintext buffer, taken out for this call (a nested call, were there one,
        // would get an empty one).
        let mut plain = PLAIN.with(|p| std::mem::take(&mut *p.borrow_mut()));
        plain.clear();
        let mut peer_closed = false;
        {
            let mut conn = st.conn.borrow_mut();
            while !data.is_empty() {
                if let Err(e) = conn.read_tls(&mut data) {
                    drop(conn);
                    st.fail(Error::io("TLS read", e));
                    return;
                }
                if let Err(e) = conn.process_new_packets() {
                    let what = if conn.is_handshaking() {
                        "handshake"
                    } else {
                        "session"
                    };
                    drop(conn);
                    // Send the alert rustls queued, then give up.
                    let _ = st.flush();
                    st.fail(tls_err(what, e));
                    return;
                }
                if !conn.is_handshaking() {
                    // rustls's records, copied once, straight from its buffers.
                    let mut reader = conn.reader();
                    loop {
                        match reader.fill_buf() {
                            Ok([]) => {
                                peer_closed = true;
                                break;
                            }
                            Ok(chunk) => {
                                let n = chunk.len();
                                plain.extend_from_slice(chunk);
                                reader.consume(n);
                            }
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => {
                                drop(conn);
                                st.fail(Error::io("TLS read", e));
                                return;
                            }
                        }
                    }
                }
            }
        }
        st.received(&plain, peer_closed);
        plain.clear();
        PLAIN.with(|p| {
            let mut p = p.borrow_mut();
            if p.capacity() < plain.capacity() {
                *p = plain;
            }
        });
    }

    fn eof_received(&mut self) -> bool {
        let st = &self.st;
        if !st.user_made.get() {
            st.fail(tls_err("handshake", "the peer closed the connection"));
            return false;
        }
        st.peer_ended.set(true);
        if st.awaiting_peer.get() {
            // asyncio's `_do_shutdown` after `eof_received`: a peer that ends its TCP stream
            // without answering close_notify still ends the shutdown, cleanly. The socket
            // transport closes itself on our `false`.
            let (fd, peer) = st.who();
            tracing::debug!(
                fd,
                ?peer,
                "the peer closed its TCP stream without answering close_notify"
            );
            st.awaiting_peer.set(false);
            return false;
        }
        if !st.closing.get() {
            st.deliver_eof();
        }
        false
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        let st = &self.st;
        if let Some(t) = st.timer.borrow_mut().take() {
            t.cancel();
        }
        st.awaiting_peer.set(false);
        // The user's protocol is told only if it was told `connection_made`: after the
        // handshake, or from the start for `start_tls` (it had it on the plain connection).
        let user_knows = st.user_made.get() || !st.call_connection_made.get();
        if !st.user_made.get() {
            let err = exc
                .clone()
                .unwrap_or_else(|| tls_err("handshake", "the connection was lost"));
            st.fail_handshake(err);
        }
        // Taken out before the call, so that the protocol may use its transport meanwhile.
        let user = st.user.borrow_mut().take();
        if let (true, Some(mut u)) = (user_knows, user) {
            u.connection_lost(exc);
        }
        st.sock.borrow_mut().take();
    }

    fn pause_writing(&mut self) {
        if let Some(u) = self.st.user.borrow_mut().as_mut() {
            u.pause_writing();
        }
    }

    fn resume_writing(&mut self) {
        if let Some(u) = self.st.user.borrow_mut().as_mut() {
            u.resume_writing();
        }
    }
}

/// A server configuration that also asks clients for a certificate and verifies it against
/// `client_roots` (mutual TLS).
///
/// # Errors
///
/// [`Error::Tls`] for a bad key or an empty root store.
pub fn server_config_with_client_auth(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>> {
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(client_roots))
        .build()
        .map_err(|e| tls_err("client verifier", e))?;
    let mut cfg = ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("server certificate", e))?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

impl Transport {
    /// Sets how long `close` waits for the peer's `close_notify` (and for the socket to drain)
    /// before aborting the connection: asyncio's `ssl_shutdown_timeout` for this one
    /// connection (default [`SHUTDOWN_TIMEOUT`], 30 s; accepted connections start with
    /// [`ServerOptions::tls_shutdown_timeout`](crate::ServerOptions)). Applies to a shutdown
    /// that starts after the call.
    ///
    /// # Errors
    ///
    /// An invalid-argument error when `timeout` is zero (asyncio requires a positive number) or
    /// the transport does not speak TLS.
    pub fn set_tls_shutdown_timeout(&self, timeout: Duration) -> Result<()> {
        if timeout.is_zero() {
            return Err(Error::Futures(tulipa_futures::Error::InvalidArgument(
                "the TLS shutdown timeout must be positive",
            )));
        }
        match &self.tls {
            Some(st) => {
                st.set_shutdown_timeout(timeout);
                Ok(())
            }
            None => Err(Error::Futures(tulipa_futures::Error::InvalidArgument(
                "not a TLS transport",
            ))),
        }
    }
}

/// Which side of a TLS session to start with [`start_tls`].
#[derive(Clone, Debug)]
pub enum TlsSide {
    /// Act as the client, verifying the server as `server_name`.
    Client {
        /// The client configuration.
        config: Arc<ClientConfig>,
        /// The name to verify and send as SNI.
        server_name: String,
    },
    /// Act as the server.
    Server(Arc<ServerConfig>),
}

/// Upgrades a live plain connection to TLS (asyncio's `loop.start_tls`, STARTTLS): from now on
/// the transport's protocol receives plaintext through TLS. Returns the new transport, which the
/// protocol must use from now on; the protocol does not get a second `connection_made`.
///
/// Call it between protocol callbacks (from a task), after both sides agreed to switch.
///
/// # Errors
///
/// [`Error::Tls`] when the handshake fails or times out; [`Error::Closed`] when the connection
/// is closing; an invalid-state error when called from inside the transport's own protocol.
/// A bad server name or configuration fails before anything changes: the connection stays plain
/// and its protocol in place. Once the handshake has started, a failure aborts the connection
/// (its protocol gets `connection_lost`), as asyncio's `start_tls` closes it.
///
/// # Cancel safety
///
/// Cancelling the calling task (or dropping this future) during the handshake aborts the
/// connection: it is half-way into TLS and nobody else could use it.
pub async fn start_tls(transport: &Transport, side: TlsSide) -> Result<Transport> {
    if transport.tls.is_some() {
        return Err(tls_err("start_tls", "the connection already speaks TLS"));
    }
    if transport.is_closing() {
        return Err(Error::Closed);
    }
    let lp = transport.get_loop().clone();
    // The session is made before the protocol leaves the transport, so that a bad server name
    // or configuration is an error that leaves the plain connection as it was.
    let conn = match side {
        TlsSide::Client {
            config,
            server_name,
        } => rustls::Connection::Client(client_session(config, &server_name)?),
        TlsSide::Server(config) => rustls::Connection::Server(
            rustls::ServerConnection::new(config).map_err(|e| tls_err("server", e))?,
        ),
    };
    let Some(user) = transport.inner.take_protocol()? else {
        return Err(Error::Closed);
    };
    let st = TlsState::new(&lp, conn, user);
    st.handshake_timeout.set(HANDSHAKE_TIMEOUT);
    let mut proto = TlsProto { st: st.clone() };
    proto.st.call_connection_made.set(false);
    // Start the handshake on the live socket, then let it feed the TLS layer.
    proto.connection_made(transport.clone());
    transport.inner.put_protocol(Box::new(proto));
    // The handshake must read even if the protocol had paused reading (asyncio resumes too).
    transport.resume_reading();
    // From here the connection speaks TLS and only the returned transport can use it: a failed,
    // cancelled or dropped handshake aborts it (asyncio's `start_tls` closes it).
    let guard = crate::connect::AbortUnlessDone::new(transport);
    let tls = handshake(st, transport).await?;
    guard.disarm();
    Ok(tls)
}

/// A rustls client session that verifies the server as `server_name`.
fn client_session(
    config: Arc<ClientConfig>,
    server_name: &str,
) -> Result<rustls::ClientConnection> {
    let name =
        ServerName::try_from(server_name.to_owned()).map_err(|e| tls_err("server name", e))?;
    rustls::ClientConnection::new(config, name).map_err(|e| tls_err("client", e))
}

/// Wraps `user` in a TLS client layer for `server_name`.
pub(crate) fn client(
    lp: &EventLoop,
    config: Arc<ClientConfig>,
    server_name: &str,
    user: Box<dyn Protocol>,
    timeout: Duration,
) -> Result<(TlsProto, Rc<TlsState>)> {
    let conn = client_session(config, server_name)?;
    let st = TlsState::new(lp, rustls::Connection::Client(conn), user);
    st.handshake_timeout.set(timeout);
    Ok((TlsProto { st: st.clone() }, st))
}

/// Wraps `user` in a TLS server layer.
pub(crate) fn server(
    lp: &EventLoop,
    config: Arc<ServerConfig>,
    user: Box<dyn Protocol>,
    timeout: Duration,
) -> Result<(TlsProto, Rc<TlsState>)> {
    let conn = rustls::ServerConnection::new(config).map_err(|e| tls_err("server", e))?;
    let st = TlsState::new(lp, rustls::Connection::Server(conn), user);
    st.handshake_timeout.set(timeout);
    Ok((TlsProto { st: st.clone() }, st))
}

/// Waits for the handshake of a client connection; the user's transport on success.
pub(crate) async fn handshake(st: Rc<TlsState>, sock: &Transport) -> Result<Transport> {
    st.handshake.clone().await?;
    Ok(Transport {
        inner: sock.inner.clone(),
        tls: Some(st),
    })
}

impl fmt::Debug for TlsState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsState")
            .field("handshake_done", &self.user_made.get())
            .field("closing", &self.closing.get())
            .field("awaiting_peer", &self.awaiting_peer.get())
            .field("peer_ended", &self.peer_ended.get())
            .finish()
    }
}
