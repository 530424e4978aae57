//! # tulipa-transport — layer 2 of Tulipa: transports and protocols
//!
//! PEP 3156's "Transports" and "Protocols" on the [`tulipa_futures`] layer: the user writes a
//! [`Protocol`] (callbacks: `connection_made`, `data_received`, `eof_received`,
//! `connection_lost`, flow control), the library drives it from a [`Transport`] over a socket.
//! [`create_connection`] and [`create_server`] make connections; [`streams`] offers the
//! coroutine style (`open_connection`, `start_server`, `StreamReader`, `StreamWriter`).
//!
//! ```
//! use tulipa_transport::streams::{open_connection, start_server, DEFAULT_LIMIT};
//! use tulipa_transport::ServerOptions;
//!
//! tulipa_futures::run(async {
//!     // An echo server on a free port...
//!     let server = start_server(
//!         |reader, writer| async move {
//!             let line = reader.readline().await?;
//!             writer.write(&line)?;
//!             writer.drain().await?;
//!             writer.close();
//!             Ok(())
//!         },
//!         "127.0.0.1", 0, DEFAULT_LIMIT, ServerOptions::default(),
//!     ).await?;
//!     let port = server.local_addr().unwrap().port();
//!     // ...and a client.
//!     let (reader, writer) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
//!     writer.write(b"hello\n")?;
//!     assert_eq!(reader.readline().await?, b"hello\n");
//!     server.close();
//!     Ok(())
//! })?;
//! # Ok::<(), tulipa_futures::Error>(())
//! ```

#![forbid(unsafe_code)]

mod connect;
mod dns;
mod error;
pub mod flow;
pub mod multicore;
mod protocol;
mod server;
pub mod sock;
pub mod streams;
mod sys;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod udp;
pub mod unix;

pub use connect::{connect_socket, create_connection, ConnectOptions};
pub use dns::{getaddrinfo, getnameinfo, NameInfoFlags};
pub use error::{Error, Result};
pub use protocol::{Buffered, BufferedProtocol, Protocol, ProtocolFactory};
pub use server::{create_server, Server, ServerOptions};
pub use transport::{Transport, READ_SIZE};
pub use udp::{create_datagram_endpoint, DatagramOptions, DatagramProtocol, DatagramTransport};

/// The user guide, `docs/guide.md`: its examples run as this crate's doctests (the crate that
/// sees every layer), so that the guide cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/guide.md")]
pub struct GuideExamples;
