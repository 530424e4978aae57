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
    /// Reorders the resolved addresses by family before connecting (asyncio's `interleave`):
    /// `n` addresses of the first family, then one of each family in turn. `None` (the
    /// default) means 1 when [`happy_eyeballs_delay`](ConnectOptions::happy_eyeballs_delay) is
    /// set (IPv6, IPv4, IPv6, … for a resolver that answers IPv6 first) and the resolver's
    /// order otherwise; `Some(0)` keeps the resolver's order.
    pub interleave: Option<usize>,
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
/// `connection_made` then `connection_lost(None)`, and the connection does not stay open. The
/// same holds when the future is dropped before it returned (the task aborted, a `select` or
/// timeout from another runtime), also during the TLS handshake.
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
    let mut addrs = getaddrinfo(host, port).await?;
    let interleave = match (options.interleave, options.happy_eyeballs_delay) {
        (Some(n), _) => n,
        (None, Some(_)) => 1,
        (None, None) => 0,
    };
    if interleave > 0 {
        addrs = interleave_families(addrs, interleave);
    }
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

/// Reorders `addrs` by family (asyncio's `_interleave_addrinfos`): the first
/// `first_family_count` addresses of the first family seen, then one address of each family in
/// turn, each family keeping its own order.
fn interleave_families(addrs: Vec<SocketAddr>, first_family_count: usize) -> Vec<SocketAddr> {
    let Some(first_is_v4) = addrs.first().map(SocketAddr::is_ipv4) else {
        return addrs;
    };
    let (first, other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.into_iter().partition(|a| a.is_ipv4() == first_is_v4);
    let lead = first_family_count.saturating_sub(1).min(first.len());
    let mut out = Vec::with_capacity(first.len() + other.len());
    out.extend_from_slice(&first[..lead]);
    let (mut a, mut b) = (first[lead..].iter(), other.iter());
    loop {
        match (a.next(), b.next()) {
            (None, None) => break,
            (x, y) => out.extend(x.into_iter().chain(y).copied()),
        }
    }
    out
}

/// Staggered attempts (Happy Eyeballs). Returns the first connected socket, or `None` with
/// every failure in `errors`. The attempts still running are cancelled however this ends,
/// also when the caller is cancelled: `running` keeps every attempt (`wait` gets clones), so
/// its guard reaches them all.
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
            let attempt = spawn(async move { Ok(connect_addr(addr, &o).await?) })?;
            attempt.set_name(format!("happy eyeballs: connect to {addr}"));
            running.0.push(attempt.into());
        }
        if running.0.is_empty() {
            return Ok(None);
        }
        let limit = next.peek().map(|_| delay);
        let (done, pending) =
            wait(running.0.iter().cloned(), limit, ReturnWhen::FirstCompleted).await?;
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
/// # Cancel safety
///
/// The socket is taken either way. Cancelled (or dropped) before it returned, the transport
/// is aborted: the protocol still gets `connection_made`, then `connection_lost(None)`, and
/// the socket is closed; nothing was read from or written to it.
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
        // A failed, cancelled or dropped wait (for connection_made, then for the handshake)
        // leaves nobody holding the socket: the guard aborts it.
        let guard = AbortUnlessDone::new(&t);
        made.await?;
        let tls = crate::tls::handshake(st, &t).await?;
        guard.disarm();
        return Ok(tls);
    }
    let _ = (options, host);
    let (t, made) = Transport::from_socket(lp, sock, protocol)?;
    until_made(&t, made).await?;
    Ok(t)
}

/// Waits for the protocol's `connection_made`. When the wait fails (the connecting task was
/// cancelled) or is dropped unfinished (the task was aborted, a `select` or timeout outside
/// Tulipa dropped the connect), nobody will ever hold the transport: it is aborted, so that the
/// connection does not stay open with a protocol no one can reach (asyncio's
/// `create_connection` closes its transport the same way).
pub(crate) async fn until_made(t: &Transport, made: TaskFuture<()>) -> Result<()> {
    let guard = AbortUnlessDone::new(t);
    made.await?;
    guard.disarm();
    Ok(())
}

/// Owns a transport that a connect has not handed to its caller yet, and aborts it when
/// dropped before [`disarm`](AbortUnlessDone::disarm): on an error returned with `?` and when
/// the connecting future itself is dropped mid-await. The abort still lets the scheduled
/// `connection_made` run, then `connection_lost(None)` takes the protocol out of the
/// transport, which breaks the protocol <-> transport cycle and closes the socket.
pub(crate) struct AbortUnlessDone(Option<Transport>);

impl AbortUnlessDone {
    pub(crate) fn new(t: &Transport) -> AbortUnlessDone {
        AbortUnlessDone(Some(t.clone()))
    }

    /// The transport reached its caller: keep it open.
    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortUnlessDone {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            tracing::debug!(
                transport = ?t,
                "connect or start_tls abandoned before it returned its transport; aborting it"
            );
            t.abort();
        }
    }
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

#[cfg(test)]
mod tests {
    use std::net::TcpStream;

    use super::*;

    fn v4(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn v6(port: u16) -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], port))
    }

    /// A listener on 127.0.0.1 whose accept queue is full (backlog 0, one connection nobody
    /// accepts): the kernel drops further SYNs, so a connect to it stays in progress.
    fn full_listener() -> (Socket, TcpStream, SocketAddr) {
        let l = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        l.bind(&SockAddr::from(v4(0))).expect("bind");
        l.listen(0).expect("listen");
        let addr = l.local_addr().expect("addr").as_socket().expect("IPv4");
        let filler =
            TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("the first connect");
        (l, filler, addr)
    }

    #[test]
    fn interleave_alternates_families_after_the_first_ones() {
        let addrs = vec![v6(1), v6(2), v6(3), v4(4), v4(5)];
        assert_eq!(
            interleave_families(addrs.clone(), 1),
            [v6(1), v4(4), v6(2), v4(5), v6(3)]
        );
        assert_eq!(
            interleave_families(addrs.clone(), 2),
            [v6(1), v6(2), v4(4), v6(3), v4(5)]
        );
        assert_eq!(
            interleave_families(vec![v4(1), v4(2), v6(3)], 1),
            [v4(1), v6(3), v4(2)]
        );
        assert_eq!(interleave_families(vec![v4(1), v4(2)], 1), [v4(1), v4(2)]);
        assert_eq!(interleave_families(addrs.clone(), 9), addrs);
        assert!(interleave_families(Vec::new(), 1).is_empty());
    }

    #[test]
    fn a_stalled_first_address_is_overtaken_after_the_delay() {
        // Virtual time: the clock jumps to the next timer whenever no fd is ready, so the
        // hour of delay passes at once, and only if the attempt timer is what moves things on.
        let lp = tulipa_loop::EventLoop::new_virtual().expect("a virtual loop");
        let (_stalled, _filler, stalled_addr) = full_listener();
        let good = std::net::TcpListener::bind(v4(0)).expect("bind");
        let good_addr = good.local_addr().expect("addr");
        let delay = Duration::from_secs(3600);
        let lp2 = lp.clone();
        let (peer, elapsed) = tulipa_futures::run_until_complete(&lp, async move {
            let start = lp2.time();
            let mut errors = Vec::new();
            let sock = staggered(
                vec![stalled_addr, good_addr],
                delay,
                &ConnectOptions::default(),
                &mut errors,
            )
            .await?
            .expect("the second address connects");
            assert!(errors.is_empty(), "{errors:?}");
            let peer = sock.peer_addr().ok().and_then(|a| a.as_socket());
            Ok((peer, lp2.time() - start))
        })
        .expect("the test body");
        assert_eq!(peer, Some(good_addr), "connected to the second address");
        assert!(
            elapsed >= delay && elapsed < 2 * delay,
            "the second attempt started after the delay: {elapsed:?}"
        );
    }
}
