//! Behaviour of `tulipa_futures::Task`, ported from CPython's `Lib/test/test_asyncio/test_tasks.py`
//! (BaseTaskTests: results, errors, names, current_task/all_tasks, cancellation in all its forms,
//! run_coroutine_threadsafe) and `test_runners.py` (`asyncio.run`).
//!
//! Everything involving time runs on a virtual-time loop: timers fire in order without real
//! waiting, so a task that "sleeps for an hour" finishes at once. `ticks(n)` yields `n` times,
//! letting every other ready task take `n` steps.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::mpsc;
use std::time::Duration;

use tulipa_futures::rt::{EventLoop, ExceptionContext, LoopError};
use tulipa_futures::{
    all_tasks, current_task, run, run_until_complete, sleep, spawn, spawn_on, spawn_threadsafe,
    ConcurrentFuture, Error, Future, Result, Task,
};

fn virtual_loop() -> EventLoop {
    EventLoop::new_virtual().expect("a virtual-time loop")
}

/// Runs `fut` as the main task of a fresh virtual-time loop and returns its outcome.
fn block_on<T: 'static>(fut: impl std::future::Future<Output = Result<T>> + 'static) -> Result<T> {
    let lp = virtual_loop();
    let out = run_until_complete(&lp, fut);
    let _ = lp.close();
    out
}

/// Runs exactly one iteration of `lp`.
fn run_once(lp: &EventLoop) {
    lp.stop();
    lp.run_forever().expect("one loop iteration");
}

/// Lets every other ready task take `n` steps.
async fn ticks(n: usize) -> Result<()> {
    for _ in 0..n {
        sleep(Duration::ZERO).await?;
    }
    Ok(())
}

fn flag() -> Rc<Cell<bool>> {
    Rc::new(Cell::new(false))
}

type Log<T> = Rc<RefCell<Vec<T>>>;

fn log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

fn cancel_message<T: std::fmt::Debug>(r: &Result<T>) -> Option<String> {
    match r {
        Err(Error::Cancelled(c)) => c.message().map(str::to_owned),
        other => panic!("expected Err(Cancelled), got {other:?}"),
    }
}

fn is_cancelled<T>(r: &Result<T>) -> bool {
    matches!(r, Err(e) if e.is_cancelled())
}

/// Sets a flag when dropped: proves a task's future (and what it owns) was dropped.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------------------------------------
// Results, errors, panics
// ---------------------------------------------------------------------------------------------

#[test]
fn spawned_task_result_is_awaited() {
    let v = block_on(async {
        let t = spawn(async {
            sleep(Duration::from_secs(1)).await?;
            Ok(6 * 7)
        })?;
        t.await
    });
    assert_eq!(v.unwrap(), 42);
}

#[test]
fn spawn_on_before_the_loop_runs_starts_on_the_next_iteration() {
    let lp = virtual_loop();
    let started = flag();
    let s = started.clone();
    let t = spawn_on(&lp, async move {
        s.set(true);
        Ok("done")
    })
    .unwrap();
    assert!(!started.get(), "a task does not start inside spawn_on");
    assert!(!t.done());
    assert_eq!(lp.run_until_complete(t.clone()).unwrap().unwrap(), "done");
    assert!(started.get());
    assert!(t.done());
}

#[test]
fn task_error_propagates_to_the_awaiter() {
    let r = block_on(async {
        let t = spawn(async { Err::<u32, _>(Error::InvalidArgument("bad input")) })?;
        let r = t.clone().await;
        assert!(t.done() && !t.cancelled());
        assert!(matches!(t.exception(), Ok(Some(Error::InvalidArgument(_)))));
        r
    });
    assert!(matches!(r, Err(Error::InvalidArgument("bad input"))));
}

#[test]
fn task_result_is_readable_after_completion() {
    block_on(async {
        let t = spawn(async { Ok(String::from("v")) })?;
        ticks(2).await?;
        assert!(t.done());
        assert_eq!(t.result()?, "v");
        assert_eq!(t.result()?, "v");
        Ok(())
    })
    .unwrap();
}

#[test]
fn set_result_on_a_task_is_invalid_state() {
    block_on(async {
        let t = spawn(async { Ok(1u8) })?;
        assert!(t.set_result(2).unwrap_err().is_invalid_state());
        assert!(t
            .set_exception(Error::InvalidArgument("x"))
            .unwrap_err()
            .is_invalid_state());
        assert_eq!(t.await?, 1);
        Ok(())
    })
    .unwrap();
}

#[test]
fn panic_inside_a_task_becomes_panicked_with_the_message() {
    let r = block_on(async {
        let t: Task<u32> = spawn(async {
            ticks(1).await?;
            panic!("the widget exploded");
        })?;
        t.await
    });
    match r {
        Err(Error::Panicked(m)) => assert_eq!(&*m, "the widget exploded"),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

#[test]
fn unobserved_panic_reaches_the_exception_handler() {
    let lp = virtual_loop();
    let reports = log::<(String, Option<String>, Option<String>)>();
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        r.borrow_mut().push((
            ctx.message.clone(),
            ctx.source.clone(),
            ctx.error.as_ref().map(|e| e.to_string()),
        ));
    }));
    run_until_complete(&lp, async {
        let t: Task<()> = spawn(async { panic!("nobody looks at me") })?;
        t.set_name("doomed");
        drop(t);
        ticks(3).await
    })
    .unwrap();
    let reports = reports.borrow();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let (message, source, error) = &reports[0];
    assert!(message.contains("never retrieved"), "{message}");
    assert!(source.as_deref().is_some_and(|s| s.contains("doomed")));
    assert!(error
        .as_deref()
        .is_some_and(|e| e.contains("nobody looks at me")));
}

#[test]
fn unobserved_task_error_reaches_the_exception_handler_but_an_awaited_one_does_not() {
    let lp = virtual_loop();
    let count = Rc::new(Cell::new(0));
    let c = count.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, _: &ExceptionContext| {
        c.set(c.get() + 1);
    }));
    run_until_complete(&lp, async {
        let awaited = spawn(async { Err::<(), _>(Error::InvalidArgument("seen")) })?;
        assert!(awaited.await.is_err());
        drop(spawn(async {
            Err::<(), _>(Error::InvalidArgument("unseen"))
        })?);
        ticks(3).await
    })
    .unwrap();
    assert_eq!(count.get(), 1);
}

#[test]
fn dropping_the_handle_does_not_stop_the_task() {
    let finished = flag();
    let f = finished.clone();
    block_on(async move {
        let t = spawn(async move {
            sleep(Duration::from_secs(5)).await?;
            f.set(true);
            Ok(())
        })?;
        drop(t);
        sleep(Duration::from_secs(10)).await
    })
    .unwrap();
    assert!(finished.get());
}

// ---------------------------------------------------------------------------------------------
// Names, current_task, all_tasks
// ---------------------------------------------------------------------------------------------

#[test]
fn default_name_is_task_and_the_id() {
    block_on(async {
        let t = spawn(async { Ok(()) })?;
        assert_eq!(t.name(), format!("Task-{}", t.id()));
        let u = spawn(async { Ok(()) })?;
        assert_ne!(t.id(), u.id(), "ids are unique");
        t.await?;
        u.await
    })
    .unwrap();
}

#[test]
fn set_name_renames_the_task() {
    block_on(async {
        let t = spawn(async {
            let me = current_task().expect("inside a task");
            Ok(me.name())
        })?;
        t.set_name("worker");
        assert_eq!(t.name(), "worker");
        assert_eq!(t.as_task_ref().name(), "worker");
        assert!(format!("{t:?}").contains("worker"));
        assert_eq!(t.await?, "worker", "the task sees its own new name");
        let me = current_task().expect("the main task");
        me.set_name("main");
        assert_eq!(current_task().unwrap().name(), "main");
        Ok(())
    })
    .unwrap();
}

#[test]
fn current_task_inside_and_outside() {
    assert!(current_task().is_none(), "no task outside a loop");
    let lp = virtual_loop();
    let t = spawn_on(&lp, async {
        let me = current_task().expect("inside a task");
        let child = spawn(async { Ok(current_task().unwrap().id()) })?;
        let child_id = child.id();
        assert_eq!(child.await?, child_id);
        Ok(me.id())
    })
    .unwrap();
    let id = t.id();
    assert_eq!(lp.run_until_complete(t).unwrap().unwrap(), id);

    // Plain callbacks run outside any task.
    let seen = Rc::new(Cell::new(true));
    let s = seen.clone();
    lp.call_soon(move || s.set(current_task().is_some()))
        .unwrap();
    run_once(&lp);
    assert!(!seen.get());
    assert!(current_task().is_none());
}

#[test]
fn all_tasks_lists_pending_tasks_only() {
    let lp = virtual_loop();
    let main = spawn_on(&lp, async {
        let quick = spawn(async { Ok(()) })?;
        let slow = spawn(async { sleep(HOUR).await })?;
        ticks(2).await?;
        assert!(quick.done());
        let lp = EventLoop::running()?;
        let mut ids: Vec<u64> = all_tasks(&lp).iter().map(|t| t.id()).collect();
        ids.sort_unstable();
        let me = current_task().unwrap().id();
        let mut want = vec![me, slow.id()];
        want.sort_unstable();
        assert_eq!(
            ids, want,
            "the main task and the slow one, not the finished one"
        );
        slow.cancel(None);
        assert!(is_cancelled(&slow.await));
        Ok(all_tasks(&lp).len())
    })
    .unwrap();
    assert_eq!(all_tasks(&lp).len(), 1, "the main task before it ran");
    assert_eq!(lp.run_until_complete(main).unwrap().unwrap(), 1);
    assert!(all_tasks(&lp).is_empty());
}

#[test]
fn all_tasks_is_per_loop() {
    let a = virtual_loop();
    let b = virtual_loop();
    let _ta = spawn_on(&a, async { Ok(()) }).unwrap();
    assert_eq!(all_tasks(&a).len(), 1);
    assert!(all_tasks(&b).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Cancellation
// ---------------------------------------------------------------------------------------------

#[test]
fn cancel_before_the_first_poll_ends_the_task_cancelled() {
    let lp = virtual_loop();
    let after_await = flag();
    let before_await = flag();
    let (a, b) = (after_await.clone(), before_await.clone());
    let t = spawn_on(&lp, async move {
        b.set(true);
        sleep(Duration::from_secs(1)).await?;
        a.set(true);
        Ok(1)
    })
    .unwrap();
    assert!(t.cancel(Some("early")));
    assert_eq!(t.cancelling(), 1);
    let r = lp.run_until_complete(t.clone()).unwrap();
    assert_eq!(cancel_message(&r).as_deref(), Some("early"));
    assert!(t.cancelled());
    assert!(
        !after_await.get(),
        "the code after the first await never ran"
    );
    // asyncio throws the CancelledError in before the coroutine's first line: none of it runs.
    assert!(
        !before_await.get(),
        "the code before the first await never ran either"
    );
}

#[test]
fn a_task_cancelled_before_its_first_step_drops_its_future_unpolled() {
    struct Owned(Rc<Cell<bool>>);
    impl Drop for Owned {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let lp = virtual_loop();
    let dropped = Rc::new(Cell::new(false));
    let owned = Owned(dropped.clone());
    let t = spawn_on(&lp, async move {
        let _keep = &owned;
        Ok(())
    })
    .unwrap();
    t.cancel(None);
    let r = lp.run_until_complete(t.clone()).unwrap();
    assert!(is_cancelled(&r), "{r:?}");
    assert!(dropped.get(), "what the future owned was dropped");
}

#[test]
fn a_task_cancelled_then_uncancelled_before_its_first_step_runs() {
    let lp = virtual_loop();
    let ran = flag();
    let r2 = ran.clone();
    let t = spawn_on(&lp, async move {
        r2.set(true);
        Ok(5)
    })
    .unwrap();
    t.cancel(None);
    assert_eq!(t.uncancel(), 0);
    assert_eq!(lp.run_until_complete(t.clone()).unwrap().unwrap(), 5);
    assert!(ran.get());
}

#[test]
fn cancel_before_the_first_poll_of_a_task_without_awaits_still_cancels_it() {
    let lp = virtual_loop();
    let t = spawn_on(&lp, async { Ok(1) }).unwrap();
    t.cancel(None);
    let r = lp.run_until_complete(t.clone()).unwrap();
    assert!(is_cancelled(&r), "{r:?}");
    assert!(t.cancelled());
}

#[test]
fn cancel_while_sleeping_delivers_cancelled_once_and_allows_cleanup_awaits() {
    let events = log();
    let ev = events.clone();
    block_on(async move {
        let lp = EventLoop::running()?;
        let start = lp.time();
        let ev2 = ev.clone();
        let t = spawn(async move {
            let r = sleep(HOUR).await;
            ev2.borrow_mut()
                .push(format!("sleep: cancelled={}", is_cancelled(&r)));
            // Cleanup with further awaits: the request was delivered once, so these work.
            sleep(Duration::from_secs(2)).await?;
            ticks(3).await?;
            ev2.borrow_mut().push("cleanup done".to_owned());
            r.map(|_| "not reached")
        })?;
        sleep(Duration::from_secs(1)).await?;
        assert!(t.cancel(None));
        let r = t.clone().await;
        assert!(is_cancelled(&r));
        assert!(
            t.cancelled(),
            "propagating the error ends the task cancelled"
        );
        assert_eq!(lp.time() - start, Duration::from_secs(3));
        ev.borrow_mut().push("awaited".to_owned());
        Ok(())
    })
    .unwrap();
    assert_eq!(
        *events.borrow(),
        ["sleep: cancelled=true", "cleanup done", "awaited"]
    );
}

#[test]
fn suppressing_cancellation_with_uncancel_returns_ok() {
    block_on(async {
        let t = spawn(async {
            let r = sleep(HOUR).await;
            assert!(is_cancelled(&r));
            let me = current_task().unwrap();
            assert_eq!(me.cancelling(), 1);
            assert_eq!(me.uncancel(), 0);
            sleep(Duration::from_secs(1)).await?;
            Ok("recovered")
        })?;
        ticks(1).await?;
        t.cancel(None);
        assert_eq!(t.clone().await?, "recovered");
        assert!(!t.cancelled());
        assert_eq!(t.cancelling(), 0);
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancel_message_is_preserved() {
    block_on(async {
        let seen_inside = Rc::new(RefCell::new(None));
        let s = seen_inside.clone();
        let t = spawn(async move {
            let r = sleep(HOUR).await;
            *s.borrow_mut() = cancel_message(&r);
            r
        })?;
        ticks(1).await?;
        t.cancel(Some("stop now"));
        let r = t.clone().await;
        assert_eq!(cancel_message(&r).as_deref(), Some("stop now"));
        assert_eq!(seen_inside.borrow().as_deref(), Some("stop now"));
        assert_eq!(t.result().unwrap_err().to_string(), "cancelled: stop now");
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelling_counts_requests_and_uncancel_decrements() {
    block_on(async {
        let t = spawn(async { sleep(HOUR).await })?;
        ticks(1).await?;
        assert_eq!(t.cancelling(), 0);
        assert!(t.cancel(None));
        assert!(t.cancel(None));
        assert_eq!(t.cancelling(), 2);
        assert_eq!(t.uncancel(), 1);
        assert!(
            is_cancelled(&t.clone().await),
            "one request is still pending"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn uncancel_to_zero_withdraws_an_undelivered_request() {
    block_on(async {
        let t = spawn(async {
            ticks(2).await?;
            Ok("finished normally")
        })?;
        ticks(1).await?;
        t.cancel(None);
        assert_eq!(t.uncancel(), 0);
        assert_eq!(t.await?, "finished normally");
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancel_on_a_done_task_returns_false() {
    block_on(async {
        let t = spawn(async { Ok(5) })?;
        ticks(2).await?;
        assert!(t.done());
        assert!(!t.cancel(None));
        assert_eq!(t.cancelling(), 0, "a refused request is not counted");
        assert!(!t.cancelled());
        assert_eq!(t.await?, 5);
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_task_that_returns_a_value_anyway_is_not_cancelled() {
    // asyncio: a coroutine that swallows CancelledError completes normally.
    block_on(async {
        let t = spawn(async {
            let _ = sleep(HOUR).await;
            Ok(7)
        })?;
        ticks(1).await?;
        t.cancel(None);
        assert_eq!(t.clone().await?, 7);
        assert!(!t.cancelled());
        assert_eq!(t.cancelling(), 1, "not uncancelled by the task");
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancel_during_the_last_step_ends_the_task_cancelled() {
    // asyncio: a task cancelled while running its final step (it cancels itself and never awaits
    // again) ends cancelled.
    block_on(async {
        let t = spawn(async {
            current_task().unwrap().cancel(Some("self"));
            Ok(1)
        })?;
        let r = t.clone().await;
        assert_eq!(cancel_message(&r).as_deref(), Some("self"));
        assert!(t.cancelled());
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancel_while_awaiting_another_task_cancels_it_and_waits_for_its_cleanup() {
    let events = log();
    let ev = events.clone();
    block_on(async move {
        let lp = EventLoop::running()?;
        let ev_inner = ev.clone();
        let inner = spawn(async move {
            let r = sleep(HOUR).await;
            ev_inner.borrow_mut().push("inner cancelled");
            sleep(Duration::from_secs(5)).await?; // slow cleanup
            ev_inner.borrow_mut().push("inner cleaned up");
            r
        })?;
        let inner2 = inner.clone();
        let ev_outer = ev.clone();
        let outer = spawn(async move {
            let r = inner2.await;
            ev_outer.borrow_mut().push("outer resumed");
            r
        })?;
        ticks(2).await?;
        let start = lp.time();
        outer.cancel(Some("from test"));
        let r = outer.clone().await;
        assert_eq!(cancel_message(&r).as_deref(), Some("from test"));
        assert!(outer.cancelled());
        assert!(inner.cancelled(), "the awaited task was cancelled too");
        assert_eq!(inner.cancelling(), 1);
        assert_eq!(
            lp.time() - start,
            Duration::from_secs(5),
            "the outer task waited for the inner one's cleanup"
        );
        Ok(())
    })
    .unwrap();
    assert_eq!(
        *events.borrow(),
        ["inner cancelled", "inner cleaned up", "outer resumed"]
    );
}

#[test]
fn second_cancel_while_awaiting_a_task_that_ignored_the_first_reaches_it_too() {
    // asyncio's Task.cancel keeps `_fut_waiter`: a task awaited by another task that swallows the
    // first cancellation is cancelled again by the next request, and the awaiting task keeps
    // waiting for it (test_tasks.py: test_cancel_task_catching / test_wait_for_self_cancellation).
    let events = log();
    let ev = events.clone();
    block_on(async move {
        let ev_inner = ev.clone();
        let inner = spawn(async move {
            let mut caught = 0;
            loop {
                match sleep(HOUR).await {
                    Err(e) if e.is_cancelled() => {
                        caught += 1;
                        ev_inner.borrow_mut().push(format!("inner caught {caught}"));
                        if caught == 2 {
                            return Ok(caught);
                        }
                    }
                    other => other.map(|_| ())?,
                }
            }
        })?;
        let inner2 = inner.clone();
        let ev_outer = ev.clone();
        let outer = spawn(async move {
            let r = inner2.await;
            ev_outer.borrow_mut().push(format!("outer got {r:?}"));
            r
        })?;
        ticks(2).await?;
        outer.cancel(None);
        ticks(2).await?;
        assert!(!inner.done(), "the inner task ignored the first request");
        assert!(!outer.done(), "the outer task still waits for it");
        outer.cancel(None);
        let r = outer.clone().await;
        assert_eq!(r?, 2, "the outer task got the inner one's value");
        assert!(inner.done() && !inner.cancelled());
        assert_eq!(
            inner.cancelling(),
            2,
            "both requests reached the inner task"
        );
        Ok(())
    })
    .unwrap();
    assert_eq!(
        *events.borrow(),
        ["inner caught 1", "inner caught 2", "outer got Ok(2)"]
    );
}

#[test]
fn cancel_while_awaiting_a_plain_future_cancels_that_future() {
    block_on(async {
        let lp = EventLoop::running()?;
        let fut: Future<u32> = Future::new(&lp);
        let f2 = fut.clone();
        let t = spawn(f2)?;
        ticks(1).await?;
        t.cancel(Some("no more waiting"));
        let r = t.clone().await;
        assert_eq!(cancel_message(&r).as_deref(), Some("no more waiting"));
        assert!(fut.cancelled(), "the awaited future was cancelled");
        assert_eq!(
            cancel_message(&fut.result()).as_deref(),
            Some("no more waiting")
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_future_completed_before_the_cancel_is_delivered_keeps_its_value() {
    block_on(async {
        let lp = EventLoop::running()?;
        let fut: Future<u32> = Future::new(&lp);
        let f2 = fut.clone();
        let t = spawn(f2)?;
        ticks(1).await?;
        fut.set_result(3)?;
        t.cancel(None);
        assert!(is_cancelled(&t.await));
        assert_eq!(
            fut.result()?,
            3,
            "awaits are cancel-safe: the value stays in the future"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn abort_of_a_task_stuck_in_a_foreign_future_drops_it_and_ends_cancelled() {
    let dropped = flag();
    let d = dropped.clone();
    block_on(async move {
        let t: Task<()> = spawn(async move {
            let _guard = DropFlag(d);
            std::future::pending::<()>().await;
            Ok(())
        })?;
        ticks(1).await?;
        assert!(!t.done());
        t.abort();
        let r = t.clone().await;
        assert!(is_cancelled(&r), "{r:?}");
        assert!(t.cancelled());
        Ok(())
    })
    .unwrap();
    assert!(dropped.get(), "the task's future was dropped");
}

#[test]
fn abort_of_an_idle_task_drops_its_future_on_the_next_iteration() {
    block_on(async move {
        let dropped = flag();
        let d = dropped.clone();
        let t: Task<()> = spawn(async move {
            let _guard = DropFlag(d);
            sleep(Duration::from_secs(3600)).await
        })?;
        ticks(1).await?;
        t.abort();
        // `abort` only schedules the task: its future is still there, and it is not done.
        assert!(!dropped.get(), "dropped inside abort()");
        assert!(!t.done());
        sleep(Duration::ZERO).await?;
        // One iteration later the loop ran it: the future is gone and the task is done.
        assert!(dropped.get(), "not dropped after one iteration");
        assert!(t.done() && t.cancelled());
        let r = t.clone().await;
        assert!(is_cancelled(&r), "{r:?}");
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancel_of_a_task_stuck_in_a_foreign_future_stays_pending_until_abort() {
    let dropped = flag();
    let d = dropped.clone();
    block_on(async move {
        let t: Task<()> = spawn(async move {
            let _guard = DropFlag(d);
            std::future::pending::<()>().await;
            Ok(())
        })?;
        ticks(1).await?;
        assert!(t.cancel(None));
        ticks(5).await?;
        assert!(
            !t.done(),
            "a foreign future never polls a Tulipa awaitable, so the request is not delivered"
        );
        t.abort();
        assert!(is_cancelled(&t.clone().await));
        Ok(())
    })
    .unwrap();
    assert!(dropped.get());
}

#[test]
fn abort_of_a_task_that_has_not_started_never_runs_it() {
    let lp = virtual_loop();
    let ran = flag();
    let r = ran.clone();
    let t = spawn_on(&lp, async move {
        r.set(true);
        Ok(())
    })
    .unwrap();
    t.abort();
    let out = lp.run_until_complete(t.clone()).unwrap();
    assert!(is_cancelled(&out));
    assert!(!ran.get());
    assert!(all_tasks(&lp).is_empty());
}

// ---------------------------------------------------------------------------------------------
// Threads: spawn_threadsafe (run_coroutine_threadsafe)
// ---------------------------------------------------------------------------------------------

#[test]
fn spawn_threadsafe_from_another_thread_returns_the_value() {
    let lp = virtual_loop();
    let handle = lp.loop_handle();
    let loop_thread = std::thread::current().id();
    let done: ConcurrentFuture<(u32, bool)> = ConcurrentFuture::new();
    let done2 = done.clone();
    let other = std::thread::spawn(move || {
        let cf = spawn_threadsafe(&handle, async move {
            let on_loop_thread = std::thread::current().id() == loop_thread;
            Ok((42u32, on_loop_thread))
        })
        .expect("the loop is open");
        let v = cf.result(Some(Duration::from_secs(30)));
        done2
            .set_result(v.clone().expect("the task's value"))
            .unwrap();
        v
    });
    let on_loop = run_until_complete(&lp, done).unwrap();
    assert_eq!(on_loop, (42, true), "the task ran on the loop's thread");
    assert_eq!(other.join().unwrap().unwrap(), (42, true));
}

#[test]
fn spawn_threadsafe_error_comes_back_to_the_caller() {
    let lp = virtual_loop();
    let handle = lp.loop_handle();
    let (tx, rx) = mpsc::channel();
    let stop = lp.loop_handle();
    let other = std::thread::spawn(move || {
        let cf = spawn_threadsafe(&handle, async {
            Err::<u8, _>(Error::InvalidArgument("remote failure"))
        })
        .unwrap();
        let r = cf.result(Some(Duration::from_secs(30)));
        tx.send(()).unwrap();
        stop.stop().unwrap();
        r
    });
    lp.run_forever().unwrap();
    rx.recv().unwrap();
    assert!(matches!(
        other.join().unwrap(),
        Err(Error::InvalidArgument("remote failure"))
    ));
}

#[test]
fn spawn_threadsafe_with_the_loop_running_in_another_thread() {
    let (handle_tx, handle_rx) = mpsc::channel();
    let loop_thread = std::thread::spawn(move || {
        let lp = virtual_loop();
        let stop: ConcurrentFuture<()> = ConcurrentFuture::new();
        handle_tx.send((lp.loop_handle(), stop.clone())).unwrap();
        run_until_complete(&lp, stop)
    });
    let (handle, stop) = handle_rx.recv().unwrap();
    let cf = spawn_threadsafe(&handle, async { Ok(String::from("from the loop")) }).unwrap();
    assert_eq!(
        cf.result(Some(Duration::from_secs(30))).unwrap(),
        "from the loop"
    );
    stop.set_result(()).unwrap();
    loop_thread.join().unwrap().unwrap();
}

// ---------------------------------------------------------------------------------------------
// run (asyncio.run)
// ---------------------------------------------------------------------------------------------

#[test]
fn run_returns_the_value() {
    assert_eq!(run(async { Ok(6 * 7) }).unwrap(), 42);
}

#[test]
fn run_returns_the_error() {
    let r = run(async { Err::<(), _>(Error::InvalidArgument("main failed")) });
    assert!(matches!(r, Err(Error::InvalidArgument("main failed"))));
}

#[test]
fn run_cancels_leftover_tasks_and_lets_them_clean_up() {
    let cleaned = flag();
    let c = cleaned.clone();
    let v = run(async move {
        let _leftover = spawn(async move {
            let r = sleep(HOUR).await;
            assert!(is_cancelled(&r));
            sleep(Duration::ZERO).await?; // cleanup may await
            c.set(true);
            r
        })?;
        sleep(Duration::ZERO).await?;
        Ok("main done")
    })
    .unwrap();
    assert_eq!(v, "main done");
    assert!(
        cleaned.get(),
        "the leftover task was cancelled and cleaned up"
    );
}

#[test]
fn run_inside_a_running_loop_is_an_error() {
    let r = block_on(async {
        let inner = run(async { Ok(1) });
        match inner {
            Err(Error::Loop(e)) => assert!(matches!(*e, LoopError::NestedRun), "{e:?}"),
            other => panic!("expected a nested-run error, got {other:?}"),
        }
        Ok(())
    });
    r.unwrap();
}
