//! Synchronisation primitives for tasks on one loop (asyncio's `locks.py`).
//!
//! Every waiting operation is cancel-safe: a task cancelled while waiting gets `Err(Cancelled)`
//! from the wait, has taken nothing, and leaves no stale waiter behind that would swallow the next
//! wake-up (a grant it had just received is handed on). Waiters are served in FIFO order.
//!
//! These types are `!Send`: they coordinate tasks of one loop, which never run at the same time,
//! so no atomic operation or lock is needed.

mod barrier;
mod condition;
mod event;
mod lock;
mod semaphore;
pub(crate) mod waitq;

pub use barrier::Barrier;
pub use condition::Condition;
pub use event::Event;
pub use lock::{Lock, LockGuard};
pub use semaphore::{Semaphore, SemaphoreGuard};
