//! Datagram endpoints (PEP 3156 `create_datagram_endpoint`; asyncio's `_SelectorDatagramTransport`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;

use socket2::{Domain, Protocol as IpProto, SockAddr, Socket, Type};
use tulipa_futures::rt::EventLoop;

use crate::dns::getaddrinfo;
use crate::error::{Error, Result};
use crate::flow::Flow;

/// Largest datagram read at once (the IPv4 UDP maximum).
const MAX_DATAGRAM: usize = 65_507;

/// A datagram protocol (asyncio's `DatagramProtocol`).
pub trait DatagramProtocol: 'static {
    /// The endpoint is ready.
    fn connection_made(&mut self, transport: DatagramTransport);
    /// A datagram arrived from `addr`.
    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr);
    /// A send or receive failed (for example ICMP port unreachable on a connected endpoint); the
    /// endpoint stays open.
    fn error_received(&mut self, exc: Error) {
        let _ = exc;
    }
    /// The endpoint is closed. Called exactly once.
    fn connection_lost(&mut self, exc: Option<Error>) {
        let _ = exc;
    }
    /// The send buffer went over the high watermark.
    fn pause_writing(&mut self) {}
    /// The send buffer drained under the low watermark.
    fn resume_writing(&mut self) {}
}

/// Options of [`create_datagram_endpoint`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct DatagramOptions {
    /// Bind here (port 0: any free port). Defaults to the wildcard address of the remote's family.
    pub local_addr: Option<SocketAddr>,
    /// Connect to this peer: `sendto` may then omit the address, and only its datagrams arrive.
    /// Each address the name resolves to is tried in turn (those of `local_addr`'s family
    /// only, when it is set) until a socket binds and connects; the errors of all are reported
    /// if none does (a single error as it is, with its kind). A `local_addr` that does not bind
    /// ends the attempts at once, with that error.
    pub remote_addr: Option<(String, u16)>,
    /// `SO_REUSEPORT`.
    pub reuse_port: bool,
    /// `SO_BROADCAST`.
    pub allow_broadcast: bool,
    /// Queue at most this many bytes of datagrams waiting for the socket (default 64 KiB high
    /// watermark, as for stream transports; datagrams over it are still queued, the protocol is
    /// told `pause_writing`).
    pub high_water: Option<usize>,
}

struct Inner {
    lp: EventLoop,
    sock: RefCell<Option<UdpSocket>>,
    fd: RawFd,
    protocol: RefCell<Option<Box<dyn DatagramProtocol>>>,
    queue: RefCell<VecDeque<(Vec<u8>, Option<SocketAddr>)>>,
    queued_bytes: Cell<usize>,
    /// Watermarks over `queued_bytes`, and the pause / resume due to the protocol.
    flow: Flow,
    closing: Cell<bool>,
    lost: Cell<bool>,
    writer_on: Cell<bool>,
    connected: Option<SocketAddr>,
    local: Option<SocketAddr>,
}

/// A handle to a datagram endpoint (asyncio's `DatagramTransport`); cheap to clone, `!Send`.
#[derive(Clone)]
pub struct DatagramTransport {
    inner: Rc<Inner>,
}

/// Creates a UDP endpoint and attaches a protocol made by `factory` (asyncio's
/// `create_datagram_endpoint`). Returns once `connection_made` has run.
///
/// # Cancel safety
///
/// Cancel-safe: the only wait is the resolution of `remote_addr`; cancelled there, no socket
/// was made and no protocol created (the lookup finishes on the executor, unused). Once the
/// socket exists, the call completes without waiting.
///
/// # Errors
///
/// [`Error::Resolve`] for the remote name; [`Error::Io`] for socket, bind or connect failures.
pub async fn create_datagram_endpoint<P: DatagramProtocol>(
    factory: impl FnOnce() -> P,
    options: DatagramOptions,
) -> Result<DatagramTransport> {
    let lp = EventLoop::running()?;
    let flow = Flow::default();
    if let Some(high) = options.high_water {
        flow.set_limits(Some(high), None)?;
    }
    let (sock, remote) = match &options.remote_addr {
        None => (
            open_socket(options.local_addr, None, &options).map_err(|f| f.error)?,
            None,
        ),
        Some((host, port)) => {
            let candidates = getaddrinfo(host, *port).await?;
            connect_first(host, *port, candidates, &options)?
        }
    };
    let udp: UdpSocket = sock.into();
    let inner = Rc::new(Inner {
        lp: lp.clone(),
        fd: udp.as_raw_fd(),
        local: udp.local_addr().ok(),
        sock: RefCell::new(Some(udp)),
        protocol: RefCell::new(Some(Box::new(factory()))),
        queue: RefCell::new(VecDeque::new()),
        queued_bytes: Cell::new(0),
        flow,
        closing: Cell::new(false),
        lost: Cell::new(false),
        writer_on: Cell::new(false),
        connected: remote,
    });
    let t = DatagramTransport { inner };
    let me = t.inner.clone();
    lp.add_reader(t.inner.fd, move || me.on_readable())?;
    let t2 = t.clone();
    t.inner
        .call("connection_made", move |p| p.connection_made(t2));
    Ok(t)
}

/// The first socket that binds and connects to one of `candidates` (those of `local_addr`'s
/// family only, when it is set), with the address it connected to. A failure to bind the given
/// `local_addr` ends the search at once: every candidate would bind it the same way.
///
/// # Errors
///
/// The one error, unchanged, when a single candidate was tried; otherwise an error of the kind
/// they all share (`Other` when they differ) that lists them all; `InvalidInput` when no
/// candidate is of the local address's family.
fn connect_first(
    host: &str,
    port: u16,
    candidates: Vec<SocketAddr>,
    options: &DatagramOptions,
) -> Result<(Socket, Option<SocketAddr>)> {
    let mut errors = Vec::new();
    for r in candidates {
        if options
            .local_addr
            .is_some_and(|l| l.is_ipv4() != r.is_ipv4())
        {
            continue;
        }
        match open_socket(options.local_addr, Some(r), options) {
            Ok(sock) => return Ok((sock, Some(r))),
            Err(f) if f.binding && options.local_addr.is_some() => {
                tracing::debug!(error = %f.error, "datagram endpoint: the local address does not bind");
                errors.push(f.error);
                break;
            }
            Err(f) => {
                tracing::debug!(remote = %r, error = %f.error, "datagram endpoint: trying the next address");
                errors.push(f.error);
            }
        }
    }
    let op = || format!("connect to {host}:{port} (datagram endpoint)");
    let kinds: Vec<_> = errors.iter().map(Error::io_kind).collect();
    match errors.len() {
        0 => Err(Error::io(
            op(),
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address of the local address's family",
            ),
        )),
        1 => Err(errors.remove(0)),
        _ => {
            let kind = match kinds[0] {
                Some(k) if kinds.iter().all(|x| *x == Some(k)) => k,
                _ => io::ErrorKind::Other,
            };
            let all = errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ");
            Err(Error::io(op(), io::Error::new(kind, all)))
        }
    }
}

/// Why [`open_socket`] failed, and whether it was the `bind`.
struct OpenFailed {
    error: Error,
    binding: bool,
}

impl From<Error> for OpenFailed {
    fn from(error: Error) -> Self {
        OpenFailed {
            error,
            binding: false,
        }
    }
}

/// A socket bound to `local` (or the wildcard address of `remote`'s family) and connected to
/// `remote`, if given.
fn open_socket(
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    options: &DatagramOptions,
) -> Result<Socket, OpenFailed> {
    let local = local.or_else(|| {
        remote.map(|r| match r {
            SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
        })
    });
    let family = local
        .or(remote)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let op = |what: &str| format!("{what} (datagram endpoint)");
    let sock = Socket::new(
        Domain::for_address(family),
        Type::DGRAM.cloexec(),
        Some(IpProto::UDP),
    )
    .map_err(|e| Error::io(op("socket"), e))?;
    sock.set_nonblocking(true)
        .map_err(|e| Error::io(op("set_nonblocking"), e))?;
    if options.reuse_port {
        sock.set_reuse_port(true)
            .map_err(|e| Error::io(op("SO_REUSEPORT"), e))?;
    }
    if options.allow_broadcast {
        sock.set_broadcast(true)
            .map_err(|e| Error::io(op("SO_BROADCAST"), e))?;
    }
    if let Some(l) = local {
        sock.bind(&SockAddr::from(l)).map_err(|e| OpenFailed {
            error: Error::io(format!("bind to {l}"), e),
            binding: true,
        })?;
    }
    if let Some(r) = remote {
        sock.connect(&SockAddr::from(r))
            .map_err(|e| Error::io(format!("connect to {r}"), e))?;
    }
    Ok(sock)
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

impl DatagramTransport {
    /// Sends a datagram to `addr` (or to the connected peer when `None`). Tried at once; queued
    /// while the socket is full.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closing; an invalid-argument error when `addr` is missing on an
    /// unconnected endpoint or differs from the connected peer.
    pub fn sendto(&self, data: &[u8], addr: Option<SocketAddr>) -> Result<()> {
        let t = &self.inner;
        if t.closing.get() || t.lost.get() {
            return Err(Error::Closed);
        }
        match (addr, t.connected) {
            (None, None) => {
                return Err(tulipa_futures::Error::InvalidArgument(
                    "sendto needs an address on an unconnected endpoint",
                )
                .into())
            }
            (Some(a), Some(c)) if a != c => {
                return Err(tulipa_futures::Error::InvalidArgument(
                    "sendto address differs from the connected peer",
                )
                .into())
            }
            _ => {}
        }
        if t.queue.borrow().is_empty() {
            match t.send_one(data, addr) {
                Ok(()) => return Ok(()),
                Err(e) if retry(&e) => {}
                Err(e) => {
                    t.report(Error::io("sendto", e));
                    return Ok(());
                }
            }
        }
        t.queue.borrow_mut().push_back((data.to_vec(), addr));
        t.queued_bytes.set(t.queued_bytes.get() + data.len());
        t.add_writer();
        t.flow_changed();
        Ok(())
    }

    /// Bytes of datagrams waiting for the socket.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.queued_bytes.get()
    }

    /// Closes after the queued datagrams are sent; `connection_lost(None)` follows.
    pub fn close(&self) {
        let t = &self.inner;
        if t.closing.replace(true) {
            return;
        }
        t.lp.remove_reader(t.fd);
        if t.queue.borrow().is_empty() {
            t.lose(None);
        }
    }

    /// Closes at once, dropping queued datagrams.
    pub fn abort(&self) {
        let t = &self.inner;
        t.queue.borrow_mut().clear();
        t.queued_bytes.set(0);
        t.closing.set(true);
        t.lp.remove_reader(t.fd);
        t.lose(None);
    }

    /// True once closing.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.get()
    }

    /// The local address (`get_extra_info('sockname')`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local
    }

    /// The connected peer, if any (`get_extra_info('peername')`).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.inner.connected
    }
}

impl Inner {
    /// Calls into the protocol; if it is busy (this is a transport call from inside one of its
    /// callbacks: `sendto` in `datagram_received`), the call is deferred to the next loop
    /// iteration, as asyncio's flow-control calls would run after the callback.
    fn call(
        self: &Rc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut dyn DatagramProtocol) + 'static,
    ) {
        if self.protocol.try_borrow_mut().is_err() {
            let me = self.clone();
            if self.lp.call_soon(move || me.call(what, f)).is_err() {
                tracing::debug!(
                    fd = self.fd,
                    callback = what,
                    "loop closed; protocol call dropped"
                );
            }
            return;
        }
        self.invoke(what, f);
    }

    /// Calls into the protocol now; skipped if it is busy (the callers make sure it is not).
    fn invoke(&self, what: &'static str, f: impl FnOnce(&mut dyn DatagramProtocol)) {
        let Ok(mut guard) = self.protocol.try_borrow_mut() else {
            tracing::debug!(
                fd = self.fd,
                callback = what,
                "re-entrant protocol call skipped"
            );
            return;
        };
        if let Some(p) = guard.as_mut() {
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(&mut **p))) {
                drop(guard);
                let msg = tulipa_futures::rt::panic_message(&*payload);
                tracing::error!(fd = self.fd, callback = what, panic = %msg, "datagram protocol panicked");
            }
        }
    }

    /// Tells the protocol about a watermark crossing, now or (if it is busy) next iteration.
    /// `Flow` remembers what the protocol was last told, so pauses and resumes stay paired
    /// however the deliveries are delayed.
    fn flow_changed(self: &Rc<Self>) {
        if !self.flow.update(self.queued_bytes.get()) {
            return;
        }
        if !self.deliver_flow() {
            let me = self.clone();
            let _ = self.lp.call_soon(move || {
                me.deliver_flow();
            });
        }
    }

    fn deliver_flow(&self) -> bool {
        if self.protocol.try_borrow_mut().is_err() {
            return false;
        }
        match self.flow.take_due() {
            Some(true) => self.invoke("pause_writing", |p| p.pause_writing()),
            Some(false) => self.invoke("resume_writing", |p| p.resume_writing()),
            None => {}
        }
        true
    }

    fn report(self: &Rc<Self>, e: Error) {
        self.call("error_received", |p| p.error_received(e));
    }

    fn send_one(&self, data: &[u8], addr: Option<SocketAddr>) -> io::Result<()> {
        let sock = self.sock.borrow();
        let Some(s) = sock.as_ref() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected));
        };
        match addr {
            Some(a) if self.connected.is_none() => s.send_to(data, a).map(drop),
            _ => s.send(data).map(drop),
        }
    }

    fn on_readable(self: &Rc<Self>) {
        if self.lost.get() {
            return;
        }
        let mut buf = [0u8; MAX_DATAGRAM];
        let r = match self.sock.borrow().as_ref() {
            Some(s) => s.recv_from(&mut buf),
            None => return,
        };
        match r {
            Ok((n, from)) => {
                let data = &buf[..n];
                self.invoke("datagram_received", |p| p.datagram_received(data, from));
            }
            Err(e) if retry(&e) => {}
            Err(e) => self.report(Error::io("recvfrom", e)),
        }
    }

    fn add_writer(self: &Rc<Self>) {
        if self.writer_on.replace(true) {
            return;
        }
        let me = self.clone();
        if let Err(e) = self.lp.add_writer(self.fd, move || me.on_writable()) {
            self.writer_on.set(false);
            self.report(e.into());
        }
    }

    fn on_writable(self: &Rc<Self>) {
        loop {
            let Some((data, addr)) = self.queue.borrow_mut().pop_front() else {
                break;
            };
            match self.send_one(&data, addr) {
                Ok(()) => self.queued_bytes.set(self.queued_bytes.get() - data.len()),
                Err(e) if retry(&e) => {
                    self.queue.borrow_mut().push_front((data, addr));
                    return;
                }
                Err(e) => {
                    self.queued_bytes.set(self.queued_bytes.get() - data.len());
                    self.report(Error::io("sendto", e));
                }
            }
        }
        self.flow_changed();
        if self.writer_on.replace(false) {
            self.lp.remove_writer(self.fd);
        }
        if self.closing.get() {
            self.lose(None);
        }
    }

    fn lose(self: &Rc<Self>, exc: Option<Error>) {
        if self.lost.replace(true) {
            return;
        }
        if self.writer_on.replace(false) {
            self.lp.remove_writer(self.fd);
        }
        let me = self.clone();
        let scheduled = self.lp.call_soon(move || {
            let p = me.protocol.borrow_mut().take();
            if let Some(mut p) = p {
                let _ = panic::catch_unwind(AssertUnwindSafe(|| p.connection_lost(exc)));
            }
            me.sock.borrow_mut().take();
        });
        if scheduled.is_err() {
            self.sock.borrow_mut().take();
        }
    }
}

impl fmt::Debug for DatagramTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramTransport")
            .field("local", &self.inner.local)
            .field("peer", &self.inner.connected)
            .field("queued", &self.inner.queued_bytes.get())
            .field("closing", &self.inner.closing.get())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn v4(a: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((a, port))
    }

    #[test]
    fn a_local_address_that_does_not_bind_ends_the_attempts_with_its_own_error() {
        let taken = UdpSocket::bind(v4([127, 0, 0, 1], 0)).expect("bind");
        let o = DatagramOptions {
            local_addr: Some(taken.local_addr().expect("addr")),
            ..DatagramOptions::default()
        };
        let candidates = vec![v4([127, 0, 0, 1], 9), v4([127, 0, 0, 2], 9)];
        let Err(err) = connect_first("peers", 9, candidates, &o) else {
            panic!("the local address is taken");
        };
        assert_eq!(err.io_kind(), Some(io::ErrorKind::AddrInUse), "{err}");
        assert!(
            err.to_string().starts_with("bind to ") && !err.to_string().contains("127.0.0.2"),
            "one bind, not one per address: {err}"
        );
    }

    #[test]
    fn failed_connects_keep_their_kind() {
        // A broadcast address without SO_BROADCAST: the kernel refuses the connect (EACCES).
        let one = vec![v4([255, 255, 255, 255], 9)];
        let Err(err) = connect_first("bcast", 9, one, &DatagramOptions::default()) else {
            panic!("connecting to broadcast needs SO_BROADCAST");
        };
        assert_eq!(
            err.io_kind(),
            Some(io::ErrorKind::PermissionDenied),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("connect to 255.255.255.255:9"),
            "{err}"
        );
        // Several failures of one kind: that kind, every failure listed.
        let two = vec![v4([255, 255, 255, 255], 9), v4([255, 255, 255, 255], 10)];
        let Err(err) = connect_first("bcast", 9, two, &DatagramOptions::default()) else {
            panic!("connecting to broadcast needs SO_BROADCAST");
        };
        assert_eq!(
            err.io_kind(),
            Some(io::ErrorKind::PermissionDenied),
            "{err}"
        );
        let text = err.to_string();
        assert!(text.contains(":9") && text.contains(":10"), "{text}");
    }

    /// Answers every datagram with one of 100 bytes to `peer`, and records its calls.
    struct Answering {
        t: Option<DatagramTransport>,
        peer: SocketAddr,
        calls: Rc<RefCell<Vec<&'static str>>>,
    }

    impl DatagramProtocol for Answering {
        fn connection_made(&mut self, t: DatagramTransport) {
            self.t = Some(t);
        }
        fn datagram_received(&mut self, _data: &[u8], _addr: SocketAddr) {
            self.calls.borrow_mut().push("datagram_received");
            let t = self.t.clone().expect("connection_made first");
            t.sendto(&[7u8; 100], Some(self.peer))
                .expect("sendto queues");
            self.calls.borrow_mut().push("datagram_received returns");
        }
        fn pause_writing(&mut self) {
            self.calls.borrow_mut().push("pause_writing");
        }
        fn resume_writing(&mut self) {
            self.calls.borrow_mut().push("resume_writing");
        }
    }

    #[test]
    fn sendto_inside_datagram_received_pauses_after_it_and_resumes_once_drained() {
        tulipa_futures::run(async {
            let sink = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::io("bind", e))?;
            let peer = sink.local_addr().map_err(|e| Error::io("addr", e))?;
            let calls: Rc<RefCell<Vec<&'static str>>> = Rc::default();
            let c2 = calls.clone();
            let options = DatagramOptions {
                local_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
                high_water: Some(50),
                ..DatagramOptions::default()
            };
            let t = create_datagram_endpoint(
                move || Answering {
                    t: None,
                    peer,
                    calls: c2,
                },
                options,
            )
            .await?;
            // A datagram the socket refused (EAGAIN) waits in the queue. UDP over loopback never
            // refuses (the kernel hands the datagram over or drops it), so it is queued by hand:
            // the next sendto queues behind it.
            t.inner
                .queue
                .borrow_mut()
                .push_back((vec![1u8; 10], Some(peer)));
            t.inner.queued_bytes.set(10);

            let sender = UdpSocket::bind("127.0.0.1:0").map_err(|e| Error::io("bind", e))?;
            let to = t.local_addr().expect("bound");
            sender
                .send_to(b"go", to)
                .map_err(|e| Error::io("send_to", e))?;
            let done = async {
                while !calls.borrow().contains(&"resume_writing") {
                    tulipa_futures::sleep(Duration::ZERO).await?;
                }
                Ok::<(), tulipa_futures::Error>(())
            };
            tulipa_futures::timeout(Duration::from_secs(20), done)
                .await
                .unwrap_or_else(|e| panic!("no resume_writing: {e}; calls {:?}", calls.borrow()));
            assert_eq!(
                *calls.borrow(),
                [
                    "datagram_received",
                    "datagram_received returns",
                    "pause_writing",
                    "resume_writing"
                ]
            );
            // Both datagrams left, in order.
            let mut buf = [0u8; 200];
            let n = sink.recv(&mut buf).map_err(|e| Error::io("recv", e))?;
            assert_eq!(&buf[..n], &[1u8; 10]);
            let n = sink.recv(&mut buf).map_err(|e| Error::io("recv", e))?;
            assert_eq!(&buf[..n], &[7u8; 100]);
            assert_eq!(t.get_write_buffer_size(), 0);
            t.close();
            Ok(())
        })
        .expect("the test body");
    }
}
