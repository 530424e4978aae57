//! Virtual time: `EventLoop::new_virtual`, the clock that jumps to the next timer.
//!
//! The asyncio test suite gets the same effect with `test_utils.TestLoop` and its generator of
//! time advances; Tulipa builds it into the loop. These tests check that timers see exactly the
//! times they asked for, that runs are reproducible, and that fds are still served.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tulipa_loop::EventLoop;

type Trace = Rc<RefCell<Vec<(&'static str, Duration)>>>;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn one_hour_timer_fires_with_the_clock_advanced_by_exactly_one_hour() {
    let real_start = Instant::now();
    let lp = EventLoop::new_virtual().unwrap();
    assert!(lp.is_virtual_time());
    let start = lp.time();
    let fired_at = Rc::new(Cell::new(None));
    let (f, lp2) = (fired_at.clone(), lp.clone());
    lp.call_later(HOUR, move || {
        f.set(Some(lp2.time()));
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(fired_at.get().unwrap() - start, HOUR);
    assert_eq!(lp.time() - start, HOUR);
    assert!(
        real_start.elapsed() < Duration::from_secs(60),
        "no real waiting"
    );
    lp.close().unwrap();
}

#[test]
fn real_loops_are_not_virtual() {
    let lp = EventLoop::new().unwrap();
    assert!(!lp.is_virtual_time());
    lp.close().unwrap();
}

#[test]
fn virtual_time_stands_still_while_callbacks_run() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let times = Rc::new(RefCell::new(Vec::new()));
    fn chain(lp: &EventLoop, times: Rc<RefCell<Vec<Instant>>>, left: u32) {
        times.borrow_mut().push(lp.time());
        if left == 0 {
            lp.stop();
            return;
        }
        let lp2 = lp.clone();
        lp.call_soon(move || chain(&lp2, times, left - 1)).unwrap();
    }
    let (lp2, t) = (lp.clone(), times.clone());
    lp.call_soon(move || chain(&lp2, t, 100)).unwrap();
    // A far timer exists, but ready callbacks come first and the clock does not move for them.
    lp.call_later(HOUR, || {}).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(times.borrow().len(), 101);
    assert!(times.borrow().iter().all(|t| *t == start));
    lp.close().unwrap();
}

/// A scenario mixing one-shot timers, a repeating timer and timers scheduled by timers.
fn scenario() -> Vec<(&'static str, Duration)> {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let trace: Trace = Rc::new(RefCell::new(Vec::new()));
    let note = {
        let (trace, lp) = (trace.clone(), lp.clone());
        Rc::new(move |what: &'static str| trace.borrow_mut().push((what, lp.time() - start)))
    };
    let n = note.clone();
    let ticks = Rc::new(Cell::new(0));
    let t = ticks.clone();
    let lp2 = lp.clone();
    let rep = lp
        .call_repeatedly(Duration::from_millis(250), move || {
            t.set(t.get() + 1);
            n("tick");
            if t.get() == 3 {
                lp2.stop();
            }
        })
        .unwrap();
    let (n, lp2) = (note.clone(), lp.clone());
    lp.call_later(Duration::from_millis(100), move || {
        n("first");
        let n2 = n.clone();
        lp2.call_later(Duration::from_millis(300), move || n2("scheduled by first"))
            .unwrap();
    })
    .unwrap();
    let n = note.clone();
    lp.call_later(Duration::from_millis(500), move || n("half a second"))
        .unwrap();
    let n = note.clone();
    lp.call_at(start + Duration::from_millis(250), move || n("call_at 250"))
        .unwrap();
    lp.run_forever().unwrap();
    rep.cancel();
    lp.close().unwrap();
    let out = trace.borrow().clone();
    out
}

#[test]
fn order_and_times_are_identical_over_two_runs() {
    let first = scenario();
    let second = scenario();
    assert_eq!(first, second);
    let ms = Duration::from_millis;
    assert_eq!(
        first,
        [
            ("first", ms(100)),
            ("tick", ms(250)),
            ("call_at 250", ms(250)),
            ("scheduled by first", ms(400)),
            // Equal deadlines run in scheduling order: "half a second" was scheduled at the
            // start, the second tick only when the first one ran.
            ("half a second", ms(500)),
            ("tick", ms(500)),
            ("tick", ms(750)),
        ]
    );
}

#[test]
fn virtual_loop_with_an_fd_serves_readiness_and_still_jumps() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let (a, b) = UnixStream::pair().unwrap();
    b.set_nonblocking(true).unwrap();
    let trace: Trace = Rc::new(RefCell::new(Vec::new()));

    // The reader is registered all along; while its fd is quiet the clock jumps over it.
    let (t, lp2, fd, mut rb) = (
        trace.clone(),
        lp.clone(),
        b.as_raw_fd(),
        b.try_clone().unwrap(),
    );
    lp.add_reader(fd, move || {
        let mut buf = [0u8; 16];
        let n = rb.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"wake");
        t.borrow_mut().push(("read", lp2.time() - start));
        assert!(lp2.remove_reader(fd));
        let (t2, lp3) = (t.clone(), lp2.clone());
        lp2.call_later(HOUR, move || {
            t2.borrow_mut().push(("done", lp3.time() - start));
            lp3.stop();
        })
        .unwrap();
    })
    .unwrap();
    let (t, lp2, mut wa) = (trace.clone(), lp.clone(), a.try_clone().unwrap());
    lp.call_later(HOUR, move || {
        t.borrow_mut().push(("write", lp2.time() - start));
        wa.write_all(b"wake").unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        *trace.borrow(),
        [("write", HOUR), ("read", HOUR), ("done", 2 * HOUR)],
        "the data is read before any further jump"
    );
    drop(a);
    lp.close().unwrap();
}

#[test]
fn a_ready_fd_holds_the_virtual_clock() {
    // While a writer's fd stays writable the loop has work every iteration: no jump.
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let (a, _b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.add_writer(fd, move || {
        s.borrow_mut().push(lp2.time() - start);
        if s.borrow().len() == 5 {
            lp2.remove_writer(fd);
        }
    })
    .unwrap();
    let fired = Rc::new(Cell::new(None));
    let (f, lp2) = (fired.clone(), lp.clone());
    lp.call_later(HOUR, move || {
        f.set(Some(lp2.time() - start));
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*seen.borrow(), vec![Duration::ZERO; 5]);
    assert_eq!(fired.get(), Some(HOUR));
    lp.close().unwrap();
}

#[test]
fn timers_scheduled_from_a_timer_use_the_virtual_now() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let at = Rc::new(Cell::new(None));
    let (a, lp2) = (at.clone(), lp.clone());
    lp.call_later(Duration::from_secs(10), move || {
        let (a2, lp3) = (a.clone(), lp2.clone());
        let h = lp2
            .call_later(Duration::from_secs(5), move || {
                a2.set(Some(lp3.time() - start));
                lp3.stop();
            })
            .unwrap();
        assert_eq!(h.when() - start, Duration::from_secs(15));
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(at.get(), Some(Duration::from_secs(15)));
    lp.close().unwrap();
}

#[test]
fn cancelled_timers_do_not_move_the_virtual_clock() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    lp.call_later(Duration::from_secs(5), || {})
        .unwrap()
        .cancel();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_secs(9), move || lp2.stop())
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(lp.time() - start, Duration::from_secs(9));
    lp.close().unwrap();
}
