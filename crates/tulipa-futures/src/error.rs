//! The futures layer's error type.

use std::fmt;
use std::sync::Arc;

/// Why an operation of this layer failed, or how a future ended badly.
///
/// Cheap to clone (every payload is shared), `Send + Sync`, so the same error can be read from a
/// future several times and cross threads with executor results.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The future or task was cancelled (asyncio's `CancelledError`).
    #[error("{0}")]
    Cancelled(Cancelled),
    /// A timeout expired (asyncio's `TimeoutError`).
    #[error("timed out")]
    Timeout,
    /// The operation is not valid in the object's current state (asyncio's `InvalidStateError`).
    #[error("invalid state: {0}")]
    InvalidState(&'static str),
    /// A bad argument (asyncio raises `ValueError`), for example `wait` on an empty set.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The task's future panicked; the panic message is kept.
    #[error("task panicked: {0}")]
    Panicked(Arc<str>),
    /// Several errors from a [`TaskGroup`](crate::TaskGroup) (asyncio's `ExceptionGroup`).
    #[error("{} error(s) in task group: {}", .0.len(), join(.0))]
    Group(Arc<[Error]>),
    /// The loop refused (for example it is closed).
    #[error(transparent)]
    Loop(Arc<tulipa_loop::Error>),
    /// An I/O error.
    #[error(transparent)]
    Io(Arc<std::io::Error>),
    /// `put_nowait` on a full queue (asyncio's `QueueFull`).
    #[error("the queue is full")]
    QueueFull,
    /// `get_nowait` on an empty queue (asyncio's `QueueEmpty`).
    #[error("the queue is empty")]
    QueueEmpty,
    /// The queue was shut down (asyncio's `QueueShutDown`, Python 3.13).
    #[error("the queue is shut down")]
    QueueShutDown,
    /// A state machine transition that was not declared, or an unknown state (gevent_async's
    /// `ValidationError`).
    #[error("validation error: {0}")]
    Validation(Arc<str>),
    /// The barrier was aborted or reset (asyncio's `BrokenBarrierError`).
    #[error("the barrier is broken")]
    BrokenBarrier,
    /// The executor was shut down and accepts no more work.
    #[error("the executor is shut down")]
    ExecutorShutdown,
    /// The pipe, channel or other message end was closed (vanilla's `Closed`): a send to a
    /// closed pipe, or a receive once a closed pipe is drained.
    #[error("the pipe is closed")]
    Closed,
    /// A `try_` operation would have had to wait (the pipe is full, or has nothing to receive).
    #[error("the operation would have to wait")]
    WouldBlock,
    /// Any other error, from user code.
    #[error(transparent)]
    Other(Arc<dyn std::error::Error + Send + Sync>),
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The payload of [`Error::Cancelled`]: the optional message given to `cancel`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cancelled {
    message: Option<Arc<str>>,
}

impl Cancelled {
    pub(crate) fn new(message: Option<Arc<str>>) -> Self {
        Cancelled { message }
    }

    /// The message passed to `cancel`, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }
}

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => write!(f, "cancelled: {m}"),
            None => f.write_str("cancelled"),
        }
    }
}

impl Error {
    /// Wraps any error as [`Error::Other`].
    pub fn other(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Other(Arc::new(e))
    }

    /// A cancellation error with an optional message.
    pub fn cancelled(message: Option<&str>) -> Self {
        Error::Cancelled(Cancelled::new(message.map(Arc::from)))
    }

    /// True for [`Error::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Error::Cancelled(_))
    }

    /// True for [`Error::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout)
    }

    /// True for [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    /// True for [`Error::InvalidState`].
    pub fn is_invalid_state(&self) -> bool {
        matches!(self, Error::InvalidState(_))
    }
}

impl From<tulipa_loop::Error> for Error {
    fn from(e: tulipa_loop::Error) -> Self {
        Error::Loop(Arc::new(e))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(Arc::new(e))
    }
}

/// This layer's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
