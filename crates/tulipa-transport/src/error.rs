//! The transport layer's error type.

use std::io;
use std::sync::Arc;

/// What went wrong with a connection, a server or a stream.
///
/// Cheap to clone (payloads are shared) so the same error can reach `connection_lost` and a
/// waiting stream reader.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system error, with what was being done.
    #[error("{op}: {source}")]
    Io {
        /// The operation, for example `"connect to 127.0.0.1:8080"`.
        op: Arc<str>,
        /// The error.
        #[source]
        source: Arc<io::Error>,
    },
    /// The transport is closing or closed.
    #[error("the transport is closed")]
    Closed,
    /// `write` after `write_eof`.
    #[error("cannot write after write_eof()")]
    WriteAfterEof,
    /// `readexactly` reached EOF first; the bytes read so far are kept (asyncio's
    /// `IncompleteReadError`).
    #[error("{} bytes read on a total of {expected} expected bytes", .partial.len())]
    IncompleteRead {
        /// The bytes read before EOF.
        partial: Vec<u8>,
        /// How many were asked for.
        expected: usize,
    },
    /// `readuntil` did not find the separator within the limit (asyncio's `LimitOverrunError`);
    /// the data stays in the buffer.
    #[error("separator not found within the limit ({consumed} bytes buffered)")]
    LimitOverrun {
        /// Bytes in the buffer when the limit was hit.
        consumed: usize,
    },
    /// Name resolution failed or gave no address.
    #[error("cannot resolve {host}:{port}: {reason}")]
    Resolve {
        /// The host asked for.
        host: Arc<str>,
        /// The port asked for.
        port: u16,
        /// Why.
        reason: Arc<str>,
    },
    /// The TLS handshake or session failed: a bad, expired or untrusted certificate, a name
    /// mismatch, a protocol error, or the handshake timed out.
    #[error("TLS: {reason}")]
    Tls {
        /// What went wrong, as rustls tells it.
        reason: Arc<str>,
    },
    /// An error of the layer below (cancellation, timeout, closed loop, …).
    #[error(transparent)]
    Futures(tulipa_futures::Error),
}

/// A futures error that carries a transport error (one that went through a task's
/// `tulipa_futures::Result`) turns back into that transport error.
impl From<tulipa_futures::Error> for Error {
    fn from(e: tulipa_futures::Error) -> Self {
        if let tulipa_futures::Error::Other(inner) = &e {
            if let Some(ours) = inner.downcast_ref::<Error>() {
                return ours.clone();
            }
        }
        Error::Futures(e)
    }
}

impl Error {
    pub(crate) fn io(op: impl Into<String>, e: io::Error) -> Self {
        Error::Io {
            op: Arc::from(op.into()),
            source: Arc::new(e),
        }
    }

    /// The I/O error kind, when this is an I/O error.
    pub fn io_kind(&self) -> Option<io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }

    /// True when a task cancellation is the cause.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Futures(e) if e.is_cancelled())
    }
}

impl From<tulipa_futures::rt::LoopError> for Error {
    fn from(e: tulipa_futures::rt::LoopError) -> Self {
        Error::Futures(e.into())
    }
}

/// This layer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Lets `?` carry a transport error out of a task (tasks return `tulipa_futures::Result`): a
/// cancellation or other futures error stays itself, anything else becomes `Error::Other`.
impl From<Error> for tulipa_futures::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Futures(inner) => inner,
            other => tulipa_futures::Error::other(other),
        }
    }
}
