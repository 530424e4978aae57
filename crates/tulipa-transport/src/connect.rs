//! `create_connection` (PEP 3156; asyncio's `BaseEventLoop.create_connection`).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol as IpProto, SockAddr, Socket, Type};
use std::time::Duration;

use tulipa_futures::rt::EventLoop;
use tulipa_futures::{spawn, wait, Future as TaskFuture, ReturnWhen};

use crate::dns::getaddrinfo;
use crate::error::{Error, Result};
use crate::protocol::Protocol;
use crate::transport::Transport;

/// Options of [`create_connection`]; `Default` is what asyncio does by default.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct ConnectOptions {
    /// Bind the socket to this local address before connecting.
    pub local_addr: Option<SocketAddr>,
    /// Happy Eyeballs (RFC 8305, asyncio's `happy_eyeballs_delay`): start the next address's
    /// attempt when the previous one has not succeeded after this delay, keep both running, use
    /// the first that connects and cancel the others. `None`: one address after the other.
    pub happy_eyeballs_delay: Option<Duration>,
    /// Speak TLS with this client configuration (see [`crate::tls`]).
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<crate::tls::ClientConfig>>,
    /// The name to verify the server's certificate against and send as SNI; defaults to `host`.
    pub server_hostname: Option<String>,
    /// TLS handshake limit (default [`crate::tls::HANDSHAKE_TIMEOUT`], 60 s).
    pub tls_handshake_timeout: Option<Duration>,
}

/// Connects to `host:port` and attaches a protocol made by `factory` (asyncio's
/// `create_connection`). Every resolved address is tried in turn (or staggered, with
/// [`ConnectOptions::happy_eyeballs_delay`]); the error of each failed attempt is reported if
/// all fail. Returns once the protocol's `connection_made` has run.
///
/// # Cancel safety
///
/// Cancel-safe: a cancelled connect closes the half-made socket and returns `Err(Cancelled)`.
/// If the protocol was already made, its transport is aborted: the protocol gets
/// `connection_made` then `connection_lost(None)`, and the connection does not stay open.
///
/// # Errors
///
/// [`Error::Resolve`] when the name does not resolve; [`Error::Io`] when every address refused
/// (for example `ConnectionRefused`); cancellation.
///
/// # Examples
///
/// ```no_run
/// # use tulipa_transport::{create_connection, ConnectOptions, Error, Protocol, Transport};
/// # struct P; impl Protocol for P {
/// #   fn connection_made(&mut self, t: Transport) { let _ = t.write(b"GET / HTTP/1.0\r\n\r\n"); }
/// #   fn data_received(&mut self, _d: &[u8]) {} fn connection_lost(&mut self, _e: Option<Error>) {} }
/// tulipa_futures::run(async {
///     let t = create_connection(|| P, "example.org", 80, ConnectOptions::default()).await?;
///     t.close();
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub async fn create_connection<P: Protocol>(
    factory: impl FnOnce() -> P,
    host: &str,
    port: u16,
    options: ConnectOptions,
) -> Result<Transport> {
    let lp = EventLoop::running()?;
    let addrs = getaddrinfo(host, port).await?;
    let mut errors = Vec::new();
    if let Some(delay) = options.happy_eyeballs_delay {
        match staggered(addrs, delay, &options, &mut errors).await? {
            Some(sock) => return attach(&lp, sock, Box::new(factory()), &options, host).await,
            None => return Err(combine(host, port, errors)),
        }
    }
    for addr in addrs {
        match connect_addr(addr, &options).await {
            Ok(sock) => return attach(&lp, sock, Box::new(factory()), &options, host).await,
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => errors.push(e),
        }
    }
    Err(combine(host, port, errors))
}

/// Staggered attempts (Happy Eyeballs). Returns the first connected socket, or `None` with
/// every failure in `errors`. The attempts still running are cancelled however this ends.
async fn staggered(
    addrs: Vec<SocketAddr>,
    delay: Duration,
    options: &ConnectOptions,
    errors: &mut Vec<Error>,
) -> Result<Option<Socket>> {
    let mut next = addrs.into_iter().peekable();
    let mut running = CancelOnDrop(Vec::new());
    loop {
        if let Some(addr) = next.next() {
            let o = options.clone();
            running
                .0
                .push(spawn(async move { Ok(connect_addr(addr, &o).await?) })?.into());
        }
        if running.0.is_empty() {
            return Ok(None);
        }
        let limit = next.peek().map(|_| delay);
        let (done, pending) = wait(running.0.drain(..), limit, ReturnWhen::FirstCompleted).await?;
        running.0 = pending;
        for attempt in done {
            match attempt.take_result() {
                Ok(sock) => return Ok(Some(sock)),
                Err(e) => errors.push(e.into()),
            }
        }
    }
}

/// Cancels the attempts still running when a staggered connect ends.
struct CancelOnDrop(Vec<TaskFuture<Socket>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        for f in &self.0 {
            f.cancel(Some("another address connected first"));
        }
    }
}

fn combine(host: &str, port: u16, mut errors: Vec<Error>) -> Error {
    match errors.len() {
        1 => errors.remove(0),
        _ => Error::io(
            format!("connect to {host}:{port}"),
            io::Error::new(
                io::ErrorKind::ConnectionRefused,
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        ),
    }
}

/// Attaches a protocol to an already connected socket (asyncio's `create_connection(sock=...)`).
///
/// # Errors
///
/// When the socket cannot be set up, or the loop is closed.
pub async fn connect_socket<P: Protocol>(
    sock: Socket,
    factory: impl FnOnce() -> P,
) -> Result<Transport> {
    let lp = EventLoop::running()?;
    let (t, made) = Transport::from_socket(&lp, sock, Box::new(factory()))?;
    until_made(&t, made).await?;
    Ok(t)
}

async fn attach(
    lp: &EventLoop,
    sock: Socket,
    protocol: Box<dyn Protocol>,
    options: &ConnectOptions,
    host: &str,
) -> Result<Transport> {
    #[cfg(feature = "tls")]
    if let Some(cfg) = &options.tls {
        let name = options.server_hostname.as_deref().unwrap_or(host);
        let limit = options
            .tls_handshake_timeout
            .unwrap_or(crate::tls::HANDSHAKE_TIMEOUT);
        let (proto, st) = crate::tls::client(lp, cfg.clone(), name, protocol, limit)?;
        let (t, made) = Transport::from_socket(lp, sock, Box::new(proto))?;
        until_made(&t, made).await?;
        // A failed or cancelled handshake leaves nobody holding the socket: abort it.
        return match crate::tls::handshake(st, &t).await {
            Ok(tls) => Ok(tls),
            Err(e) => {
                t.abort();
                Err(e)
            }
        };
    }
    let _ = (options, host);
    let (t, made) = Transport::from_socket(lp, sock, protocol)?;
    until_made(&t, made).await?;
    Ok(t)
}

/// Waits for the protocol's `connection_made`. When the wait fails (the connecting task was
/// cancelled), nobody will ever hold the transport: it is aborted, so that the connection does
/// not stay open with a protocol no one can reach (asyncio's `create_connection` closes its
/// transport the same way).
pub(crate) async fn until_made(t: &Transport, made: TaskFuture<()>) -> Result<()> {
    if let Err(e) = made.await {
        t.abort();
        return Err(e.into());
    }
    Ok(())
}

/// A non-blocking connect to one address.
pub(crate) async fn connect_addr(addr: SocketAddr, options: &ConnectOptions) -> Result<Socket> {
    let op = || format!("connect to {addr}");
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(IpProto::TCP),
    )
    .map_err(|e| Error::io(op(), e))?;
    sock.set_nonblocking(true).map_err(|e| Error::io(op(), e))?;
    if let Some(local) = options.local_addr {
        sock.bind(&SockAddr::from(local))
            .map_err(|e| Error::io(format!("bind to {local}"), e))?;
    }
    crate::sock::sock_connect(&sock, &SockAddr::from(addr)).await?;
    Ok(sock)
}
