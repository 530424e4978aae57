//! # tulipa-loop — layer 0 of Tulipa: the event loop
//!
//! This crate is the event loop of PEP 3156 ("tulip", the design that became Python's
//! asyncio), in Rust: a single-threaded loop that runs callbacks ([`EventLoop::call_soon`]),
//! timers ([`EventLoop::call_later`], [`EventLoop::call_at`], [`EventLoop::call_repeatedly`]),
//! callbacks on file descriptors ([`EventLoop::add_reader`], [`EventLoop::add_writer`]) and
//! signal handlers ([`EventLoop::add_signal_handler`]), plus a thread-safe door
//! ([`LoopHandle::call_soon_threadsafe`]) and a swappable [policy].
//!
//! Everything above it in Tulipa stands on it: `tulipa-futures` (futures, tasks) plugs into
//! [`EventLoop::run_until_complete`] through the [`Completion`] hook and runs its tasks through
//! [`rt`]; transports register their sockets with `add_reader` / `add_writer`.
//!
//! ```
//! use std::time::Duration;
//! use tulipa_loop::EventLoop;
//!
//! let lp = EventLoop::new()?;
//! let order = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
//!
//! let o = order.clone();
//! lp.call_later(Duration::from_millis(2), move || o.borrow_mut().push("timer"))?;
//! let o = order.clone();
//! lp.call_soon(move || o.borrow_mut().push("soon"))?;
//! let stopper = lp.clone();
//! lp.call_later(Duration::from_millis(5), move || stopper.stop())?;
//!
//! lp.run_forever()?;
//! assert_eq!(*order.borrow(), ["soon", "timer"]);
//! lp.close()?;
//! # Ok::<(), tulipa_loop::Error>(())
//! ```
//!
//! ## Guarantees
//!
//! - `call_soon` callbacks run in FIFO order; timers in deadline order, equal deadlines in
//!   scheduling order; a deadline in the past runs on the next iteration.
//! - One iteration runs only the callbacks that were ready when it started.
//! - A panicking callback never stops the loop: it is reported to the exception handler
//!   ([`EventLoop::set_exception_handler`]), by default logged through `tracing`.
//! - fd callbacks are level-triggered: they run on every iteration while the fd stays ready
//!   (`add_reader_edge` is for readers that drain their fd; see there).
//! - Misuse (running a closed loop, nesting loops on one thread) returns an [`Error`], never a
//!   panic or a hang.
//!
//! ## Threads
//!
//! [`EventLoop`] and [`Handle`] are `!Send`: a loop belongs to its thread. [`LoopHandle`] and
//! [`ThreadsafeHandle`] are `Send + Sync`.
//!
//! ## Testing with virtual time
//!
//! [`EventLoop::new_virtual`] (or the [`policy::VirtualTimePolicy`]) gives a loop whose clock
//! jumps to the next timer when nothing is ready: tests of long timeouts run in microseconds and
//! deterministically.

#![deny(unsafe_code)]

mod clock;
mod completion;
mod error;
mod event_loop;
mod exception;
mod handle;
mod loop_handle;
pub mod policy;
mod ready;
pub mod rt;
mod sys;
mod timers;

pub use completion::{Completion, DoneNotifier};
pub use error::{Error, Result};
pub use event_loop::{EventLoop, LoopStats};
pub use exception::{default_exception_handler, panic_message, ExceptionContext};
pub use handle::{Handle, TimerHandle};
pub use loop_handle::{LoopHandle, ThreadsafeHandle};
pub use policy::{get_event_loop, get_running_loop, new_event_loop, set_event_loop};

/// Signal numbers for [`EventLoop::add_signal_handler`] (`signal::SIGINT`, `signal::SIGTERM`, …).
pub mod signal {
    pub use signal_hook::consts::signal::*;
}

#[allow(dead_code)]
fn assert_thread_contract() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<LoopHandle>();
    send_sync::<ThreadsafeHandle>();
    send_sync::<rt::Scheduler>();
}
