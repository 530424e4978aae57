//! Streams: coroutine-style reading and writing (asyncio's `streams.py`).
//!
//! [`open_connection`] and [`start_server`] give a [`StreamReader`] and a [`StreamWriter`] per
//! connection. The reader buffers what arrives, up to twice its limit, then pauses reading on the
//! transport until the buffer is consumed (flow control towards the peer); the writer's
//! [`drain`](StreamWriter::drain) waits while the transport's write buffer is over its high
//! watermark (flow control from the peer). Both also implement the `futures-io` traits.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future as _};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tulipa_futures::rt::take_cancellation;
use tulipa_futures::{spawn, Task};

use crate::connect::{create_connection, ConnectOptions};
use crate::error::{Error, Result};
use crate::protocol::Protocol;
use crate::server::{create_server, Server, ServerOptions};
use crate::transport::Transport;

/// The default buffer limit of a [`StreamReader`] (64 KiB, as asyncio).
pub const DEFAULT_LIMIT: usize = 64 * 1024;

/// Decides, from the buffer and the EOF flag, how many bytes a read takes now (`None`: wait).
type Readiness<'a> = dyn FnMut(&[u8], bool) -> Option<Result<usize>> + 'a;

struct ReaderState {
    buf: Vec<u8>,
    eof: bool,
    exc: Option<Error>,
    waiter: Option<Waker>,
    transport: Option<Transport>,
    paused: bool,
    limit: usize,
}

/// The reading half of a stream connection (asyncio's `StreamReader`); a cheap handle.
#[derive(Clone)]
pub struct StreamReader {
    st: Rc<RefCell<ReaderState>>,
    /// Shared with the writer; `None` for the protocol's own view of the reader.
    owner: Option<Rc<Owner>>,
}

impl StreamReader {
    /// An empty reader with the given buffer limit (see the module docs).
    pub fn new(limit: usize) -> Self {
        StreamReader {
            owner: None,
            st: Rc::new(RefCell::new(ReaderState {
                buf: Vec::new(),
                eof: false,
                exc: None,
                waiter: None,
                transport: None,
                paused: false,
                limit: limit.max(1),
            })),
        }
    }

    /// The buffer limit.
    pub fn limit(&self) -> usize {
        self.st.borrow().limit
    }

    fn wake(st: &mut ReaderState) {
        if let Some(w) = st.waiter.take() {
            w.wake();
        }
    }

    /// Appends received bytes (called by the protocol).
    pub fn feed_data(&self, data: &[u8]) {
        let mut st = self.st.borrow_mut();
        if data.is_empty() {
            return;
        }
        st.buf.extend_from_slice(data);
        Self::wake(&mut st);
        if !st.paused && st.buf.len() > 2 * st.limit {
            if let Some(t) = st.transport.clone() {
                st.paused = true;
                drop(st);
                t.pause_reading();
            }
        }
    }

    /// Marks the end of the stream.
    pub fn feed_eof(&self) {
        let mut st = self.st.borrow_mut();
        st.eof = true;
        Self::wake(&mut st);
    }

    /// Makes every further read fail with `exc` once the buffer is empty.
    pub fn set_exception(&self, exc: Error) {
        let mut st = self.st.borrow_mut();
        st.exc = Some(exc);
        Self::wake(&mut st);
    }

    /// True when the buffer is empty and the peer sent EOF.
    pub fn at_eof(&self) -> bool {
        let st = self.st.borrow();
        st.eof && st.buf.is_empty()
    }

    fn maybe_resume(st: &mut ReaderState) -> Option<Transport> {
        if st.paused && st.buf.len() <= st.limit {
            st.paused = false;
            return st.transport.clone();
        }
        None
    }

    /// Takes `f(buffer)` bytes once `ready(buffer, eof)` holds; the wait is cancel-safe because
    /// nothing is taken before `ready`.
    fn poll_take(&self, cx: &mut Context<'_>, ready: &mut Readiness<'_>) -> Poll<Result<Vec<u8>>> {
        if let Some(e) = take_cancellation() {
            return Poll::Ready(Err(e.into()));
        }
        let mut st = self.st.borrow_mut();
        let eof = st.eof;
        match ready(&st.buf, eof) {
            Some(Ok(n)) => {
                let out: Vec<u8> = st.buf.drain(..n).collect();
                let resume = Self::maybe_resume(&mut st);
                drop(st);
                if let Some(t) = resume {
                    t.resume_reading();
                }
                Poll::Ready(Ok(out))
            }
            Some(Err(e)) => Poll::Ready(Err(e)),
            None => {
                if let Some(e) = st.exc.clone() {
                    return Poll::Ready(Err(e));
                }
                st.waiter = Some(cx.waker().clone());
                // This read needs more than the buffer holds: a paused transport must read
                // again, even over the limit, or the wait never ends (`readexactly(n)` with `n`
                // over twice the limit, `read_to_end`). asyncio's `_wait_for_data` does the same.
                if st.paused {
                    st.paused = false;
                    let t = st.transport.clone();
                    drop(st);
                    if let Some(t) = t {
                        t.resume_reading();
                    }
                }
                Poll::Pending
            }
        }
    }

    /// Reads up to `n` bytes (at least one, unless at EOF: then an empty vector).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no byte is taken unless returned.
    ///
    /// # Errors
    ///
    /// The connection's error; cancellation.
    pub async fn read(&self, n: usize) -> Result<Vec<u8>> {
        poll_fn(|cx| {
            self.poll_take(cx, &mut |buf, eof| {
                if n == 0 {
                    Some(Ok(0))
                } else if !buf.is_empty() {
                    Some(Ok(buf.len().min(n)))
                } else if eof {
                    Some(Ok(0))
                } else {
                    None
                }
            })
        })
        .await
    }

    /// Reads until EOF.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the bytes stay buffered until EOF.
    ///
    /// # Errors
    ///
    /// As [`read`](StreamReader::read).
    pub async fn read_to_end(&self) -> Result<Vec<u8>> {
        // One take at EOF, not a loop of reads: a loop would hold what it read so far in a local
        // that a cancellation drops.
        poll_fn(|cx| self.poll_take(cx, &mut |buf, eof| eof.then_some(Ok(buf.len())))).await
    }

    /// Reads exactly `n` bytes.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing is taken until all `n` bytes are there.
    ///
    /// # Errors
    ///
    /// [`Error::IncompleteRead`] with the partial bytes when EOF comes first.
    pub async fn readexactly(&self, n: usize) -> Result<Vec<u8>> {
        poll_fn(|cx| {
            self.poll_take(cx, &mut |buf, eof| {
                if buf.len() >= n {
                    Some(Ok(n))
                } else if eof {
                    Some(Err(Error::IncompleteRead {
                        partial: buf.to_vec(),
                        expected: n,
                    }))
                } else {
                    None
                }
            })
        })
        .await
    }

    /// Reads up to and including `sep`.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing is taken until the separator is there.
    ///
    /// # Errors
    ///
    /// [`Error::LimitOverrun`] when the separator is not within the limit (the data stays
    /// buffered); [`Error::IncompleteRead`] when EOF comes first.
    pub async fn readuntil(&self, sep: &[u8]) -> Result<Vec<u8>> {
        let limit = self.limit();
        poll_fn(|cx| {
            self.poll_take(cx, &mut |buf, eof| {
                if sep.is_empty() {
                    return Some(Ok(0));
                }
                if let Some(i) = buf.windows(sep.len()).position(|w| w == sep) {
                    let end = i + sep.len();
                    if end > limit {
                        return Some(Err(Error::LimitOverrun { consumed: end }));
                    }
                    return Some(Ok(end));
                }
                if buf.len() > limit {
                    return Some(Err(Error::LimitOverrun {
                        consumed: buf.len(),
                    }));
                }
                if eof {
                    return Some(Err(Error::IncompleteRead {
                        partial: buf.to_vec(),
                        expected: buf.len() + sep.len(),
                    }));
                }
                None
            })
        })
        .await
    }

    /// Reads a line ending in `\n`; at EOF, whatever is left (possibly nothing).
    ///
    /// # Errors
    ///
    /// [`Error::LimitOverrun`] when the line is longer than the limit.
    pub async fn readline(&self) -> Result<Vec<u8>> {
        match self.readuntil(b"\n").await {
            Err(Error::IncompleteRead { .. }) => {
                let mut st = self.st.borrow_mut();
                Ok(std::mem::take(&mut st.buf))
            }
            r => r,
        }
    }

    /// vanilla's `recv_partition(sep)`: the bytes before `sep` (the separator is consumed and not
    /// returned).
    ///
    /// # Errors
    ///
    /// As [`readuntil`](StreamReader::readuntil).
    pub async fn recv_partition(&self, sep: &[u8]) -> Result<Vec<u8>> {
        let mut v = self.readuntil(sep).await?;
        v.truncate(v.len() - sep.len());
        Ok(v)
    }
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.st.borrow();
        f.debug_struct("StreamReader")
            .field("buffered", &st.buf.len())
            .field("eof", &st.eof)
            .field("limit", &st.limit)
            .field("paused", &st.paused)
            .finish()
    }
}

impl futures_io::AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = out.len();
        match self.poll_take(cx, &mut |buf, eof| {
            if n == 0 || !buf.is_empty() {
                Some(Ok(buf.len().min(n)))
            } else if eof {
                Some(Ok(0))
            } else {
                None
            }
        }) {
            Poll::Ready(Ok(v)) => {
                out[..v.len()].copy_from_slice(&v);
                Poll::Ready(Ok(v.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(to_io(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

fn to_io(e: Error) -> io::Error {
    let kind = e.io_kind().unwrap_or(io::ErrorKind::Other);
    io::Error::new(kind, e)
}

struct Shared {
    paused: Cell<bool>,
    lost: Cell<bool>,
    exc: RefCell<Option<Error>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Shared {
    fn wake_all(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// The protocol behind streams (asyncio's `StreamReaderProtocol`): feeds a [`StreamReader`] and
/// tells writers about flow control.
struct StreamProtocol {
    reader: StreamReader,
    shared: Rc<Shared>,
    on_connect: Option<Box<dyn FnOnce(Transport)>>,
}

impl Protocol for StreamProtocol {
    fn connection_made(&mut self, transport: Transport) {
        self.reader.st.borrow_mut().transport = Some(transport.clone());
        if let Some(f) = self.on_connect.take() {
            f(transport);
        }
    }
    fn data_received(&mut self, data: &[u8]) {
        self.reader.feed_data(data);
    }
    fn eof_received(&mut self) -> bool {
        self.reader.feed_eof();
        true // keep the writing side open: the writer closes it
    }
    fn connection_lost(&mut self, exc: Option<Error>) {
        match &exc {
            None => self.reader.feed_eof(),
            Some(e) => self.reader.set_exception(e.clone()),
        }
        self.reader.st.borrow_mut().transport = None;
        self.shared.lost.set(true);
        *self.shared.exc.borrow_mut() = exc;
        self.shared.wake_all();
    }
    fn pause_writing(&mut self) {
        self.shared.paused.set(true);
    }
    fn resume_writing(&mut self) {
        self.shared.paused.set(false);
        self.shared.wake_all();
    }
}

/// The writing half of a stream connection (asyncio's `StreamWriter`); a cheap handle.
#[derive(Clone)]
pub struct StreamWriter {
    transport: Transport,
    shared: Rc<Shared>,
    /// Held for its `Drop` (closing the connection with the last handle); read by `start_tls`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    owner: Rc<Owner>,
}

/// Closes the connection once every clone of its reader and writer is dropped (asyncio closes a
/// `StreamWriter`'s transport when it is garbage-collected), so a handler that returns without
/// `close` does not leave the connection open forever.
struct Owner(RefCell<Option<Transport>>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(t) = self.0.borrow().as_ref() {
            t.close();
        }
    }
}

impl StreamWriter {
    /// The writer that goes with `reader`: both share the connection's [`Owner`].
    fn paired(reader: &StreamReader, transport: Transport, shared: Rc<Shared>) -> Self {
        let owner = reader
            .owner
            .clone()
            .unwrap_or_else(|| Rc::new(Owner(RefCell::new(None))));
        *owner.0.borrow_mut() = Some(transport.clone());
        StreamWriter {
            owner,
            transport,
            shared,
        }
    }

    /// Writes `data` (buffered by the transport; follow with [`drain`](StreamWriter::drain)).
    ///
    /// # Errors
    ///
    /// As [`Transport::write`].
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.transport.write(data)
    }

    /// Writes several buffers.
    ///
    /// # Errors
    ///
    /// As [`Transport::writelines`].
    pub fn writelines(&self, parts: &[&[u8]]) -> Result<()> {
        self.transport.writelines(parts)
    }

    /// Waits until the write buffer is under its high watermark (asyncio's `drain`).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    ///
    /// # Errors
    ///
    /// The connection's error, or [`Error::Closed`], once the connection is lost.
    pub async fn drain(&self) -> Result<()> {
        poll_fn(|cx| {
            if let Some(e) = take_cancellation() {
                return Poll::Ready(Err(e.into()));
            }
            if self.shared.lost.get() {
                return Poll::Ready(Err(self
                    .shared
                    .exc
                    .borrow()
                    .clone()
                    .unwrap_or(Error::Closed)));
            }
            if !self.shared.paused.get() {
                return Poll::Ready(Ok(()));
            }
            self.shared.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Half-closes the connection after buffered data is sent.
    ///
    /// # Errors
    ///
    /// As [`Transport::write_eof`].
    pub fn write_eof(&self) -> Result<()> {
        self.transport.write_eof()
    }

    /// True: TCP and Unix streams can half-close.
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Closes the connection (buffered data is still sent).
    pub fn close(&self) {
        self.transport.close();
    }

    /// True once closing.
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// Waits until the connection is fully closed.
    ///
    /// # Errors
    ///
    /// Cancellation only; the connection's own error is not repeated here.
    pub async fn wait_closed(&self) -> Result<()> {
        poll_fn(|cx| {
            if let Some(e) = take_cancellation() {
                return Poll::Ready(Err(e.into()));
            }
            if self.shared.lost.get() {
                return Poll::Ready(Ok(()));
            }
            self.shared.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The transport underneath (extra info: addresses, socket).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Upgrades the connection to TLS (asyncio's `StreamWriter.start_tls`): the reader goes on
    /// receiving, now decrypted; use the returned writer from now on.
    ///
    /// # Errors
    ///
    /// As [`crate::tls::start_tls`].
    #[cfg(feature = "tls")]
    pub async fn start_tls(&self, side: crate::tls::TlsSide) -> Result<StreamWriter> {
        let transport = crate::tls::start_tls(&self.transport, side).await?;
        // From now on, dropping the last writer closes the TLS session (close_notify first).
        *self.owner.0.borrow_mut() = Some(transport.clone());
        Ok(StreamWriter {
            transport,
            shared: self.shared.clone(),
            owner: self.owner.clone(),
        })
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("transport", &self.transport)
            .field("paused", &self.shared.paused.get())
            .finish()
    }
}

impl futures_io::AsyncWrite for StreamWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.as_mut().poll_flush(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other.map(|r| r.map(|()| 0)),
        }
        self.transport.write(buf).map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut fut = std::pin::pin!(self.drain());
        fut.as_mut().poll(cx).map_err(to_io)
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.transport.close();
        Poll::Ready(Ok(()))
    }
}

fn make_pair(limit: usize) -> (StreamReader, Rc<Shared>, StreamProtocol) {
    let mut reader = StreamReader::new(limit);
    let shared = Rc::new(Shared {
        paused: Cell::new(false),
        lost: Cell::new(false),
        exc: RefCell::new(None),
        waiters: RefCell::new(Vec::new()),
    });
    let proto = StreamProtocol {
        reader: reader.clone(),
        shared: shared.clone(),
        on_connect: None,
    };
    reader.owner = Some(Rc::new(Owner(RefCell::new(None))));
    (reader, shared, proto)
}

/// Connects to `host:port` and returns a reader and a writer (asyncio's `open_connection`).
///
/// # Errors
///
/// As [`create_connection`].
pub async fn open_connection(
    host: &str,
    port: u16,
    limit: usize,
) -> Result<(StreamReader, StreamWriter)> {
    let (reader, shared, proto) = make_pair(limit);
    let transport = create_connection(move || proto, host, port, ConnectOptions::default()).await?;
    let writer = StreamWriter::paired(&reader, transport, shared);
    Ok((reader, writer))
}

/// Connects to the Unix socket at `path` (asyncio's `open_unix_connection`).
///
/// # Errors
///
/// As [`create_unix_connection`](crate::unix::create_unix_connection).
pub async fn open_unix_connection(
    path: impl AsRef<std::path::Path>,
    limit: usize,
) -> Result<(StreamReader, StreamWriter)> {
    let (reader, shared, proto) = make_pair(limit);
    let transport = crate::unix::create_unix_connection(move || proto, path).await?;
    let writer = StreamWriter::paired(&reader, transport, shared);
    Ok((reader, writer))
}

/// Serves `host:port`, running `client_connected(reader, writer)` as a task for each connection
/// (asyncio's `start_server`).
///
/// # Errors
///
/// As [`create_server`].
pub async fn start_server<F, Fut>(
    client_connected: F,
    host: &str,
    port: u16,
    limit: usize,
    options: ServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    create_server(stream_factory(client_connected, limit), host, port, options).await
}

/// Serves the Unix socket `path` with streams (asyncio's `start_unix_server`).
///
/// # Errors
///
/// As [`create_unix_server`](crate::unix::create_unix_server).
pub async fn start_unix_server<F, Fut>(
    client_connected: F,
    path: impl AsRef<std::path::Path>,
    limit: usize,
    options: ServerOptions,
) -> Result<Server>
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    crate::unix::create_unix_server(stream_factory(client_connected, limit), path, options).await
}

/// A protocol factory that runs `client_connected(reader, writer)` as a task per connection.
fn stream_factory<F, Fut>(
    client_connected: F,
    limit: usize,
) -> impl Fn() -> StreamProtocol + 'static
where
    F: Fn(StreamReader, StreamWriter) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    let cb = Rc::new(client_connected);
    move || {
        let (reader, shared, mut proto) = make_pair(limit);
        let cb = cb.clone();
        proto.on_connect = Some(Box::new(move |transport: Transport| {
            let writer = StreamWriter::paired(&reader, transport.clone(), shared);
            let fut = cb(reader, writer);
            let spawned: tulipa_futures::Result<Task<()>> = spawn(async move {
                if let Err(e) = fut.await {
                    tracing::debug!(error = %e, "stream client handler failed");
                }
                Ok(())
            });
            if spawned.is_err() {
                transport.abort();
            }
        }));
        proto
    }
}

/// vanilla's `tcp.listen`: a server whose accepted connections arrive on a
/// [`Recver`](tulipa_futures::message::Recver) as `(reader, writer)` pairs.
///
/// At most `queue` accepted connections wait to be received; beyond that, new connections are
/// aborted (and logged) rather than buffered without limit.
#[derive(Debug)]
pub struct Listener {
    server: Server,
    conns: tulipa_futures::message::Recver<(StreamReader, StreamWriter)>,
}

impl Listener {
    /// The next connection.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a connection is only taken when returned.
    ///
    /// # Errors
    ///
    /// A closed error once the listener is closed; cancellation.
    pub async fn recv(&self) -> Result<(StreamReader, StreamWriter)> {
        Ok(self.conns.recv().await?)
    }

    /// The connections as a recver (a `Stream`; `map`, `consume` and `pipe` as in vanilla).
    pub fn recver(&self) -> &tulipa_futures::message::Recver<(StreamReader, StreamWriter)> {
        &self.conns
    }

    /// The bound port (vanilla's `.port`).
    pub fn port(&self) -> Option<u16> {
        self.server.local_addr().map(|a| a.port())
    }

    /// The server underneath.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Stops listening; connections already received go on.
    pub fn close(&self) {
        self.server.close();
        self.conns.close();
    }
}

/// Listens on `host:port` and hands out connections as a recver (vanilla's `tcp.listen`).
///
/// # Errors
///
/// As [`create_server`].
///
/// # Examples
///
/// ```
/// use tulipa_transport::streams::{listen, open_connection, DEFAULT_LIMIT};
///
/// tulipa_futures::run(async {
///     let listener = listen("127.0.0.1", 0, 16, DEFAULT_LIMIT).await?;
///     let port = listener.port().unwrap();
///     let (_r, w) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
///     w.write(b"hello vanilla\n")?;
///     let (reader, _writer) = listener.recv().await?;
///     assert_eq!(reader.recv_partition(b"\n").await?, b"hello vanilla");
///     listener.close();
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub async fn listen(host: &str, port: u16, queue: usize, limit: usize) -> Result<Listener> {
    let (tx, rx) = tulipa_futures::message::buffered(queue.max(1));
    let factory = move || {
        let (reader, shared, mut proto) = make_pair(limit);
        let tx = tx.clone();
        proto.on_connect = Some(Box::new(move |transport: Transport| {
            let writer = StreamWriter::paired(&reader, transport.clone(), shared);
            if tx.try_send((reader, writer)).is_err() {
                tracing::warn!("listener queue full or closed: connection aborted");
                transport.abort();
            }
        }));
        proto
    };
    let server = create_server(factory, host, port, ServerOptions::default()).await?;
    Ok(Listener { server, conns: rx })
}
