//! Platform code, chosen here and nowhere else.
//!
//! Each backend provides:
//! - `poller`: `Poller` (level-triggered registration of raw file descriptors, edge-triggered
//!   where asked and supported: `register`,
//!   `delete`, tolerant of descriptors the user closed without removing them; `wait`; `notify`
//!   from any thread) and the `Events` buffer a wait fills;
//! - `signal`: a self-pipe per caught signal (the handler only writes a byte; the loop reads it
//!   and runs the user's handler as an ordinary callback), signal validation, and a
//!   main-thread check.
//!
//! Only Unix is supported today: the PEP's `add_reader` speaks file descriptors.

#[cfg(unix)]
mod unix;
#[cfg(unix)]
pub(crate) use unix::{poller, signal};

#[cfg(not(unix))]
compile_error!("tulipa-loop supports Unix-like systems only (epoll, kqueue, event ports)");
