//! Running and stopping: `run_forever`, `run_until_complete`, `stop`, `close`, re-entrancy.
//!
//! Ports the run/stop/close checks of CPython's `test_asyncio/test_base_events.py` and
//! `test_events.py` (`test_run_forever_*`, `test_run_until_complete_*`, `test_close`,
//! `test_run_once_in_run_forever`, `test_get_running_loop`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tulipa_loop::{get_running_loop, Completion, DoneNotifier, Error, EventLoop};

type Log<T> = Rc<RefCell<Vec<T>>>;

fn log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// A minimal [`Completion`]: a shared slot that a callback fills.
#[derive(Clone, Default)]
struct Slot<T> {
    inner: Rc<RefCell<SlotState<T>>>,
}

struct SlotState<T> {
    value: Option<T>,
    notifier: Option<DoneNotifier>,
}

impl<T> Default for SlotState<T> {
    fn default() -> Self {
        SlotState {
            value: None,
            notifier: None,
        }
    }
}

impl<T> Slot<T> {
    fn set(&self, v: T) {
        let notifier = {
            let mut s = self.inner.borrow_mut();
            s.value = Some(v);
            s.notifier.take()
        };
        if let Some(n) = notifier {
            n.notify();
        }
    }
}

impl<T> Completion for Slot<T> {
    type Output = T;
    fn notify_when_done(&mut self, done: DoneNotifier) {
        let mut s = self.inner.borrow_mut();
        if s.value.is_some() {
            done.notify();
        } else {
            s.notifier = Some(done);
        }
    }
    fn take_output(&mut self) -> Option<T> {
        self.inner.borrow_mut().value.take()
    }
}

// ---- stop -----------------------------------------------------------------------------------

#[test]
fn stop_finishes_the_current_batch_and_loses_nothing() {
    let lp = EventLoop::new().unwrap();
    let order = log();
    let lp2 = lp.clone();
    let o = order.clone();
    lp.call_soon(move || {
        o.borrow_mut().push(1);
        lp2.stop();
        let o2 = o.clone();
        lp2.call_soon(move || o2.borrow_mut().push(3)).unwrap();
    })
    .unwrap();
    let o = order.clone();
    lp.call_soon(move || o.borrow_mut().push(2)).unwrap();

    lp.run_forever().unwrap();
    assert_eq!(
        *order.borrow(),
        [1, 2],
        "the batch that was ready when stop was called finishes"
    );
    assert!(!lp.is_running());

    // Running again continues where it stopped.
    let lp2 = lp.clone();
    let o = order.clone();
    lp.call_soon(move || {
        o.borrow_mut().push(4);
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), [1, 2, 3, 4]);
    lp.close().unwrap();
}

#[test]
fn stop_keeps_pending_timers_for_the_next_run() {
    let lp = EventLoop::new_virtual().unwrap();
    let fired = Rc::new(Cell::new(false));
    let f = fired.clone();
    lp.call_later(Duration::from_secs(10), move || f.set(true))
        .unwrap();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_secs(1), move || lp2.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert!(!fired.get());
    assert_eq!(lp.stats().timers, 1);
    let lp2 = lp.clone();
    lp.call_later(Duration::from_secs(20), move || lp2.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert!(fired.get());
    lp.close().unwrap();
}

#[test]
fn stop_before_run_forever_runs_one_iteration() {
    let lp = EventLoop::new().unwrap();
    let order = log();
    let (o, lp2) = (order.clone(), lp.clone());
    lp.call_soon(move || {
        o.borrow_mut().push("ready");
        let o2 = o.clone();
        lp2.call_soon(move || o2.borrow_mut().push("next iteration"))
            .unwrap();
    })
    .unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), ["ready"]);
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), ["ready", "next iteration"]);
    lp.close().unwrap();
}

#[test]
fn stop_before_run_forever_on_an_empty_loop_returns_at_once() {
    let lp = EventLoop::new().unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    // The stop request was consumed by that run: the next run really runs.
    let lp2 = lp.clone();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    lp.call_soon(move || {
        r.set(r.get() + 1);
        let lp3 = lp2.clone();
        let r2 = r.clone();
        lp2.call_soon(move || {
            r2.set(r2.get() + 1);
            lp3.stop();
        })
        .unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(ran.get(), 2);
    lp.close().unwrap();
}

// ---- re-entrancy ----------------------------------------------------------------------------

#[test]
fn run_forever_inside_a_callback_of_the_running_loop_is_already_running() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        *s.borrow_mut() = Some(lp2.run_forever());
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(matches!(
        seen.borrow_mut().take(),
        Some(Err(Error::AlreadyRunning))
    ));
    lp.close().unwrap();
}

#[test]
fn run_until_complete_inside_a_callback_of_the_running_loop_is_already_running() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        *s.borrow_mut() = Some(lp2.run_until_complete(Slot::<u8>::default()));
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(matches!(
        seen.borrow_mut().take(),
        Some(Err(Error::AlreadyRunning))
    ));
    lp.close().unwrap();
}

#[test]
fn running_a_second_loop_inside_a_callback_is_a_nested_run() {
    let outer = EventLoop::new().unwrap();
    let inner = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, outer2, inner2) = (seen.clone(), outer.clone(), inner.clone());
    outer
        .call_soon(move || {
            s.borrow_mut().push(inner2.run_forever());
            let done = Slot::default();
            done.set(1u8);
            s.borrow_mut()
                .push(inner2.run_until_complete(done).map(drop));
            outer2.stop();
        })
        .unwrap();
    outer.run_forever().unwrap();
    let seen = seen.borrow();
    assert!(matches!(seen[0], Err(Error::NestedRun)), "{:?}", seen[0]);
    assert!(matches!(seen[1], Err(Error::NestedRun)), "{:?}", seen[1]);
    assert!(!inner.is_running());

    // The refused runs left the inner loop usable and not stopping.
    let inner2 = inner.clone();
    let steps = Rc::new(Cell::new(0));
    let st = steps.clone();
    inner
        .call_soon(move || {
            st.set(1);
            let (inner3, st2) = (inner2.clone(), st.clone());
            inner2
                .call_soon(move || {
                    st2.set(2);
                    inner3.stop();
                })
                .unwrap();
        })
        .unwrap();
    inner.run_forever().unwrap();
    assert_eq!(steps.get(), 2);
    inner.close().unwrap();
    outer.close().unwrap();
}

#[test]
fn loops_run_one_after_the_other_on_one_thread() {
    for _ in 0..3 {
        let lp = EventLoop::new().unwrap();
        let lp2 = lp.clone();
        lp.call_soon(move || lp2.stop()).unwrap();
        lp.run_forever().unwrap();
        lp.close().unwrap();
    }
}

// ---- close ----------------------------------------------------------------------------------

#[test]
fn close_twice_is_ok() {
    let lp = EventLoop::new().unwrap();
    assert!(!lp.is_closed());
    lp.close().unwrap();
    assert!(lp.is_closed());
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn close_while_running_is_refused() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        *s.borrow_mut() = Some(lp2.close());
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(matches!(
        seen.borrow_mut().take(),
        Some(Err(Error::AlreadyRunning))
    ));
    assert!(!lp.is_closed());
    lp.close().unwrap();
}

#[test]
fn run_on_a_closed_loop_is_closed() {
    let lp = EventLoop::new().unwrap();
    lp.close().unwrap();
    assert!(matches!(lp.run_forever(), Err(Error::Closed)));
    assert!(matches!(
        lp.run_until_complete(Slot::<()>::default()),
        Err(Error::Closed)
    ));
}

#[test]
fn is_running_is_true_only_inside_run() {
    let lp = EventLoop::new().unwrap();
    assert!(!lp.is_running());
    let seen = Rc::new(Cell::new(false));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        s.set(lp2.is_running());
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(seen.get());
    assert!(!lp.is_running());
    assert!(!lp.is_closed());
    lp.close().unwrap();
    assert!(!lp.is_running());
}

// ---- get_running_loop -----------------------------------------------------------------------

#[test]
fn get_running_loop_inside_a_callback_is_that_loop() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.call_soon(move || {
        *s.borrow_mut() = Some(get_running_loop().map(|l| l.id()));
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(seen.borrow_mut().take().unwrap().unwrap(), lp.id());
    lp.close().unwrap();
}

#[test]
fn get_running_loop_outside_a_run_is_no_running_loop() {
    assert!(matches!(get_running_loop(), Err(Error::NoRunningLoop)));
    let lp = EventLoop::new().unwrap();
    assert!(matches!(EventLoop::running(), Err(Error::NoRunningLoop)));
    lp.stop();
    lp.run_forever().unwrap();
    assert!(
        matches!(get_running_loop(), Err(Error::NoRunningLoop)),
        "cleared after the run"
    );
    lp.close().unwrap();
}

#[test]
fn get_running_loop_is_cleared_after_a_run_that_ended_in_error() {
    let lp = EventLoop::new().unwrap();
    lp.call_soon(|| {}).unwrap();
    let lp2 = lp.clone();
    lp.call_soon(move || lp2.stop()).unwrap();
    assert!(matches!(
        lp.run_until_complete(Slot::<()>::default()),
        Err(Error::StoppedBeforeComplete)
    ));
    assert!(matches!(get_running_loop(), Err(Error::NoRunningLoop)));
    lp.close().unwrap();
}

// ---- run_until_complete ---------------------------------------------------------------------

#[test]
fn run_until_complete_returns_the_output() {
    let lp = EventLoop::new().unwrap();
    let slot = Slot::default();
    let s = slot.clone();
    lp.call_soon(move || s.set("done")).unwrap();
    assert_eq!(lp.run_until_complete(slot).unwrap(), "done");
    assert!(!lp.is_running());
    lp.close().unwrap();
}

#[test]
fn run_until_complete_waits_for_a_timer() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let slot = Slot::default();
    let s = slot.clone();
    lp.call_later(Duration::from_secs(30), move || s.set(30))
        .unwrap();
    assert_eq!(lp.run_until_complete(slot).unwrap(), 30);
    assert_eq!(lp.time() - start, Duration::from_secs(30));
    lp.close().unwrap();
}

#[test]
fn run_until_complete_on_an_already_complete_completion() {
    let lp = EventLoop::new().unwrap();
    let slot = Slot::default();
    slot.set(7);
    assert_eq!(lp.run_until_complete(slot).unwrap(), 7);
    lp.close().unwrap();
}

#[test]
fn run_until_complete_stopped_by_someone_else_is_stopped_before_complete() {
    let lp = EventLoop::new_virtual().unwrap();
    let slot = Slot::<u32>::default();
    let s = slot.clone();
    lp.call_later(Duration::from_secs(10), move || s.set(1))
        .unwrap();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_secs(1), move || lp2.stop())
        .unwrap();
    assert!(matches!(
        lp.run_until_complete(slot.clone()),
        Err(Error::StoppedBeforeComplete)
    ));

    // The completion can still be awaited by a later run.
    assert_eq!(lp.run_until_complete(slot).unwrap(), 1);
    lp.close().unwrap();
}

#[test]
fn notifier_of_an_earlier_run_until_complete_does_not_stop_a_later_run() {
    // asyncio removes its done-callback when run_until_complete returns.
    let lp = EventLoop::new_virtual().unwrap();
    let first = Slot::<u32>::default();
    let lp2 = lp.clone();
    lp.call_soon(move || lp2.stop()).unwrap();
    assert!(matches!(
        lp.run_until_complete(first.clone()),
        Err(Error::StoppedBeforeComplete)
    ));

    // During a plain run_forever the first completion finishes: that must not stop this run.
    let order = log();
    let (o, f) = (order.clone(), first.clone());
    lp.call_later(Duration::from_secs(1), move || {
        f.set(1);
        o.borrow_mut().push("first done");
    })
    .unwrap();
    let (o, lp2) = (order.clone(), lp.clone());
    lp.call_later(Duration::from_secs(2), move || {
        o.borrow_mut().push("stopped by its owner");
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), ["first done", "stopped by its owner"]);
    lp.close().unwrap();
}

#[test]
fn completing_during_the_stopping_batch_still_returns_the_output() {
    let lp = EventLoop::new().unwrap();
    let slot = Slot::default();
    let (s, lp2) = (slot.clone(), lp.clone());
    lp.call_soon(move || lp2.stop()).unwrap();
    lp.call_soon(move || s.set('x')).unwrap();
    assert_eq!(lp.run_until_complete(slot).unwrap(), 'x');
    lp.close().unwrap();
}
