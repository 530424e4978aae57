//! Behaviour of `timeout`, `timeout_at`, `TimeoutScope` and `wait_for`, ported from CPython's
//! `Lib/test/test_asyncio/test_timeouts.py` (TimeoutTests) and `test_waitfor.py`
//! (AsyncioWaitForTest), Python 3.11+ semantics.
//!
//! A timeout cancels the task it runs in, so the code inside sees `Err(Cancelled)` and may clean
//! up (even with awaits); when that cancellation leaves the scope it becomes `Err(Timeout)`. Every
//! test runs on a virtual-time loop: the clock says exactly when things happened, and long
//! timeouts take no real time.

mod common;

use std::cell::RefCell;
use std::future::Future as _;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use common::{block_on, elapsed, flag, is_cancelled, now, secs};
use tulipa_futures::rt::EventLoop;
use tulipa_futures::{
    current_task, sleep, spawn, timeout, timeout_at, wait_for, Error, Future, Result, TimeoutScope,
};

fn is_timeout<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Timeout))
}

type Log = Rc<RefCell<Vec<String>>>;

fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn push(l: &Log, s: impl Into<String>) {
    l.borrow_mut().push(s.into());
}

// ---------------------------------------------------------------------------------------------
// timeout / timeout_at (test_timeouts.py)
// ---------------------------------------------------------------------------------------------

#[test]
fn timeout_expiring_gives_timeout() {
    block_on(async {
        let start = now();
        let scope = TimeoutScope::after(Duration::from_millis(10))?;
        let r = scope.run(sleep(secs(10))).await;
        assert!(is_timeout(&r), "{r:?}");
        assert!(scope.expired());
        assert_eq!(elapsed(start), Duration::from_millis(10));
        Ok(())
    });
}

#[test]
fn timeout_at_expiring_gives_timeout_and_keeps_the_deadline() {
    block_on(async {
        let deadline = now() + Duration::from_millis(10);
        let scope = TimeoutScope::at(Some(deadline));
        let r = scope.run(sleep(secs(10))).await;
        assert!(is_timeout(&r));
        assert!(scope.expired());
        assert_eq!(scope.when(), Some(deadline));
        assert!(is_timeout(&timeout_at(now(), sleep(secs(1))).await));
        Ok(())
    });
}

#[test]
fn inner_code_sees_cancelled_and_can_clean_up_with_an_await() {
    let events = log();
    let ev = events.clone();
    block_on(async move {
        let start = now();
        let r = timeout(secs(1), async {
            let r = sleep(secs(10)).await;
            push(&ev, format!("inner saw cancelled: {}", is_cancelled(&r)));
            sleep(secs(2)).await?; // cleanup that awaits
            push(&ev, "cleanup done");
            r
        })
        .await;
        assert!(is_timeout(&r), "{r:?}");
        assert_eq!(
            elapsed(start),
            secs(3),
            "the timeout waited for the cleanup"
        );
        Ok(())
    });
    assert_eq!(
        *events.borrow(),
        ["inner saw cancelled: true", "cleanup done"]
    );
}

#[test]
fn timeout_not_expiring_gives_the_value() {
    block_on(async {
        let start = now();
        let scope = TimeoutScope::after(secs(10))?;
        let v = scope
            .run(async {
                sleep(Duration::from_millis(10)).await?;
                Ok(5)
            })
            .await?;
        assert_eq!(v, 5);
        assert!(!scope.expired());
        assert!(scope.when().unwrap() > now());
        // The timer was cancelled: sleeping past the old deadline does not disturb the task.
        sleep(secs(20)).await?;
        assert_eq!(elapsed(start), Duration::from_millis(20_010));
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok(())
    });
}

#[test]
fn timeout_disabled_never_expires() {
    block_on(async {
        let scope = TimeoutScope::at(None);
        scope.run(sleep(secs(100))).await?;
        assert!(!scope.expired());
        assert_eq!(scope.when(), None);
        Ok(())
    });
}

#[test]
fn timeout_zero_expires() {
    block_on(async {
        let t0 = now();
        let scope = TimeoutScope::after(Duration::ZERO)?;
        let r = scope.run(sleep(secs(10))).await;
        assert!(is_timeout(&r));
        assert!(scope.expired());
        assert!(scope.when().unwrap() >= t0 && scope.when().unwrap() <= now());
        assert_eq!(elapsed(t0), Duration::ZERO);
        Ok(())
    });
}

#[test]
fn timeout_zero_with_sleep_zero_expires() {
    // asyncio schedules an expired deadline with call_soon, ahead of the task's next step.
    block_on(async {
        let scope = TimeoutScope::after(Duration::ZERO)?;
        let r = scope.run(sleep(Duration::ZERO)).await;
        assert!(is_timeout(&r), "{r:?}");
        assert!(scope.expired());
        Ok(())
    });
}

#[test]
fn timeout_in_the_past_with_sleep_zero_expires() {
    block_on(async {
        sleep(secs(20)).await?;
        let past = now() - secs(11);
        let scope = TimeoutScope::at(Some(past));
        let r = scope.run(sleep(Duration::ZERO)).await;
        assert!(is_timeout(&r), "{r:?}");
        assert!(scope.expired());
        Ok(())
    });
}

#[test]
fn foreign_error_passes_through_and_does_not_expire() {
    block_on(async {
        let scope = TimeoutScope::after(Duration::from_millis(10))?;
        let r: Result<()> = scope
            .run(async { Err(Error::InvalidArgument("key error")) })
            .await;
        assert!(matches!(r, Err(Error::InvalidArgument("key error"))));
        assert!(!scope.expired());
        Ok(())
    });
}

#[test]
fn error_raised_during_cleanup_after_a_timeout_is_returned_as_is() {
    block_on(async {
        let r: Result<()> = timeout(Duration::from_millis(10), async {
            let _ = sleep(secs(1)).await;
            Err(Error::InvalidArgument("division by zero"))
        })
        .await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
        Ok(())
    });
}

#[test]
fn outside_cancel_inside_a_timeout_scope_stays_cancelled() {
    block_on(async {
        let scope = TimeoutScope::after(secs(10))?;
        let s2 = scope.clone();
        let t = spawn(async move { s2.run(sleep(secs(100))).await })?;
        sleep(secs(1)).await?;
        t.cancel(Some("from outside"));
        let r = t.clone().await;
        match &r {
            Err(Error::Cancelled(c)) => assert_eq!(c.message(), Some("from outside")),
            other => panic!("expected Cancelled, got {other:?}"),
        }
        assert!(t.cancelled());
        assert!(!scope.expired());
        Ok(())
    });
}

#[test]
fn outside_cancel_at_the_moment_of_expiry_stays_cancelled() {
    // The scope turns the cancellation into Timeout only when no other request is pending.
    block_on(async {
        let lp = EventLoop::running()?;
        let scope = TimeoutScope::after(secs(1))?;
        let s2 = scope.clone();
        let t = spawn(async move { s2.run(sleep(secs(10))).await })?;
        let t2 = t.clone();
        let deadline = scope.when().unwrap();
        lp.call_at(deadline, move || {
            t2.cancel(Some("outside"));
        })?;
        let r = t.clone().await;
        assert!(is_cancelled(&r), "{r:?}");
        assert!(scope.expired());
        assert_eq!(t.cancelling(), 1, "the scope withdrew only its own request");
        Ok(())
    });
}

#[test]
fn self_cancel_inside_a_timeout_scope_stays_cancelled() {
    block_on(async {
        let t = spawn(async {
            let scope = TimeoutScope::after(secs(10))?;
            let r = scope
                .run(async {
                    current_task().unwrap().cancel(None);
                    sleep(secs(10)).await
                })
                .await;
            assert!(!scope.expired());
            r
        })?;
        assert!(is_cancelled(&t.await));
        Ok(())
    });
}

#[test]
fn task_that_timed_out_is_not_cancelled() {
    block_on(async {
        let t = spawn(async {
            let r = timeout(Duration::from_millis(1), sleep(secs(10))).await;
            assert!(is_timeout(&r));
            Ok("finished")
        })?;
        assert_eq!(t.clone().await?, "finished");
        assert!(t.done() && !t.cancelled());
        assert_eq!(t.cancelling(), 0, "the timeout withdrew its own request");
        Ok(())
    });
}

#[test]
fn nested_timeouts_with_the_same_deadline_only_the_outer_gives_timeout() {
    block_on(async {
        let deadline = now() + Duration::from_millis(10);
        let outer = TimeoutScope::at(Some(deadline));
        let inner = TimeoutScope::at(Some(deadline));
        let inner2 = inner.clone();
        let inner_result = Rc::new(RefCell::new(None));
        let ir = inner_result.clone();
        let r = outer
            .run(async move {
                let r = inner2.run(sleep(secs(10))).await;
                *ir.borrow_mut() = Some(is_cancelled(&r));
                r
            })
            .await;
        assert!(is_timeout(&r), "{r:?}");
        assert_eq!(
            *inner_result.borrow(),
            Some(true),
            "the inner scope passed the cancellation through"
        );
        assert!(outer.expired());
        assert!(inner.expired());
        Ok(())
    });
}

#[test]
fn nested_inner_expires_first_inner_gets_timeout_outer_continues() {
    block_on(async {
        let start = now();
        let outer = TimeoutScope::after(secs(10))?;
        let v = outer
            .run(async {
                let r = timeout(secs(1), sleep(secs(100))).await;
                assert!(is_timeout(&r), "{r:?}");
                sleep(secs(2)).await?; // the outer scope is still running
                Ok("outer went on")
            })
            .await?;
        assert_eq!(v, "outer went on");
        assert!(!outer.expired());
        assert_eq!(elapsed(start), secs(3));
        Ok(())
    });
}

#[test]
fn nested_outer_expires_while_inner_runs_inner_passes_cancelled_through() {
    block_on(async {
        let start = now();
        let inner_saw = Rc::new(RefCell::new(None));
        let s = inner_saw.clone();
        let r = timeout(secs(1), async move {
            let scope = TimeoutScope::after(secs(10))?;
            let r = scope.run(sleep(secs(100))).await;
            *s.borrow_mut() = Some((is_cancelled(&r), scope.expired()));
            r
        })
        .await;
        assert!(is_timeout(&r), "{r:?}");
        assert_eq!(
            *inner_saw.borrow(),
            Some((true, false)),
            "the inner scope gave Cancelled and did not expire"
        );
        assert_eq!(elapsed(start), secs(1));
        Ok(())
    });
}

#[test]
fn nested_timeouts_loop_busy_outer_still_interrupts() {
    // test_nested_timeouts_loop_busy: after the inner timeout, the outer one still interrupts.
    block_on(async {
        let start = now();
        let r = timeout(Duration::from_millis(100), async {
            let r = timeout(Duration::from_millis(10), sleep(secs(1))).await;
            assert!(is_timeout(&r));
            sleep(secs(10)).await
        })
        .await;
        assert!(is_timeout(&r));
        assert_eq!(elapsed(start), Duration::from_millis(100));
        Ok(())
    });
}

#[test]
fn nested_timeout_in_cleanup_of_an_expired_one() {
    block_on(async {
        let r = timeout(Duration::from_millis(10), async {
            let r = sleep(secs(1)).await;
            let inner = timeout(Duration::from_millis(10), sleep(secs(10))).await;
            assert!(is_timeout(&inner), "{inner:?}");
            r
        })
        .await;
        assert!(is_timeout(&r), "{r:?}");
        Ok(())
    });
}

#[test]
fn timeout_after_a_swallowed_cancellation_still_times_out() {
    block_on(async {
        let t = spawn(async {
            current_task().unwrap().cancel(None);
            let r = sleep(secs(1)).await; // work that is cancelled
            assert!(is_cancelled(&r));
            // Not uncancelled: cancelling() is 1 when the cleanup's timeout is entered.
            let cleanup = timeout(Duration::ZERO, sleep(secs(1))).await;
            assert!(is_timeout(&cleanup), "{cleanup:?}");
            Ok(())
        })?;
        t.await
    });
}

#[test]
fn cancel_inside_a_timeout_after_a_swallowed_cancellation_stays_cancelled() {
    block_on(async {
        let t = spawn(async {
            current_task().unwrap().cancel(None);
            let r = sleep(secs(1)).await;
            assert!(is_cancelled(&r));
            let cleanup = timeout(secs(1), async {
                current_task().unwrap().cancel(None);
                sleep(secs(2)).await
            })
            .await;
            assert!(is_cancelled(&cleanup), "{cleanup:?}");
            Ok(())
        })?;
        t.await
    });
}

#[test]
fn reschedule_later_earlier_and_none() {
    block_on(async {
        let start = now();
        let scope = TimeoutScope::after(secs(10))?;
        let s2 = scope.clone();
        let t = spawn(async move { s2.run(sleep(secs(50))).await })?;
        sleep(secs(1)).await?;
        assert_eq!(scope.when(), Some(start + secs(10)));

        // Later: nothing happens at the old deadline.
        scope.reschedule(Some(start + secs(30)));
        assert_eq!(scope.when(), Some(start + secs(30)));
        sleep(secs(15)).await?;
        assert!(!t.done() && !scope.expired());

        // No deadline: nothing happens at 30 either.
        scope.reschedule(None);
        assert_eq!(scope.when(), None);
        sleep(secs(20)).await?;
        assert!(!t.done() && !scope.expired());

        // Earlier than the previous one: fires then.
        scope.reschedule(Some(start + secs(40)));
        let r = t.await;
        assert!(is_timeout(&r), "{r:?}");
        assert!(scope.expired());
        assert_eq!(elapsed(start), secs(40));
        Ok(())
    });
}

#[test]
fn reschedule_into_the_past_expires_on_the_next_iteration() {
    block_on(async {
        let start = now();
        let scope = TimeoutScope::after(secs(100))?;
        let s2 = scope.clone();
        let r = scope
            .run(async move {
                sleep(secs(1)).await?;
                s2.reschedule(Some(start));
                sleep(secs(10)).await
            })
            .await;
        assert!(is_timeout(&r));
        assert_eq!(elapsed(start), secs(1));
        Ok(())
    });
}

#[test]
fn reschedule_to_none_then_cancel_from_outside_is_cancelled_not_expired() {
    // test_reschedule
    block_on(async {
        let deadline1 = now() + secs(10);
        let deadline2 = deadline1 + secs(20);
        let scope = TimeoutScope::at(Some(deadline1));
        let s2 = scope.clone();
        let t = spawn(async move { s2.run(sleep(secs(50))).await })?;
        sleep(Duration::ZERO).await?;
        assert_eq!(scope.when(), Some(deadline1));
        scope.reschedule(Some(deadline2));
        assert_eq!(scope.when(), Some(deadline2));
        scope.reschedule(None);
        assert_eq!(scope.when(), None);
        t.cancel(None);
        assert!(is_cancelled(&t.await));
        assert!(!scope.expired());
        Ok(())
    });
}

#[test]
fn a_scope_runs_only_once() {
    block_on(async {
        let scope = TimeoutScope::after(secs(1))?;
        scope.run(async { Ok(()) }).await?;
        let again = scope.run(async { Ok(()) }).await;
        assert!(matches!(again, Err(Error::InvalidState(_))), "{again:?}");
        Ok(())
    });
}

#[test]
fn timeouts_outside_a_task_are_invalid_state() {
    let mut cx = Context::from_waker(Waker::noop());
    let fut = pin!(timeout_at(Instant::now(), async { Ok(1) }));
    match fut.poll(&mut cx) {
        Poll::Ready(r) => assert!(matches!(r, Err(Error::InvalidState(_))), "{r:?}"),
        Poll::Pending => panic!("refused at once"),
    }
    let scope = TimeoutScope::at(None);
    let fut = pin!(scope.run(async { Ok(1) }));
    assert!(matches!(
        fut.poll(&mut cx),
        Poll::Ready(Err(Error::InvalidState(_)))
    ));
    // No running loop at all: `after` cannot read the loop's clock.
    assert!(matches!(TimeoutScope::after(secs(1)), Err(Error::Loop(_))));
}

#[test]
fn timeouts_in_a_plain_loop_callback_are_invalid_state() {
    let lp = EventLoop::new_virtual().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let s = seen.clone();
    lp.call_soon(move || {
        let mut cx = Context::from_waker(Waker::noop());
        let fut = pin!(timeout(secs(1), async { Ok(1) }));
        *s.borrow_mut() = Some(matches!(
            fut.poll(&mut cx),
            Poll::Ready(Err(Error::InvalidState(_)))
        ));
    })
    .unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(*seen.borrow(), Some(true));
}

#[test]
fn one_hour_timeout_finishes_instantly_under_virtual_time() {
    let real_start = std::time::Instant::now();
    block_on(async {
        let start = now();
        let r = timeout(secs(3600), sleep(secs(7200))).await;
        assert!(is_timeout(&r));
        assert_eq!(elapsed(start), secs(3600));
        Ok(())
    });
    assert!(
        real_start.elapsed() < secs(5),
        "took {:?} of real time",
        real_start.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// wait_for (test_waitfor.py)
// ---------------------------------------------------------------------------------------------

#[test]
fn wait_for_timeout_cancels_the_task_and_waits_for_its_cleanup() {
    let events = log();
    let ev = events.clone();
    block_on(async move {
        let ev2 = ev.clone();
        let inner = spawn(async move {
            let r = sleep(secs(10)).await;
            if r.is_err() {
                sleep(Duration::from_millis(1)).await?; // cleanup that awaits
                push(&ev2, "cleanup done");
            }
            r.map(|_| "done")
        })?;
        let start = now();
        let r = wait_for(inner.clone(), Some(Duration::from_millis(100))).await;
        push(&ev, "wait_for returned");
        assert!(is_timeout(&r), "{r:?}");
        assert!(inner.done());
        assert!(inner.cancelled(), "the timeout cancelled the task");
        assert_eq!(elapsed(start), Duration::from_millis(101));
        Ok(())
    });
    assert_eq!(*events.borrow(), ["cleanup done", "wait_for returned"]);
}

#[test]
fn wait_for_with_zero_timeout_on_a_running_task_cancels_it() {
    block_on(async {
        let lp = EventLoop::running()?;
        let started: Future<()> = Future::new(&lp);
        let running = flag();
        let (st, run) = (started.clone(), running.clone());
        let t = spawn(async move {
            run.set(true);
            st.set_result(())?;
            let r = sleep(secs(10)).await;
            run.set(false);
            r.map(|_| "done")
        })?;
        started.await?;
        let t0 = now();
        let r = wait_for(t.clone(), Some(Duration::ZERO)).await;
        assert!(is_timeout(&r), "{r:?}");
        assert!(t.done() && t.cancelled());
        assert!(!running.get(), "its cleanup ran");
        assert_eq!(elapsed(t0), Duration::ZERO);
        Ok(())
    });
}

#[test]
fn wait_for_with_zero_timeout_on_a_done_future_gives_its_value() {
    block_on(async {
        let lp = EventLoop::running()?;
        let f: Future<&str> = Future::new(&lp);
        f.set_result("done")?;
        let t0 = now();
        assert_eq!(wait_for(f.clone(), Some(Duration::ZERO)).await?, "done");
        assert!(f.done());
        assert_eq!(elapsed(t0), Duration::ZERO);
        Ok(())
    });
}

#[test]
fn wait_for_none_waits_without_a_limit() {
    block_on(async {
        let start = now();
        let t = spawn(async {
            sleep(secs(86_400)).await?;
            Ok("done")
        })?;
        assert_eq!(wait_for(t, None).await?, "done");
        assert_eq!(elapsed(start), secs(86_400));
        Ok(())
    });
}

#[test]
fn wait_for_result_set_before_the_deadline() {
    block_on(async {
        let lp = EventLoop::running()?;
        let f: Future<&str> = Future::new(&lp);
        let f2 = f.clone();
        lp.call_later(Duration::from_millis(100), move || {
            let _ = f2.set_result("ok");
        })?;
        assert_eq!(wait_for(f, Some(Duration::from_millis(200))).await?, "ok");
        Ok(())
    });
}

#[test]
fn wait_for_on_a_plain_future_cancels_it_on_timeout() {
    block_on(async {
        let lp = EventLoop::running()?;
        let f: Future<u8> = Future::new(&lp);
        let r = wait_for(f.clone(), Some(secs(1))).await;
        assert!(is_timeout(&r));
        assert!(f.cancelled());
        Ok(())
    });
}

#[test]
fn wait_for_gives_the_value_when_the_task_suppresses_the_cancellation() {
    // test_wait_for_cancel_suppressed / test_wait_for_cancellation_race_condition
    block_on(async {
        let t = spawn(async {
            match sleep(secs(10)).await {
                Err(e) if e.is_cancelled() => Ok(42),
                other => other.map(|_| 0),
            }
        })?;
        assert_eq!(wait_for(t, Some(Duration::from_millis(100))).await?, 42);
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok(())
    });
}

#[test]
fn wait_for_returns_an_error_raised_during_cancellation() {
    // test_wait_for_reraises_exception_during_cancellation
    block_on(async {
        let t = spawn(async {
            let _ = sleep(Duration::from_millis(200)).await;
            Err::<(), _>(Error::InvalidArgument("foo"))
        })?;
        let r = wait_for(t, Some(Duration::from_millis(1))).await;
        assert!(matches!(r, Err(Error::InvalidArgument("foo"))), "{r:?}");
        Ok(())
    });
}

#[test]
fn cancelling_the_task_in_wait_for_cancels_the_awaited_task() {
    // test_cancel_wait_for / test_cancel_blocking_wait_for (Python issue #23219)
    for limit in [Some(secs(60)), None] {
        block_on(async move {
            let lp = EventLoop::running()?;
            let never: Future<()> = Future::new(&lp);
            let blocking = spawn(never)?;
            let b2 = blocking.clone();
            let w = spawn(async move { wait_for(b2, limit).await })?;
            let w2 = w.clone();
            lp.call_soon(move || {
                w2.cancel(None);
            })?;
            let r = w.await;
            assert!(is_cancelled(&r), "{limit:?}: {r:?}");
            assert!(blocking.cancelled(), "{limit:?}");
            Ok(())
        });
    }
}

#[test]
fn wait_for_in_a_task_cancelled_before_it_started_leaves_the_inner_task_alone() {
    // test_wait_for_self_cancellation
    block_on(async {
        let inner = spawn(async {
            if sleep(Duration::from_millis(300)).await.is_err()
                && sleep(Duration::from_millis(300)).await.is_err()
            {
                sleep(Duration::from_millis(300)).await?;
            }
            Ok(42)
        })?;
        let i2 = inner.clone();
        let w = spawn(async move { wait_for(i2, Some(Duration::from_millis(100))).await })?;
        w.cancel(None);
        assert!(is_cancelled(&w.await));
        assert_eq!(inner.await?, 42);
        Ok(())
    });
}

#[test]
fn cancel_after_wait_for_returned_is_not_lost() {
    // test_wait_for_issue86296
    block_on(async {
        let reached_end = flag();
        let r2 = reached_end.clone();
        let t = spawn(async move {
            let inner = spawn(async { Ok(()) })?;
            wait_for(inner, Some(secs(100))).await?;
            sleep(secs(1)).await?;
            r2.set(true);
            Ok(())
        })?;
        sleep(Duration::ZERO).await?;
        assert!(!t.done());
        t.cancel(None);
        assert!(is_cancelled(&t.await));
        assert!(!reached_end.get());
        Ok(())
    });
}

#[test]
fn wait_for_task_that_ignores_cancellation_is_waited_for() {
    // test_asyncio_wait_for_timeout with SlowTask: the task swallows cancellations until done.
    block_on(async {
        let exited = flag();
        let e2 = exited.clone();
        let start = now();
        let t = spawn(async move {
            let end = now() + Duration::from_millis(200);
            while now() < end {
                let _ = sleep(end - now()).await;
            }
            e2.set(true);
            Ok(())
        })?;
        let r = wait_for(t, Some(Duration::from_millis(100))).await;
        assert!(exited.get());
        // The task swallowed the cancellation and returned a value: that value comes back.
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(elapsed(start), Duration::from_millis(200));
        Ok(())
    });
}

#[test]
fn a_duration_max_timeout_never_expires() {
    // Too large for the clock: no deadline, as sleep and call_later saturate (it used to panic).
    block_on(async {
        let start = now();
        let v = timeout(Duration::MAX, async {
            sleep(secs(3600)).await?;
            Ok(7)
        })
        .await?;
        assert_eq!(v, 7);
        assert_eq!(elapsed(start), secs(3600));
        let scope = TimeoutScope::after(Duration::MAX)?;
        assert_eq!(scope.when(), None);
        assert!(scope.run(sleep(secs(1))).await.is_ok());
        assert!(!scope.expired());
        let v = wait_for(spawn(async { Ok(3) })?, Some(Duration::MAX)).await?;
        assert_eq!(v, 3);
        Ok(())
    });
}
