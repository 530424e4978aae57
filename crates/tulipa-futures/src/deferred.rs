//! Deferred calls into an owner task (gevent_async's `DeferredCallHandler`).
//!
//! An owner keeps some state that must only be touched from its own task, between its own steps
//! (the seed's `Manager` that manages resources atomically). Other tasks do not touch the state;
//! they post *calls* into the owner's mailbox:
//!
//! - [`Deferred::sync`] waits for the call's result (errors propagate; an optional timeout gives
//!   [`Error::Timeout`]; a call that had not started by then is withdrawn);
//! - [`Deferred::oneway`] returns at once; a failure is reported to the loop's exception handler.
//!
//! The owner runs pending calls with [`Deferred::process`], inside its own task, one at a time,
//! in the order they were posted; with `forever` it keeps waiting for new calls until
//! [`Deferred::stop_processing`]. A whitelist restricts which calls (by name) may run now; the
//! others stay queued.
//!
//! Calls are `async` closures that get an `Rc` of the owner's state (use `Cell`/`RefCell` inside
//! it), so a call may itself await (the seed's `ABitSlow`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::future::Future as StdFuture;
use std::panic::Location;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use tulipa_loop::{EventLoop, ExceptionContext};

use crate::error::{Error, Result};
use crate::future::Future;
use crate::sync::Event;
use crate::task::catch_unwind_future;
use crate::timeout::timeout;

type CallFuture = Pin<Box<dyn StdFuture<Output = ()>>>;
type Call<S> = Box<dyn FnOnce(Rc<S>) -> CallFuture>;

struct Entry<S> {
    id: u64,
    name: &'static str,
    call: Call<S>,
}

struct Inner<S> {
    state: Rc<S>,
    mailbox: RefCell<VecDeque<Entry<S>>>,
    arrived: Event,
    stop: Cell<bool>,
    next_id: Cell<u64>,
}

/// An owner's state plus its mailbox of deferred calls; a cheap handle (`Clone`).
///
/// # Examples
///
/// ```
/// use std::cell::RefCell;
/// use tulipa_futures::{deferred::Deferred, run, spawn, Error};
///
/// run(async {
///     let manager = Deferred::new(RefCell::new(Vec::<u32>::new()));
///     let owner = manager.clone();
///     let owner_task = spawn(async move { owner.process(true, None).await })?;
///
///     manager.oneway("update_resource", |res| async move {
///         res.borrow_mut().push(7);
///         Ok(())
///     });
///     let len = manager
///         .sync("access_resources", None, |res| async move { Ok(res.borrow().len()) })
///         .await?;
///     assert_eq!(len, 1);
///
///     manager.stop_processing();
///     owner_task.await?;
///     Ok(())
/// })?;
/// # Ok::<(), Error>(())
/// ```
pub struct Deferred<S: 'static> {
    inner: Rc<Inner<S>>,
}

impl<S> Clone for Deferred<S> {
    fn clone(&self) -> Self {
        Deferred {
            inner: self.inner.clone(),
        }
    }
}

impl<S: 'static> Deferred<S> {
    /// Wraps the owner's state.
    pub fn new(state: S) -> Self {
        Deferred {
            inner: Rc::new(Inner {
                state: Rc::new(state),
                mailbox: RefCell::new(VecDeque::new()),
                arrived: Event::new(),
                stop: Cell::new(false),
                next_id: Cell::new(0),
            }),
        }
    }

    /// Direct access to the state, bypassing the mailbox ("at your own risk", as the seed says:
    /// the owner may be in the middle of a step).
    pub fn state(&self) -> &Rc<S> {
        &self.inner.state
    }

    /// Calls waiting to be processed.
    pub fn pending(&self) -> usize {
        self.inner.mailbox.borrow().len()
    }

    fn post(&self, name: &'static str, call: Call<S>) -> u64 {
        let id = self.inner.next_id.get() + 1;
        self.inner.next_id.set(id);
        self.inner
            .mailbox
            .borrow_mut()
            .push_back(Entry { id, name, call });
        self.inner.arrived.set();
        id
    }

    fn withdraw(&self, id: u64) -> bool {
        let mut mb = self.inner.mailbox.borrow_mut();
        match mb.iter().position(|e| e.id == id) {
            Some(i) => {
                mb.remove(i);
                true
            }
            None => false,
        }
    }

    /// Posts a call and waits for its result, as if calling the owner directly. With `limit`, a
    /// call not finished in time gives [`Error::Timeout`]; if it had not started yet it is
    /// withdrawn, otherwise it runs to its end and its result is dropped.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe as far as possible: a call not started yet is withdrawn.
    ///
    /// # Errors
    ///
    /// The call's own error (a panic becomes [`Error::Panicked`]); [`Error::Timeout`];
    /// [`Error::Cancelled`]; [`Error::Loop`] outside a running loop.
    pub async fn sync<R, F, Fut>(
        &self,
        name: &'static str,
        limit: Option<Duration>,
        f: F,
    ) -> Result<R>
    where
        R: 'static,
        F: FnOnce(Rc<S>) -> Fut + 'static,
        Fut: StdFuture<Output = Result<R>> + 'static,
    {
        let lp = EventLoop::running()?;
        let result: Future<R> = Future::new(&lp);
        let r2 = result.clone();
        let id = self.post(
            name,
            Box::new(move |s| {
                Box::pin(async move {
                    // A panic must reach the caller too, or it would wait forever for a result
                    // nobody sets (`f(s)` is inside the guarded block: it may panic as well).
                    let outcome = catch_unwind_future(async move { f(s).await }).await;
                    // The caller may be gone (timed out, cancelled): then nobody wants the result.
                    let _ = match outcome {
                        Ok(Ok(v)) => r2.set_result(v),
                        Ok(Err(e)) => r2.set_exception(e),
                        Err(msg) => r2.set_exception(Error::Panicked(msg)),
                    };
                })
            }),
        );
        let outcome = match limit {
            None => result.clone().await,
            Some(d) => timeout(d, result.clone()).await,
        };
        if outcome.is_err() {
            // Not `!result.done()`: the timeout or the cancellation has just cancelled `result`
            // itself. Whether the call started is whether it is still in the mailbox.
            self.withdraw(id);
        }
        outcome
    }

    /// Posts a call and returns at once. A failure is reported to the loop's exception handler
    /// with the call's name.
    #[track_caller]
    pub fn oneway<F, Fut>(&self, name: &'static str, f: F)
    where
        F: FnOnce(Rc<S>) -> Fut + 'static,
        Fut: StdFuture<Output = Result<()>> + 'static,
    {
        let at = Location::caller();
        self.post(
            name,
            Box::new(move |s| {
                Box::pin(async move {
                    if let Err(e) = f(s).await {
                        if let Ok(lp) = EventLoop::running() {
                            lp.call_exception_handler(
                                ExceptionContext::new("a oneway deferred call failed")
                                    .with_error(e)
                                    .with_location(at)
                                    .with_source(format!("deferred call '{name}'")),
                            );
                        }
                    }
                })
            }),
        );
    }

    /// Runs the pending calls, in order, inside the calling (owner's) task. With a `whitelist`,
    /// only calls with those names run; the others stay queued. With `forever`, waits for more
    /// calls until [`stop_processing`](Deferred::stop_processing).
    ///
    /// # Cancel safety
    ///
    /// A cancellation is delivered between calls or inside a call's own awaits; calls not started
    /// stay queued.
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when the owner task is cancelled.
    pub async fn process(&self, forever: bool, whitelist: Option<&[&str]>) -> Result<()> {
        self.inner.stop.set(false);
        loop {
            while let Some(entry) = self.next_allowed(whitelist) {
                let name = entry.name;
                let run = (entry.call)(self.inner.state.clone());
                // A panicking call must not take the owner down: report it and go on.
                match catch_unwind_future(run).await {
                    Ok(()) => {}
                    Err(msg) => {
                        if let Ok(lp) = EventLoop::running() {
                            lp.call_exception_handler(
                                ExceptionContext::new("a deferred call panicked")
                                    .with_error(Error::Panicked(msg))
                                    .with_source(format!("deferred call '{name}'")),
                            );
                        }
                    }
                }
                if self.inner.stop.get() {
                    return Ok(());
                }
            }
            if !forever || self.inner.stop.get() {
                return Ok(());
            }
            self.inner.arrived.clear();
            if self.next_allowed_peek(whitelist) {
                continue;
            }
            self.inner.arrived.wait().await?;
        }
    }

    fn next_allowed(&self, whitelist: Option<&[&str]>) -> Option<Entry<S>> {
        let mut mb = self.inner.mailbox.borrow_mut();
        let i = mb
            .iter()
            .position(|e| whitelist.is_none_or(|w| w.contains(&e.name)))?;
        mb.remove(i)
    }

    fn next_allowed_peek(&self, whitelist: Option<&[&str]>) -> bool {
        self.inner
            .mailbox
            .borrow()
            .iter()
            .any(|e| whitelist.is_none_or(|w| w.contains(&e.name)))
    }

    /// Makes a running `process(forever = true)` return after the current call.
    pub fn stop_processing(&self) {
        self.inner.stop.set(true);
        self.inner.arrived.set();
    }
}

impl<S> fmt::Debug for Deferred<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("pending", &self.inner.mailbox.borrow().len())
            .field("stopping", &self.inner.stop.get())
            .finish()
    }
}
