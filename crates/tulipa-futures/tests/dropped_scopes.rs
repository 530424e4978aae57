//! What happens when a task group or a timeout scope is dropped before it finished: by a
//! foreign `select` that takes another branch, or because its task is aborted.
//!
//! Nothing the scope started may outlive it: a dropped task group cancels its children and
//! withdraws the cancellation it had requested of its own task; a dropped timeout scope whose
//! deadline already passed withdraws the cancellation its timer requested. Every test runs on a
//! virtual-time loop.

mod common;

use std::cell::{Cell, RefCell};
use std::pin::pin;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use common::{block_on, count_cancel, is_cancelled, now, secs};
use tulipa_futures::rt::EventLoop;
use tulipa_futures::{
    current_task, sleep, spawn, task_group, Error, Result, Task, TaskRef, TimeoutScope,
};

/// A foreign (non-Tulipa) one-shot event set by a loop timer: awaiting it neither delivers nor
/// forwards a cancellation, like a future from another async library.
#[derive(Clone, Default)]
struct Trigger {
    fired: Rc<Cell<bool>>,
    waker: Rc<RefCell<Option<Waker>>>,
}

impl Trigger {
    fn after(d: Duration) -> Trigger {
        let t = Trigger::default();
        let t2 = t.clone();
        EventLoop::running()
            .expect("inside the loop")
            .call_later(d, move || {
                t2.fired.set(true);
                if let Some(w) = t2.waker.borrow_mut().take() {
                    w.wake();
                }
            })
            .expect("the loop is open");
        t
    }
}

/// A foreign `select`: the output of `fut` if it finishes first, `None` (and `fut` dropped
/// unfinished) if `trigger` fires first.
async fn race<F: std::future::Future>(fut: F, trigger: &Trigger) -> Option<F::Output> {
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if trigger.fired.get() {
            return Poll::Ready(None);
        }
        *trigger.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    })
    .await
}

/// Nothing is left of a dropped scope's cancellation of `me` (the running task): no request
/// is pending, and a later, unrelated await is not cancelled.
async fn assert_no_stray_cancellation(me: &TaskRef) -> Result<()> {
    assert_eq!(
        me.cancelling(),
        0,
        "a stray cancellation request was left behind"
    );
    let start = now();
    let r = sleep(secs(1)).await;
    assert!(r.is_ok(), "a later, unrelated await was cancelled: {r:?}");
    assert_eq!(now() - start, secs(1));
    Ok(())
}

type Slot = Rc<RefCell<Option<Task<()>>>>;

#[test]
fn a_task_group_dropped_by_a_select_cancels_its_children() {
    block_on(async {
        let start = now();
        let cancelled = Rc::new(Cell::new(0));
        let slot: Slot = Rc::default();
        let (c, s) = (cancelled.clone(), slot.clone());
        let group = task_group(move |tg| async move {
            *s.borrow_mut() = Some(tg.spawn(count_cancel(secs(10), c))?);
            sleep(secs(100)).await
        });
        assert!(race(group, &Trigger::after(secs(1))).await.is_none());
        let child = slot
            .borrow_mut()
            .take()
            .expect("the body spawned the child");
        assert!(
            !child.done(),
            "cancelled, but the child has not run its cleanup yet"
        );
        let r = child.await;
        assert!(is_cancelled(&r), "the child was left running: {r:?}");
        assert_eq!(cancelled.get(), 1, "the child saw its cancellation");
        assert_eq!(now() - start, secs(1), "the child was cancelled at once");
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok(())
    });
}

#[test]
fn a_task_group_whose_task_is_aborted_cancels_its_children() {
    block_on(async {
        let cancelled = Rc::new(Cell::new(0));
        let slot: Slot = Rc::default();
        let (c, s) = (cancelled.clone(), slot.clone());
        let parent = spawn(async move {
            task_group(move |tg| async move {
                *s.borrow_mut() = Some(tg.spawn(count_cancel(secs(10), c))?);
                sleep(secs(100)).await
            })
            .await
        })?;
        sleep(secs(1)).await?;
        let child = slot
            .borrow_mut()
            .take()
            .expect("the body spawned the child");
        parent.abort();
        assert!(is_cancelled(&parent.clone().await));
        let start = now();
        let r = child.await;
        assert!(is_cancelled(&r), "the child was left running: {r:?}");
        assert_eq!(cancelled.get(), 1);
        assert_eq!(now(), start, "the child was cancelled at once");
        Ok(())
    });
}

#[test]
fn a_dropped_task_group_withdraws_the_cancellation_it_requested_of_its_task() {
    block_on(async {
        let me = current_task().unwrap();
        let group = task_group(|tg| async move {
            let _failing = tg.spawn(async {
                sleep(secs(1)).await?;
                Err::<(), _>(Error::InvalidArgument("boom"))
            })?;
            // A foreign wait: the group's cancellation of this task stays pending.
            std::future::pending::<()>().await;
            Ok(())
        });
        assert!(race(group, &Trigger::after(secs(2))).await.is_none());
        assert_no_stray_cancellation(&me).await
    });
}

#[test]
fn a_dropped_expired_timeout_scope_withdraws_its_cancellation() {
    block_on(async {
        let me = current_task().unwrap();
        let scope = TimeoutScope::after(secs(1))?;
        let run = scope.run(async {
            // A foreign wait: the timer's cancellation of this task stays pending.
            std::future::pending::<()>().await;
            Ok(())
        });
        assert!(race(run, &Trigger::after(secs(2))).await.is_none());
        assert!(scope.expired(), "the deadline passed while the scope ran");
        assert_no_stray_cancellation(&me).await
    });
}

#[test]
fn a_timeout_scope_dropped_before_its_deadline_cancels_nothing() {
    block_on(async {
        let me = current_task().unwrap();
        let scope = TimeoutScope::after(secs(5))?;
        let run = scope.run(sleep(secs(10)));
        assert!(race(run, &Trigger::after(secs(1))).await.is_none());
        assert!(!scope.expired());
        // The timer was cancelled with the scope: nothing happens at the old deadline.
        sleep(secs(10)).await?;
        assert_eq!(me.cancelling(), 0);
        Ok(())
    });
}
