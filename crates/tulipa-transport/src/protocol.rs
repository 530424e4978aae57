//! Protocols: what the user implements (PEP 3156 "Protocols", asyncio's `protocols.py`).
//!
//! The transport calls the protocol, always from the loop's thread, in this order:
//!
//! ```text
//! connection_made  (data_received)*  [eof_received]  connection_lost
//! ```
//!
//! `connection_made` once, then any number of `data_received`, then at most one `eof_received`,
//! then `connection_lost` exactly once (with `None` after a clean close, `Some(error)` otherwise).
//! `pause_writing` / `resume_writing` come in pairs, whenever the transport's write buffer crosses
//! its high and then its low watermark.
//!
//! A protocol may call its transport from any of these (write, close, pause reading): nothing is
//! re-entered. If a transport call would need to call the protocol back while it is already busy
//! in one of these methods (`pause_writing` from a `write` inside `data_received`), that call is
//! deferred to the next loop iteration.

use crate::error::Error;
use crate::transport::Transport;

/// A stream protocol (asyncio's `Protocol`).
///
/// # Examples
///
/// An echo protocol:
///
/// ```
/// use tulipa_transport::{Error, Protocol, Transport};
///
/// #[derive(Default)]
/// struct Echo {
///     transport: Option<Transport>,
/// }
///
/// impl Protocol for Echo {
///     fn connection_made(&mut self, transport: Transport) {
///         self.transport = Some(transport);
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         if let Some(t) = &self.transport {
///             let _ = t.write(data);
///         }
///     }
///     fn connection_lost(&mut self, _exc: Option<Error>) {
///         self.transport = None; // breaks the transport <-> protocol cycle
///     }
/// }
/// ```
pub trait Protocol: 'static {
    /// The connection is up; keep `transport` to write to it.
    fn connection_made(&mut self, transport: Transport);

    /// Bytes arrived. The slice is only valid during the call.
    fn data_received(&mut self, data: &[u8]);

    /// The peer closed its writing side. Return `true` to keep the connection half-open (you can
    /// still write, then `close`); `false` (the default) closes the transport.
    fn eof_received(&mut self) -> bool {
        false
    }

    /// The connection is closed: `None` after a clean close, else the error. Called exactly once.
    fn connection_lost(&mut self, exc: Option<Error>);

    /// The transport's write buffer went over the high watermark: stop writing for now.
    fn pause_writing(&mut self) {}

    /// The write buffer drained under the low watermark: writing may go on.
    fn resume_writing(&mut self) {}
}

/// Makes a protocol for each new connection (asyncio's `protocol_factory`).
pub trait ProtocolFactory: 'static {
    /// A fresh protocol.
    fn make(&self) -> Box<dyn Protocol>;
}

impl<F, P> ProtocolFactory for F
where
    F: Fn() -> P + 'static,
    P: Protocol,
{
    fn make(&self) -> Box<dyn Protocol> {
        Box::new(self())
    }
}
