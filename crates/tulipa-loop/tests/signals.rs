//! Signal handlers: `add_signal_handler`, `remove_signal_handler`.
//!
//! Ports the signal checks of CPython's `test_asyncio/test_unix_events.py`
//! (`SelectorEventLoopSignalTests`: `test_add_signal_handler*`, `test_remove_signal_handler*`,
//! `test_check_signal`) and `test_events.py` (`test_add_signal_handler`, `test_signal_handling_*`).
//!
//! This test binary has `harness = false` (see the crate's Cargo.toml): signal handlers may only
//! be added by a loop on the process's main thread, and libtest runs tests on other threads. So
//! `main` runs each test in turn on the main thread and ends with the plain "N passed, M failed"
//! line; it exits non-zero if any test failed.
//!
//! Signals are real: sent with `kill(2)` to this process's own pid, as a user's `kill -USR1 PID`
//! would be (the kernel picks the thread; the process-directed signal goes to the main thread
//! when it does not block it, so it is handled before `kill` returns there). Removing a handler (or closing its loop)
//! gives the signal its default action back, which for SIGUSR1, SIGUSR2 and SIGINT terminates the
//! process: the tests that raise a signal after that run the scenario in a child process (this
//! binary again, with `TULIPA_SIGNAL_CHILD` set) and check how the child ended.

use std::cell::{Cell, RefCell};
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::process::{Command, ExitStatus};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tulipa_loop::signal::{SIGINT, SIGKILL, SIGSEGV, SIGSTOP, SIGTERM, SIGUSR1, SIGUSR2};
use tulipa_loop::{Error, EventLoop, ExceptionContext};

mod support;
use support::LoopThread;

/// Sends `sig` to this process with `kill(2)` (not `raise`, which targets the calling thread).
fn kill_self(sig: i32) -> std::io::Result<()> {
    let sig = rustix::process::Signal::from_named_raw(sig).expect("a named signal");
    rustix::process::kill_process(rustix::process::getpid(), sig)?;
    Ok(())
}

/// Sets a flag when dropped: tells whether the loop dropped a closure that captured it.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// Runs `lp` until a callback stops it, or at most `limit` of loop time: a bound so a lost
/// signal fails the test instead of hanging it (not a synchronisation).
fn run_at_most(lp: &EventLoop, limit: Duration) {
    let lp2 = lp.clone();
    let guard = lp.call_later(limit, move || lp2.stop()).unwrap();
    lp.run_forever().unwrap();
    guard.cancel();
}

const LIMIT: Duration = Duration::from_secs(10);

fn handler_runs_as_a_loop_callback() {
    let lp = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        // Not in signal context: an ordinary callback of the running loop on its thread.
        let running = tulipa_loop::get_running_loop().map(|l| l.id());
        *s.borrow_mut() = Some((lp2.is_running(), running.ok()));
        lp2.stop();
    })
    .unwrap();
    kill_self(SIGUSR1).unwrap();
    run_at_most(&lp, LIMIT);
    assert_eq!(*seen.borrow(), Some((true, Some(lp.id()))));
    assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
    lp.close().unwrap();
}

fn signal_raised_by_a_callback_wakes_the_loop() {
    let lp = EventLoop::new().unwrap();
    let count = Rc::new(Cell::new(0));
    let (c, lp2) = (count.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR2, move || {
        c.set(c.get() + 1);
        lp2.stop();
    })
    .unwrap();
    lp.call_soon(|| kill_self(SIGUSR2).unwrap()).unwrap();
    run_at_most(&lp, LIMIT);
    assert_eq!(count.get(), 1);
    lp.remove_signal_handler(SIGUSR2).unwrap();
    lp.close().unwrap();
}

fn signal_from_another_thread_wakes_a_blocked_loop() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(false));
    let (r, lp2) = (ran.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        r.set(true);
        lp2.stop();
    })
    .unwrap();
    let (started_tx, started_rx) = mpsc::channel::<LoopThread>();
    let sender = thread::spawn(move || {
        // Acts only once the loop sleeps in its poller: the signal must wake it.
        started_rx.recv().unwrap().wait_until_blocked();
        kill_self(SIGUSR1).unwrap();
    });
    let me = LoopThread::current();
    lp.call_soon(move || started_tx.send(me).unwrap()).unwrap();
    run_at_most(&lp, LIMIT);
    sender.join().unwrap();
    assert!(ran.get());
    lp.remove_signal_handler(SIGUSR1).unwrap();
    lp.close().unwrap();
}

fn second_handler_replaces_the_first() {
    let lp = EventLoop::new().unwrap();
    let first_dropped = Rc::new(Cell::new(false));
    let first_calls = Rc::new(Cell::new(0));
    let (c, g) = (first_calls.clone(), DropFlag(first_dropped.clone()));
    lp.add_signal_handler(SIGUSR1, move || {
        let _ = &g;
        c.set(c.get() + 1);
    })
    .unwrap();
    let readers = lp.stats().readers;
    let second_calls = Rc::new(Cell::new(0));
    let (c, lp2) = (second_calls.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        c.set(c.get() + 1);
        lp2.stop();
    })
    .unwrap();
    assert!(
        first_dropped.get(),
        "the replaced handler is dropped at once"
    );
    assert_eq!(
        lp.stats().readers,
        readers,
        "one wake-up pipe per signal, not two"
    );
    kill_self(SIGUSR1).unwrap();
    run_at_most(&lp, LIMIT);
    assert_eq!((first_calls.get(), second_calls.get()), (0, 1));
    lp.remove_signal_handler(SIGUSR1).unwrap();
    lp.close().unwrap();
}

fn each_signal_runs_its_own_handler() {
    let lp = EventLoop::new().unwrap();
    let order = Rc::new(RefCell::new(Vec::new()));
    for (sig, name) in [(SIGUSR1, "usr1"), (SIGUSR2, "usr2")] {
        let (o, lp2) = (order.clone(), lp.clone());
        lp.add_signal_handler(sig, move || {
            o.borrow_mut().push(name);
            lp2.stop();
        })
        .unwrap();
    }
    kill_self(SIGUSR1).unwrap();
    run_at_most(&lp, LIMIT);
    assert_eq!(*order.borrow(), ["usr1"]);
    kill_self(SIGUSR2).unwrap();
    run_at_most(&lp, LIMIT);
    assert_eq!(*order.borrow(), ["usr1", "usr2"]);
    lp.remove_signal_handler(SIGUSR1).unwrap();
    lp.remove_signal_handler(SIGUSR2).unwrap();
    lp.close().unwrap();
}

fn remove_signal_handler_returns_true_then_false() {
    let lp = EventLoop::new().unwrap();
    assert!(
        !lp.remove_signal_handler(SIGUSR1).unwrap(),
        "nothing to remove yet"
    );
    let dropped = Rc::new(Cell::new(false));
    let g = DropFlag(dropped.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        let _ = &g;
    })
    .unwrap();
    let readers = lp.stats().readers;
    assert!(lp.remove_signal_handler(SIGUSR1).unwrap());
    assert!(dropped.get());
    assert_eq!(
        lp.stats().readers,
        readers - 1,
        "the wake-up pipe is unregistered"
    );
    assert!(!lp.remove_signal_handler(SIGUSR1).unwrap());
    lp.close().unwrap();
}

/// Set in the environment of a child run of this binary: which scenario it plays.
const CHILD_ENV: &str = "TULIPA_SIGNAL_CHILD";

/// The child's side: installs a handler for `sig`, then keeps it, removes it or closes the loop,
/// then raises `sig`. It returns (and the child exits with 0) only if the signal did not end it.
fn child_scenario(scenario: &str) {
    let (what, sig) = scenario.split_once(':').expect("scenario is WHAT:SIGNAL");
    let sig: i32 = sig.parse().expect("a signal number");
    // A second loop on the main thread that also handles the signal, for the "two" scenario: it
    // must keep it caught when the first one lets go (its handler exits with 4).
    let other = (what == "two").then(|| {
        let other = EventLoop::new().unwrap();
        other
            .add_signal_handler(sig, || std::process::exit(4))
            .unwrap();
        other
    });
    let lp = EventLoop::new().unwrap();
    // Were this handler still called, the child would exit with 3 on the loop run below.
    lp.add_signal_handler(sig, || std::process::exit(3))
        .unwrap();
    match what {
        "keep" => {}
        "remove" => assert!(lp.remove_signal_handler(sig).unwrap()),
        "close" | "two" => lp.close().unwrap(),
        other => panic!("unknown scenario {other}"),
    }
    kill_self(sig).unwrap();
    // Runs the handler if it is still installed (bounded, should nothing arrive).
    if let Some(other) = other {
        run_at_most(&other, LIMIT);
        other.close().unwrap();
    }
    if !lp.is_closed() {
        run_at_most(&lp, LIMIT);
        lp.close().unwrap();
    }
}

fn run_child(scenario: &str) -> ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, scenario)
        .status()
        .unwrap()
}

fn removing_the_handler_restores_the_default_action() {
    // Control: while the handler is installed the signal is caught and the handler runs.
    let kept = run_child(&format!("keep:{SIGUSR2}"));
    assert_eq!(kept.code(), Some(3), "{kept:?}");
    // asyncio's remove_signal_handler puts SIG_DFL back: the default action ends the process.
    for sig in [SIGUSR2, SIGINT] {
        let removed = run_child(&format!("remove:{sig}"));
        assert_eq!(removed.signal(), Some(sig), "{removed:?}");
    }
    let closed = run_child(&format!("close:{SIGUSR1}"));
    assert_eq!(closed.signal(), Some(SIGUSR1), "{closed:?}");
    // Not while another loop of the thread still handles the signal: its handler runs.
    let shared = run_child(&format!("two:{SIGUSR2}"));
    assert_eq!(shared.code(), Some(4), "{shared:?}");
}

fn removed_handler_is_not_called() {
    let lp = EventLoop::new().unwrap();
    let calls = Rc::new(Cell::new(0));
    let c = calls.clone();
    lp.add_signal_handler(SIGUSR2, move || c.set(c.get() + 1))
        .unwrap();
    // Both arrive before the loop runs: the removed handler's queued wake-up must not run it.
    kill_self(SIGUSR2).unwrap();
    assert!(lp.remove_signal_handler(SIGUSR2).unwrap());
    let lp2 = lp.clone();
    lp.add_signal_handler(SIGUSR1, move || lp2.stop()).unwrap();
    kill_self(SIGUSR1).unwrap();
    run_at_most(&lp, LIMIT);
    assert_eq!(calls.get(), 0);
    lp.remove_signal_handler(SIGUSR1).unwrap();
    lp.close().unwrap();
}

fn close_drops_signal_handlers() {
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let g = DropFlag(dropped.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        let _ = &g;
    })
    .unwrap();
    lp.close().unwrap();
    assert!(dropped.get());
    assert!(matches!(lp.remove_signal_handler(SIGUSR1), Ok(false)));
    assert!(matches!(
        lp.add_signal_handler(SIGUSR1, || {}),
        Err(Error::Closed)
    ));
}

fn uncatchable_and_invalid_signals_are_invalid_signal() {
    let lp = EventLoop::new().unwrap();
    for sig in [SIGKILL, SIGSTOP, SIGSEGV, 0, -1, 65, 1000] {
        match lp.add_signal_handler(sig, || {}) {
            Err(Error::InvalidSignal { signal, reason }) => {
                assert_eq!(signal, sig);
                assert!(!reason.is_empty());
            }
            other => panic!("add_signal_handler({sig}) gave {other:?}"),
        }
        assert!(
            matches!(
                lp.remove_signal_handler(sig),
                Err(Error::InvalidSignal { .. })
            ),
            "remove_signal_handler({sig})"
        );
    }
    let msg = lp
        .add_signal_handler(SIGKILL, || {})
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(&SIGKILL.to_string()),
        "the message names the signal: {msg}"
    );
    assert_eq!(
        lp.stats().readers,
        0,
        "a refused signal leaves nothing registered"
    );
    lp.close().unwrap();
}

fn loop_off_the_main_thread_is_not_main_thread() {
    let result = thread::spawn(|| {
        let lp = EventLoop::new().unwrap();
        let add = lp.add_signal_handler(SIGUSR1, || {});
        let add_term = lp.add_signal_handler(SIGTERM, || {});
        lp.close().unwrap();
        (add, add_term)
    })
    .join()
    .unwrap();
    assert!(
        matches!(result.0, Err(Error::NotMainThread)),
        "{:?}",
        result.0
    );
    assert!(
        matches!(result.1, Err(Error::NotMainThread)),
        "{:?}",
        result.1
    );
}

fn panicking_handler_is_reported_and_stays_installed() {
    let lp = EventLoop::new().unwrap();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        r.borrow_mut().push((ctx.source.clone(), ctx.panic.clone()));
    }));
    let calls = Rc::new(Cell::new(0));
    let (c, lp2) = (calls.clone(), lp.clone());
    lp.add_signal_handler(SIGUSR1, move || {
        c.set(c.get() + 1);
        lp2.stop();
        if c.get() == 1 {
            panic!("signal handler failed");
        }
    })
    .unwrap();
    kill_self(SIGUSR1).unwrap();
    run_at_most(&lp, LIMIT);
    kill_self(SIGUSR1).unwrap();
    run_at_most(&lp, LIMIT);
    assert_eq!(calls.get(), 2, "still installed after the panic");
    let source = format!("handler of signal {SIGUSR1}");
    assert_eq!(
        *reports.borrow(),
        [(Some(source), Some("signal handler failed".to_owned()))]
    );
    lp.remove_signal_handler(SIGUSR1).unwrap();
    lp.close().unwrap();
}

fn sigint_handler_replaces_the_default_action() {
    // What a program's "stop cleanly on Ctrl-C" does (see examples/ticker.rs).
    let lp = EventLoop::new().unwrap();
    let stopped_by = Rc::new(Cell::new(0));
    let (s, lp2) = (stopped_by.clone(), lp.clone());
    lp.add_signal_handler(SIGINT, move || {
        s.set(SIGINT);
        lp2.stop();
    })
    .unwrap();
    lp.call_repeatedly(Duration::from_millis(1), || {}).unwrap();
    lp.call_soon(|| kill_self(SIGINT).unwrap()).unwrap();
    run_at_most(&lp, LIMIT);
    assert_eq!(stopped_by.get(), SIGINT);
    assert!(lp.remove_signal_handler(SIGINT).unwrap());
    lp.close().unwrap();
}

fn main() {
    if let Ok(scenario) = std::env::var(CHILD_ENV) {
        child_scenario(&scenario);
        return;
    }
    let tests: &[(&str, fn())] = &[
        (
            "handler_runs_as_a_loop_callback",
            handler_runs_as_a_loop_callback,
        ),
        (
            "signal_raised_by_a_callback_wakes_the_loop",
            signal_raised_by_a_callback_wakes_the_loop,
        ),
        (
            "signal_from_another_thread_wakes_a_blocked_loop",
            signal_from_another_thread_wakes_a_blocked_loop,
        ),
        (
            "second_handler_replaces_the_first",
            second_handler_replaces_the_first,
        ),
        (
            "each_signal_runs_its_own_handler",
            each_signal_runs_its_own_handler,
        ),
        (
            "remove_signal_handler_returns_true_then_false",
            remove_signal_handler_returns_true_then_false,
        ),
        (
            "removed_handler_is_not_called",
            removed_handler_is_not_called,
        ),
        (
            "removing_the_handler_restores_the_default_action",
            removing_the_handler_restores_the_default_action,
        ),
        ("close_drops_signal_handlers", close_drops_signal_handlers),
        (
            "uncatchable_and_invalid_signals_are_invalid_signal",
            uncatchable_and_invalid_signals_are_invalid_signal,
        ),
        (
            "loop_off_the_main_thread_is_not_main_thread",
            loop_off_the_main_thread_is_not_main_thread,
        ),
        (
            "panicking_handler_is_reported_and_stays_installed",
            panicking_handler_is_reported_and_stays_installed,
        ),
        (
            "sigint_handler_replaces_the_default_action",
            sigint_handler_replaces_the_default_action,
        ),
    ];
    // `cargo test -- NAME` passes a filter, as libtest would.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        match panic::catch_unwind(AssertUnwindSafe(test)) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!();
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}
