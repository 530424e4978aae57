//! Platform code, chosen here and nowhere else.
//!
//! Each backend provides:
//! - `fd`: level-triggered registration of raw file descriptors with a [`polling::Poller`]
//!   (`add`, `modify`, `delete`), tolerant of descriptors the user closed without removing them;
//! - `signal`: a self-pipe per caught signal (the handler only writes a byte; the loop reads it
//!   and runs the user's handler as an ordinary callback), signal validation, and a
//!   main-thread check.
//!
//! Only Unix is supported today: the PEP's `add_reader` speaks file descriptors.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::{fd, signal};

#[cfg(not(unix))]
compile_error!("tulipa-loop supports Unix-like systems only (epoll, kqueue, event ports)");
