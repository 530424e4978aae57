//! The stream transport over a socket (PEP 3156 "Transports"; asyncio's
//! `_SelectorSocketTransport`), used for TCP and Unix stream sockets.
//!
//! Reading: the socket's fd has a reader on the loop, edge-triggered for TCP
//! (`EventLoop::add_reader_edge`); each readiness reads once (at most 64 KiB, into a buffer
//! shared by the thread's transports) and hands the bytes to `data_received`. A short read took
//! all the kernel had; a full one is followed by another read on the next iteration. Writing: `write` tries the socket at once when nothing is buffered and only
//! buffers (and registers for writability) what the socket did not take; the registration stays
//! until the buffer is empty. So a busy connection costs one `recv` and one `send` per message and
//! no other syscall. The addresses are read once each, when first asked for (an accepted
//! connection knows its peer from `accept`).

use std::cell::{Cell, OnceCell, RefCell};
use std::fmt;
use std::io::{self, IoSlice, Read};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{self, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};

use socket2::{SockAddr, Socket};
use tulipa_futures::rt::{EventLoop, ExceptionContext};
use tulipa_futures::Future;

use crate::error::{Error, Result};
use crate::flow::Flow;
use crate::protocol::Protocol;
use crate::sys::SEND_FLAGS;

/// Bytes read per readiness event, at most.
pub const READ_SIZE: usize = 64 * 1024;

thread_local! {
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_SIZE]);
}

#[derive(Default)]
struct WriteBuf {
    data: Vec<u8>,
    start: usize,
}

impl WriteBuf {
    fn len(&self) -> usize {
        self.data.len() - self.start
    }
    fn pending(&self) -> &[u8] {
        &self.data[self.start..]
    }
    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.data.len() {
            self.data.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 && self.start * 2 > self.data.len() {
            self.data.drain(..self.start);
            self.start = 0;
        }
    }
}

pub(crate) struct Inner {
    lp: EventLoop,
    sock: RefCell<Option<Socket>>,
    fd: RawFd,
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    closing: Cell<bool>,
    lost: Cell<bool>,
    eof_requested: Cell<bool>,
    /// The peer's EOF was read: reading is over for good, whatever `resume_reading` says.
    eof_seen: Cell<bool>,
    reading: Cell<bool>,
    reader_on: Cell<bool>,
    writer_on: Cell<bool>,
    buf: RefCell<WriteBuf>,
    /// Tasks waiting for the write buffer to empty (`StreamWriter`'s `poll_flush`), one waker
    /// per task; woken when it empties or the connection is lost.
    drained: RefCell<Vec<Waker>>,
    /// Bytes `force_close` dropped from the write buffer (an abort or a fatal error): they never
    /// reached the kernel, which a `StreamWriter`'s `poll_flush` must not claim they did.
    discarded: Cell<usize>,
    flow: Flow,
    /// The peer's address: from `accept`, or read on first request.
    peer: OnceCell<Option<SockAddr>>,
    /// The local address: read on first request (or to tell TCP from Unix sockets).
    local: OnceCell<Option<SockAddr>>,
    is_tcp: bool,
    /// A TCP stream: read edge-triggered (see `on_readable`).
    stream: bool,
    /// Told once the connection is over for its server (see [`Detach`]).
    detach: Cell<Option<Weak<dyn Detach>>>,
}

/// What a server counts its live connections with (asyncio's `Server._detach`): told once, when
/// the connection's `connection_lost` has run (also when it panicked), or when the transport is
/// freed without one (a closing loop dropped its pending callbacks).
pub(crate) trait Detach {
    fn detach(&self);
}

/// A handle to a stream transport (TCP or Unix socket); cheap to clone, `!Send`.
///
/// Created by [`create_connection`](crate::create_connection), servers, or
/// [`Transport::from_socket`]; handed to the protocol in `connection_made`.
#[derive(Clone)]
pub struct Transport {
    pub(crate) inner: Rc<Inner>,
    /// Set for the user's side of a TLS connection: writes and close go through TLS.
    pub(crate) tls: TlsLink,
}

#[cfg(feature = "tls")]
pub(crate) type TlsLink = Option<Rc<crate::tls::TlsState>>;
#[cfg(not(feature = "tls"))]
pub(crate) type TlsLink = Option<std::convert::Infallible>;

impl Transport {
    /// Wraps a connected socket and attaches `protocol`: on the next loop iteration the protocol's
    /// `connection_made` runs, then reading starts. The returned future completes after
    /// `connection_made`. TCP sockets get `TCP_NODELAY`, as asyncio does.
    ///
    /// # Errors
    ///
    /// When the socket cannot be made non-blocking, or the loop is closed.
    pub fn from_socket(
        lp: &EventLoop,
        sock: Socket,
        protocol: Box<dyn Protocol>,
    ) -> Result<(Transport, Future<()>)> {
        sock.set_nonblocking(true)
            .map_err(|e| Error::io("set_nonblocking", e))?;
        let local = sock.local_addr().ok();
        let is_tcp = local.as_ref().and_then(SockAddr::as_socket).is_some();
        // Only TCP is read edge-triggered: a short read there means drained (but for urgent
        // data, which raises `EPOLLPRI`). A `SOCK_SEQPACKET` read returns one record, and an
        // AF_UNIX stream read stops at a message that carried fds or other credentials, so
        // either may leave more behind with no new edge.
        let stream = is_tcp && matches!(sock.r#type(), Ok(t) if t == socket2::Type::STREAM);
        Self::attach(
            lp,
            sock,
            protocol,
            (is_tcp, stream),
            OnceCell::new(),
            OnceCell::from(local),
        )
    }

    /// Wraps a socket just accepted, with the peer address `accept` returned: no syscall to read
    /// addresses (the local one is read if asked for). `nonblocking` says `accept4` already made
    /// it non-blocking.
    pub(crate) fn from_accepted(
        lp: &EventLoop,
        sock: Socket,
        peer: SockAddr,
        nonblocking: bool,
        protocol: Box<dyn Protocol>,
    ) -> Result<(Transport, Future<()>)> {
        if !nonblocking {
            sock.set_nonblocking(true)
                .map_err(|e| Error::io("set_nonblocking", e))?;
        }
        let is_tcp = peer.as_socket().is_some();
        Self::attach(
            lp,
            sock,
            protocol,
            // Accepted from a stream listener (`from_sockets` refuses others).
            (is_tcp, is_tcp),
            OnceCell::from(Some(peer)),
            OnceCell::new(),
        )
    }

    fn attach(
        lp: &EventLoop,
        sock: Socket,
        protocol: Box<dyn Protocol>,
        (is_tcp, stream): (bool, bool),
        peer: OnceCell<Option<SockAddr>>,
        local: OnceCell<Option<SockAddr>>,
    ) -> Result<(Transport, Future<()>)> {
        if is_tcp {
            // Not fatal: some sockets (socketpairs passed as TCP) refuse it.
            let _ = sock.set_tcp_nodelay(true);
        }
        let inner = Rc::new(Inner {
            lp: lp.clone(),
            fd: sock.as_raw_fd(),
            peer,
            local,
            sock: RefCell::new(Some(sock)),
            protocol: RefCell::new(Some(protocol)),
            closing: Cell::new(false),
            lost: Cell::new(false),
            eof_requested: Cell::new(false),
            eof_seen: Cell::new(false),
            reading: Cell::new(true),
            reader_on: Cell::new(false),
            writer_on: Cell::new(false),
            buf: RefCell::new(WriteBuf::default()),
            drained: RefCell::new(Vec::new()),
            discarded: Cell::new(0),
            flow: Flow::default(),
            is_tcp,
            stream,
            detach: Cell::new(None),
        });
        let t = Transport { inner, tls: None };
        let made: Future<()> = Future::new(lp);
        let (t2, made2) = (t.clone(), made.clone());
        lp.call_soon(move || {
            let t3 = t2.clone();
            t2.inner
                .call_protocol("connection_made", move |p| p.connection_made(t3));
            if !t2.inner.closing.get() && t2.inner.reading.get() {
                t2.inner.add_reader();
            }
            let _ = made2.set_result(());
        })?;
        Ok((t, made))
    }

    /// Writes `data`: sent at once if nothing is buffered, else buffered (see [`flow`](crate::flow)).
    ///
    /// # Errors
    ///
    /// [`Error::WriteAfterEof`] after [`write_eof`](Transport::write_eof); [`Error::Closed`]
    /// once closing; the socket's error (the connection is then lost with that error too).
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.writelines(&[data])
    }

    /// Writes several buffers with one vectored `send` when nothing is buffered.
    ///
    /// # Errors
    ///
    /// As [`write`](Transport::write).
    pub fn writelines(&self, parts: &[&[u8]]) -> Result<()> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.write(parts);
        }
        let t = &self.inner;
        if t.eof_requested.get() {
            return Err(Error::WriteAfterEof);
        }
        if t.closing.get() || t.lost.get() {
            return Err(Error::Closed);
        }
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Ok(());
        }
        let mut sent = 0;
        if t.buf.borrow().len() == 0 {
            let r = {
                let sock = t.sock.borrow();
                let Some(sock) = sock.as_ref() else {
                    return Err(Error::Closed);
                };
                if parts.len() == 1 {
                    sock.send_with_flags(parts[0], SEND_FLAGS)
                } else {
                    let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                    sock.send_vectored_with_flags(&slices, SEND_FLAGS)
                }
            };
            match r {
                Ok(n) => sent = n,
                Err(e) if retry(&e) => {}
                Err(e) => {
                    let err = Error::io("send", e);
                    self.inner.fatal_error(err.clone());
                    return Err(err);
                }
            }
            if sent == total {
                return Ok(());
            }
        }
        {
            let mut buf = t.buf.borrow_mut();
            let mut skip = sent;
            for p in parts {
                if skip >= p.len() {
                    skip -= p.len();
                    continue;
                }
                buf.data.extend_from_slice(&p[skip..]);
                skip = 0;
            }
        }
        t.add_writer();
        t.flow_changed();
        Ok(())
    }

    /// Closes the writing side after the buffered data is sent (TCP half-close).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once closing.
    pub fn write_eof(&self) -> Result<()> {
        if !self.can_write_eof() {
            return Err(Error::io(
                "write_eof",
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "write_eof is not supported over TLS",
                ),
            ));
        }
        let t = &self.inner;
        if t.closing.get() || t.lost.get() {
            return Err(Error::Closed);
        }
        if t.eof_requested.replace(true) {
            return Ok(());
        }
        if t.buf.borrow().len() == 0 {
            t.shutdown_write();
        }
        Ok(())
    }

    /// True for plain stream sockets (half-close); false over TLS.
    pub fn can_write_eof(&self) -> bool {
        self.tls.is_none()
    }

    /// What TLS negotiated, for a TLS connection (`get_extra_info('ssl_object')` and friends).
    #[cfg(feature = "tls")]
    pub fn tls_info(&self) -> Option<crate::tls::TlsInfo> {
        self.tls.as_ref().and_then(|t| t.info())
    }

    /// Stops reading until [`resume_reading`](Transport::resume_reading); no `data_received`
    /// meanwhile.
    pub fn pause_reading(&self) {
        let t = &self.inner;
        // A closing TLS connection reads on for the peer's close_notify; the user gets nothing.
        if self.tls_closing() || t.closing.get() || !t.reading.replace(false) {
            return;
        }
        t.remove_reader();
    }

    /// Resumes reading.
    pub fn resume_reading(&self) {
        let t = &self.inner;
        // After EOF there is nothing more to read: a reader would only see EOF again and repeat
        // eof_received.
        if self.tls_closing() || t.closing.get() || t.eof_seen.get() || t.reading.replace(true) {
            return;
        }
        t.add_reader();
    }

    /// True while reading (not paused, not closing).
    pub fn is_reading(&self) -> bool {
        self.inner.reading.get() && !self.inner.closing.get() && !self.tls_closing()
    }

    /// True for a TLS connection whose TLS shutdown has started (it may still read, for the
    /// peer's `close_notify`, but not for the user).
    fn tls_closing(&self) -> bool {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.is_closing();
        }
        false
    }

    /// Closes the transport: buffered data is still sent, then the protocol's
    /// `connection_lost(None)` runs (on a later iteration). Idempotent. Over TLS this is a TLS
    /// shutdown: `close_notify` is sent and the peer's awaited first (see the `tls` module).
    pub fn close(&self) {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            tls.close();
            return;
        }
        let t = &self.inner;
        if t.closing.replace(true) {
            return;
        }
        t.remove_reader();
        if t.buf.borrow().len() == 0 && !t.lost.replace(true) {
            t.schedule_lost(None);
        }
    }

    /// Closes at once, dropping buffered data; `connection_lost(None)` follows.
    pub fn abort(&self) {
        self.inner.force_close(None);
    }

    /// True once `close` or `abort` was called (or the connection was lost).
    pub fn is_closing(&self) -> bool {
        self.inner.closing.get() || self.tls_closing()
    }

    /// Sets the write-buffer watermarks (asyncio's rules: `high` defaults to 64 KiB, or 4 × `low`;
    /// `low` defaults to `high / 4`).
    ///
    /// # Errors
    ///
    /// An invalid-argument error when `low > high`.
    pub fn set_write_buffer_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        self.inner.flow.set_limits(high, low)?;
        self.inner.flow_changed();
        Ok(())
    }

    /// `(low, high)` watermarks.
    pub fn get_write_buffer_limits(&self) -> (usize, usize) {
        self.inner.flow.limits()
    }

    /// Bytes buffered, not yet taken by the socket.
    pub fn get_write_buffer_size(&self) -> usize {
        self.inner.buf.borrow().len()
    }

    /// Ready once the write buffer is empty (every byte written is in the kernel's hands) or the
    /// connection is lost (see [`is_lost`](Transport::is_lost)); else the task is woken when one
    /// of the two happens. For `StreamWriter`'s `poll_flush`.
    pub(crate) fn poll_write_buffer_empty(&self, cx: &mut Context<'_>) -> Poll<()> {
        let t = &self.inner;
        if t.buf.borrow().len() == 0 || t.lost.get() {
            return Poll::Ready(());
        }
        let mut waiters = t.drained.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Makes `server` hear of the end of this connection (see [`Detach`]).
    pub(crate) fn set_detach(&self, server: Weak<dyn Detach>) {
        self.inner.detach.set(Some(server));
    }

    /// True once the connection is lost or its `connection_lost` is scheduled (the buffer is then
    /// empty or dropped for good).
    pub(crate) fn is_lost(&self) -> bool {
        self.inner.lost.get()
    }

    /// How many buffered bytes were dropped, never sent, when the connection was closed at once
    /// (`abort`, `Server::abort_clients`, a full accept queue, a fatal error); 0 if none were.
    pub(crate) fn discarded(&self) -> usize {
        self.inner.discarded.get()
    }

    /// The peer's address (asyncio's `get_extra_info('peername')`). Read from the socket on the
    /// first request (an accepted connection has it from `accept`), then kept; `None` if first
    /// asked once the connection is lost.
    pub fn peername(&self) -> Option<&SockAddr> {
        let t = &self.inner;
        t.peer
            .get_or_init(|| t.sock.borrow().as_ref()?.peer_addr().ok())
            .as_ref()
    }

    /// The local address (`get_extra_info('sockname')`); read once, as
    /// [`peername`](Transport::peername).
    pub fn sockname(&self) -> Option<&SockAddr> {
        let t = &self.inner;
        t.local
            .get_or_init(|| t.sock.borrow().as_ref()?.local_addr().ok())
            .as_ref()
    }

    /// The peer's IP address and port, for TCP.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peername().and_then(SockAddr::as_socket)
    }

    /// The local IP address and port, for TCP.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockname().and_then(SockAddr::as_socket)
    }

    /// The raw fd of the socket (`get_extra_info('socket')`); valid until the connection is lost.
    pub fn fd(&self) -> RawFd {
        self.inner.fd
    }

    /// Runs `f` with the socket, for options this type does not cover; `None` once closed.
    pub fn with_socket<R>(&self, f: impl FnOnce(&Socket) -> R) -> Option<R> {
        self.inner.sock.borrow().as_ref().map(f)
    }

    /// The loop this transport runs on.
    pub fn get_loop(&self) -> &EventLoop {
        &self.inner.lp
    }
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// What a producer of bytes in pieces (rustls's `write_tls`, which hands over its records with
/// one `write_vectored`) writes to through [`Inner::write_with`]: the socket itself while nothing
/// is buffered, the transport's write buffer for whatever the socket does not take (and for
/// everything after that), so the bytes keep their order and are copied once at most. It takes
/// every byte it is given.
#[cfg(feature = "tls")]
struct Sink<'a> {
    inner: &'a Inner,
    /// Drop the bytes instead of failing the connection when the socket refuses them.
    best_effort: bool,
    /// Something went into the buffer: the writer must be registered, flow control updated.
    buffered: bool,
    /// The socket's error: the connection is lost with it (or, for a best effort, the bytes from
    /// then on are dropped).
    failed: Option<io::Error>,
}

#[cfg(feature = "tls")]
impl io::Write for Sink<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(data)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        if self.failed.is_some() {
            // A best-effort write whose socket failed: the rest goes the same way.
            return Ok(total);
        }
        let mut sent = 0;
        if !self.buffered && self.inner.buf.borrow().len() == 0 {
            let r = match self.inner.sock.borrow().as_ref() {
                Some(s) => s.send_vectored_with_flags(bufs, SEND_FLAGS),
                None => Err(io::Error::from(io::ErrorKind::NotConnected)),
            };
            match r {
                Ok(n) => sent = n,
                Err(e) if retry(&e) => {}
                Err(e) => {
                    let kind = e.kind();
                    self.failed = Some(e);
                    if self.best_effort {
                        return Ok(total);
                    }
                    return Err(kind.into());
                }
            }
            if sent >= total {
                return Ok(total);
            }
        }
        let mut buf = self.inner.buf.borrow_mut();
        let mut skip = sent;
        for b in bufs {
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            buf.data.extend_from_slice(&b[skip..]);
            skip = 0;
        }
        self.buffered = true;
        Ok(total)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Inner {
    /// Lets `produce` write through this transport without a buffer of its own (see `Sink`):
    /// the TLS layer hands rustls's records over this way, so they go into the socket with one
    /// vectored `send` and only what the socket leaves is copied into the write buffer. Flow
    /// control is updated (which may call the protocol) after `produce` has returned.
    ///
    /// With `best_effort`, a socket error drops the bytes instead of failing the connection.
    ///
    /// # Errors
    ///
    /// As [`Transport::write`]; or `produce`'s own.
    #[cfg(feature = "tls")]
    pub(crate) fn write_with(
        self: &Rc<Self>,
        best_effort: bool,
        produce: impl FnOnce(&mut dyn io::Write) -> Result<()>,
    ) -> Result<()> {
        if self.eof_requested.get() {
            return Err(Error::WriteAfterEof);
        }
        if self.closing.get() || self.lost.get() || self.sock.borrow().is_none() {
            return Err(Error::Closed);
        }
        let mut sink = Sink {
            inner: self,
            best_effort,
            buffered: false,
            failed: None,
        };
        let r = produce(&mut sink);
        let Sink {
            buffered, failed, ..
        } = sink;
        if let Some(e) = failed {
            if !best_effort {
                let err = Error::io("send", e);
                self.fatal_error(err.clone());
                return Err(err);
            }
        }
        if buffered {
            self.add_writer();
            self.flow_changed();
        }
        r
    }

    fn add_reader(self: &Rc<Self>) {
        if self.reader_on.replace(true) {
            return;
        }
        let me = self.clone();
        let added = if self.stream {
            // `on_readable` drains a byte stream (see there), so it may be edge-triggered.
            self.lp.add_reader_edge(self.fd, move || me.on_readable())
        } else {
            self.lp.add_reader(self.fd, move || me.on_readable())
        };
        if let Err(e) = added {
            self.reader_on.set(false);
            self.fatal_error(e.into());
        }
    }

    fn remove_reader(&self) {
        if self.reader_on.replace(false) {
            self.lp.remove_reader(self.fd);
        }
    }

    fn add_writer(self: &Rc<Self>) {
        if self.writer_on.replace(true) {
            return;
        }
        let me = self.clone();
        if let Err(e) = self.lp.add_writer(self.fd, move || me.on_writable()) {
            self.writer_on.set(false);
            self.fatal_error(e.into());
        }
    }

    fn remove_writer(&self) {
        if self.writer_on.replace(false) {
            self.lp.remove_writer(self.fd);
        }
    }

    /// Calls into the protocol unless it is already busy (re-entrant call) or gone. A panic in
    /// the protocol is a fatal error of the connection, as asyncio treats an exception there.
    fn call_protocol(
        self: &Rc<Self>,
        what: &'static str,
        f: impl FnOnce(&mut dyn Protocol),
    ) -> bool {
        let Ok(mut guard) = self.protocol.try_borrow_mut() else {
            return false;
        };
        let Some(p) = guard.as_mut() else {
            return true;
        };
        let r = panic::catch_unwind(AssertUnwindSafe(|| f(&mut **p)));
        drop(guard);
        if let Err(payload) = r {
            let msg = tulipa_futures::rt::panic_message(&*payload);
            tracing::error!(fd = self.fd, callback = what, panic = %msg, "protocol panicked; closing the connection");
            self.force_close(Some(Error::Futures(tulipa_futures::Error::Panicked(
                msg.into(),
            ))));
        }
        true
    }

    /// Takes the protocol out (for `start_tls`); an error while one of its callbacks runs.
    #[cfg(feature = "tls")]
    pub(crate) fn take_protocol(&self) -> Result<Option<Box<dyn Protocol>>> {
        match self.protocol.try_borrow_mut() {
            Ok(mut p) => Ok(p.take()),
            Err(_) => Err(Error::Futures(tulipa_futures::Error::InvalidState(
                "start_tls called from inside the transport's protocol",
            ))),
        }
    }

    /// Installs a protocol (for `start_tls`).
    #[cfg(feature = "tls")]
    pub(crate) fn put_protocol(&self, p: Box<dyn Protocol>) {
        *self.protocol.borrow_mut() = Some(p);
    }

    /// One read per call. A TCP stream's reader is edge-triggered: a read shorter than the
    /// buffer took everything the kernel had (urgent data ends the edge mode, see the loop), and
    /// new data brings a new call; a read that filled the buffer may have left more, so the read
    /// is run again on the next iteration, as a level-triggered wait would report it.
    fn on_readable(self: &Rc<Self>) {
        if self.lost.get() || !self.reading.get() {
            return;
        }
        let full = match self.read_into_protocol_buffer() {
            Some(full) => full,
            None => self.read_into_shared_buffer(),
        };
        // While a writer is registered the fd is level-triggered: the next wait reports it.
        if full && self.stream && self.reader_on.get() && !self.writer_on.get() {
            let me = self.clone();
            // Checked again when it runs: a `close` or `pause_reading` in between removes the
            // reader, and a closed transport must not read (nor call its protocol) any more.
            let again = move || {
                if me.reader_on.get() {
                    me.on_readable();
                }
            };
            if let Err(e) = self.lp.call_soon(again) {
                tracing::debug!(fd = self.fd, error = %e, "read again: the loop is closed");
            }
        }
    }

    /// The `data_received` path: read into the thread's shared buffer, hand the bytes over.
    /// True when the read filled the buffer.
    fn read_into_shared_buffer(self: &Rc<Self>) -> bool {
        let mut full = false;
        let mut local = Vec::new();
        READ_BUF.with(|shared| {
            let mut shared = shared.try_borrow_mut();
            let buf: &mut [u8] = match shared.as_mut() {
                Ok(b) => &mut b[..],
                Err(_) => {
                    local.resize(READ_SIZE, 0);
                    &mut local[..]
                }
            };
            let r = match self.sock.borrow().as_ref() {
                Some(s) => (&*s).read(buf),
                None => return,
            };
            match r {
                Ok(0) => {
                    drop(shared);
                    self.read_eof();
                }
                Ok(n) => {
                    full = n == buf.len();
                    let data = &buf[..n];
                    self.call_protocol("data_received", |p| p.data_received(data));
                }
                Err(e) if retry(&e) => {}
                Err(e) => self.fatal_error(Error::io("recv", e)),
            }
        });
        full
    }

    /// The `BufferedProtocol` path: read straight into the protocol's own buffer. `None` when
    /// the protocol offers no buffer (then `data_received` is used), else whether the read
    /// filled the buffer.
    fn read_into_protocol_buffer(self: &Rc<Self>) -> Option<bool> {
        enum Got {
            NoBuffer,
            Eof,
            Data { full: bool },
            Nothing,
            Failed(Error),
        }
        let mut got = Got::NoBuffer;
        let sock_ref = self.sock.borrow();
        let Some(sock) = sock_ref.as_ref() else {
            return Some(false);
        };
        self.call_protocol("get_buffer", |p| {
            let Some(buf) = p.get_buffer(READ_SIZE) else {
                return;
            };
            if buf.is_empty() {
                got = Got::Failed(Error::Futures(tulipa_futures::Error::InvalidState(
                    "get_buffer() returned an empty buffer",
                )));
                return;
            }
            got = match (&*sock).read(buf) {
                Ok(0) => Got::Eof,
                Ok(n) => {
                    let full = n == buf.len();
                    p.buffer_updated(n);
                    Got::Data { full }
                }
                Err(e) if retry(&e) => Got::Nothing,
                Err(e) => Got::Failed(Error::io("recv", e)),
            };
        });
        drop(sock_ref);
        match got {
            Got::NoBuffer => None,
            Got::Data { full } => Some(full),
            Got::Nothing => Some(false),
            Got::Eof => {
                self.read_eof();
                Some(false)
            }
            Got::Failed(e) => {
                self.fatal_error(e);
                Some(false)
            }
        }
    }

    fn read_eof(self: &Rc<Self>) {
        self.remove_reader();
        self.reading.set(false);
        self.eof_seen.set(true);
        let mut keep_open = false;
        self.call_protocol("eof_received", |p| keep_open = p.eof_received());
        if !keep_open {
            Transport {
                inner: self.clone(),
                tls: None,
            }
            .close();
        }
    }

    fn on_writable(self: &Rc<Self>) {
        if self.lost.get() {
            return;
        }
        let r = {
            let buf = self.buf.borrow();
            if buf.len() == 0 {
                Ok(0)
            } else {
                match self.sock.borrow().as_ref() {
                    Some(s) => s.send_with_flags(buf.pending(), SEND_FLAGS),
                    None => return,
                }
            }
        };
        match r {
            Ok(n) => self.buf.borrow_mut().consume(n),
            Err(e) if retry(&e) => return,
            Err(e) => {
                self.fatal_error(Error::io("send", e));
                return;
            }
        }
        self.flow_changed();
        if self.buf.borrow().len() == 0 {
            self.remove_writer();
            self.wake_drained();
            if self.closing.get() {
                if !self.lost.replace(true) {
                    self.schedule_lost(None);
                }
            } else if self.eof_requested.get() {
                self.shutdown_write();
            }
        }
    }

    fn shutdown_write(&self) {
        if let Some(s) = self.sock.borrow().as_ref() {
            let _ = s.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Tells the protocol about a watermark crossing, now or (if it is busy) next iteration.
    fn flow_changed(self: &Rc<Self>) {
        if !self.flow.update(self.buf.borrow().len()) {
            return;
        }
        let me = self.clone();
        let delivered = self.deliver_flow();
        if !delivered {
            let _ = self.lp.call_soon(move || {
                me.deliver_flow();
            });
        }
    }

    fn deliver_flow(self: &Rc<Self>) -> bool {
        if self.protocol.try_borrow_mut().is_err() {
            return false;
        }
        if let Some(pause) = self.flow.take_due() {
            if pause {
                self.call_protocol("pause_writing", |p| p.pause_writing());
            } else {
                self.call_protocol("resume_writing", |p| p.resume_writing());
            }
        }
        true
    }

    pub(crate) fn fatal_error(self: &Rc<Self>, err: Error) {
        tracing::debug!(fd = self.fd, error = %err, "fatal error on transport");
        self.force_close(Some(err));
    }

    fn force_close(self: &Rc<Self>, exc: Option<Error>) {
        if self.lost.replace(true) {
            return;
        }
        {
            let mut buf = self.buf.borrow_mut();
            let dropped = buf.len();
            if dropped > 0 {
                tracing::debug!(
                    fd = self.fd,
                    dropped,
                    "closing at once: buffered bytes dropped"
                );
                self.discarded.set(dropped);
            }
            buf.data = Vec::new();
            buf.start = 0;
        }
        self.remove_writer();
        self.closing.set(true);
        self.remove_reader();
        self.schedule_lost(exc);
        self.wake_drained();
    }

    /// Wakes the tasks waiting for the write buffer to empty (taken out first: a waker may run
    /// code that waits again).
    fn wake_drained(&self) {
        let waiters = std::mem::take(&mut *self.drained.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    fn schedule_lost(self: &Rc<Self>, exc: Option<Error>) {
        let me = self.clone();
        if self.lp.call_soon(move || me.connection_lost(exc)).is_err() {
            // Closed loop: nothing will run any more; release the socket now.
            self.remove_reader();
            self.remove_writer();
            self.sock.borrow_mut().take();
        }
    }

    fn connection_lost(self: &Rc<Self>, exc: Option<Error>) {
        self.remove_reader();
        self.remove_writer();
        let protocol = self.protocol.borrow_mut().take();
        if let Some(mut p) = protocol {
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| p.connection_lost(exc))) {
                self.lp.call_exception_handler(
                    ExceptionContext::new("protocol.connection_lost() panicked")
                        .with_panic(&*payload)
                        .with_source(format!("transport fd {}", self.fd)),
                );
            }
        }
        // Dropping the socket closes the fd; no callback refers to it any more.
        self.sock.borrow_mut().take();
        self.detach();
    }

    fn detach(&self) {
        if let Some(server) = self.detach.take().and_then(|w| w.upgrade()) {
            server.detach();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.detach();
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.inner;
        f.debug_struct("Transport")
            .field("fd", &t.fd)
            .field("peer", &self.peer_addr())
            .field("tcp", &t.is_tcp)
            .field("closing", &t.closing.get())
            .field("reading", &t.reading.get())
            .field("buffered", &t.buf.borrow().len())
            .finish()
    }
}
