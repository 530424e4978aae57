//! The loop's error type.

use std::io;

/// Everything that can go wrong when using an [`EventLoop`](crate::EventLoop).
///
/// Asyncio raises `RuntimeError` for most of these; Tulipa returns them as values so a caller can
/// tell a closed loop from a nested run without matching on strings.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The loop was closed with [`EventLoop::close`](crate::EventLoop::close); it accepts no more work.
    #[error("the event loop is closed")]
    Closed,
    /// The loop is already running (`run_forever` twice, or `close` while running).
    #[error("the event loop is already running")]
    AlreadyRunning,
    /// Another event loop is already running on this thread; loops do not nest.
    #[error("cannot run an event loop while another loop is running in this thread")]
    NestedRun,
    /// `run_until_complete` returned because the loop was stopped before the completion was done.
    #[error("the event loop stopped before the awaited completion was done")]
    StoppedBeforeComplete,
    /// There is no running loop in this thread (`get_running_loop`).
    #[error("no running event loop in this thread")]
    NoRunningLoop,
    /// The signal number is invalid, or the signal cannot be caught (SIGKILL, SIGSTOP, …).
    #[error("signal {signal}: {reason}")]
    InvalidSignal {
        /// The signal number that was refused.
        signal: i32,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Signal handlers can only be installed by a loop on the process's main thread.
    #[error("signal handlers can only be added by a loop on the main thread")]
    NotMainThread,
    /// An operating-system call failed.
    #[error("{op}: {source}")]
    Io {
        /// The operation that failed, for example `"add_reader(fd 7)"`.
        op: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// True for [`Error::Closed`].
    pub fn is_closed(&self) -> bool {
        matches!(self, Error::Closed)
    }

    pub(crate) fn io(op: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            op: op.into(),
            source,
        }
    }
}

/// The loop's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
