//! Scheduling: `call_soon`, `call_later`, `call_at`, `call_repeatedly`, handles and cancellation.
//!
//! Ports the scheduling checks of CPython's `test_asyncio/test_base_events.py` and
//! `test_events.py` (`test_call_soon`, `test_call_later`, `test_call_at`, `test_handle_*`,
//! `test__run_once*`). Ordering tests use a virtual-time loop so they are exact and instant.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulipa_loop::{Completion, DoneNotifier, Error, EventLoop, ExceptionContext};

type Log<T> = Rc<RefCell<Vec<T>>>;

fn log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// Sets a flag when dropped: tells whether the loop dropped a closure that captured it.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Swallows panics reported by callbacks so test output stays readable; counts them.
fn count_panics(lp: &EventLoop) -> Rc<Cell<usize>> {
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
        n2.set(n2.get() + 1);
    }));
    n
}

fn stop_later(lp: &EventLoop, delay: Duration) {
    let lp2 = lp.clone();
    lp.call_later(delay, move || lp2.stop()).unwrap();
}

// ---- call_soon ------------------------------------------------------------------------------

#[test]
fn call_soon_runs_callbacks_in_fifo_order() {
    let lp = EventLoop::new().unwrap();
    let order = log();
    for i in 0..100 {
        let o = order.clone();
        lp.call_soon(move || o.borrow_mut().push(i)).unwrap();
    }
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), (0..100).collect::<Vec<_>>());
    lp.close().unwrap();
}

#[test]
fn call_soon_runs_each_callback_exactly_once() {
    let lp = EventLoop::new().unwrap();
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    lp.call_soon(move || r.set(r.get() + 1)).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(runs.get(), 1);
    lp.close().unwrap();
}

#[test]
fn handle_reports_where_it_was_scheduled() {
    let lp = EventLoop::new().unwrap();
    let line = line!() + 1;
    let h = lp.call_soon(|| {}).unwrap();
    assert_eq!(h.scheduled_at().line(), line);
    assert!(h.scheduled_at().file().ends_with("scheduling.rs"));
    lp.close().unwrap();
}

#[test]
fn callback_scheduled_by_a_callback_runs_in_the_next_iteration() {
    // One iteration runs only what was ready when it started (asyncio's `_run_once` batch).
    let lp = EventLoop::new().unwrap();
    let order = log();
    let (o, lp2) = (order.clone(), lp.clone());
    lp.call_soon(move || {
        o.borrow_mut().push("first");
        let o2 = o.clone();
        lp2.call_soon(move || o2.borrow_mut().push("scheduled by first"))
            .unwrap();
        lp2.stop();
    })
    .unwrap();
    let o = order.clone();
    lp.call_soon(move || o.borrow_mut().push("second")).unwrap();

    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), ["first", "second"]);
    assert_eq!(
        lp.stats().ready,
        1,
        "the new callback waits for the next iteration"
    );

    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), ["first", "second", "scheduled by first"]);
    lp.close().unwrap();
}

// ---- timers ---------------------------------------------------------------------------------

#[test]
fn call_later_runs_timers_in_deadline_order() {
    let lp = EventLoop::new_virtual().unwrap();
    let order = log();
    for ms in [30u64, 10, 50, 20, 40] {
        let o = order.clone();
        lp.call_later(Duration::from_millis(ms), move || o.borrow_mut().push(ms))
            .unwrap();
    }
    stop_later(&lp, Duration::from_millis(60));
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), [10, 20, 30, 40, 50]);
    lp.close().unwrap();
}

#[test]
fn call_later_never_fires_early_on_the_real_clock() {
    let lp = EventLoop::new().unwrap();
    let fired = Rc::new(Cell::new(None));
    let (f, lp2) = (fired.clone(), lp.clone());
    let h = lp
        .call_later(Duration::from_millis(20), move || {
            f.set(Some(lp2.time()));
            lp2.stop();
        })
        .unwrap();
    lp.run_forever().unwrap();
    let at = fired.get().expect("the timer fired");
    assert!(
        at >= h.when(),
        "fired at {at:?}, before its deadline {:?}",
        h.when()
    );
    lp.close().unwrap();
}

#[test]
fn timer_handle_when_is_the_deadline_on_the_loop_clock() {
    let lp = EventLoop::new_virtual().unwrap();
    let now = lp.time();
    let h = lp.call_later(Duration::from_secs(5), || {}).unwrap();
    assert_eq!(h.when(), now + Duration::from_secs(5));
    let at = now + Duration::from_secs(7);
    assert_eq!(lp.call_at(at, || {}).unwrap().when(), at);
    assert_eq!(lp.stats().next_deadline, Some(now + Duration::from_secs(5)));
    lp.close().unwrap();
}

#[test]
fn equal_deadlines_run_in_scheduling_order() {
    let lp = EventLoop::new_virtual().unwrap();
    let at = lp.time() + Duration::from_millis(10);
    let order = log();
    for i in 0..20 {
        let o = order.clone();
        lp.call_at(at, move || o.borrow_mut().push(i)).unwrap();
    }
    stop_later(&lp, Duration::from_millis(20));
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), (0..20).collect::<Vec<_>>());
    lp.close().unwrap();
}

#[test]
fn zero_delay_timers_run_after_earlier_call_soon_callbacks() {
    let lp = EventLoop::new_virtual().unwrap();
    let order = log();
    let o = order.clone();
    lp.call_later(Duration::ZERO, move || o.borrow_mut().push("timer"))
        .unwrap();
    let o = order.clone();
    lp.call_soon(move || o.borrow_mut().push("soon")).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    // Both are due in the first iteration; ready callbacks come first, then due timers.
    assert_eq!(*order.borrow(), ["soon", "timer"]);
    lp.close().unwrap();
}

#[test]
fn call_at_in_the_past_runs_on_the_next_iteration() {
    let lp = EventLoop::new().unwrap();
    let order = log();
    let (o, lp2) = (order.clone(), lp.clone());
    lp.call_soon(move || {
        // Iteration 1 schedules: a timer already due, a plain callback, and a chain that
        // schedules one more callback (which can only run in iteration 3).
        let o1 = o.clone();
        lp2.call_at(Instant::now() - Duration::from_secs(1), move || {
            o1.borrow_mut().push("past timer")
        })
        .unwrap();
        let o2 = o.clone();
        lp2.call_soon(move || o2.borrow_mut().push("soon")).unwrap();
        let (o3, lp3) = (o.clone(), lp2.clone());
        lp2.call_soon(move || {
            let o4 = o3.clone();
            lp3.call_soon(move || o4.borrow_mut().push("iteration 3"))
                .unwrap();
            lp3.stop();
        })
        .unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), ["soon", "past timer", "iteration 3"]);
    lp.close().unwrap();
}

#[test]
fn call_at_before_the_loop_was_created_still_runs() {
    let before = Instant::now();
    let lp = EventLoop::new_virtual().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_at(before, move || r.set(true)).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert!(ran.get());
    lp.close().unwrap();
}

// ---- cancellation ---------------------------------------------------------------------------

#[test]
fn cancelled_callback_does_not_run() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = lp.call_soon(move || r.set(true)).unwrap();
    h.cancel();
    lp.stop();
    lp.run_forever().unwrap();
    assert!(!ran.get());
    lp.close().unwrap();
}

#[test]
fn cancelled_timer_does_not_run() {
    let lp = EventLoop::new_virtual().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = lp
        .call_later(Duration::from_secs(1), move || r.set(true))
        .unwrap();
    h.cancel();
    assert_eq!(lp.stats().timers, 0);
    stop_later(&lp, Duration::from_secs(2));
    lp.run_forever().unwrap();
    assert!(!ran.get());
    lp.close().unwrap();
}

#[test]
fn cancel_is_idempotent_and_reported_by_cancelled() {
    let lp = EventLoop::new().unwrap();
    let h = lp.call_soon(|| {}).unwrap();
    let t = lp.call_later(Duration::from_secs(1), || {}).unwrap();
    assert!(!h.cancelled());
    assert!(!t.cancelled());
    h.cancel();
    h.cancel();
    t.cancel();
    t.cancel();
    assert!(h.cancelled());
    assert!(t.cancelled());
    assert!(t.handle().cancelled());
    // Cancelling twice must not count the timer twice as "cancelled in the heap".
    assert_eq!(lp.stats().timers, 0);
    lp.close().unwrap();
}

#[test]
fn cancel_drops_the_closure_at_once() {
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let guard = DropFlag(dropped.clone());
    let h = lp
        .call_later(Duration::from_secs(3600), move || drop(guard))
        .unwrap();
    assert!(!dropped.get());
    h.cancel();
    assert!(
        dropped.get(),
        "what the callback captured is freed by cancel, not by the timer's deadline"
    );
    lp.close().unwrap();
}

#[test]
fn clones_of_a_handle_share_the_cancellation() {
    let lp = EventLoop::new().unwrap();
    let h = lp.call_soon(|| {}).unwrap();
    let h2 = h.clone();
    h2.cancel();
    assert!(h.cancelled());
    lp.close().unwrap();
}

#[test]
fn every_clone_sees_a_cancel_before_and_after_the_run() {
    let lp = EventLoop::new_virtual().unwrap();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    let a = lp.call_soon(move || r.set(r.get() + 1)).unwrap();
    let b = a.clone();
    let c = b.clone();
    assert!(!a.cancelled() && !b.cancelled() && !c.cancelled());
    c.cancel();
    assert!(
        a.cancelled() && b.cancelled(),
        "a clone's cancel is everyone's"
    );
    let d = a.clone();
    assert!(d.cancelled(), "a clone of a cancelled handle is cancelled");
    // After the run: a cancel of a callback that ran changes nothing but the handles' flag.
    let r = ran.clone();
    let e = lp.call_soon(move || r.set(r.get() + 1)).unwrap();
    let f = e.clone();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(ran.get(), 1, "only the second callback ran");
    f.cancel();
    assert!(
        e.cancelled(),
        "asyncio's cancel after the run still marks the handle"
    );
    lp.close().unwrap();
}

#[test]
fn a_callback_may_cancel_its_own_handle_and_handles_outlive_the_loop() {
    let lp = EventLoop::new_virtual().unwrap();
    let me: Rc<RefCell<Option<tulipa_loop::Handle>>> = Rc::new(RefCell::new(None));
    let m = me.clone();
    let h = lp
        .call_soon(move || m.borrow().as_ref().expect("set before the run").cancel())
        .unwrap();
    *me.borrow_mut() = Some(h.clone());
    lp.stop();
    lp.run_forever().unwrap();
    assert!(h.cancelled());
    me.borrow_mut().take();
    // Pending when the loop closes, cancelled after it closed, and after it was dropped.
    let pending = lp.call_soon(|| panic!("never runs")).unwrap();
    lp.close().unwrap();
    pending.cancel();
    assert!(pending.cancelled());
    let lp = EventLoop::new_virtual().unwrap();
    let orphan = lp.call_soon(|| panic!("never runs")).unwrap();
    drop(lp);
    orphan.cancel();
    assert!(orphan.cancelled());
}

#[test]
fn a_cancelled_closure_may_schedule_from_its_destructor() {
    // Dropping what a cancelled callback captured runs user code, which may use the loop.
    struct Reschedule(EventLoop, Rc<Cell<bool>>);
    impl Drop for Reschedule {
        fn drop(&mut self) {
            let ran = self.1.clone();
            self.0.call_soon(move || ran.set(true)).unwrap();
        }
    }
    let lp = EventLoop::new_virtual().unwrap();
    let ran = Rc::new(Cell::new(false));
    let guard = Reschedule(lp.clone(), ran.clone());
    let h = lp
        .call_soon(move || {
            let _ = &guard;
            panic!("cancelled, never runs")
        })
        .unwrap();
    h.cancel();
    assert_eq!(
        lp.stats().ready,
        2,
        "the cancelled entry's mark and the new callback"
    );
    lp.stop();
    lp.run_forever().unwrap();
    assert!(ran.get());
    assert_eq!(lp.stats().ready, 0);
    lp.close().unwrap();
}

#[test]
fn dropping_a_handle_does_not_cancel() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drop(lp.call_soon(move || r.set(true)).unwrap());
    lp.stop();
    lp.run_forever().unwrap();
    assert!(ran.get());
    lp.close().unwrap();
}

#[test]
fn cancel_after_the_callback_ran_is_harmless() {
    let lp = EventLoop::new_virtual().unwrap();
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let h = lp.call_soon(move || r.set(r.get() + 1)).unwrap();
    let r = runs.clone();
    let t = lp
        .call_later(Duration::from_millis(1), move || r.set(r.get() + 1))
        .unwrap();
    stop_later(&lp, Duration::from_millis(2));
    lp.run_forever().unwrap();
    assert_eq!(runs.get(), 2);
    h.cancel();
    t.cancel();
    assert!(h.cancelled() && t.cancelled());
    let stats = lp.stats();
    assert_eq!((stats.timers, stats.timer_heap), (0, 0));
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(runs.get(), 2);
    lp.close().unwrap();
}

#[test]
fn callback_can_cancel_a_later_callback_of_the_same_batch() {
    let lp = EventLoop::new_virtual().unwrap();
    let order = log();
    let victim: Rc<RefCell<Option<tulipa_loop::Handle>>> = Rc::new(RefCell::new(None));
    let v = victim.clone();
    let o = order.clone();
    lp.call_soon(move || {
        o.borrow_mut().push("canceller");
        v.borrow().as_ref().expect("victim scheduled").cancel();
    })
    .unwrap();
    let o = order.clone();
    *victim.borrow_mut() = Some(lp.call_soon(move || o.borrow_mut().push("victim")).unwrap());
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*order.borrow(), ["canceller"]);
    lp.close().unwrap();
}

#[test]
fn due_timer_cancelled_by_an_earlier_callback_in_the_batch_does_not_run() {
    // The timer is already moved to the ready queue when the batch starts; cancel still wins.
    let lp = EventLoop::new_virtual().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let t = lp.call_later(Duration::ZERO, move || r.set(true)).unwrap();
    lp.call_soon(move || t.cancel()).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert!(!ran.get());
    lp.close().unwrap();
}

#[test]
fn a_million_cancelled_timers_leave_the_heap_small() {
    // asyncio's `test__run_once_cancelled_event_cleanup`: cancelled timers must not pile up.
    let lp = EventLoop::new_virtual().unwrap();
    // A live timer earlier than all the others keeps cancelled ones from leaving via the top.
    let _keep = lp.call_later(Duration::from_secs(1), || {}).unwrap();

    // Pattern 1: schedule and cancel at once.
    for i in 0..500_000u64 {
        lp.call_later(Duration::from_secs(10 + i), || {})
            .unwrap()
            .cancel();
    }
    let stats = lp.stats();
    assert_eq!(stats.timers, 1);
    assert!(
        stats.timer_heap < 1_000,
        "heap holds {} entries",
        stats.timer_heap
    );

    // Pattern 2: schedule them all, then cancel them all, then one iteration.
    let handles: Vec<_> = (0..500_000u64)
        .map(|i| lp.call_later(Duration::from_secs(10 + i), || {}).unwrap())
        .collect();
    assert_eq!(lp.stats().timers, 500_001);
    for h in &handles {
        h.cancel();
    }
    drop(handles);
    assert_eq!(lp.stats().timers, 1);
    lp.stop();
    lp.run_forever().unwrap();
    let stats = lp.stats();
    assert_eq!(stats.timers, 1);
    assert!(
        stats.timer_heap < 1_000,
        "heap holds {} entries",
        stats.timer_heap
    );
    lp.close().unwrap();
}

// ---- call_repeatedly ------------------------------------------------------------------------

#[test]
fn call_repeatedly_first_call_is_one_interval_from_now() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let times = log();
    let (t, lp2) = (times.clone(), lp.clone());
    let h = lp
        .call_repeatedly(Duration::from_millis(10), move || {
            t.borrow_mut().push(lp2.time() - start);
        })
        .unwrap();
    stop_later(&lp, Duration::from_millis(35));
    lp.run_forever().unwrap();
    let ms = |n| Duration::from_millis(n);
    assert_eq!(*times.borrow(), [ms(10), ms(20), ms(30)]);
    assert!(!h.cancelled());
    h.cancel();
    lp.close().unwrap();
}

#[test]
fn call_repeatedly_stops_when_cancelled_from_inside() {
    let lp = EventLoop::new_virtual().unwrap();
    let runs = Rc::new(Cell::new(0));
    let slot: Rc<RefCell<Option<tulipa_loop::Handle>>> = Rc::new(RefCell::new(None));
    let (r, s) = (runs.clone(), slot.clone());
    let h = lp
        .call_repeatedly(Duration::from_millis(10), move || {
            r.set(r.get() + 1);
            if r.get() == 3 {
                s.borrow().as_ref().expect("handle stored").cancel();
            }
        })
        .unwrap();
    *slot.borrow_mut() = Some(h.clone());
    stop_later(&lp, Duration::from_millis(100));
    lp.run_forever().unwrap();
    assert_eq!(runs.get(), 3);
    assert!(h.cancelled());
    assert_eq!(lp.stats().timers, 0);
    lp.close().unwrap();
}

#[test]
fn call_repeatedly_stops_when_cancelled_from_another_callback() {
    let lp = EventLoop::new_virtual().unwrap();
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let h = lp
        .call_repeatedly(Duration::from_millis(10), move || r.set(r.get() + 1))
        .unwrap();
    let h2 = h.clone();
    lp.call_later(Duration::from_millis(25), move || h2.cancel())
        .unwrap();
    stop_later(&lp, Duration::from_millis(100));
    lp.run_forever().unwrap();
    assert_eq!(runs.get(), 2);
    lp.close().unwrap();
}

#[test]
fn call_repeatedly_stops_after_a_panic() {
    let lp = EventLoop::new_virtual().unwrap();
    let panics = count_panics(&lp);
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let h = lp
        .call_repeatedly(Duration::from_millis(10), move || {
            r.set(r.get() + 1);
            if r.get() == 2 {
                panic!("second call fails");
            }
        })
        .unwrap();
    stop_later(&lp, Duration::from_millis(100));
    lp.run_forever().unwrap();
    assert_eq!(runs.get(), 2);
    assert_eq!(panics.get(), 1);
    assert!(
        !h.cancelled(),
        "a panic ends the repetition but is not a cancel"
    );
    assert_eq!(lp.stats().timers, 0);
    lp.close().unwrap();
}

#[test]
fn call_repeatedly_late_run_delays_the_following_ones() {
    // Real clock: a callback that blocks makes the first run late; the next run is one
    // interval after the late run, not bunched up on the original schedule.
    let lp = EventLoop::new().unwrap();
    let interval = Duration::from_millis(10);
    let times = log();
    let (t, lp2) = (times.clone(), lp.clone());
    let h = lp
        .call_repeatedly(interval, move || {
            t.borrow_mut().push(lp2.time());
            if t.borrow().len() == 4 {
                lp2.stop();
            }
        })
        .unwrap();
    let started = lp.time();
    // Blocking the loop is the behaviour under test here, not a synchronisation.
    lp.call_soon(|| std::thread::sleep(Duration::from_millis(45)))
        .unwrap();
    lp.run_forever().unwrap();
    h.cancel();
    let times = times.borrow();
    assert!(
        times[0] - started >= Duration::from_millis(45),
        "first run waits for the blocker"
    );
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= interval,
            "runs {:?} apart, less than the interval",
            pair[1] - pair[0]
        );
    }
    lp.close().unwrap();
}

#[test]
fn call_repeatedly_closure_is_dropped_on_cancel() {
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let guard = DropFlag(dropped.clone());
    let h = lp
        .call_repeatedly(Duration::from_secs(1), move || {
            let _ = &guard;
        })
        .unwrap();
    h.cancel();
    assert!(dropped.get());
    lp.close().unwrap();
}

// ---- introspection and closed loops ---------------------------------------------------------

#[test]
fn stats_counts_ready_callbacks_and_live_timers() {
    let lp = EventLoop::new_virtual().unwrap();
    lp.call_soon(|| {}).unwrap();
    lp.call_soon(|| {}).unwrap();
    let t = lp.call_later(Duration::from_secs(1), || {}).unwrap();
    lp.call_later(Duration::from_secs(2), || {}).unwrap();
    let s = lp.stats();
    assert_eq!((s.ready, s.timers, s.timer_heap), (2, 2, 2));
    assert_eq!(s.next_deadline, Some(t.when()));
    t.cancel();
    let s = lp.stats();
    assert_eq!(s.timers, 1);
    assert_eq!(s.next_deadline, Some(lp.time() + Duration::from_secs(2)));
    lp.close().unwrap();
}

/// A timer that fired together with another and was cancelled by it before running is not
/// counted as live, does not run, and leaves the queue's books balanced.
#[test]
fn a_fired_timer_cancelled_by_an_earlier_one_is_skipped_and_not_counted() {
    let lp = EventLoop::new_virtual().unwrap();
    let ran = Rc::new(Cell::new(false));
    let target: Rc<RefCell<Option<tulipa_loop::TimerHandle>>> = Rc::default();
    let seen = Rc::new(Cell::new(None));
    let when = lp.time() + Duration::from_millis(1);
    // Equal deadlines: both fire in the same iteration, the first one first.
    {
        let (lp2, seen, target) = (lp.clone(), seen.clone(), target.clone());
        lp.call_at(when, move || {
            if let Some(t) = target.borrow_mut().take() {
                t.cancel();
            }
            let s = lp2.stats();
            seen.set(Some((s.timers, s.timer_heap)));
        })
        .unwrap();
    }
    let later = {
        let ran = ran.clone();
        lp.call_at(when, move || ran.set(true)).unwrap()
    };
    *target.borrow_mut() = Some(later);
    lp.call_later(Duration::from_secs(60), || {}).unwrap();
    lp.call_at(when + Duration::from_millis(5), {
        let lp = lp.clone();
        move || lp.stop()
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(!ran.get());
    // Inside the first timer: only the 60 s timer and the stopper are live or queued.
    assert_eq!(seen.get(), Some((2, 2)));
    let s = lp.stats();
    assert_eq!((s.timers, s.timer_heap), (1, 1));
    lp.close().unwrap();
}

struct Never;

impl Completion for Never {
    type Output = ();
    fn notify_when_done(&mut self, _done: DoneNotifier) {}
    fn take_output(&mut self) -> Option<()> {
        None
    }
}

#[test]
fn every_call_on_a_closed_loop_returns_closed() {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    lp.close().unwrap();
    assert!(matches!(lp.call_soon(|| {}), Err(Error::Closed)));
    assert!(matches!(
        lp.call_later(Duration::ZERO, || {}),
        Err(Error::Closed)
    ));
    assert!(matches!(
        lp.call_at(Instant::now(), || {}),
        Err(Error::Closed)
    ));
    assert!(matches!(
        lp.call_repeatedly(Duration::from_millis(1), || {}),
        Err(Error::Closed)
    ));
    assert!(matches!(lp.add_reader(0, || {}), Err(Error::Closed)));
    assert!(matches!(lp.add_writer(1, || {}), Err(Error::Closed)));
    assert!(matches!(
        lp.add_signal_handler(tulipa_loop::signal::SIGUSR2, || {}),
        Err(Error::Closed)
    ));
    assert!(matches!(lp.run_forever(), Err(Error::Closed)));
    assert!(matches!(lp.run_until_complete(Never), Err(Error::Closed)));
    assert!(matches!(
        door.call_soon_threadsafe(|| {}),
        Err(Error::Closed)
    ));
    assert!(matches!(door.stop(), Err(Error::Closed)));
    assert!(lp.call_soon(|| {}).unwrap_err().is_closed());
    assert!(!lp.remove_reader(0));
    assert!(!lp.remove_writer(1));
}

#[test]
fn close_drops_pending_callbacks_and_timers() {
    let lp = EventLoop::new().unwrap();
    let (soon, timer, repeating) = (
        Rc::new(Cell::new(false)),
        Rc::new(Cell::new(false)),
        Rc::new(Cell::new(false)),
    );
    let g = DropFlag(soon.clone());
    lp.call_soon(move || drop(g)).unwrap();
    let g = DropFlag(timer.clone());
    lp.call_later(Duration::from_secs(60), move || drop(g))
        .unwrap();
    let g = DropFlag(repeating.clone());
    lp.call_repeatedly(Duration::from_secs(60), move || {
        let _ = &g;
    })
    .unwrap();
    lp.close().unwrap();
    assert!(soon.get() && timer.get() && repeating.get());
    let s = lp.stats();
    assert_eq!((s.ready, s.timers, s.timer_heap), (0, 0, 0));
}
