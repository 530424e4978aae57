//! `gather` and `shield` beyond the basics in `wait.rs`: a future passed more than once, the
//! message of a cancelled gather, and what a cancelled shield does with its inner future's error
//! (CPython's `Lib/test/test_asyncio/test_tasks.py`: test_gather_same_future*,
//! test_cancel_gather_*, test_shield_*).
//!
//! Every test runs on a virtual-time loop.

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use common::{after, block_on, running, secs};
use tulipa_futures::rt::{EventLoop, ExceptionContext};
use tulipa_futures::{
    gather, gather_settled, run_until_complete, shield, sleep, spawn, Error, Future, Result, Task,
};

/// A task that sleeps `n` seconds and returns `v`, also when cancelled meanwhile.
fn stubborn(n: u64, v: u64) -> Result<Task<u64>> {
    spawn(async move {
        let _ = sleep(secs(n)).await;
        Ok(v)
    })
}

fn is_repeated(r: &Result<impl std::fmt::Debug>) -> bool {
    matches!(r, Err(Error::InvalidState(m)) if m.contains("more than once"))
}

fn cancel_message<T: std::fmt::Debug>(r: &Result<T>) -> Option<String> {
    match r {
        Err(Error::Cancelled(c)) => c.message().map(str::to_owned),
        other => panic!("expected Cancelled, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// A future passed more than once
// ---------------------------------------------------------------------------------------------

#[test]
fn gather_settled_of_a_repeated_future_gives_its_value_to_the_first_slot() {
    block_on(async {
        let f: Future<u64> = Future::new(&running());
        let f2 = f.clone();
        running().call_later(secs(1), move || {
            let _ = f2.set_result(7);
        })?;
        let g = gather_settled([f.clone(), after(2)?.into(), f.clone(), f])?;
        let slots = g.await?;
        assert_eq!(slots.len(), 4);
        assert_eq!(*slots[0].as_ref().unwrap(), 7);
        assert_eq!(*slots[1].as_ref().unwrap(), 2);
        assert!(is_repeated(&slots[2]), "{:?}", slots[2]);
        assert!(is_repeated(&slots[3]), "{:?}", slots[3]);
        Ok(())
    });
}

#[test]
fn gather_of_a_repeated_future_fails_with_invalid_state() {
    block_on(async {
        let a = after(1)?;
        let r = gather([a.clone(), a])?.await;
        assert!(is_repeated(&r), "{r:?}");
        Ok(())
    });
}

#[test]
fn an_error_of_a_repeated_future_is_in_every_slot() {
    block_on(async {
        let f: Future<u64> = Future::new(&running());
        f.set_exception(Error::InvalidArgument("bad"))?;
        let slots = gather_settled([f.clone(), f])?.await?;
        assert_eq!(slots.len(), 2);
        for s in &slots {
            assert!(matches!(s, Err(Error::InvalidArgument("bad"))), "{s:?}");
        }
        Ok(())
    });
}

#[test]
fn a_repeated_task_is_cancelled_once() {
    block_on(async {
        let a = after(10)?;
        let g = gather_settled([a.clone(), a.clone(), a.clone()])?;
        sleep(secs(1)).await?;
        assert!(g.cancel(None));
        assert_eq!(
            a.cancelling(),
            1,
            "one cancellation request, not one per slot"
        );
        assert!(g.await.unwrap_err().is_cancelled());
        assert!(a.cancelled());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The message of a cancelled gather
// ---------------------------------------------------------------------------------------------

#[test]
fn a_cancelled_gather_settled_keeps_the_message() {
    block_on(async {
        let g = gather_settled([after(10)?, after(20)?])?;
        sleep(secs(1)).await?;
        assert!(g.cancel(Some("stop all")));
        let r = g.await;
        assert_eq!(cancel_message(&r).as_deref(), Some("stop all"));
        Ok(())
    });
}

#[test]
fn a_cancelled_gather_ends_cancelled_with_the_message_when_the_children_suppress_it() {
    block_on(async {
        let (a, b) = (stubborn(10, 1)?, stubborn(20, 2)?);
        let g = gather([a.clone(), b.clone()])?;
        sleep(secs(1)).await?;
        assert!(g.cancel(Some("stop all")));
        let r = g.await;
        assert_eq!(cancel_message(&r).as_deref(), Some("stop all"));
        // The children ended with their values, which stay in them.
        assert_eq!((a.await?, b.await?), (1, 2));
        Ok(())
    });
}

#[test]
fn a_cancelled_gather_ends_at_the_first_cancelled_child_with_the_message() {
    block_on(async {
        let start = running().time();
        let g = gather([after(10)?, stubborn(20, 2)?])?;
        sleep(secs(1)).await?;
        assert!(g.cancel(Some("stop all")));
        let r = g.await;
        assert_eq!(cancel_message(&r).as_deref(), Some("stop all"));
        assert_eq!(
            running().time() - start,
            secs(1),
            "it did not wait for the stubborn child"
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// shield
// ---------------------------------------------------------------------------------------------

#[test]
fn the_error_of_a_cancelled_shields_inner_future_is_not_reported_as_never_retrieved() {
    let lp = EventLoop::new_virtual().expect("a virtual-time loop");
    let reports: Rc<RefCell<Vec<String>>> = Rc::default();
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        r.borrow_mut().push(ctx.message.clone());
    }));
    run_until_complete(&lp, async {
        let inner: Future<u64> = Future::new(&running());
        let outer = shield(inner.clone());
        assert!(outer.cancel(None));
        inner.set_exception(Error::InvalidArgument("unread"))?;
        drop((inner, outer));
        // The shield's done callback runs, then the last handle goes.
        sleep(Duration::ZERO).await?;
        sleep(Duration::ZERO).await
    })
    .unwrap();
    // Control: an inner future nobody shields does get reported.
    run_until_complete(&lp, async {
        let lone: Future<u64> = Future::new(&running());
        lone.set_exception(Error::InvalidArgument("unread"))?;
        Ok(())
    })
    .unwrap();
    let _ = lp.close();
    let reports = reports.borrow();
    assert_eq!(
        reports.len(),
        1,
        "only the control is reported: {reports:?}"
    );
    assert!(reports[0].contains("never retrieved"), "{reports:?}");
}
