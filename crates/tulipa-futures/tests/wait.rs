//! Behaviour of `wait`, `as_completed`, `gather`, `gather_settled` and `shield`, ported from
//! CPython's `Lib/test/test_asyncio/test_tasks.py` (test_wait*, test_as_completed*,
//! GatherTestsBase/CoroutineGatherTests, test_shield*).
//!
//! Every test runs on a virtual-time loop, so the loop's clock says exactly when each call
//! returned: `elapsed(start)` (in `common`) is the virtual time that passed, with no real waiting.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use common::{after, block_on, elapsed, flag, now, secs};
use tulipa_futures::rt::EventLoop;
use tulipa_futures::{
    as_completed, gather, gather_settled, shield, sleep, spawn, wait, Error, Future, Result,
    ReturnWhen, Task,
};

/// A task that sleeps `n` seconds, then fails.
fn fail_after(n: u64) -> Result<Task<u64>> {
    spawn(async move {
        sleep(secs(n)).await?;
        Err(Error::InvalidArgument("failed on purpose"))
    })
}

/// A task that sleeps `n` seconds; when cancelled, it cleans up for `cleanup` seconds, sets
/// `flag`, and propagates the cancellation.
fn cancellable(n: u64, cleanup: u64, flag: &Rc<Cell<bool>>) -> Result<Task<u64>> {
    let flag = flag.clone();
    spawn(async move {
        if let Err(e) = sleep(secs(n)).await {
            sleep(secs(cleanup)).await?;
            flag.set(true);
            return Err(e);
        }
        Ok(n)
    })
}

fn values(fs: &[Future<u64>]) -> Vec<u64> {
    let mut v: Vec<u64> = fs.iter().map(|f| f.result().expect("a value")).collect();
    v.sort_unstable();
    v
}

// ---------------------------------------------------------------------------------------------
// wait
// ---------------------------------------------------------------------------------------------

#[test]
fn wait_on_an_empty_set_is_invalid_argument() {
    block_on(async {
        let r = wait(Vec::<Future<u8>>::new(), None, ReturnWhen::AllCompleted).await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
        Ok(())
    });
}

#[test]
fn wait_all_completed_returns_when_every_future_is_done() {
    block_on(async {
        let start = now();
        let (done, pending) = wait(
            [after(1)?, after(3)?, after(2)?],
            None,
            ReturnWhen::AllCompleted,
        )
        .await?;
        assert_eq!(elapsed(start), secs(3));
        assert_eq!(values(&done), [1, 2, 3]);
        assert!(pending.is_empty());
        Ok(())
    });
}

#[test]
fn wait_first_completed_returns_after_the_first() {
    block_on(async {
        let start = now();
        let (done, pending) = wait(
            [after(10)?, after(1)?, after(5)?],
            None,
            ReturnWhen::FirstCompleted,
        )
        .await?;
        assert_eq!(elapsed(start), secs(1));
        assert_eq!(values(&done), [1]);
        assert_eq!(pending.len(), 2);
        for p in &pending {
            assert!(!p.done() && !p.cancelled());
        }
        Ok(())
    });
}

#[test]
fn wait_first_completed_with_several_done_at_once_returns_them_all() {
    block_on(async {
        let (a, b, c) = (after(1)?, after(1)?, after(9)?);
        // Let a and b finish before waiting.
        sleep(secs(2)).await?;
        let (done, pending) = wait([a, b, c], None, ReturnWhen::FirstCompleted).await?;
        assert_eq!(values(&done), [1, 1]);
        assert_eq!(pending.len(), 1);
        Ok(())
    });
}

#[test]
fn wait_first_exception_returns_at_the_first_error() {
    block_on(async {
        let start = now();
        let (done, pending) = wait(
            [after(1)?, fail_after(2)?, after(10)?],
            None,
            ReturnWhen::FirstException,
        )
        .await?;
        assert_eq!(elapsed(start), secs(2));
        assert_eq!(done.len(), 2);
        assert_eq!(pending.len(), 1);
        let failed: Vec<_> = done.iter().filter(|f| f.result().is_err()).collect();
        assert_eq!(failed.len(), 1);
        assert!(matches!(
            failed[0].exception(),
            Ok(Some(Error::InvalidArgument(_)))
        ));
        Ok(())
    });
}

#[test]
fn wait_first_exception_without_errors_waits_for_all() {
    block_on(async {
        let start = now();
        let (done, pending) =
            wait([after(1)?, after(4)?], None, ReturnWhen::FirstException).await?;
        assert_eq!(elapsed(start), secs(4));
        assert_eq!(done.len(), 2);
        assert!(pending.is_empty());
        Ok(())
    });
}

#[test]
fn wait_first_exception_does_not_count_a_cancellation() {
    block_on(async {
        let c = after(1)?;
        let slow = after(3)?;
        c.cancel(None);
        let start = now();
        let (done, pending) = wait([c.clone(), slow], None, ReturnWhen::FirstException).await?;
        assert_eq!(
            elapsed(start),
            secs(3),
            "a cancelled future is not an error"
        );
        assert_eq!(done.len(), 2);
        assert!(pending.is_empty());
        assert!(c.cancelled());
        Ok(())
    });
}

#[test]
fn wait_first_exception_with_an_error_already_there_returns_at_once() {
    block_on(async {
        let lp = EventLoop::running()?;
        let failed: Future<u64> = Future::new(&lp);
        failed.set_exception(Error::InvalidArgument("already"))?;
        let start = now();
        let (done, pending) = wait(
            [failed.clone(), after(5)?.into()],
            None,
            ReturnWhen::FirstException,
        )
        .await?;
        assert_eq!(elapsed(start), Duration::ZERO);
        assert_eq!(done.len(), 1);
        assert_eq!(pending.len(), 1);
        let _ = failed.exception();
        Ok(())
    });
}

#[test]
fn wait_counts_duplicates_once() {
    block_on(async {
        let a = after(1)?;
        let b = after(2)?;
        let (done, pending) = wait(
            [a.clone(), a.clone(), b.clone(), a],
            None,
            ReturnWhen::AllCompleted,
        )
        .await?;
        assert_eq!(done.len() + pending.len(), 2);
        assert_eq!(values(&done), [1, 2]);
        Ok(())
    });
}

#[test]
fn wait_timeout_returns_pending_without_cancelling_them() {
    block_on(async {
        let slow = after(10)?;
        let quick = after(1)?;
        let start = now();
        let (done, pending) = wait(
            [slow.clone(), quick],
            Some(secs(5)),
            ReturnWhen::AllCompleted,
        )
        .await?;
        assert_eq!(elapsed(start), secs(5));
        assert_eq!(values(&done), [1]);
        assert_eq!(pending.len(), 1);
        assert!(pending[0].ptr_eq(&slow));
        assert!(!slow.done() && !slow.cancelled());
        assert_eq!(slow.await?, 10, "the pending task went on");
        assert_eq!(elapsed(start), secs(10));
        Ok(())
    });
}

#[test]
fn wait_with_zero_timeout_returns_at_once() {
    block_on(async {
        let slow = after(1)?;
        let start = now();
        let (done, pending) = wait([slow], Some(Duration::ZERO), ReturnWhen::AllCompleted).await?;
        assert_eq!(elapsed(start), Duration::ZERO);
        assert!(done.is_empty());
        assert_eq!(pending.len(), 1);
        Ok(())
    });
}

#[test]
fn wait_on_futures_already_done_returns_at_once() {
    block_on(async {
        let lp = EventLoop::running()?;
        let f: Future<u64> = Future::new(&lp);
        f.set_result(3)?;
        let (done, pending) = wait([f], None, ReturnWhen::AllCompleted).await?;
        assert_eq!(values(&done), [3]);
        assert!(pending.is_empty());
        Ok(())
    });
}

#[test]
fn cancelling_the_waiting_task_does_not_cancel_the_pending_futures() {
    block_on(async {
        let slow = after(10)?;
        let s2 = slow.clone();
        let waiter = spawn(async move { wait([s2], None, ReturnWhen::AllCompleted).await })?;
        sleep(secs(1)).await?;
        assert!(waiter.cancel(None));
        let r = waiter.clone().await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert!(!slow.done(), "wait does not cancel what it waits for");
        assert_eq!(slow.await?, 10);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// as_completed
// ---------------------------------------------------------------------------------------------

#[test]
fn as_completed_yields_in_completion_order() {
    block_on(async {
        let mut order = Vec::new();
        let mut times = Vec::new();
        let start = now();
        let mut it = as_completed([after(3)?, after(1)?, after(2)?], None)?;
        while let Some(f) = it.next().await {
            order.push(f?.take_result()?);
            times.push(elapsed(start));
        }
        assert_eq!(order, [1, 2, 3]);
        assert_eq!(times, [secs(1), secs(2), secs(3)]);
        Ok(())
    });
}

#[test]
fn as_completed_yields_failed_futures_too() {
    block_on(async {
        let mut it = as_completed([after(2)?, fail_after(1)?], None)?;
        let first = it.next().await.expect("one")?;
        assert!(matches!(
            first.take_result(),
            Err(Error::InvalidArgument(_))
        ));
        let second = it.next().await.expect("two")?;
        assert_eq!(second.take_result()?, 2);
        assert!(it.next().await.is_none());
        Ok(())
    });
}

#[test]
fn as_completed_timeout_gives_timeout_then_ends() {
    block_on(async {
        let slow = after(10)?;
        let start = now();
        let mut it = as_completed([after(1)?, slow.clone()], Some(secs(5)))?;
        assert_eq!(it.next().await.expect("the quick one")?.take_result()?, 1);
        let r = it.next().await.expect("the timeout");
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert_eq!(elapsed(start), secs(5));
        assert!(it.next().await.is_none(), "it ends after the timeout");
        assert!(!slow.done() && !slow.cancelled(), "not cancelled");
        assert_eq!(slow.await?, 10);
        Ok(())
    });
}

#[test]
fn as_completed_counts_duplicates_once() {
    block_on(async {
        let a = after(1)?;
        let mut it = as_completed([a.clone(), a], None)?;
        assert!(it.next().await.is_some());
        assert!(it.next().await.is_none());
        Ok(())
    });
}

#[test]
fn cancelling_a_task_blocked_in_as_completed_next_delivers_cancelled_and_loses_nothing() {
    block_on(async {
        let (a, b) = (after(1)?, after(3)?);
        let (a2, b2) = (a.clone(), b.clone());
        let waiter = spawn(async move {
            let mut it = as_completed([a2, b2], None)?;
            let first = it.next().await.expect("the first")?;
            let start = now();
            let r = it.next().await.expect("the cancellation");
            assert_eq!(elapsed(start), secs(1), "cancelled while blocked in next()");
            let Err(Error::Cancelled(c)) = r else {
                panic!("expected Cancelled, got {r:?}");
            };
            assert_eq!(c.message(), Some("stop"));
            // Nothing was lost: the other future still comes out of the same iterator.
            let second = it.next().await.expect("the second")?;
            assert!(it.next().await.is_none());
            Ok((first.take_result()?, second.take_result()?))
        })?;
        sleep(secs(2)).await?;
        assert!(waiter.cancel(Some("stop")));
        assert_eq!(waiter.await?, (1, 3));
        assert!(
            !a.cancelled() && !b.cancelled(),
            "only the waiter was cancelled"
        );
        Ok(())
    });
}

#[test]
fn a_future_done_in_the_same_iteration_as_the_cancel_stays_in_as_completed() {
    block_on(async {
        let f: Future<u64> = Future::new(&EventLoop::running()?);
        let f2 = f.clone();
        let waiter = spawn(async move {
            let mut it = as_completed([f2.clone()], None)?;
            let r = it.next().await.expect("the cancellation");
            assert!(r.as_ref().is_err_and(Error::is_cancelled), "{r:?}");
            let again = it.next().await.expect("the future")?;
            again.take_result()
        })?;
        sleep(secs(1)).await?;
        // Both before the waiter runs again: the cancellation wins, the future is kept.
        f.set_result(8)?;
        assert!(waiter.cancel(None));
        assert_eq!(waiter.await?, 8);
        Ok(())
    });
}

#[test]
fn as_completed_of_nothing_ends_at_once() {
    block_on(async {
        let mut it = as_completed(Vec::<Future<u8>>::new(), None)?;
        assert!(it.next().await.is_none());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// gather
// ---------------------------------------------------------------------------------------------

#[test]
fn gather_returns_results_in_the_order_given() {
    block_on(async {
        let start = now();
        let v = gather([after(3)?, after(1)?, after(2)?])?.await?;
        assert_eq!(v, [3, 1, 2]);
        assert_eq!(elapsed(start), secs(3));
        Ok(())
    });
}

#[test]
fn gather_of_nothing_is_an_empty_vec() {
    block_on(async {
        let v = gather(Vec::<Future<u8>>::new())?.await?;
        assert!(v.is_empty());
        Ok(())
    });
}

#[test]
fn gather_failure_fails_fast_and_leaves_the_others_running() {
    block_on(async {
        let slow = after(10)?;
        let start = now();
        let r = gather([slow.clone(), fail_after(1)?])?.await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
        assert_eq!(elapsed(start), secs(1), "the first error ends the gather");
        assert!(!slow.done(), "gather does not cancel the other children");
        assert_eq!(slow.await?, 10);
        Ok(())
    });
}

#[test]
fn gather_settled_collects_values_errors_and_cancellations() {
    block_on(async {
        let c = after(5)?;
        let g = gather_settled([after(1)?, fail_after(2)?, c.clone(), after(3)?])?;
        sleep(secs(1)).await?;
        c.cancel(Some("child"));
        let v = g.clone().await?;
        assert!(
            !g.cancelled(),
            "a cancelled child does not cancel the gather"
        );
        assert_eq!(v.len(), 4);
        assert_eq!(*v[0].as_ref().unwrap(), 1);
        assert!(matches!(v[1], Err(Error::InvalidArgument(_))));
        match &v[2] {
            Err(Error::Cancelled(m)) => assert_eq!(m.message(), Some("child")),
            other => panic!("expected the child's cancellation, got {other:?}"),
        }
        assert_eq!(*v[3].as_ref().unwrap(), 3);
        Ok(())
    });
}

#[test]
fn gather_child_cancelled_fails_the_gather_with_cancelled() {
    block_on(async {
        let c = after(5)?;
        let g = gather([after(1)?, c.clone()])?;
        sleep(secs(2)).await?;
        c.cancel(None);
        let r = g.await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        Ok(())
    });
}

#[test]
fn cancelling_the_gather_cancels_the_children_and_it_ends_cancelled() {
    block_on(async {
        let (fa, fb) = (flag(), flag());
        let a = cancellable(10, 1, &fa)?;
        let b = cancellable(10, 1, &fb)?;
        let g = gather([a.clone(), b.clone()])?;
        sleep(secs(1)).await?;
        assert!(g.cancel(Some("stop all")));
        let r = g.clone().await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert!(g.cancelled());
        // The children were cancelled and finish their cleanup.
        assert!(matches!(a.clone().await, Err(e) if e.is_cancelled()));
        assert!(matches!(b.clone().await, Err(e) if e.is_cancelled()));
        assert!(fa.get() && fb.get());
        Ok(())
    });
}

#[test]
fn cancelling_gather_settled_waits_for_every_child_then_ends_cancelled() {
    block_on(async {
        let (fa, fb) = (flag(), flag());
        let a = cancellable(10, 1, &fa)?;
        let b = cancellable(10, 3, &fb)?;
        let g = gather_settled([a.clone(), b.clone()])?;
        sleep(secs(1)).await?;
        let start = now();
        assert!(g.cancel(None));
        let r = g.clone().await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert_eq!(elapsed(start), secs(3), "it waited for the slowest cleanup");
        assert!(fa.get() && fb.get());
        assert!(a.cancelled() && b.cancelled());
        Ok(())
    });
}

#[test]
fn cancelling_the_task_awaiting_gather_cancels_the_children() {
    block_on(async {
        let (fa, fb) = (flag(), flag());
        let a = cancellable(10, 1, &fa)?;
        let b = cancellable(10, 1, &fb)?;
        let (a2, b2) = (a.clone(), b.clone());
        let outer = spawn(async move { gather([a2, b2])?.await })?;
        sleep(secs(1)).await?;
        outer.cancel(None);
        let r = outer.clone().await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert!(outer.cancelled());
        let _ = a.clone().await;
        let _ = b.clone().await;
        assert!(a.cancelled() && b.cancelled());
        assert!(fa.get() && fb.get());
        Ok(())
    });
}

#[test]
fn cancelling_a_done_gather_returns_false() {
    block_on(async {
        let g = gather([after(1)?])?;
        let v = g.clone().await?;
        assert_eq!(v, [1]);
        assert!(!g.cancel(None));
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// shield
// ---------------------------------------------------------------------------------------------

#[test]
fn shield_passes_the_result_through() {
    block_on(async {
        let v = shield(after(2)?).await?;
        assert_eq!(v, 2);
        Ok(())
    });
}

#[test]
fn shield_passes_an_error_through() {
    block_on(async {
        let r = shield(fail_after(1)?).await;
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
        Ok(())
    });
}

#[test]
fn cancelling_the_outer_leaves_the_inner_running_and_its_result_intact() {
    block_on(async {
        let inner = after(5)?;
        let outer = shield(inner.clone());
        sleep(secs(1)).await?;
        assert!(outer.cancel(None));
        assert!(outer.cancelled());
        assert!(!inner.cancelled() && !inner.done());
        let start = now();
        assert_eq!(inner.clone().await?, 5, "the inner task finished normally");
        assert_eq!(elapsed(start), secs(4));
        Ok(())
    });
}

#[test]
fn cancelling_the_task_awaiting_a_shield_leaves_the_inner_task_running() {
    block_on(async {
        let inner = after(5)?;
        let i2 = inner.clone();
        let waiter = spawn(async move { shield(i2).await })?;
        sleep(secs(1)).await?;
        waiter.cancel(None);
        let r = waiter.clone().await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert!(!inner.done() && !inner.cancelled());
        assert_eq!(inner.clone().await?, 5);
        Ok(())
    });
}

#[test]
fn cancelling_the_inner_cancels_the_shield() {
    block_on(async {
        let inner = after(5)?;
        let outer = shield(inner.clone());
        sleep(secs(1)).await?;
        inner.cancel(None);
        let r = outer.await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        Ok(())
    });
}

#[test]
fn shield_of_a_done_future_is_that_future() {
    block_on(async {
        let lp = EventLoop::running()?;
        let f: Future<u64> = Future::new(&lp);
        f.set_result(1)?;
        assert!(shield(f.clone()).ptr_eq(&f));
        Ok(())
    });
}
