//! The thread-safe door: `LoopHandle::call_soon_threadsafe`, `LoopHandle::stop`,
//! `ThreadsafeHandle`.
//!
//! Ports the `call_soon_threadsafe` checks of CPython's `test_asyncio/test_base_events.py` and
//! `test_events.py` (`test_call_soon_threadsafe*`, `test_run_forever_keyboard_interrupt`-style
//! wake-ups). Threads synchronise with channels and barriers only; a loop with no timers blocks in
//! the poller until the other thread's call wakes it.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use tulipa_loop::{Error, EventLoop, LoopHandle, ThreadsafeHandle};

mod support;
use support::LoopThread;

/// Aborts the test process if a test hangs (a lost wake-up would block the loop forever). Not a
/// synchronisation: a passing test never waits for it. Drop the returned sender when done.
fn watchdog(name: &'static str) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        if let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(Duration::from_secs(60)) {
            eprintln!("{name}: the loop was never woken (lost wake-up?); aborting");
            std::process::abort();
        }
    });
    tx
}

/// Runs `lp` until stopped; before that, tells `started` the loop's thread once the loop is
/// running (from its first callback). The other thread then waits until the loop is blocked in
/// the poller ([`LoopThread::wait_until_blocked`]) and acts.
fn run_after_signalling(lp: &EventLoop, started: mpsc::Sender<LoopThread>) {
    let me = LoopThread::current();
    lp.call_soon(move || started.send(me).expect("test thread listening"))
        .unwrap();
    lp.run_forever().unwrap();
}

#[test]
fn call_soon_threadsafe_wakes_a_loop_blocked_in_the_poller() {
    let _dog = watchdog("call_soon_threadsafe_wakes_a_loop_blocked_in_the_poller");
    let lp = EventLoop::new().unwrap();
    assert_eq!(lp.stats().timers, 0, "no timer could wake the loop");
    let door = lp.loop_handle();
    let (started_tx, started_rx) = mpsc::channel::<LoopThread>();
    let ran_on = Arc::new(Mutex::new(None));
    let ran = ran_on.clone();
    let worker = thread::spawn(move || {
        started_rx.recv().unwrap().wait_until_blocked();
        door.call_soon_threadsafe(move || {
            *ran.lock().unwrap() = Some(thread::current().id());
            tulipa_loop::get_running_loop().unwrap().stop();
        })
        .unwrap();
    });
    run_after_signalling(&lp, started_tx);
    worker.join().unwrap();
    assert_eq!(
        *ran_on.lock().unwrap(),
        Some(thread::current().id()),
        "ran on the loop's thread"
    );
    lp.close().unwrap();
}

#[test]
fn loop_handle_stop_from_another_thread_stops_the_loop() {
    let _dog = watchdog("loop_handle_stop_from_another_thread_stops_the_loop");
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let (started_tx, started_rx) = mpsc::channel::<LoopThread>();
    let worker = thread::spawn(move || {
        started_rx.recv().unwrap().wait_until_blocked();
        door.stop().unwrap();
    });
    run_after_signalling(&lp, started_tx);
    worker.join().unwrap();
    assert!(!lp.is_running());
    lp.close().unwrap();
}

#[test]
fn stop_from_another_thread_before_the_run_makes_it_one_iteration() {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    thread::spawn(move || door.stop().unwrap()).join().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_soon(move || r.set(true)).unwrap();
    lp.run_forever().unwrap();
    assert!(ran.get());
    lp.close().unwrap();
}

#[test]
fn threadsafe_calls_from_one_thread_run_in_order() {
    let _dog = watchdog("threadsafe_calls_from_one_thread_run_in_order");
    const N: usize = 10_000;
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let seen = Arc::new(Mutex::new(Vec::with_capacity(N)));
    let s = seen.clone();
    let worker = thread::spawn(move || {
        for i in 0..N {
            let s = s.clone();
            door.call_soon_threadsafe(move || s.lock().unwrap().push(i))
                .unwrap();
        }
        // Queued behind every call above: they all run before the loop returns.
        door.stop().unwrap();
    });
    lp.run_forever().unwrap();
    worker.join().unwrap();
    assert_eq!(*seen.lock().unwrap(), (0..N).collect::<Vec<_>>());
    lp.close().unwrap();
}

#[test]
fn threadsafe_calls_from_many_threads_each_keep_their_order() {
    let _dog = watchdog("threadsafe_calls_from_many_threads_each_keep_their_order");
    const THREADS: usize = 4;
    const N: usize = 2_000;
    let lp = EventLoop::new().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let barrier = Arc::new(Barrier::new(THREADS));
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (door, seen, barrier, done) = (
                lp.loop_handle(),
                seen.clone(),
                barrier.clone(),
                done_tx.clone(),
            );
            thread::spawn(move || {
                barrier.wait(); // start together to interleave
                for i in 0..N {
                    let seen = seen.clone();
                    door.call_soon_threadsafe(move || seen.lock().unwrap().push((t, i)))
                        .unwrap();
                }
                done.send(()).unwrap();
            })
        })
        .collect();
    drop(done_tx);
    // A helper thread stops the loop once every worker has pushed everything.
    let door = lp.loop_handle();
    let stopper = thread::spawn(move || {
        while done_rx.recv().is_ok() {}
        door.stop().unwrap();
    });
    lp.run_forever().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    stopper.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), THREADS * N);
    for t in 0..THREADS {
        let mine: Vec<usize> = seen
            .iter()
            .filter(|(w, _)| *w == t)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(
            mine,
            (0..N).collect::<Vec<_>>(),
            "thread {t}'s calls out of order"
        );
    }
    lp.close().unwrap();
}

#[test]
fn threadsafe_handle_cancelled_before_the_loop_runs_does_not_run() {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let h: ThreadsafeHandle = thread::spawn(move || {
        let h = door
            .call_soon_threadsafe(move || r.store(true, Ordering::SeqCst))
            .unwrap();
        assert!(!h.cancelled());
        h.cancel();
        h.cancel(); // idempotent
        door.stop().unwrap();
        h
    })
    .join()
    .unwrap();
    assert!(h.cancelled());
    lp.run_forever().unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    lp.close().unwrap();
}

#[test]
fn threadsafe_handle_cancelled_by_an_earlier_callback_of_the_same_batch_does_not_run() {
    // The job has already been moved from the thread-safe queue to the ready queue when the
    // batch starts; cancelling it before it starts must still win.
    let lp = EventLoop::new().unwrap();
    let door: LoopHandle = lp.loop_handle();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let h = door
        .call_soon_threadsafe(move || r.store(true, Ordering::SeqCst))
        .unwrap();
    lp.call_soon(move || h.cancel()).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert!(!ran.load(Ordering::SeqCst));
    lp.close().unwrap();
}

#[test]
fn threadsafe_handle_reports_where_it_was_scheduled() {
    let lp = EventLoop::new().unwrap();
    let line = line!() + 1;
    let h = lp.loop_handle().call_soon_threadsafe(|| {}).unwrap();
    assert_eq!(h.scheduled_at().line(), line);
    lp.close().unwrap();
}

#[test]
fn call_soon_threadsafe_on_a_closed_loop_is_closed() {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    assert!(!door.is_closed());
    lp.close().unwrap();
    let result = thread::spawn(move || {
        let closed = door.is_closed();
        (
            closed,
            door.call_soon_threadsafe(|| {}).map(drop),
            door.stop(),
        )
    })
    .join()
    .unwrap();
    assert!(result.0);
    assert!(matches!(result.1, Err(Error::Closed)));
    assert!(matches!(result.2, Err(Error::Closed)));
}

#[test]
fn loop_handle_outliving_its_loop_reports_closed() {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    assert_eq!(door.id(), lp.id());
    drop(lp); // dropping the last clone of an unclosed loop closes it
    assert!(door.is_closed());
    assert!(matches!(
        door.call_soon_threadsafe(|| {}),
        Err(Error::Closed)
    ));
}

#[test]
fn pending_threadsafe_calls_are_dropped_when_the_loop_closes() {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let (tx, rx) = mpsc::channel::<()>();
    // The closure owns `tx`; dropping the closure disconnects the channel.
    door.call_soon_threadsafe(move || drop(tx)).unwrap();
    lp.close().unwrap();
    assert!(matches!(
        rx.try_recv(),
        Err(mpsc::TryRecvError::Disconnected)
    ));
}
