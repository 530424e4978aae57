//! Streams: coroutine-style reading and writing (asyncio's `streams.py`).
//!
//! [`open_connection`] (or [`open_connection_with`], for [`ConnectOptions`]: a local address,
//! Happy Eyeballs, TLS) and [`start_server`] give a [`StreamReader`] and a [`StreamWriter`] per
//! connection. The reader buffers what arrives, up to twice its limit, then pauses reading on
//! the transport until the buffer is consumed (flow control towards the peer); the writer's
//! [`drain`](StreamWriter::drain) waits while the transport's write buffer is over its high
//! watermark (flow control from the peer).
//!
//! Both also implement the `futures-io` traits: the reader [`AsyncRead`](futures_io::AsyncRead)
//! and [`AsyncBufRead`](futures_io::AsyncBufRead), the writer
//! [`AsyncWrite`](futures_io::AsyncWrite) (whose `poll_flush` waits until every byte is in the
//! kernel's hands, and `poll_close` until the connection is closed; both fail with
//! `ConnectionAborted` when an abort dropped buffered bytes).
//!
//! # Guarantees
//!
//! - Every read is cancel-safe: a read cancelled (its future dropped) has taken no byte, and
//!   the next read sees everything that arrived.
//! - One read waits at a time: a read that must wait while another read of the same reader (a
//!   clone, in another task) waits fails with an invalid-state error, as asyncio raises
//!   `RuntimeError`.
//! - The connection closes when the last clone of its reader and writer is dropped.
//!
//! Modules: `reader` (the buffer and its reads), `buf_read` (the reader's `futures-io` side),
//! `writer` (writing, flow control, closing), `protocol` (the protocol feeding both),
//! `listener` (vanilla's `tcp.listen`).

mod buf_read;
mod listener;
mod protocol;
mod reader;
mod writer;

use std::io;
use std::rc::Rc;

use tulipa_futures::{spawn, Task};

use crate::connect::{create_connection, ConnectOptions};
use crate::error::{Error, Result};
use crate::server::{create_server, Server, ServerOptions};
use crate::transport::Transport;

pub use listener::{listen, Listener};
use protocol::{make_pair, StreamProtocol};
pub use reader::StreamReader;
pub use writer::StreamWriter;

/// The default buffer limit of a [`StreamReader`] (64 KiB, as asyncio).
pub const DEFAULT_LIMIT: usize = 64 * 1024;

fn to_io(e: Error) -> io::Error {
    let kind = e.io_kind().unwrap_or(io::ErrorKind::Other);
    io::Error::new(kind, e)
}

/// Connects to `host:port` and returns a reader and a writer (asyncio's `open_connection`),
/// with [`ConnectOptions::default`]; see [`open_connection_with`] for the options.
///
/// # Cancel safety
///
/// Cancel-safe: a cancelled `open_connection` leaves no connection open (see
/// [`create_connection`]) and no reader or writer behind; no byte can have been read yet.
///
/// # Errors
///
/// As [`create_connection`].
pub async fn open_connection(
    host: &str,
    port: u16,
    limit: usize,
) -> Result<(StreamReader, StreamWriter)> {
    open_connection_with(host, port, limit, ConnectOptions::default()).await
}

/// [`open_connection`] with options, as asyncio's `open_connection(**kwds)` passes them on to
/// `create_connection`: [`ConnectOptions::local_addr`], Happy Eyeballs, TLS
/// ([`ConnectOptions::tls`]: the streams then read and write plaintext).
///
/// # Cancel safety
///
/// As [`open_connection`].
///
/// # Errors
///
/// As [`create_connection`].
///
/// # Examples
///
/// ```
/// use tulipa_transport::streams::{listen, open_connection_with, DEFAULT_LIMIT};
/// use tulipa_transport::ConnectOptions;
///
/// tulipa_futures::run(async {
///     let listener = listen("127.0.0.1", 0, 16, DEFAULT_LIMIT).await?;
///     let port = listener.port().unwrap();
///     let mut options = ConnectOptions::default();
///     options.local_addr = Some("127.0.0.1:0".parse().unwrap());
///     let (_r, w) = open_connection_with("127.0.0.1", port, DEFAULT_LIMIT, options).await?;
///     w.write(b"hi\n")?;
///     let (reader, _writer) = listener.recv().await?;
///     assert_eq!(reader.readline().await?, b"hi\n");
///     listener.close();
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub async fn open_connection_with(
    host: &str,
    port: u16,
    limit: usize,
    options: ConnectOptions,
) -> Result<(StreamReader, StreamWriter)> {
    let (reader, shared, proto) = make_pair(limit);
    let transport = create_connection(move || proto, host, port, options).await?;
    let writer = StreamWriter::paired(&reader, transport, shared);
    Ok((reader, writer))
}

/// Connects to the Unix socket at `path` (asyncio's `open_unix_connection`).
///
/// # Cancel safety
///
/// Cancel-safe, as [`open_connection`]: a cancelled connect leaves no connection open.
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
