//! The hook that lets `run_until_complete` wait for things the loop knows nothing about.
//!
//! The loop is layer 0 and has no futures. Layer 1 (`tulipa-futures`) implements [`Completion`]
//! for its `Future` and `Task`; anything else that completes on the loop can implement it too.

use std::fmt;
use std::rc::Weak;

use crate::event_loop::Core;

/// Something `run_until_complete` can wait for.
///
/// # Examples
///
/// A completion that is a shared slot filled by a callback:
///
/// ```
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use tulipa_loop::{Completion, DoneNotifier, EventLoop};
///
/// #[derive(Default, Clone)]
/// struct Slot(Rc<RefCell<(Option<u32>, Option<DoneNotifier>)>>);
///
/// impl Slot {
///     fn set(&self, v: u32) {
///         let mut s = self.0.borrow_mut();
///         s.0 = Some(v);
///         if let Some(n) = s.1.take() { n.notify(); }
///     }
/// }
///
/// impl Completion for Slot {
///     type Output = u32;
///     fn notify_when_done(&mut self, done: DoneNotifier) {
///         let mut s = self.0.borrow_mut();
///         if s.0.is_some() { done.notify() } else { s.1 = Some(done) }
///     }
///     fn take_output(&mut self) -> Option<u32> { self.0.borrow_mut().0.take() }
/// }
///
/// let lp = EventLoop::new()?;
/// let slot = Slot::default();
/// let s2 = slot.clone();
/// lp.call_soon(move || s2.set(42))?;
/// assert_eq!(lp.run_until_complete(slot)?, 42);
/// # Ok::<(), tulipa_loop::Error>(())
/// ```
pub trait Completion {
    /// What the completion produces.
    type Output;
    /// Called once, before the loop starts: arrange for `done.notify()` to be called when
    /// complete (at once if already complete).
    fn notify_when_done(&mut self, done: DoneNotifier);
    /// Called after the loop stopped: the output if complete, `None` otherwise.
    fn take_output(&mut self) -> Option<Self::Output>;
}

/// Tells `run_until_complete` that its completion is done (it stops the loop).
///
/// A notifier from an earlier `run_until_complete` call does nothing when fired later.
pub struct DoneNotifier {
    pub(crate) core: Weak<Core>,
    pub(crate) generation: u64,
}

impl DoneNotifier {
    /// Stops the loop that is waiting for this completion.
    pub fn notify(&self) {
        if let Some(core) = self.core.upgrade() {
            core.stop_for(self.generation);
        }
    }
}

impl fmt::Debug for DoneNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DoneNotifier")
            .field("generation", &self.generation)
            .finish()
    }
}
