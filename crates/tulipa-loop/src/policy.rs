//! Event loop policies (PEP 3156 "Event Loop Policy"; asyncio's `get_event_loop` and friends).
//!
//! A policy decides what [`get_event_loop`] returns when no loop is running and how
//! [`new_event_loop`] makes loops. The policy is process-wide; the loops it hands out are
//! per-thread (a loop is `!Send`). The default policy keeps one real-time loop per thread;
//! [`VirtualTimePolicy`] gives loops on a virtual clock, which is how a test makes every loop
//! created by the code under test run its timers without waiting.
//!
//! # Examples
//!
//! Swapping the policy in a test (the policy is process-wide, so keep such tests in their own test
//! binary or restore the default at the end):
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use tulipa_loop::policy::{self, VirtualTimePolicy};
//!
//! policy::set_event_loop_policy(Some(Arc::new(VirtualTimePolicy::new())));
//! let lp = policy::new_event_loop()?;
//! assert!(lp.is_virtual_time());
//! let lp2 = lp.clone();
//! lp.call_later(Duration::from_secs(86_400), move || lp2.stop())?;
//! lp.run_forever()?; // a day passes in microseconds
//! lp.close()?;
//! policy::set_event_loop_policy(None); // back to the default policy
//! # Ok::<(), tulipa_loop::Error>(())
//! ```

use std::cell::RefCell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::Result;
use crate::EventLoop;

/// What a policy must do.
pub trait EventLoopPolicy: Send + Sync + fmt::Debug {
    /// Makes a new loop (not set as the thread's loop).
    ///
    /// # Errors
    ///
    /// When the loop cannot be created.
    fn new_event_loop(&self) -> Result<EventLoop>;

    /// The current thread's loop under this policy, created on first use.
    ///
    /// # Errors
    ///
    /// When a loop has to be created and cannot be.
    fn get_event_loop(&self) -> Result<EventLoop>;

    /// Sets (or with `None` clears) the current thread's loop under this policy.
    fn set_event_loop(&self, lp: Option<EventLoop>);
}

static NEXT_SLOT: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static SLOTS: RefCell<Vec<(u64, EventLoop)>> = const { RefCell::new(Vec::new()) };
}

/// Per-thread loop storage for one policy instance; building block for custom policies.
///
/// Dropping it (with the policy that owns it, say after [`set_event_loop_policy`] replaced that
/// policy) releases the loop it kept for the dropping thread at once. The loops it kept for other
/// threads are released when those threads exit: a thread's locals cannot be reached from
/// another thread.
#[derive(Debug)]
pub struct ThreadLoops {
    key: u64,
}

impl Default for ThreadLoops {
    fn default() -> Self {
        ThreadLoops {
            key: NEXT_SLOT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl ThreadLoops {
    /// This thread's loop, if set.
    pub fn get(&self) -> Option<EventLoop> {
        SLOTS.with(|s| {
            s.borrow()
                .iter()
                .find(|(k, _)| *k == self.key)
                .map(|(_, lp)| lp.clone())
        })
    }

    /// Sets or clears this thread's loop.
    pub fn set(&self, lp: Option<EventLoop>) {
        let old = SLOTS.with(|s| {
            let mut s = s.borrow_mut();
            let old = s
                .iter()
                .position(|(k, _)| *k == self.key)
                .map(|i| s.swap_remove(i).1);
            if let Some(lp) = lp {
                s.push((self.key, lp));
            }
            old
        });
        drop(old);
    }

    /// This thread's loop, made with `make` on first use.
    ///
    /// # Errors
    ///
    /// What `make` returns.
    pub fn get_or_create(&self, make: impl FnOnce() -> Result<EventLoop>) -> Result<EventLoop> {
        if let Some(lp) = self.get() {
            return Ok(lp);
        }
        let lp = make()?;
        self.set(Some(lp.clone()));
        Ok(lp)
    }
}

impl Drop for ThreadLoops {
    fn drop(&mut self) {
        // Taken out first, dropped after the borrow: a loop's drop may run user destructors
        // that ask for a loop again. During thread exit the slots may already be gone.
        let old = SLOTS
            .try_with(|s| {
                let mut s = s.borrow_mut();
                let i = s.iter().position(|(k, _)| *k == self.key)?;
                Some(s.swap_remove(i).1)
            })
            .ok()
            .flatten();
        drop(old);
    }
}

/// The default policy: one real-time loop per thread.
#[derive(Debug, Default)]
pub struct DefaultEventLoopPolicy {
    loops: ThreadLoops,
}

impl DefaultEventLoopPolicy {
    /// A new default policy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl EventLoopPolicy for DefaultEventLoopPolicy {
    fn new_event_loop(&self) -> Result<EventLoop> {
        EventLoop::new()
    }
    fn get_event_loop(&self) -> Result<EventLoop> {
        self.loops.get_or_create(EventLoop::new)
    }
    fn set_event_loop(&self, lp: Option<EventLoop>) {
        self.loops.set(lp);
    }
}

/// A test policy whose loops run on virtual time ([`EventLoop::new_virtual`]).
#[derive(Debug, Default)]
pub struct VirtualTimePolicy {
    loops: ThreadLoops,
}

impl VirtualTimePolicy {
    /// A new virtual-time policy.
    pub fn new() -> Self {
        Self::default()
    }
}

impl EventLoopPolicy for VirtualTimePolicy {
    fn new_event_loop(&self) -> Result<EventLoop> {
        EventLoop::new_virtual()
    }
    fn get_event_loop(&self) -> Result<EventLoop> {
        self.loops.get_or_create(EventLoop::new_virtual)
    }
    fn set_event_loop(&self, lp: Option<EventLoop>) {
        self.loops.set(lp);
    }
}

static POLICY: RwLock<Option<Arc<dyn EventLoopPolicy>>> = RwLock::new(None);

/// The process-wide policy (the default one until [`set_event_loop_policy`] is called).
pub fn get_event_loop_policy() -> Arc<dyn EventLoopPolicy> {
    if let Some(p) = POLICY.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
        return p.clone();
    }
    let mut w = POLICY.write().unwrap_or_else(|e| e.into_inner());
    w.get_or_insert_with(|| Arc::new(DefaultEventLoopPolicy::new()))
        .clone()
}

/// Replaces the process-wide policy; `None` restores a fresh default policy.
pub fn set_event_loop_policy(policy: Option<Arc<dyn EventLoopPolicy>>) {
    *POLICY.write().unwrap_or_else(|e| e.into_inner()) = policy;
}

/// The running loop of this thread if there is one, else the policy's loop for this thread.
///
/// # Errors
///
/// When the policy has to create a loop and cannot.
pub fn get_event_loop() -> Result<EventLoop> {
    match EventLoop::running() {
        Ok(lp) => Ok(lp),
        Err(_) => get_event_loop_policy().get_event_loop(),
    }
}

/// Sets this thread's loop under the current policy.
pub fn set_event_loop(lp: Option<EventLoop>) {
    get_event_loop_policy().set_event_loop(lp);
}

/// A new loop from the current policy.
///
/// # Errors
///
/// When the loop cannot be created.
pub fn new_event_loop() -> Result<EventLoop> {
    get_event_loop_policy().new_event_loop()
}

/// The loop running on this thread (asyncio's `get_running_loop`).
///
/// # Errors
///
/// [`Error::NoRunningLoop`](crate::Error::NoRunningLoop) when none is running.
pub fn get_running_loop() -> Result<EventLoop> {
    EventLoop::running()
}
