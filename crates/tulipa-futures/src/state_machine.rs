//! State machines whose states are tasks (gevent_async's `@state`).
//!
//! States are declared with the states they may go to. Entering a state runs it as a task that
//! replaces the task of the previous state (the seed's "tail recursion" of greenlets): the new
//! state's task is spawned, then the previous one is cancelled (asyncio-style: it gets
//! `Err(Cancelled)` at its next await, so it can clean up; a state that calls [`StateMachine::goto`]
//! as its last action simply returns). A transition that was not declared is an
//! [`Error::Validation`]. `on_start` callbacks see the new state's name and its arguments before
//! the state runs.
//!
//! A replaced state may still clean up, but it no longer owns the machine: a `goto` through the
//! handle its body was given is refused with [`Error::Validation`] once another state has been
//! entered (in gevent_async the replaced greenlet is simply gone).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use tulipa_loop::EventLoop;

use crate::error::{Error, Result};
use crate::task::{spawn_on, Task};

type StateFuture = Pin<Box<dyn StdFuture<Output = Result<()>>>>;
type StateFn<A> = Rc<dyn Fn(StateMachine<A>, A) -> StateFuture>;
type OnStart<A> = Rc<dyn Fn(&str, &A)>;

struct StateDef<A: 'static> {
    transitions: Vec<&'static str>,
    body: StateFn<A>,
}

struct Inner<A: 'static> {
    lp: EventLoop,
    states: HashMap<&'static str, StateDef<A>>,
    on_start: Vec<OnStart<A>>,
    current: RefCell<Option<(&'static str, Task<()>)>>,
    history: RefCell<Vec<&'static str>>,
    /// How many states have been entered; numbers each entry.
    entries: Cell<u64>,
    /// Set once a first state was entered (`wait_terminal` waits for it).
    started: crate::sync::Event,
}

/// A state machine whose current state runs as a task; a cheap handle (`Clone`). `A` is the type
/// of the arguments a state is entered with (use an enum or a struct for several kinds).
///
/// # Examples
///
/// The seed's flower:
///
/// ```
/// use tulipa_futures::{run, state_machine::StateMachine};
///
/// run(async {
///     let lp = tulipa_loop::EventLoop::running()?;
///     let flower = StateMachine::<bool>::builder(&lp)
///         .state("sprouting", &["growing"], |sm, _| async move { sm.goto("growing", false) })
///         .state("growing", &["flowering"], |sm, _| async move { sm.goto("flowering", false) })
///         .state("flowering", &["dead", "withering"], |sm, eaten| async move {
///             if eaten { sm.goto("dead", true) } else { sm.goto("withering", false) }
///         })
///         .state("withering", &["dead"], |sm, _| async move { sm.goto("dead", false) })
///         .state("dead", &[], |_, _| async move { Ok(()) })
///         .build();
///     flower.start("sprouting", false)?;
///     flower.wait_terminal().await?;
///     assert_eq!(flower.history(), ["sprouting", "growing", "flowering", "withering", "dead"]);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub struct StateMachine<A: 'static> {
    inner: Rc<Inner<A>>,
    /// For the handle given to a state's body: that state and the number of its entry, so that
    /// the state cannot move the machine once it has been replaced. `None` for other handles.
    owner: Option<(&'static str, u64)>,
}

impl<A> Clone for StateMachine<A> {
    fn clone(&self) -> Self {
        StateMachine {
            inner: self.inner.clone(),
            owner: self.owner,
        }
    }
}

/// Declares the states of a [`StateMachine`].
pub struct Builder<A: 'static> {
    lp: EventLoop,
    states: HashMap<&'static str, StateDef<A>>,
    on_start: Vec<OnStart<A>>,
}

impl<A: 'static> Builder<A> {
    /// Declares state `name`, the states it may go to, and its body.
    pub fn state<F, Fut>(
        mut self,
        name: &'static str,
        transitions: &[&'static str],
        body: F,
    ) -> Self
    where
        F: Fn(StateMachine<A>, A) -> Fut + 'static,
        Fut: StdFuture<Output = Result<()>> + 'static,
    {
        let body: StateFn<A> = Rc::new(move |sm, a| Box::pin(body(sm, a)));
        self.states.insert(
            name,
            StateDef {
                transitions: transitions.to_vec(),
                body,
            },
        );
        self
    }

    /// Adds a callback run whenever a state starts, with its name and arguments.
    pub fn on_start(mut self, f: impl Fn(&str, &A) + 'static) -> Self {
        self.on_start.push(Rc::new(f));
        self
    }

    /// The machine, in no state yet.
    pub fn build(self) -> StateMachine<A> {
        StateMachine {
            inner: Rc::new(Inner {
                lp: self.lp,
                states: self.states,
                on_start: self.on_start,
                current: RefCell::new(None),
                history: RefCell::new(Vec::new()),
                entries: Cell::new(0),
                started: crate::sync::Event::new(),
            }),
            owner: None,
        }
    }
}

impl<A: 'static> StateMachine<A> {
    /// Starts declaring a machine whose state tasks run on `lp`.
    pub fn builder(lp: &EventLoop) -> Builder<A> {
        Builder {
            lp: lp.clone(),
            states: HashMap::new(),
            on_start: Vec::new(),
        }
    }

    /// Enters the initial state (any declared state may be initial).
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] for an unknown state; [`Error::Loop`] when the loop is closed.
    pub fn start(&self, name: &'static str, args: A) -> Result<()> {
        self.enter(None, name, args)
    }

    /// Moves from the current state to `name`, which the current state must have declared.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] for an undeclared transition or an unknown state, or when called
    /// through the handle of a state that has been replaced.
    pub fn goto(&self, name: &'static str, args: A) -> Result<()> {
        if let Some((state, entry)) = self.owner {
            if entry != self.inner.entries.get() {
                return Err(Error::Validation(Arc::from(format!(
                    "goto('{name}') from state '{state}', which has been replaced"
                ))));
            }
        }
        let from = self.current().ok_or_else(|| {
            Error::Validation(Arc::from(format!(
                "goto('{name}') before the machine started"
            )))
        })?;
        self.enter(Some(from), name, args)
    }

    fn enter(&self, from: Option<&'static str>, name: &'static str, args: A) -> Result<()> {
        let inner = &self.inner;
        let def = inner
            .states
            .get(name)
            .ok_or_else(|| Error::Validation(Arc::from(format!("unknown state '{name}'"))))?;
        if let Some(from) = from {
            let allowed = inner
                .states
                .get(from)
                .is_some_and(|d| d.transitions.contains(&name));
            if !allowed {
                return Err(Error::Validation(Arc::from(format!(
                    "transition '{from}' -> '{name}' is not declared"
                ))));
            }
        }
        for cb in &inner.on_start {
            cb(name, &args);
        }
        let body = def.body.clone();
        let entry = inner.entries.get() + 1;
        let handle = StateMachine {
            inner: inner.clone(),
            owner: Some((name, entry)),
        };
        let task = spawn_on(&inner.lp, body(handle, args))?;
        inner.entries.set(entry);
        task.set_name(format!("state '{name}'"));
        let previous = inner.current.borrow_mut().replace((name, task));
        inner.history.borrow_mut().push(name);
        inner.started.set();
        if let Some((_, prev)) = previous {
            // The new state replaces the old one; if the old one is the caller, it is expected to
            // return right after `goto`, and the request is delivered only if it awaits again.
            prev.cancel(Some("replaced by the next state"));
        }
        Ok(())
    }

    /// The current state's name.
    pub fn current(&self) -> Option<&'static str> {
        self.inner.current.borrow().as_ref().map(|(n, _)| *n)
    }

    /// Every state entered so far, in order.
    pub fn history(&self) -> Vec<&'static str> {
        self.inner.history.borrow().clone()
    }

    /// True when the current state declares no transitions (a terminal state).
    pub fn is_terminal(&self) -> bool {
        self.current()
            .and_then(|n| self.inner.states.get(n))
            .is_some_and(|d| d.transitions.is_empty())
    }

    /// Waits until the machine is in a terminal state whose task has finished, and returns that
    /// task's outcome.
    ///
    /// # Errors
    ///
    /// The terminal state's error; [`Error::Cancelled`] when the waiting task is cancelled.
    pub async fn wait_terminal(&self) -> Result<()> {
        loop {
            let cur = self.inner.current.borrow().as_ref().map(|(_, t)| t.clone());
            let Some(task) = cur else {
                self.inner.started.wait().await?;
                continue;
            };
            let outcome = crate::wait::until_done(&task.as_task_ref()).await;
            outcome?;
            let still = self
                .inner
                .current
                .borrow()
                .as_ref()
                .is_some_and(|(_, t)| t.ptr_eq(&task));
            if still && self.is_terminal() {
                return match task.exception()? {
                    Some(e) => Err(e),
                    None => Ok(()),
                };
            }
            if still {
                // A non-terminal state ended without moving on: nothing more will happen.
                return Err(Error::Validation(Arc::from(format!(
                    "state '{}' ended without a transition",
                    self.current().unwrap_or("?")
                ))));
            }
        }
    }
}

impl<A> fmt::Debug for StateMachine<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateMachine")
            .field(
                "current",
                &self.inner.current.borrow().as_ref().map(|(n, _)| *n),
            )
            .field("states", &self.inner.states.len())
            .finish()
    }
}

impl<A> fmt::Debug for Builder<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("states", &self.states.len())
            .finish()
    }
}
