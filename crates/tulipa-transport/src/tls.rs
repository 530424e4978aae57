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
//! - Handshake timeout 60 s and shutdown timeout 30 s, as asyncio.
//! - `close` sends `close_notify` and flushes, then closes the socket without waiting for the
//!   peer's `close_notify`; `abort` sends nothing. `write_eof` is not supported over TLS
//!   ([`Transport::can_write_eof`] is false). The peer's `close_notify` or EOF is reported to the
//!   user's `eof_received`, then the connection is closed (asyncio's rule for TLS); a
//!   `close_notify` is answered with ours first. Writing once the connection is closing or lost
//!   is [`Error::Closed`].
//! - Flow control: the socket transport's watermarks reach the user protocol as on plain TCP,
//!   and the user's `pause_reading` stops reading ciphertext; rustls buffers at most one
//!   record's worth of plaintext on each side.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{self, Read, Write};
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

/// Plaintext read from rustls per step.
const PLAIN_CHUNK: usize = 16 * 1024;

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
    closing: Cell<bool>,
    timer: RefCell<Option<TimerHandle>>,
    info: RefCell<Option<TlsInfo>>,
    /// False for `start_tls`: the protocol already had its `connection_made`.
    call_connection_made: Cell<bool>,
    handshake_timeout: Cell<Duration>,
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
            timer: RefCell::new(None),
            info: RefCell::new(None),
            call_connection_made: Cell::new(true),
            handshake_timeout: Cell::new(HANDSHAKE_TIMEOUT),
        })
    }

    fn sock(&self) -> Option<Transport> {
        self.sock.borrow().clone()
    }

    /// Sends whatever rustls has to send.
    fn flush(&self) -> Result<()> {
        let mut out = Vec::new();
        {
            let mut conn = self.conn.borrow_mut();
            while conn.wants_write() {
                conn.write_tls(&mut out)
                    .map_err(|e| Error::io("TLS write", e))?;
            }
        }
        if !out.is_empty() {
            if let Some(s) = self.sock() {
                s.write(&out)?;
            }
        }
        Ok(())
    }

    fn fail(self: &Rc<Self>, err: Error) {
        if let Some(t) = self.timer.borrow_mut().take() {
            t.cancel();
        }
        if !self.user_made.get() {
            self.fail_handshake(err);
        }
        if let Some(s) = self.sock() {
            s.abort();
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
        // rustls takes a bounded amount of plaintext at a time: encrypt as we go, so a large write
        // becomes ciphertext in the socket transport's buffer (flow-controlled as on plain TCP).
        let mut out = Vec::new();
        {
            let mut conn = self.conn.borrow_mut();
            for p in parts {
                let mut rest: &[u8] = p;
                while !rest.is_empty() {
                    let n = conn
                        .writer()
                        .write(rest)
                        .map_err(|e| Error::io("TLS write", e))?;
                    rest = &rest[n..];
                    while conn.wants_write() {
                        conn.write_tls(&mut out)
                            .map_err(|e| Error::io("TLS write", e))?;
                    }
                    if n == 0 && !rest.is_empty() {
                        return Err(Error::io(
                            "TLS write",
                            io::Error::from(io::ErrorKind::WriteZero),
                        ));
                    }
                }
            }
        }
        if !out.is_empty() {
            sock.write(&out)?;
        }
        Ok(())
    }

    pub(crate) fn close(self: &Rc<Self>) {
        if self.closing.replace(true) {
            return;
        }
        self.conn.borrow_mut().send_close_notify();
        let _ = self.flush();
        self.close_socket();
    }

    /// The peer sent `close_notify`: answer with ours (RFC 8446 §6.1; asyncio does too), then
    /// close. Best effort: a peer that closed its socket at once may have reset the connection
    /// already (our TLS 1.3 session tickets reaching its closed socket do that), and failing to
    /// send the answer must not turn the peer's clean close into an error.
    fn answer_close_notify(self: &Rc<Self>) {
        if self.closing.replace(true) {
            return;
        }
        let Some(s) = self.sock() else { return };
        let mut out = Vec::new();
        {
            let mut conn = self.conn.borrow_mut();
            conn.send_close_notify();
            while conn.wants_write() {
                if conn.write_tls(&mut out).is_err() {
                    break;
                }
            }
        }
        if s.get_write_buffer_size() == 0 {
            // Nothing queued before it: send directly, and drop it if the peer is gone.
            let sent = match s.with_socket(|so| so.send_with_flags(&out, crate::sys::SEND_FLAGS)) {
                Some(Ok(n)) => n,
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) =>
                {
                    0
                }
                _ => out.len(),
            };
            out.drain(..sent);
        }
        if !out.is_empty() {
            let _ = s.write(&out);
        }
        self.close_socket();
    }

    /// Closes the socket once its buffer drains; a peer that never reads gets aborted after
    /// [`SHUTDOWN_TIMEOUT`].
    fn close_socket(&self) {
        if let Some(s) = self.sock() {
            s.close();
            let s2 = s.clone();
            // Kept in `timer` (the handshake is over or abandoned by now) so that
            // `connection_lost` cancels it and nothing waits 30 s holding this connection.
            let shutdown = self.lp.call_later(SHUTDOWN_TIMEOUT, move || s2.abort());
            let old = self.timer.replace(shutdown.ok());
            if let Some(t) = old {
                t.cancel();
            }
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
        let mut plain = Vec::new();
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
                    drop(conn);
                    // Send the alert rustls queued, then give up.
                    let _ = st.flush();
                    st.fail(tls_err("handshake", e));
                    return;
                }
                if !conn.is_handshaking() {
                    let mut buf = [0u8; PLAIN_CHUNK];
                    loop {
                        match conn.reader().read(&mut buf) {
                            Ok(0) => {
                                peer_closed = true;
                                break;
                            }
                            Ok(n) => plain.extend_from_slice(&buf[..n]),
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
        if let Err(e) = st.flush() {
            st.fail(e);
            return;
        }
        if !st.user_made.get() && !st.conn.borrow().is_handshaking() {
            st.handshake_done();
        }
        if !plain.is_empty() {
            if let Some(u) = st.user.borrow_mut().as_mut() {
                u.data_received(&plain);
            }
        }
        if peer_closed {
            self.eof_received();
            // Answer the peer's close_notify with ours before closing (RFC 8446 §6.1, and what
            // asyncio does): a peer waiting for it (OpenSSL's `SSL_shutdown`) would otherwise
            // see a truncated stream.
            st.answer_close_notify();
        }
    }

    fn eof_received(&mut self) -> bool {
        let st = &self.st;
        if !st.user_made.get() {
            st.fail(tls_err("handshake", "the peer closed the connection"));
            return false;
        }
        if let Some(u) = st.user.borrow_mut().as_mut() {
            // Its answer is ignored: over TLS the connection closes (asyncio's rule).
            let _ = u.eof_received();
        }
        false
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        let st = &self.st;
        if let Some(t) = st.timer.borrow_mut().take() {
            t.cancel();
        }
        if !st.user_made.get() {
            let err = exc.unwrap_or_else(|| tls_err("handshake", "the connection was lost"));
            st.fail_handshake(err);
        } else if let Some(mut u) = st.user.borrow_mut().take() {
            u.connection_lost(exc);
        }
        st.sock.borrow_mut().take();
        st.user.borrow_mut().take();
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
pub async fn start_tls(transport: &Transport, side: TlsSide) -> Result<Transport> {
    if transport.tls.is_some() {
        return Err(tls_err("start_tls", "the connection already speaks TLS"));
    }
    if transport.is_closing() {
        return Err(Error::Closed);
    }
    let lp = transport.get_loop().clone();
    let Some(user) = transport.inner.take_protocol()? else {
        return Err(Error::Closed);
    };
    let mut proto = match side {
        TlsSide::Client {
            config,
            server_name,
        } => client(&lp, config, &server_name, user, HANDSHAKE_TIMEOUT)?.0,
        TlsSide::Server(config) => server(&lp, config, user, HANDSHAKE_TIMEOUT)?,
    };
    proto.st.call_connection_made.set(false);
    let st = proto.st.clone();
    // Start the handshake on the live socket, then let it feed the TLS layer.
    proto.connection_made(transport.clone());
    transport.inner.put_protocol(Box::new(proto));
    handshake(st, transport).await
}

/// Wraps `user` in a TLS client layer for `server_name`.
pub(crate) fn client(
    lp: &EventLoop,
    config: Arc<ClientConfig>,
    server_name: &str,
    user: Box<dyn Protocol>,
    timeout: Duration,
) -> Result<(TlsProto, Rc<TlsState>)> {
    let name =
        ServerName::try_from(server_name.to_owned()).map_err(|e| tls_err("server name", e))?;
    let conn = rustls::ClientConnection::new(config, name).map_err(|e| tls_err("client", e))?;
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
) -> Result<TlsProto> {
    let conn = rustls::ServerConnection::new(config).map_err(|e| tls_err("server", e))?;
    Ok(TlsProto {
        st: {
            let st = TlsState::new(lp, rustls::Connection::Server(conn), user);
            st.handshake_timeout.set(timeout);
            st
        },
    })
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
            .finish()
    }
}
