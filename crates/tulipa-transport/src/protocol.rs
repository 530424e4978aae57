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

    /// Zero-copy reads (asyncio's `BufferedProtocol`): return a buffer for the transport to read
    /// into (at most `size_hint` bytes are read), then [`buffer_updated`](Protocol::buffer_updated)
    /// says how many arrived. The default (`None`) uses `data_received`. See [`Buffered`].
    fn get_buffer(&mut self, size_hint: usize) -> Option<&mut [u8]> {
        let _ = size_hint;
        None
    }

    /// `nbytes` bytes were read into the buffer from [`get_buffer`](Protocol::get_buffer).
    fn buffer_updated(&mut self, nbytes: usize) {
        let _ = nbytes;
    }
}

/// asyncio's `BufferedProtocol`: the protocol owns the read buffer, so bytes arrive without a
/// copy. Wrap it in [`Buffered`] to use it wherever a [`Protocol`] is expected.
pub trait BufferedProtocol: 'static {
    /// As [`Protocol::connection_made`].
    fn connection_made(&mut self, transport: Transport);
    /// A buffer to read into; `size_hint` is the most the transport reads at once. Must not be
    /// empty.
    fn get_buffer(&mut self, size_hint: usize) -> &mut [u8];
    /// `nbytes` bytes were written at the start of the last buffer.
    fn buffer_updated(&mut self, nbytes: usize);
    /// As [`Protocol::eof_received`].
    fn eof_received(&mut self) -> bool {
        false
    }
    /// As [`Protocol::connection_lost`].
    fn connection_lost(&mut self, exc: Option<Error>);
    /// As [`Protocol::pause_writing`].
    fn pause_writing(&mut self) {}
    /// As [`Protocol::resume_writing`].
    fn resume_writing(&mut self) {}
}

/// Adapts a [`BufferedProtocol`] to [`Protocol`]: `create_connection(|| Buffered(MyProto), …)`.
#[derive(Debug)]
pub struct Buffered<B>(pub B);

impl<B: BufferedProtocol> Protocol for Buffered<B> {
    fn connection_made(&mut self, transport: Transport) {
        self.0.connection_made(transport);
    }
    fn data_received(&mut self, mut data: &[u8]) {
        // Only reached if a transport does not use `get_buffer`: copy through the buffer.
        while !data.is_empty() {
            let buf = self.0.get_buffer(data.len());
            let n = buf.len().min(data.len());
            if n == 0 {
                return;
            }
            buf[..n].copy_from_slice(&data[..n]);
            self.0.buffer_updated(n);
            data = &data[n..];
        }
    }
    fn eof_received(&mut self) -> bool {
        self.0.eof_received()
    }
    fn connection_lost(&mut self, exc: Option<Error>) {
        self.0.connection_lost(exc);
    }
    fn pause_writing(&mut self) {
        self.0.pause_writing();
    }
    fn resume_writing(&mut self) {
        self.0.resume_writing();
    }
    fn get_buffer(&mut self, size_hint: usize) -> Option<&mut [u8]> {
        Some(self.0.get_buffer(size_hint))
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        self.0.buffer_updated(nbytes);
    }
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
