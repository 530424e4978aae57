//! # tulipa-futures — layer 1 of Tulipa: futures, tasks and asyncio's cancellation
//!
//! This crate brings PEP 3156's "Futures", "Tasks", "Coroutines and the Scheduler", "Waiting for
//! Multiple Coroutines", "Sleeping" and "Cancellation" to Rust, on the [`tulipa_loop`] event loop.
//! Rust's `async`/`.await` plays the role of `yield from`.
//!
//! - [`Future<T>`]: a result slot bound to a loop, with done callbacks.
//! - [`Task<T>`]: a Rust future driven by the loop ([`spawn`], [`spawn_on`]); also a `Future<T>`.
//! - asyncio's cancellation: [`Task::cancel`] is delivered as `Err(Cancelled)` from the next
//!   Tulipa awaitable the task polls, so the task can clean up and then propagate or suppress it
//!   ([`Task::uncancel`]). Every Tulipa awaitable is cancel-safe. [`Task::abort`] is Rust's way.
//! - Combinators: [`wait`], [`as_completed`], [`gather`], [`shield`], [`sleep`], [`wait_for`],
//!   [`timeout`] and reschedulable [`TimeoutScope`]s, structured concurrency with [`task_group`].
//! - Blocking work: [`ThreadPoolExecutor`], [`run_in_executor`], [`ConcurrentFuture`],
//!   [`wrap_future`], [`spawn_threadsafe`].
//! - [`run`]: asyncio's `asyncio.run`.
//!
//! ```
//! use std::time::Duration;
//! use tulipa_futures::{gather, run, sleep, spawn, timeout, Error};
//!
//! let out = run(async {
//!     let tasks = (1..=3u64)
//!         .map(|i| spawn(async move {
//!             sleep(Duration::from_millis(i)).await?;
//!             Ok(i * 10)
//!         }))
//!         .collect::<Result<Vec<_>, _>>()?;
//!     let all = gather(tasks)?.await?;
//!
//!     // A timeout cancels the work inside it; the cancellation comes out as `Timeout`.
//!     let slow = timeout(Duration::from_millis(5), sleep(Duration::from_secs(60))).await;
//!     assert!(matches!(slow, Err(Error::Timeout)));
//!     Ok(all)
//! })?;
//! assert_eq!(out, [10, 20, 30]);
//! # Ok::<(), tulipa_futures::Error>(())
//! ```
//!
//! ## Threads
//!
//! `Future` and `Task` are `!Send` (they belong to their loop's thread); [`ConcurrentFuture`] is
//! the thread-safe one. Task wakers are `Send`: a wake on the loop's thread is a plain queue push,
//! a wake from elsewhere goes through the loop's thread-safe door.

#![forbid(unsafe_code)]

mod cancel;
pub mod deferred;
mod error;
pub mod executor;
mod future;
mod gather;
pub mod message;
pub mod queue;
mod registry;
mod runner;
pub mod select;
mod sleep;
pub mod state_machine;
pub mod sync;
mod task;
mod task_group;
pub mod threads;
mod timeout;
mod wait;
mod waiters;

pub use error::{Cancelled, Error, Result};
pub use executor::{
    run_in_executor, set_default_executor, shutdown_default_executor, spawn_threadsafe,
    wrap_future, ConcurrentFuture, ThreadPoolExecutor,
};
pub use future::{CallbackId, Future};
pub use gather::{gather, gather_settled, shield};
pub use runner::{run, run_until_complete, SHUTDOWN_GRACE};
pub use sleep::{sleep, sleep_until, Sleep};
pub use task::{all_tasks, current_task, spawn, spawn_on, Task, TaskRef};
pub use task_group::{task_group, TaskGroup};
pub use timeout::{timeout, timeout_at, wait_for, TimeoutScope};
pub use wait::{as_completed, wait, AsCompleted, DonePending, ReturnWhen};

/// What this layer offers the layers above from the loop below (the layering rule: upper crates
/// depend on `tulipa-futures` only), plus the cancellation hook every awaitable must call.
pub mod rt {
    pub use crate::cancel::take_cancellation;
    pub use tulipa_loop::{
        panic_message, policy, signal, Completion, DoneNotifier, Error as LoopError, EventLoop,
        ExceptionContext, Handle, LoopHandle, LoopStats, ThreadsafeHandle, TimerHandle,
    };
}

#[allow(dead_code)]
fn assert_thread_contract() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ConcurrentFuture<u8>>();
    send_sync::<ThreadPoolExecutor>();
    send_sync::<Error>();
}
