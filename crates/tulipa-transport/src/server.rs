//! Servers: `create_server` and [`Server`] (PEP 3156 `start_serving`; asyncio's `Server`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::time::Duration;

use socket2::{Domain, Protocol as IpProto, SockAddr, Socket, Type};
use tulipa_futures::rt::{EventLoop, TimerHandle};
use tulipa_futures::sync::Event;

use crate::dns::getaddrinfo;
use crate::error::{Error, Result};
use crate::protocol::ProtocolFactory;
use crate::transport::{Inner as TransportInner, Transport};

/// Options of [`create_server`]; `Default` is asyncio's defaults.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServerOptions {
    /// The listen backlog (default 100, as asyncio).
    pub backlog: i32,
    /// `SO_REUSEADDR` (default true on Unix, as asyncio).
    pub reuse_address: bool,
    /// `SO_REUSEPORT`: several sockets (on several loops and threads) share the port.
    pub reuse_port: bool,
    /// Start accepting at once (default true); else call [`Server::start_serving`].
    pub start_serving: bool,
    /// Speak TLS with this server configuration (see [`crate::tls`]).
    #[cfg(feature = "tls")]
    pub tls: Option<std::sync::Arc<crate::tls::ServerConfig>>,
    /// TLS handshake limit per connection (default [`crate::tls::HANDSHAKE_TIMEOUT`], 60 s).
    #[cfg(feature = "tls")]
    pub tls_handshake_timeout: Duration,
    /// How long a TLS connection's `close` waits for the client's `close_notify` before
    /// aborting (asyncio's `ssl_shutdown_timeout`; default [`crate::tls::SHUTDOWN_TIMEOUT`],
    /// 30 s; must be positive).
    #[cfg(feature = "tls")]
    pub tls_shutdown_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            backlog: 100,
            reuse_address: true,
            reuse_port: false,
            start_serving: true,
            #[cfg(feature = "tls")]
            tls: None,
            #[cfg(feature = "tls")]
            tls_handshake_timeout: crate::tls::HANDSHAKE_TIMEOUT,
            #[cfg(feature = "tls")]
            tls_shutdown_timeout: crate::tls::SHUTDOWN_TIMEOUT,
        }
    }
}

struct State {
    lp: EventLoop,
    sockets: RefCell<Vec<Socket>>,
    factory: Rc<dyn ProtocolFactory>,
    backlog: i32,
    serving: Cell<bool>,
    closed: Cell<bool>,
    clients: RefCell<Vec<Client>>,
    /// Accepted connections whose `connection_lost` has not run yet (asyncio's
    /// `_active_count`): counted up at accept, down through the transport's `Detach` hook.
    active: Cell<usize>,
    /// The length of `clients` at which the dead entries are next dropped (see `add_client`).
    prune_at: Cell<usize>,
    closed_event: Event,
    retry: RefCell<Option<TimerHandle>>,
    unix_path: RefCell<Option<std::path::PathBuf>>,
    #[cfg(feature = "tls")]
    tls: RefCell<Option<TlsSettings>>,
}

/// What accepted connections speak TLS with.
#[cfg(feature = "tls")]
#[derive(Clone)]
struct TlsSettings {
    config: std::sync::Arc<crate::tls::ServerConfig>,
    handshake_timeout: Duration,
    shutdown_timeout: Duration,
}

/// An accepted connection, as `close_clients` and `abort_clients` reach it: the socket
/// transport, and for a TLS connection its TLS layer, whose `close` sends `close_notify`.
struct Client {
    inner: Weak<TransportInner>,
    #[cfg(feature = "tls")]
    tls: Option<Weak<crate::tls::TlsState>>,
}

impl Client {
    fn alive(&self) -> bool {
        self.inner.strong_count() > 0
    }

    /// The transport the connection's protocol was given (the TLS one over TLS).
    fn transport(&self) -> Option<Transport> {
        let inner = self.inner.upgrade()?;
        #[cfg(feature = "tls")]
        let tls = self.tls.as_ref().and_then(Weak::upgrade);
        #[cfg(not(feature = "tls"))]
        let tls = None;
        Some(Transport { inner, tls })
    }
}

/// A listening server (asyncio's `Server`); a cheap handle (`Clone`).
#[derive(Clone)]
pub struct Server {
    state: Rc<State>,
}

/// Listens on every address `host` resolves to, port `port` (0: a free port, the same for all
/// sockets is not guaranteed for a named host), and attaches a protocol made by `factory` to each accepted
/// connection (asyncio's `create_server`).
///
/// An empty `host` (asyncio's `None` or `""`) means every interface: one socket on `0.0.0.0`
/// and, where the system has IPv6, one on `::` (with `IPV6_V6ONLY`, as asyncio), both on the
/// same port (with port 0, the one the kernel picked for the first; when that port is taken for
/// IPv6, both sockets are made again on a fresh port, up to 8 times in all).
///
/// # Cancel safety
///
/// Cancel-safe: the only wait is the resolution of `host`; cancelled there, nothing was bound.
///
/// # Errors
///
/// [`Error::Resolve`]; [`Error::Io`] for bind or listen failures, for example
/// `AddrInUse` when the port is taken (with an empty host and port 0: when every attempt found
/// its port taken for IPv6).
pub async fn create_server(
    factory: impl ProtocolFactory,
    host: &str,
    port: u16,
    options: ServerOptions,
) -> Result<Server> {
    let lp = EventLoop::running()?;
    #[cfg(feature = "tls")]
    if options.tls.is_some() && options.tls_shutdown_timeout.is_zero() {
        return Err(Error::Futures(tulipa_futures::Error::InvalidArgument(
            "tls_shutdown_timeout must be positive",
        )));
    }
    let sockets = if host.is_empty() {
        listen_all_interfaces(port, &options)?
    } else {
        let mut sockets = Vec::new();
        for addr in getaddrinfo(host, port).await? {
            sockets.push(listen_socket(addr, &options)?);
        }
        sockets
    };
    let server = Server::from_sockets(&lp, sockets, Rc::new(factory), options.backlog)?;
    #[cfg(feature = "tls")]
    {
        *server.state.tls.borrow_mut() = options.tls.clone().map(|config| TlsSettings {
            config,
            handshake_timeout: options.tls_handshake_timeout,
            shutdown_timeout: options.tls_shutdown_timeout,
        });
    }
    if options.start_serving {
        server.start_serving()?;
    }
    Ok(server)
}

/// How many fresh port-0 pairs [`create_server`] with an empty host and port 0 tries before it
/// gives up: each try binds `0.0.0.0:0`, then `[::]` on the port the kernel picked, and starts
/// over when another socket holds that port for IPv6.
const ALL_INTERFACES_PORT_ATTEMPTS: usize = 8;

/// The sockets of a server on every interface: `0.0.0.0`, then `::` on the same port unless
/// the system has no IPv6.
fn listen_all_interfaces(port: u16, o: &ServerOptions) -> Result<Vec<Socket>> {
    listen_all_interfaces_with(port, o, listen_socket)
}

/// [`listen_all_interfaces`] with the function that makes one listening socket (a test makes
/// the IPv6 port taken through it).
fn listen_all_interfaces_with(
    port: u16,
    o: &ServerOptions,
    mut listen: impl FnMut(SocketAddr, &ServerOptions) -> Result<Socket>,
) -> Result<Vec<Socket>> {
    let any6 = |port| SocketAddr::from(([0u16; 8], port));
    let mut attempt = 1;
    loop {
        let v4 = listen(SocketAddr::from(([0, 0, 0, 0], port)), o)?;
        let chosen = match port {
            0 => v4
                .local_addr()
                .map_err(|e| Error::io("local address of 0.0.0.0:0", e))?
                .as_socket()
                .map_or(0, |a| a.port()),
            p => p,
        };
        match listen(any6(chosen), o) {
            Ok(v6) => return Ok(vec![v4, v6]),
            Err(e) if no_ipv6(&e) => {
                tracing::debug!(error = %e, "no IPv6: listening on 0.0.0.0 only");
                return Ok(vec![v4]);
            }
            // The port the kernel gave the IPv4 socket is taken for IPv6: start over with a
            // fresh pair, so that both sockets share one port as documented.
            Err(e)
                if port == 0
                    && e.io_kind() == Some(io::ErrorKind::AddrInUse)
                    && attempt < ALL_INTERFACES_PORT_ATTEMPTS =>
            {
                tracing::debug!(
                    port = chosen,
                    attempt,
                    error = %e,
                    "port taken for IPv6; retrying with another port for both families"
                );
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// True when `e`, from making or binding an IPv6 socket, says the system has no IPv6: the
/// family or protocol is not supported (`EAFNOSUPPORT`, `EPROTONOSUPPORT`, which std reports
/// with no specific kind) or `::` is not available (`EADDRNOTAVAIL`).
fn no_ipv6(e: &Error) -> bool {
    let Error::Io { source, .. } = e else {
        return false;
    };
    matches!(
        source.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::EADDRNOTAVAIL)
    ) || matches!(
        source.kind(),
        io::ErrorKind::Unsupported | io::ErrorKind::AddrNotAvailable
    )
}

fn listen_socket(addr: SocketAddr, o: &ServerOptions) -> Result<Socket> {
    let op = |what: &str| format!("{what} {addr}");
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(IpProto::TCP),
    )
    .map_err(|e| Error::io(op("socket for"), e))?;
    if o.reuse_address {
        sock.set_reuse_address(true)
            .map_err(|e| Error::io(op("SO_REUSEADDR on"), e))?;
    }
    if o.reuse_port {
        sock.set_reuse_port(true)
            .map_err(|e| Error::io(op("SO_REUSEPORT on"), e))?;
    }
    if addr.is_ipv6() {
        // One socket per family, as asyncio does.
        let _ = sock.set_only_v6(true);
    }
    sock.set_nonblocking(true)
        .map_err(|e| Error::io(op("set_nonblocking on"), e))?;
    sock.bind(&SockAddr::from(addr))
        .map_err(|e| Error::io(op("bind to"), e))?;
    sock.listen(o.backlog)
        .map_err(|e| Error::io(op("listen on"), e))?;
    Ok(sock)
}

impl Server {
    /// A server over listening sockets you made yourself (asyncio's `create_server(sock=…)`):
    /// they must be bound and listening already. They are made non-blocking here (the loop
    /// accepts until `accept` would block); call [`start_serving`](Server::start_serving) to
    /// accept. `backlog` bounds the connections accepted per readiness event.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when a socket cannot be made non-blocking, and (kind `InvalidInput`) when a
    /// socket is not a byte stream (`SOCK_STREAM`), as asyncio refuses one: the transports of
    /// accepted connections read a stream.
    pub fn from_sockets(
        lp: &EventLoop,
        sockets: Vec<Socket>,
        factory: Rc<dyn ProtocolFactory>,
        backlog: i32,
    ) -> Result<Server> {
        for sock in &sockets {
            match sock.r#type() {
                Ok(t) if t == socket2::Type::STREAM => {}
                Ok(t) => {
                    return Err(Error::io(
                        "from_sockets",
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("a stream socket was expected, got {t:?}"),
                        ),
                    ))
                }
                Err(e) => return Err(Error::io("getsockopt(SO_TYPE) on a listening socket", e)),
            }
            sock.set_nonblocking(true)
                .map_err(|e| Error::io("set_nonblocking on a listening socket", e))?;
        }
        Ok(Server {
            state: Rc::new(State {
                lp: lp.clone(),
                sockets: RefCell::new(sockets),
                factory,
                backlog: backlog.max(1),
                serving: Cell::new(false),
                closed: Cell::new(false),
                clients: RefCell::new(Vec::new()),
                active: Cell::new(0),
                prune_at: Cell::new(MIN_PRUNE),
                closed_event: Event::new(),
                retry: RefCell::new(None),
                unix_path: RefCell::new(None),
                #[cfg(feature = "tls")]
                tls: RefCell::new(None),
            }),
        })
    }

    /// Removes this Unix socket file when the server closes.
    pub(crate) fn remove_on_close(&self, path: std::path::PathBuf) {
        *self.state.unix_path.borrow_mut() = Some(path);
    }

    /// Starts accepting connections (idempotent).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] after [`close`](Server::close); a loop error when a socket cannot be
    /// watched.
    pub fn start_serving(&self) -> Result<()> {
        let st = &self.state;
        if st.closed.get() {
            return Err(Error::Closed);
        }
        if st.serving.replace(true) {
            return Ok(());
        }
        for sock in st.sockets.borrow().iter() {
            let fd = sock.as_raw_fd();
            let weak = Rc::downgrade(&self.state);
            st.lp.add_reader(fd, move || {
                if let Some(st) = weak.upgrade() {
                    accept_ready(&st, fd);
                }
            })?;
        }
        Ok(())
    }

    /// True while accepting.
    pub fn is_serving(&self) -> bool {
        self.state.serving.get()
    }

    /// The listening addresses.
    pub fn sockets(&self) -> Vec<SockAddr> {
        self.state
            .sockets
            .borrow()
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    /// The first listening address as an IP socket address (handy with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockets().first().and_then(SockAddr::as_socket)
    }

    /// Stops listening and closes the listening sockets; connections already accepted go on
    /// (asyncio's `Server.close`). Idempotent.
    pub fn close(&self) {
        let st = &self.state;
        if st.closed.replace(true) {
            return;
        }
        stop_accepting(st);
        st.sockets.borrow_mut().clear();
        if let Some(p) = st.unix_path.borrow_mut().take() {
            let _ = std::fs::remove_file(p);
        }
        if let Some(t) = st.retry.borrow_mut().take() {
            t.cancel();
        }
        self.check_closed();
    }

    fn live_clients(&self) -> Vec<Transport> {
        let mut clients = self.state.clients.borrow_mut();
        clients.retain(Client::alive);
        clients.iter().filter_map(Client::transport).collect()
    }

    /// Closes every accepted connection that is still open (asyncio's `close_clients`). A TLS
    /// connection is closed through its TLS layer: it sends `close_notify` and waits for the
    /// client's (up to the shutdown timeout) before the socket closes, where asyncio closes the
    /// socket underneath TLS. One still in its handshake is aborted.
    pub fn close_clients(&self) {
        for t in self.live_clients() {
            t.close();
        }
    }

    /// Aborts every accepted connection (asyncio's `abort_clients`).
    pub fn abort_clients(&self) {
        for t in self.live_clients() {
            t.abort();
        }
    }

    fn check_closed(&self) {
        check_closed(&self.state);
    }

    /// Waits until the server is closed and every connection it accepted is lost: each one's
    /// `connection_lost` has run, so its buffered data was sent or dropped and its socket is
    /// closed (asyncio's `wait_closed`, 3.12 semantics: `close`, then `close_clients`, then
    /// `wait_closed` returns once the clients' write buffers are flushed). Woken by the last
    /// `connection_lost`, not by polling.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits; cancelling it changes nothing about the server.
    ///
    /// # Errors
    ///
    /// [`Error::Futures`] when cancelled.
    pub async fn wait_closed(&self) -> Result<()> {
        loop {
            self.check_closed();
            if self.state.closed_event.is_set() {
                return Ok(());
            }
            self.state.closed_event.wait().await?;
        }
    }

    /// Serves until cancelled; on cancellation the server is closed (asyncio's `serve_forever`).
    /// The accepted connections go on; [`wait_closed`](Server::wait_closed) waits for them.
    ///
    /// # Cancel safety
    ///
    /// Cancelling it is how it ends: the server stops listening (as [`close`](Server::close)),
    /// nothing else is lost.
    ///
    /// # Errors
    ///
    /// [`Error::Futures`] with the cancellation that ended it; [`Error::Closed`] when the
    /// server is closed already.
    pub async fn serve_forever(&self) -> Result<()> {
        self.start_serving()?;
        let never = tulipa_futures::sync::Event::new();
        let r = never.wait().await;
        self.close();
        r.map_err(Error::from)
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // A server dropped without `close`: unregister the listening sockets before they close.
        stop_accepting(self);
    }
}

/// Wakes `wait_closed` once the server is closed and no accepted connection is left.
fn check_closed(st: &State) {
    if st.closed.get() && st.active.get() == 0 {
        st.closed_event.set();
    }
}

/// The server hears of each accepted connection's end through its transport (asyncio's
/// `Server._detach`): when its `connection_lost` has run, or when the transport is freed without
/// one. A connection that loses its socket after its loop closed gets no `connection_lost`, so it
/// stays counted for as long as its protocol holds the transport; no `wait_closed` can run on a
/// closed loop anyway.
impl crate::transport::Detach for State {
    fn detach(&self) {
        self.active.set(self.active.get().saturating_sub(1));
        check_closed(self);
    }
}

fn stop_accepting(st: &State) {
    if st.serving.replace(false) {
        for sock in st.sockets.borrow().iter() {
            st.lp.remove_reader(sock.as_raw_fd());
        }
    }
}

/// `clients` is pruned when it reaches at least this many entries.
const MIN_PRUNE: usize = 64;

/// Remembers an accepted connection for `close_clients` / `abort_clients`. A `Weak` keeps its
/// allocation alive after the connection is gone, so the dead entries are dropped whenever the
/// list has doubled since the last pruning: amortised O(1) per accept, and the list stays
/// within twice the number of live connections (plus `MIN_PRUNE`) on a server that runs for
/// ever.
fn add_client(st: &State, client: Client) {
    let mut clients = st.clients.borrow_mut();
    clients.push(client);
    if clients.len() >= st.prune_at.get() {
        clients.retain(Client::alive);
        st.prune_at.set((2 * clients.len()).max(MIN_PRUNE));
    }
}

/// Accepts a connection, and says whether the socket is non-blocking already: where
/// `accept4` exists it is called with `SOCK_NONBLOCK | SOCK_CLOEXEC` (so the transport need not
/// set the flag with two `fcntl`s); elsewhere socket2's `accept` sets close-on-exec and the
/// transport makes the socket non-blocking.
fn accept_nonblocking(listener: &Socket) -> io::Result<(Socket, SockAddr, bool)> {
    #[cfg(any(
        target_os = "android",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "fuchsia",
        target_os = "illumos",
        target_os = "linux",
        target_os = "netbsd",
        target_os = "openbsd",
    ))]
    {
        let flags = std::ffi::c_int::from(Type::from(0).nonblocking().cloexec());
        listener
            .accept4(flags)
            .map(|(sock, peer)| (sock, peer, true))
    }
    #[cfg(not(any(
        target_os = "android",
        target_os = "dragonfly",
        target_os = "freebsd",
        target_os = "fuchsia",
        target_os = "illumos",
        target_os = "linux",
        target_os = "netbsd",
        target_os = "openbsd",
    )))]
    {
        listener.accept().map(|(sock, peer)| (sock, peer, false))
    }
}

/// Accepts up to `backlog` connections per readiness, as asyncio does.
fn accept_ready(st: &Rc<State>, fd: std::os::fd::RawFd) {
    for _ in 0..st.backlog {
        let accepted = {
            let sockets = st.sockets.borrow();
            let Some(listener) = sockets.iter().find(|s| s.as_raw_fd() == fd) else {
                return;
            };
            accept_nonblocking(listener)
        };
        match accepted {
            Ok((sock, peer, nonblocking)) => {
                let protocol = st.factory.make();
                #[cfg(feature = "tls")]
                let (protocol, tls): (Box<dyn crate::protocol::Protocol>, _) = match st
                    .tls
                    .borrow()
                    .clone()
                {
                    Some(o) => {
                        match crate::tls::server(&st.lp, o.config, protocol, o.handshake_timeout) {
                            Ok((p, tls)) => {
                                tls.set_shutdown_timeout(o.shutdown_timeout);
                                (Box::new(p), Some(Rc::downgrade(&tls)))
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cannot start TLS on an accepted connection");
                                continue;
                            }
                        }
                    }
                    None => (protocol, None),
                };
                match Transport::from_accepted(&st.lp, sock, peer, nonblocking, protocol) {
                    Ok((t, _made)) => {
                        // Counted until its `connection_lost` has run (asyncio's `_attach`).
                        st.active.set(st.active.get() + 1);
                        let me: Weak<dyn crate::transport::Detach> = Rc::downgrade(st) as _;
                        t.set_detach(me);
                        add_client(
                            st,
                            Client {
                                inner: Rc::downgrade(&t.inner),
                                #[cfg(feature = "tls")]
                                tls,
                            },
                        );
                    }
                    Err(e) => tracing::error!(error = %e, "cannot set up an accepted connection"),
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => {
                // Out of fds or memory: stop accepting for a second instead of spinning.
                tracing::error!(error = %e, "accept failed; pausing accepts for 1 s");
                stop_accepting(st);
                let weak = Rc::downgrade(st);
                let timer = st.lp.call_later(Duration::from_secs(1), move || {
                    if let Some(st) = weak.upgrade() {
                        if !st.closed.get() {
                            let _ = Server { state: st }.start_serving();
                        }
                    }
                });
                if let Ok(t) = timer {
                    *st.retry.borrow_mut() = Some(t);
                }
                return;
            }
        }
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field(
                "sockets",
                &self
                    .sockets()
                    .iter()
                    .map(SockAddr::as_socket)
                    .collect::<Vec<_>>(),
            )
            .field("serving", &self.is_serving())
            .field("closed", &self.state.closed.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{create_connection, ConnectOptions, Protocol};

    /// Keeps its transport until the connection is lost; counts the losses.
    struct Quiet(Option<Transport>, Rc<Cell<usize>>);

    impl Protocol for Quiet {
        fn connection_made(&mut self, t: Transport) {
            self.0 = Some(t);
        }
        fn data_received(&mut self, _data: &[u8]) {}
        fn connection_lost(&mut self, _exc: Option<Error>) {
            self.0 = None;
            self.1.set(self.1.get() + 1);
        }
    }

    fn port_of(s: &Socket) -> u16 {
        s.local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map_or(0, |a| a.port())
    }

    #[test]
    fn a_missing_address_family_means_no_ipv6() {
        // std gives EAFNOSUPPORT and EPROTONOSUPPORT no specific kind: the raw code tells.
        for code in [
            libc::EAFNOSUPPORT,
            libc::EPROTONOSUPPORT,
            libc::EADDRNOTAVAIL,
        ] {
            let e = Error::io("socket for [::]:0", io::Error::from_raw_os_error(code));
            assert!(no_ipv6(&e), "{e}");
        }
        for code in [libc::EADDRINUSE, libc::EACCES] {
            let e = Error::io("bind to [::]:80", io::Error::from_raw_os_error(code));
            assert!(!no_ipv6(&e), "{e}");
        }
        assert!(!no_ipv6(&Error::Closed));
    }

    #[test]
    fn every_interface_without_ipv6_is_0_0_0_0_alone() {
        // As a kernel without IPv6 answers `socket(AF_INET6, …)`.
        let sockets = listen_all_interfaces_with(0, &ServerOptions::default(), |addr, o| {
            if addr.is_ipv6() {
                let e = io::Error::from_raw_os_error(libc::EAFNOSUPPORT);
                return Err(Error::io(format!("socket for {addr}"), e));
            }
            listen_socket(addr, o)
        })
        .expect("listening on 0.0.0.0 is enough");
        assert_eq!(sockets.len(), 1);
        let addr = sockets[0].local_addr().ok().and_then(|a| a.as_socket());
        assert!(
            addr.is_some_and(|a| a.is_ipv4() && a.port() != 0),
            "{addr:?}"
        );
    }

    #[test]
    fn every_interface_on_port_0_keeps_one_port_when_the_first_is_taken_for_ipv6() {
        // The first port the kernel gives 0.0.0.0 is taken for IPv6 by another socket (bound
        // without SO_REUSEADDR, so the bind conflicts): both sockets start over elsewhere.
        let mut blockers = Vec::new();
        let mut v6_binds = 0;
        let sockets = listen_all_interfaces_with(0, &ServerOptions::default(), |addr, o| {
            if addr.is_ipv6() {
                v6_binds += 1;
                if v6_binds == 1 {
                    let b = Socket::new(Domain::IPV6, Type::STREAM, None)
                        .map_err(|e| Error::io("blocker", e))?;
                    b.set_only_v6(true).map_err(|e| Error::io("blocker", e))?;
                    b.bind(&SockAddr::from(addr))
                        .map_err(|e| Error::io("blocker", e))?;
                    blockers.push(b);
                }
            }
            listen_socket(addr, o)
        });
        let sockets = match sockets {
            Err(e) if no_ipv6(&e) || e.to_string().starts_with("blocker") => {
                println!("skipped: no IPv6 here ({e})");
                return;
            }
            r => r.expect("a pair on one port"),
        };
        assert_eq!(sockets.len(), 2, "one socket per family");
        assert!(v6_binds >= 2, "the taken port was given up");
        let blocked = port_of(&blockers[0]);
        assert_eq!(
            port_of(&sockets[0]),
            port_of(&sockets[1]),
            "one port for both"
        );
        assert_ne!(port_of(&sockets[1]), blocked, "not the taken port");
    }

    #[test]
    fn the_client_list_does_not_grow_with_closed_connections() {
        tulipa_futures::run(async {
            let lost = Rc::new(Cell::new(0));
            let l2 = lost.clone();
            let server = create_server(
                move || Quiet(None, l2.clone()),
                "127.0.0.1",
                0,
                ServerOptions::default(),
            )
            .await?;
            let port = server.local_addr().expect("TCP").port();
            let open = Rc::new(Cell::new(0));
            for i in 1..=300 {
                let o2 = open.clone();
                let t = create_connection(
                    move || Quiet(None, o2),
                    "127.0.0.1",
                    port,
                    ConnectOptions::default(),
                )
                .await?;
                t.close();
                // The server side sees EOF and closes: wait for its connection_lost.
                while lost.get() < i {
                    tulipa_futures::sleep(Duration::ZERO).await?;
                }
            }
            let len = server.state.clients.borrow().len();
            assert!(len <= MIN_PRUNE, "{len} entries for 0 live connections");
            server.close();
            Ok(())
        })
        .expect("the test body");
    }
}
