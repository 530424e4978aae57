//! Panics in callbacks, the exception handler and debug mode.
//!
//! Ports the exception-handler checks of CPython's `test_asyncio/test_base_events.py`
//! (`test_default_exc_handler_*`, `test_set_exc_handler_*`, `test_custom_exception_handler*`,
//! `test_slow_callback_duration`-style debug checks). Log output is captured with a
//! `tracing-subscriber` writing into a shared buffer, installed for the test's thread only.

use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;
use tulipa_loop::{Error, EventLoop, ExceptionContext};

// ---- log capture ----------------------------------------------------------------------------

/// A `MakeWriter` whose writers all append to one shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

struct CapturedWriter(Arc<Mutex<Vec<u8>>>);

impl io::Write for CapturedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = CapturedWriter;
    fn make_writer(&'a self) -> CapturedWriter {
        CapturedWriter(self.0.clone())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `f` with a subscriber that records every event of this thread; returns the log text.
fn capture_logs(f: impl FnOnce()) -> String {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    logs.text()
}

// ---- helpers --------------------------------------------------------------------------------

/// What a custom handler saw, in a form the tests can compare.
#[derive(Debug, Clone)]
struct Seen {
    loop_id: u64,
    message: String,
    panic: Option<String>,
    source: Option<String>,
    file: Option<String>,
    line: Option<u32>,
    error: Option<String>,
}

fn recording_handler(lp: &EventLoop) -> Rc<RefCell<Vec<Seen>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(Some(move |lp: &EventLoop, ctx: &ExceptionContext| {
        s.borrow_mut().push(Seen {
            loop_id: lp.id(),
            message: ctx.message.clone(),
            panic: ctx.panic.clone(),
            source: ctx.source.clone(),
            file: ctx.scheduled_at.map(|l| l.file().to_owned()),
            line: ctx.scheduled_at.map(|l| l.line()),
            error: ctx.error.as_ref().map(|e| e.to_string()),
        });
    }));
    seen
}

fn run_one_iteration(lp: &EventLoop) {
    lp.stop();
    lp.run_forever().unwrap();
}

// ---- panics in callbacks --------------------------------------------------------------------

#[test]
fn panicking_callback_is_caught_and_the_loop_goes_on() {
    let lp = EventLoop::new().unwrap();
    let _seen = recording_handler(&lp);
    let after = Rc::new(Cell::new(false));
    lp.call_soon(|| panic!("boom")).unwrap();
    let a = after.clone();
    lp.call_soon(move || a.set(true)).unwrap();
    run_one_iteration(&lp);
    assert!(
        after.get(),
        "the callback after the panicking one still ran"
    );
    assert!(!lp.is_running());
    // And the loop runs again normally.
    let a = after.clone();
    a.set(false);
    lp.call_soon(move || a.set(true)).unwrap();
    run_one_iteration(&lp);
    assert!(after.get());
    lp.close().unwrap();
}

#[test]
fn custom_handler_gets_the_panic_message_and_where_it_was_scheduled() {
    let lp = EventLoop::new().unwrap();
    let seen = recording_handler(&lp);
    let line = line!() + 1;
    lp.call_soon(|| panic!("callback failed: {}", 42)).unwrap();
    run_one_iteration(&lp);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.loop_id, lp.id(), "the handler is given the loop");
    assert_eq!(s.message, "exception in callback");
    assert_eq!(s.panic.as_deref(), Some("callback failed: 42"));
    assert_eq!(s.source.as_deref(), Some("callback"));
    assert!(
        s.file.as_deref().unwrap().ends_with("exceptions.rs"),
        "{s:?}"
    );
    assert_eq!(s.line, Some(line));
    lp.close().unwrap();
}

#[test]
fn panicking_timer_reports_its_kind_and_location() {
    let lp = EventLoop::new_virtual().unwrap();
    let seen = recording_handler(&lp);
    let line = line!() + 1;
    lp.call_later(Duration::from_secs(1), || panic!("timer failed"))
        .unwrap();
    let lp2 = lp.clone();
    lp.call_later(Duration::from_secs(2), move || lp2.stop())
        .unwrap();
    lp.run_forever().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].panic.as_deref(), Some("timer failed"));
    assert_eq!(seen[0].source.as_deref(), Some("timer"));
    assert_eq!(seen[0].line, Some(line));
    lp.close().unwrap();
}

#[test]
fn panicking_threadsafe_callback_reports_where_it_was_scheduled() {
    let lp = EventLoop::new().unwrap();
    let seen = recording_handler(&lp);
    let door = lp.loop_handle();
    let line = line!() + 2;
    let job = move || {
        door.call_soon_threadsafe(|| panic!("remote failed"))
            .map(drop)
    };
    std::thread::spawn(job).join().unwrap().unwrap();
    run_one_iteration(&lp);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].panic.as_deref(), Some("remote failed"));
    assert_eq!(seen[0].source.as_deref(), Some("threadsafe callback"));
    assert_eq!(seen[0].line, Some(line));
    lp.close().unwrap();
}

#[test]
fn panicking_reader_reports_its_fd() {
    let lp = EventLoop::new().unwrap();
    let seen = recording_handler(&lp);
    let (a, b) = UnixStream::pair().unwrap();
    drop(a); // the reader's end is readable (EOF) at once
    let fd = b.as_raw_fd();
    let lp2 = lp.clone();
    lp.add_reader(fd, move || {
        lp2.remove_reader(fd);
        lp2.stop();
        panic!("reader failed");
    })
    .unwrap();
    lp.run_forever().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].source.as_deref(),
        Some(format!("reader on fd {fd}").as_str())
    );
    lp.close().unwrap();
}

#[test]
fn non_string_panic_payload_is_reported_as_a_note() {
    let lp = EventLoop::new().unwrap();
    let seen = recording_handler(&lp);
    lp.call_soon(|| std::panic::panic_any(42_u32)).unwrap();
    run_one_iteration(&lp);
    assert_eq!(
        seen.borrow()[0].panic.as_deref(),
        Some("<non-string panic payload>")
    );
    lp.close().unwrap();
}

#[test]
fn every_panic_of_a_batch_is_reported_in_order() {
    let lp = EventLoop::new().unwrap();
    let seen = recording_handler(&lp);
    for i in 0..3 {
        lp.call_soon(move || panic!("panic {i}")).unwrap();
    }
    run_one_iteration(&lp);
    let panics: Vec<_> = seen
        .borrow()
        .iter()
        .map(|s| s.panic.clone().unwrap())
        .collect();
    assert_eq!(panics, ["panic 0", "panic 1", "panic 2"]);
    lp.close().unwrap();
}

// ---- the handler ----------------------------------------------------------------------------

#[test]
fn default_handler_logs_the_panic_at_error_level() {
    let lp = EventLoop::new().unwrap();
    assert!(!lp.has_exception_handler());
    let line = line!() + 3;
    let logs = capture_logs(|| {
        let lp2 = lp.clone();
        lp.call_soon(|| panic!("logged by default")).unwrap();
        lp.call_soon(move || lp2.stop()).unwrap();
        lp.run_forever().unwrap();
    });
    assert!(logs.contains("ERROR"), "{logs}");
    assert!(logs.contains("logged by default"), "{logs}");
    assert!(logs.contains(&format!("exceptions.rs:{line}")), "{logs}");
    lp.close().unwrap();
}

#[test]
fn set_exception_handler_none_restores_the_default() {
    let lp = EventLoop::new().unwrap();
    let seen = recording_handler(&lp);
    assert!(lp.has_exception_handler());
    lp.set_exception_handler(None::<fn(&EventLoop, &ExceptionContext)>);
    assert!(!lp.has_exception_handler());
    let logs = capture_logs(|| {
        lp.call_soon(|| panic!("back to the default")).unwrap();
        run_one_iteration(&lp);
    });
    assert!(
        seen.borrow().is_empty(),
        "the removed handler is not called"
    );
    assert!(logs.contains("back to the default"), "{logs}");
    lp.close().unwrap();
}

#[test]
fn replacing_the_handler_uses_the_new_one() {
    let lp = EventLoop::new().unwrap();
    let first = recording_handler(&lp);
    let second = recording_handler(&lp);
    lp.call_soon(|| panic!("to the second")).unwrap();
    run_one_iteration(&lp);
    assert!(first.borrow().is_empty());
    assert_eq!(second.borrow().len(), 1);
    lp.close().unwrap();
}

#[test]
fn panicking_handler_does_not_kill_the_loop() {
    let lp = EventLoop::new().unwrap();
    lp.set_exception_handler(Some(|_: &EventLoop, _: &ExceptionContext| {
        panic!("the handler itself fails");
    }));
    let after = Rc::new(Cell::new(false));
    let logs = capture_logs(|| {
        lp.call_soon(|| panic!("original failure")).unwrap();
        let a = after.clone();
        lp.call_soon(move || a.set(true)).unwrap();
        run_one_iteration(&lp);
    });
    assert!(after.get(), "the loop went on");
    // Both the handler's panic and the original context reach the default handler.
    assert!(logs.contains("the exception handler panicked"), "{logs}");
    assert!(logs.contains("the handler itself fails"), "{logs}");
    assert!(logs.contains("original failure"), "{logs}");
    lp.close().unwrap();
}

#[test]
fn handler_may_schedule_callbacks_on_the_loop() {
    // No borrow is held while the handler runs: it can use the loop freely.
    let lp = EventLoop::new().unwrap();
    let recovered = Rc::new(Cell::new(false));
    let r = recovered.clone();
    lp.set_exception_handler(Some(move |lp: &EventLoop, _: &ExceptionContext| {
        let r = r.clone();
        lp.call_soon(move || r.set(true)).unwrap();
        lp.stop();
    }));
    lp.call_soon(|| panic!("recover from this")).unwrap();
    lp.run_forever().unwrap();
    run_one_iteration(&lp);
    assert!(recovered.get());
    lp.close().unwrap();
}

#[test]
fn call_exception_handler_passes_the_context_to_the_handler() {
    let lp = EventLoop::new().unwrap();
    let seen = recording_handler(&lp);
    let here = std::panic::Location::caller();
    lp.call_exception_handler(
        ExceptionContext::new("a task's error was never retrieved")
            .with_source("task 'fetch'")
            .with_error(Error::Closed)
            .with_location(here),
    );
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].message, "a task's error was never retrieved");
    assert_eq!(seen[0].source.as_deref(), Some("task 'fetch'"));
    assert_eq!(seen[0].error.as_deref(), Some("the event loop is closed"));
    assert_eq!(seen[0].panic, None);
    assert_eq!(seen[0].line, Some(here.line()));
    lp.close().unwrap();
}

#[test]
fn call_exception_handler_without_a_handler_logs() {
    let lp = EventLoop::new().unwrap();
    let logs = capture_logs(|| {
        lp.call_exception_handler(ExceptionContext::new("reported by hand").with_source("test"));
    });
    assert!(
        logs.contains("ERROR") && logs.contains("reported by hand"),
        "{logs}"
    );
    lp.close().unwrap();
}

#[test]
fn exception_context_display_names_everything_it_holds() {
    let at = std::panic::Location::caller();
    let ctx = ExceptionContext::new("exception in callback")
        .with_source("timer")
        .with_location(at)
        .with_panic(&"bad state");
    let text = ctx.to_string();
    assert!(text.starts_with("exception in callback in timer"), "{text}");
    assert!(text.contains(&format!("scheduled at {at}")), "{text}");
    assert!(text.ends_with("panicked: bad state"), "{text}");
    assert!(format!("{ctx:?}").contains("bad state"));
}

// ---- debug mode -----------------------------------------------------------------------------

#[test]
fn debug_mode_warns_about_slow_callbacks() {
    let lp = EventLoop::new().unwrap();
    lp.set_debug(true);
    assert!(lp.get_debug());
    lp.set_slow_callback_duration(Duration::from_millis(5));
    assert_eq!(lp.slow_callback_duration(), Duration::from_millis(5));
    let line = line!() + 3;
    let logs = capture_logs(|| {
        // Being slow is the behaviour under test: this blocks the loop on purpose.
        lp.call_soon(|| std::thread::sleep(Duration::from_millis(20)))
            .unwrap();
        run_one_iteration(&lp);
    });
    assert!(logs.contains("WARN"), "{logs}");
    assert!(logs.contains("slow callback"), "{logs}");
    assert!(logs.contains(&format!("exceptions.rs:{line}")), "{logs}");
    lp.close().unwrap();
}

#[test]
fn debug_mode_is_quiet_about_fast_callbacks() {
    let lp = EventLoop::new().unwrap();
    lp.set_debug(true);
    lp.set_slow_callback_duration(Duration::from_secs(10));
    let logs = capture_logs(|| {
        lp.call_soon(|| {}).unwrap();
        run_one_iteration(&lp);
    });
    assert!(!logs.contains("slow callback"), "{logs}");
    lp.close().unwrap();
}

#[test]
fn slow_callbacks_are_not_reported_outside_debug_mode() {
    let lp = EventLoop::new().unwrap();
    lp.set_debug(false);
    lp.set_slow_callback_duration(Duration::ZERO);
    let logs = capture_logs(|| {
        lp.call_soon(|| std::thread::sleep(Duration::from_millis(2)))
            .unwrap();
        run_one_iteration(&lp);
    });
    assert!(!logs.contains("slow callback"), "{logs}");
    lp.close().unwrap();
}
