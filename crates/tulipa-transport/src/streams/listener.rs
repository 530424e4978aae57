//! vanilla's `tcp.listen`: accepted stream connections handed out through a recver.

use super::protocol::make_pair;
use super::reader::StreamReader;
use super::writer::StreamWriter;
use crate::error::Result;
use crate::server::{create_server, Server, ServerOptions};
use crate::transport::Transport;

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
