//! `create_connection` (PEP 3156; asyncio's `BaseEventLoop.create_connection`).

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol as IpProto, SockAddr, Socket, Type};
use tulipa_futures::rt::EventLoop;

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
}

/// Connects to `host:port` and attaches a protocol made by `factory` (asyncio's
/// `create_connection`). Every resolved address is tried in turn; the error of each failed
/// attempt is reported if all fail. Returns once the protocol's `connection_made` has run.
///
/// # Cancel safety
///
/// Cancel-safe: a cancelled connect closes the half-made socket and returns `Err(Cancelled)`;
/// no protocol is made.
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
    for addr in addrs {
        match connect_addr(addr, &options).await {
            Ok(sock) => return attach(&lp, sock, Box::new(factory())).await,
            Err(e) if e.is_cancelled() => return Err(e),
            Err(e) => errors.push(e),
        }
    }
    Err(match errors.len() {
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
    })
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
    attach(&lp, sock, Box::new(factory())).await
}

async fn attach(lp: &EventLoop, sock: Socket, protocol: Box<dyn Protocol>) -> Result<Transport> {
    let (t, made) = Transport::from_socket(lp, sock, protocol)?;
    made.await?;
    Ok(t)
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
