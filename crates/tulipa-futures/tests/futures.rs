//! Behaviour of `tulipa_futures::Future`, ported from CPython's
//! `Lib/test/test_asyncio/test_futures.py` (BaseFutureTests, BaseFutureDoneCallbackTests).
//!
//! The state machine (pending, done with a value or an error, cancelled), `InvalidState` for
//! misuse, done callbacks that are always scheduled with `call_soon` (never run inline, FIFO,
//! removable), and the "exception was never retrieved" report to the loop's exception handler.
//! Everything runs on a virtual-time loop; one loop iteration is `stop()` then `run_forever()`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tulipa_futures::rt::{EventLoop, ExceptionContext, LoopError};
use tulipa_futures::{run_until_complete, spawn_on, Error, Future};

/// Sets its flag when dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

fn virtual_loop() -> EventLoop {
    EventLoop::new_virtual().expect("a virtual-time loop")
}

/// Runs exactly one iteration of `lp` (the ready callbacks queued before it).
fn run_once(lp: &EventLoop) {
    lp.stop();
    lp.run_forever().expect("one loop iteration");
}

type Log<T> = Rc<RefCell<Vec<T>>>;

fn log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

/// What the exception handler was told: (message, source, error text).
type Reports = Log<(String, Option<String>, Option<String>)>;

/// Installs an exception handler on `lp` that records every context it is given.
fn capture_reports(lp: &EventLoop) -> Reports {
    let reports: Reports = log();
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        r.borrow_mut().push((
            ctx.message.clone(),
            ctx.source.clone(),
            ctx.error.as_ref().map(|e| e.to_string()),
        ));
    }));
    reports
}

fn boom() -> Error {
    Error::InvalidArgument("boom")
}

// ---------------------------------------------------------------------------------------------
// The state machine
// ---------------------------------------------------------------------------------------------

#[test]
fn new_future_is_pending() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    assert!(!f.done());
    assert!(!f.cancelled());
    assert!(f.get_loop().id() == lp.id());
}

#[test]
fn set_result_makes_it_done_with_the_value() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    f.set_result(42).unwrap();
    assert!(f.done());
    assert!(!f.cancelled());
    assert_eq!(f.result().unwrap(), 42);
    assert!(f.exception().unwrap().is_none());
}

#[test]
fn set_exception_makes_it_done_with_the_error() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    f.set_exception(boom()).unwrap();
    assert!(f.done());
    assert!(!f.cancelled());
    assert!(matches!(f.result(), Err(Error::InvalidArgument("boom"))));
    assert!(matches!(
        f.exception(),
        Ok(Some(Error::InvalidArgument("boom")))
    ));
}

#[test]
fn cancel_makes_it_done_and_cancelled() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    assert!(f.cancel(None));
    assert!(f.done());
    assert!(f.cancelled());
}

#[test]
fn set_result_twice_is_invalid_state() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    f.set_result(1).unwrap();
    assert!(f.set_result(2).unwrap_err().is_invalid_state());
    assert!(f.set_exception(boom()).unwrap_err().is_invalid_state());
    assert_eq!(f.result().unwrap(), 1, "the first value stays");
}

#[test]
fn set_result_after_exception_or_cancel_is_invalid_state() {
    let lp = virtual_loop();
    let failed: Future<u32> = Future::new(&lp);
    failed.set_exception(boom()).unwrap();
    assert!(failed.set_result(1).unwrap_err().is_invalid_state());
    let _ = failed.exception();

    let cancelled: Future<u32> = Future::new(&lp);
    cancelled.cancel(None);
    assert!(cancelled.set_result(1).unwrap_err().is_invalid_state());
    assert!(cancelled
        .set_exception(boom())
        .unwrap_err()
        .is_invalid_state());
}

#[test]
fn result_and_exception_while_pending_are_invalid_state() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    assert!(f.result().unwrap_err().is_invalid_state());
    assert!(f.exception().unwrap_err().is_invalid_state());
    assert!(f.take_result().unwrap_err().is_invalid_state());
    assert!(!f.done(), "asking does not change the state");
}

#[test]
fn result_and_exception_of_a_cancelled_future_are_cancelled_with_the_message() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    assert!(f.cancel(Some("my message")));
    for e in [f.result().unwrap_err(), f.exception().unwrap_err()] {
        match e {
            Error::Cancelled(c) => assert_eq!(c.message(), Some("my message")),
            other => panic!("expected Cancelled, got {other:?}"),
        }
    }
    assert_eq!(f.result().unwrap_err().to_string(), "cancelled: my message");
}

#[test]
fn cancel_without_message_has_none() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    f.cancel(None);
    match f.result() {
        Err(Error::Cancelled(c)) => assert_eq!(c.message(), None),
        other => panic!("expected Cancelled, got {other:?}"),
    }
}

#[test]
fn cancel_on_a_done_future_returns_false() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    f.set_result(3).unwrap();
    assert!(!f.cancel(None));
    assert!(!f.cancelled());
    assert_eq!(f.result().unwrap(), 3);

    let c: Future<u32> = Future::new(&lp);
    assert!(c.cancel(Some("first")));
    assert!(!c.cancel(Some("second")), "a second cancel is refused");
    match c.result() {
        Err(Error::Cancelled(m)) => assert_eq!(m.message(), Some("first")),
        other => panic!("expected Cancelled, got {other:?}"),
    }
}

#[test]
fn result_is_readable_several_times_for_clone_values() {
    let lp = virtual_loop();
    let f: Future<String> = Future::new(&lp);
    f.set_result("hello".to_owned()).unwrap();
    assert_eq!(f.result().unwrap(), "hello");
    assert_eq!(f.result().unwrap(), "hello");
    assert_eq!(
        f.clone().result().unwrap(),
        "hello",
        "clones share the slot"
    );
}

#[test]
fn error_is_readable_several_times() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    f.set_exception(boom()).unwrap();
    assert!(matches!(f.result(), Err(Error::InvalidArgument(_))));
    assert!(matches!(f.take_result(), Err(Error::InvalidArgument(_))));
    assert!(matches!(f.result(), Err(Error::InvalidArgument(_))));
}

#[test]
fn take_result_moves_the_value_then_result_is_invalid_state() {
    let lp = virtual_loop();
    let f: Future<Vec<u8>> = Future::new(&lp);
    f.set_result(vec![1, 2, 3]).unwrap();
    assert_eq!(f.take_result().unwrap(), [1, 2, 3]);
    assert!(f.done(), "still done after the value moved out");
    assert!(f.result().unwrap_err().is_invalid_state());
    assert!(f.take_result().unwrap_err().is_invalid_state());
    assert!(
        f.exception().unwrap().is_none(),
        "a future done with a value has no error, moved or not"
    );
}

#[test]
fn awaiting_a_future_gives_its_value() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    let f2 = f.clone();
    lp.call_soon(move || f2.set_result(7).unwrap()).unwrap();
    let v = run_until_complete(&lp, f).unwrap();
    assert_eq!(v, 7);
}

#[test]
fn awaiting_a_failed_future_gives_its_error() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    let f2 = f.clone();
    lp.call_soon(move || f2.set_exception(boom()).unwrap())
        .unwrap();
    let r = run_until_complete(&lp, f);
    assert!(matches!(r, Err(Error::InvalidArgument("boom"))));
}

#[test]
fn debug_shows_the_state() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    assert!(format!("{f:?}").contains("pending"));
    f.set_result(1).unwrap();
    assert!(format!("{f:?}").contains("finished"));
    let c: Future<u32> = Future::new(&lp);
    c.cancel(None);
    assert!(format!("{c:?}").contains("cancelled"));
}

// ---------------------------------------------------------------------------------------------
// Done callbacks
// ---------------------------------------------------------------------------------------------

#[test]
fn done_callback_is_not_called_inline_by_set_result() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    let seen = log();
    let s = seen.clone();
    f.add_done_callback(move |f| s.borrow_mut().push(f.result().unwrap()))
        .unwrap();
    f.set_result(5).unwrap();
    assert!(seen.borrow().is_empty(), "scheduled, not called");
    run_once(&lp);
    assert_eq!(*seen.borrow(), [5]);
}

#[test]
fn done_callback_added_to_a_done_future_is_scheduled_not_called_inline() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    f.set_result(9).unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    f.add_done_callback(move |f| {
        assert_eq!(f.result().unwrap(), 9);
        r.set(true);
    })
    .unwrap();
    assert!(!ran.get(), "a callback is never called inline");
    run_once(&lp);
    assert!(ran.get(), "it runs on the next loop iteration");
}

#[test]
fn done_callback_added_to_a_done_future_of_a_closed_loop_is_an_error() {
    // asyncio raises RuntimeError (call_soon on a closed loop); the callback could never run.
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    f.set_result(9).unwrap();
    lp.close().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let guard = DropFlag(dropped.clone());
    let r = f.add_done_callback(move |_| {
        let _keep = &guard;
        unreachable!("a closed loop runs nothing");
    });
    match r {
        Err(Error::Loop(e)) => assert!(matches!(*e, LoopError::Closed), "{e:?}"),
        other => panic!("expected Err(Loop(Closed)), got {other:?}"),
    }
    assert!(dropped.get(), "the callback was dropped, not kept");
}

#[test]
fn completing_a_future_with_callbacks_after_its_loop_closed_is_an_error() {
    // asyncio: set_result marks the future done, then call_soon raises RuntimeError.
    let lp = virtual_loop();
    let with_cb: Future<u32> = Future::new(&lp);
    with_cb
        .add_done_callback(|_| unreachable!("a closed loop runs nothing"))
        .unwrap();
    let without: Future<u32> = Future::new(&lp);
    lp.close().unwrap();
    match with_cb.set_result(1) {
        Err(Error::Loop(e)) => assert!(matches!(*e, LoopError::Closed), "{e:?}"),
        other => panic!("expected Err(Loop(Closed)), got {other:?}"),
    }
    assert!(with_cb.done(), "the future is done all the same");
    assert_eq!(with_cb.result().unwrap(), 1);
    // Nothing was waiting for it: nothing is lost, so no error.
    without.set_exception(Error::InvalidState("boom")).unwrap();
    assert!(without.done());
    assert!(without.exception().unwrap().is_some());
}

#[test]
fn done_callbacks_run_in_the_order_they_were_added() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    let order = log();
    for i in 0..5 {
        let o = order.clone();
        f.add_done_callback(move |_| o.borrow_mut().push(i))
            .unwrap();
    }
    f.set_result(0).unwrap();
    run_once(&lp);
    assert_eq!(*order.borrow(), [0, 1, 2, 3, 4]);
}

#[test]
fn done_callbacks_run_once_even_when_the_loop_keeps_running() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    let n = Rc::new(Cell::new(0));
    let n2 = n.clone();
    f.add_done_callback(move |_| n2.set(n2.get() + 1)).unwrap();
    f.cancel(None);
    for _ in 0..3 {
        run_once(&lp);
    }
    assert_eq!(n.get(), 1);
}

#[test]
fn done_callbacks_run_on_cancel_and_on_exception() {
    let lp = virtual_loop();
    let seen = log();
    let cancelled: Future<u32> = Future::new(&lp);
    let failed: Future<u32> = Future::new(&lp);
    for (name, f) in [("cancelled", &cancelled), ("failed", &failed)] {
        let s = seen.clone();
        f.add_done_callback(move |f| s.borrow_mut().push((name, f.cancelled())))
            .unwrap();
    }
    cancelled.cancel(None);
    failed.set_exception(boom()).unwrap();
    let _ = failed.exception();
    run_once(&lp);
    assert_eq!(*seen.borrow(), [("cancelled", true), ("failed", false)]);
}

#[test]
fn remove_done_callback_removes_only_that_one() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    let order = log();
    let ids: Vec<_> = (0..4)
        .map(|i| {
            let o = order.clone();
            f.add_done_callback(move |_| o.borrow_mut().push(i))
                .unwrap()
        })
        .collect();
    assert!(f.remove_done_callback(ids[1]));
    assert!(f.remove_done_callback(ids[3]));
    assert!(!f.remove_done_callback(ids[3]), "already removed");
    f.set_result(0).unwrap();
    run_once(&lp);
    assert_eq!(*order.borrow(), [0, 2]);
}

#[test]
fn remove_done_callback_after_completion_finds_nothing() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let id = f.add_done_callback(move |_| r.set(true)).unwrap();
    f.set_result(0).unwrap();
    assert!(
        !f.remove_done_callback(id),
        "once scheduled, a callback can no longer be removed"
    );
    run_once(&lp);
    assert!(ran.get());
}

#[test]
fn done_callback_can_add_another_callback() {
    let lp = virtual_loop();
    let f: Future<u32> = Future::new(&lp);
    let order = log();
    let o = order.clone();
    f.add_done_callback(move |f| {
        o.borrow_mut().push("first");
        let o2 = o.clone();
        f.add_done_callback(move |_| o2.borrow_mut().push("added later"))
            .unwrap();
        assert_eq!(o.borrow().len(), 1, "the nested one is scheduled too");
    })
    .unwrap();
    f.set_result(0).unwrap();
    run_once(&lp);
    assert_eq!(*order.borrow(), ["first"]);
    run_once(&lp);
    assert_eq!(*order.borrow(), ["first", "added later"]);
}

// ---------------------------------------------------------------------------------------------
// "exception was never retrieved"
// ---------------------------------------------------------------------------------------------

#[test]
fn unretrieved_error_reaches_the_exception_handler_when_the_last_handle_drops() {
    let lp = virtual_loop();
    let reports = capture_reports(&lp);
    let f: Future<u32> = Future::new(&lp);
    let f2 = f.clone();
    f.set_exception(boom()).unwrap();
    drop(f);
    assert!(reports.borrow().is_empty(), "a handle is still alive");
    drop(f2);
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (message, source, error) = &reports[0];
    assert!(message.contains("never retrieved"), "{message}");
    assert_eq!(source.as_deref(), Some("future"));
    assert_eq!(error.as_deref(), Some("invalid argument: boom"));
}

#[test]
fn retrieved_error_is_not_reported() {
    let lp = virtual_loop();
    let reports = capture_reports(&lp);

    let by_exception: Future<u32> = Future::new(&lp);
    by_exception.set_exception(boom()).unwrap();
    assert!(by_exception.exception().unwrap().is_some());
    drop(by_exception);

    let by_result: Future<u32> = Future::new(&lp);
    by_result.set_exception(boom()).unwrap();
    assert!(by_result.result().is_err());
    drop(by_result);

    let by_take: Future<u32> = Future::new(&lp);
    by_take.set_exception(boom()).unwrap();
    assert!(by_take.take_result().is_err());
    drop(by_take);

    let by_await: Future<u32> = Future::new(&lp);
    by_await.set_exception(boom()).unwrap();
    let r = run_until_complete(&lp, by_await);
    assert!(r.is_err());

    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

#[test]
fn cancelled_and_successful_futures_are_not_reported() {
    let lp = virtual_loop();
    let reports = capture_reports(&lp);
    let c: Future<u32> = Future::new(&lp);
    c.cancel(Some("bye"));
    drop(c);
    let ok: Future<u32> = Future::new(&lp);
    ok.set_result(1).unwrap();
    drop(ok);
    let pending: Future<u32> = Future::new(&lp);
    drop(pending);
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

#[test]
fn unretrieved_error_of_a_future_inside_a_task_is_reported() {
    let lp = virtual_loop();
    let reports = capture_reports(&lp);
    let task = spawn_on(&lp, async {
        let f: Future<u32> = Future::new(&tulipa_futures::rt::EventLoop::running()?);
        f.set_exception(boom())?;
        Ok(())
    })
    .unwrap();
    lp.run_until_complete(task).unwrap().unwrap();
    assert_eq!(reports.borrow().len(), 1);
}
