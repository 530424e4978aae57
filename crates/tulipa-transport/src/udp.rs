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
    high: usize,
    paused: Cell<bool>,
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
/// # Errors
///
/// [`Error::Resolve`] for the remote name; [`Error::Io`] for socket, bind or connect failures.
pub async fn create_datagram_endpoint<P: DatagramProtocol>(
    factory: impl FnOnce() -> P,
    options: DatagramOptions,
) -> Result<DatagramTransport> {
    let lp = EventLoop::running()?;
    let remote = match &options.remote_addr {
        Some((host, port)) => Some(getaddrinfo(host, *port).await?[0]),
        None => None,
    };
    let local = options.local_addr.or_else(|| {
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
        sock.bind(&SockAddr::from(l))
            .map_err(|e| Error::io(format!("bind to {l}"), e))?;
    }
    if let Some(r) = remote {
        sock.connect(&SockAddr::from(r))
            .map_err(|e| Error::io(format!("connect to {r}"), e))?;
    }
    let udp: UdpSocket = sock.into();
    let inner = Rc::new(Inner {
        lp: lp.clone(),
        fd: udp.as_raw_fd(),
        local: udp.local_addr().ok(),
        sock: RefCell::new(Some(udp)),
        protocol: RefCell::new(Some(Box::new(factory()))),
        queue: RefCell::new(VecDeque::new()),
        queued_bytes: Cell::new(0),
        high: options
            .high_water
            .unwrap_or(crate::flow::DEFAULT_HIGH_WATER),
        paused: Cell::new(false),
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
        if !t.paused.get() && t.queued_bytes.get() > t.high {
            t.paused.set(true);
            t.call("pause_writing", |p| p.pause_writing());
        }
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
    fn call(&self, what: &'static str, f: impl FnOnce(&mut dyn DatagramProtocol)) {
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

    fn report(&self, e: Error) {
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
                self.call("datagram_received", |p| p.datagram_received(data, from));
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
        if self.paused.get() && self.queued_bytes.get() <= self.high / 4 {
            self.paused.set(false);
            self.call("resume_writing", |p| p.resume_writing());
        }
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
