//! Behaviour of `task_group`, ported from CPython's `Lib/test/test_asyncio/test_taskgroups.py`
//! (TestTaskGroup: test_taskgroup_01 … 20, test_cancel_children_on_child_error,
//! test_cancellation, test_cancellation_in_body, test_taskgroup_cancel_*).
//!
//! A failing child cancels its siblings and the body; every failure is collected into one
//! `Error::Group`. A cancellation from outside cancels the children and comes out as
//! `Err(Cancelled)` once they have all finished. Every test runs on a virtual-time loop.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::{block_on, count_cancel, is_cancelled, now, secs};
use tulipa_futures::{current_task, sleep, spawn, task_group, Error, Result, Task, TaskGroup};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The errors of an `Error::Group`, rendered; panics on anything else.
fn group_errors<T: std::fmt::Debug>(r: &Result<T>) -> Vec<String> {
    match r {
        Err(Error::Group(errors)) => errors.iter().map(|e| e.to_string()).collect(),
        other => panic!("expected Error::Group, got {other:?}"),
    }
}

fn zero_division() -> Error {
    Error::InvalidArgument("division by zero")
}

/// Sleeps `d`, then returns `v`.
async fn value_after<T>(d: Duration, v: T) -> Result<T> {
    sleep(d).await?;
    Ok(v)
}

/// Sleeps `d`, then fails with `e`.
async fn fail_after<T>(d: Duration, e: Error) -> Result<T> {
    sleep(d).await?;
    Err(e)
}

fn counter() -> Rc<Cell<u32>> {
    Rc::new(Cell::new(0))
}

#[test]
fn all_children_succeed_and_the_body_result_comes_back() {
    // test_taskgroup_01
    block_on(async {
        let start = now();
        let (t1, t2, v) = task_group(|tg| async move {
            let t1 = tg.spawn(value_after(ms(100), 42))?;
            let t2 = tg.spawn(value_after(ms(200), 11))?;
            Ok((t1, t2, "body"))
        })
        .await?;
        assert_eq!(v, "body");
        assert_eq!(t1.result()?, 42);
        assert_eq!(t2.result()?, 11);
        assert_eq!(now() - start, ms(200), "the group waited for every child");
        Ok(())
    });
}

#[test]
fn children_spawned_later_in_the_body_are_waited_for() {
    // test_taskgroup_02
    block_on(async {
        let (t1, t2) = task_group(|tg| async move {
            let t1 = tg.spawn(value_after(ms(100), 42))?;
            sleep(ms(150)).await?;
            let t2 = tg.spawn(value_after(ms(200), 11))?;
            Ok((t1, t2))
        })
        .await?;
        assert_eq!(t1.result()?, 42);
        assert_eq!(t2.result()?, 11);
        Ok(())
    });
}

#[test]
fn a_child_cancelled_explicitly_does_not_fail_the_group() {
    // test_taskgroup_03
    block_on(async {
        let (t1, t2) = task_group(|tg| async move {
            let t1 = tg.spawn(value_after(secs(1), 42))?;
            sleep(ms(150)).await?;
            t1.cancel(None);
            let t2 = tg.spawn(value_after(ms(200), 11))?;
            Ok((t1, t2))
        })
        .await?;
        assert!(t1.cancelled());
        assert_eq!(t2.result()?, 11);
        Ok(())
    });
}

#[test]
fn one_child_fails_siblings_are_cancelled_and_the_error_is_in_a_group() {
    // test_taskgroup_04
    block_on(async {
        let sibling_cancelled = Rc::new(Cell::new(false));
        let after_group = Rc::new(Cell::new(false));
        let t2_slot: Rc<RefCell<Option<Task<()>>>> = Rc::new(RefCell::new(None));
        let (sc, ag, slot) = (
            sibling_cancelled.clone(),
            after_group.clone(),
            t2_slot.clone(),
        );
        let runner = spawn(async move {
            task_group(|tg| async move {
                let _child = tg.spawn(fail_after::<()>(ms(100), zero_division()))?;
                let t2 = tg.spawn(async move {
                    let r = sleep(secs(1)).await;
                    if r.is_err() {
                        sc.set(true);
                    }
                    r
                })?;
                *slot.borrow_mut() = Some(t2);
                Ok(())
            })
            .await?;
            ag.set(true);
            Ok(())
        })?;
        let r = runner.await;
        assert_eq!(group_errors(&r), ["invalid argument: division by zero"]);
        assert!(!after_group.get());
        assert!(sibling_cancelled.get());
        assert!(t2_slot.borrow().as_ref().unwrap().cancelled());
        Ok(())
    });
}

#[test]
fn child_error_cancels_the_other_children_and_the_body() {
    // test_cancel_children_on_child_error
    block_on(async {
        let sibling_cleanup = Rc::new(Cell::new(false));
        let body_cancelled = Rc::new(Cell::new(false));
        let (sc, bc) = (sibling_cleanup.clone(), body_cancelled.clone());
        let start = now();
        let r: Result<()> = task_group(|tg| async move {
            for _ in 0..3 {
                let _child = tg.spawn(fail_after::<()>(ms(100), zero_division()))?;
            }
            let _child = tg.spawn(async move {
                let r = sleep(secs(5)).await;
                if r.is_err() {
                    sleep(secs(1)).await?; // the sibling's cleanup awaits
                    sc.set(true);
                }
                r
            })?;
            let r = sleep(secs(10)).await;
            bc.set(is_cancelled(&r));
            r
        })
        .await;
        let errors = group_errors(&r);
        assert!(!errors.is_empty() && errors.len() <= 3, "{errors:?}");
        assert!(errors.iter().all(|e| e.contains("division by zero")));
        assert!(sibling_cleanup.get(), "the sibling cleaned up");
        assert!(body_cancelled.get(), "the body was cancelled");
        assert_eq!(
            now() - start,
            ms(1100),
            "the group waited for the sibling's cleanup"
        );
        Ok(())
    });
}

#[test]
fn two_children_fail_and_both_errors_are_collected() {
    block_on(async {
        let r: Result<()> = task_group(|tg| async move {
            let _child = tg.spawn(async { Err::<(), _>(Error::InvalidArgument("first")) })?;
            let _child = tg.spawn(async { Err::<(), _>(Error::InvalidArgument("second")) })?;
            Ok(())
        })
        .await;
        let mut errors = group_errors(&r);
        errors.sort();
        assert_eq!(
            errors,
            ["invalid argument: first", "invalid argument: second"]
        );
        Ok(())
    });
}

#[test]
fn body_fails_children_are_cancelled_and_the_body_error_is_in_the_group() {
    // test_taskgroup_09 / test_taskgroup_10
    for delay in [Some(ms(100)), None] {
        block_on(async move {
            let slot: Rc<RefCell<Vec<Task<u32>>>> = Rc::new(RefCell::new(Vec::new()));
            let s = slot.clone();
            let r: Result<()> = task_group(|tg| async move {
                s.borrow_mut().push(tg.spawn(value_after(secs(1), 42))?);
                s.borrow_mut().push(tg.spawn(value_after(secs(2), 11))?);
                if let Some(d) = delay {
                    sleep(d).await?;
                }
                Err(zero_division())
            })
            .await;
            assert_eq!(group_errors(&r), ["invalid argument: division by zero"]);
            for t in slot.borrow().iter() {
                assert!(t.cancelled(), "{delay:?}");
            }
            Ok(())
        });
    }
}

#[test]
fn outside_cancel_cancels_children_and_gives_cancelled_after_they_finish() {
    // test_cancellation
    block_on(async {
        let cleaned = counter();
        let c = cleaned.clone();
        let finished_children = Rc::new(Cell::new(0));
        let fc = finished_children.clone();
        let r = spawn(async move {
            task_group(|tg| async move {
                for _ in 0..5 {
                    let (c, fc) = (c.clone(), fc.clone());
                    let _child = tg.spawn(async move {
                        let r = sleep(secs(5)).await;
                        if r.is_err() {
                            sleep(secs(1)).await?; // cleanup that takes a while
                            c.set(c.get() + 1);
                        }
                        fc.set(fc.get() + 1);
                        r
                    })?;
                }
                Ok(())
            })
            .await
        })?;
        sleep(ms(100)).await?;
        assert!(!r.done());
        let start = now();
        r.cancel(Some("test"));
        let out = r.clone().await;
        match &out {
            Err(Error::Cancelled(c)) => assert_eq!(c.message(), Some("test")),
            other => panic!("expected Cancelled(\"test\"), got {other:?}"),
        }
        assert!(r.cancelled());
        assert_eq!(cleaned.get(), 5);
        assert_eq!(finished_children.get(), 5, "every child finished first");
        assert_eq!(now() - start, secs(1));
        Ok(())
    });
}

#[test]
fn outside_cancel_while_the_body_runs_cancels_body_and_children() {
    // test_taskgroup_07
    block_on(async {
        let n = counter();
        let n2 = n.clone();
        let r = spawn(async move {
            task_group(|tg| async move {
                for _ in 0..5 {
                    let _child = tg.spawn(count_cancel(secs(5), n2.clone()))?;
                }
                let r = sleep(secs(10)).await;
                if r.is_err() {
                    n2.set(n2.get() + 10);
                }
                r
            })
            .await
        })?;
        sleep(ms(100)).await?;
        assert!(!r.done());
        r.cancel(None);
        assert!(is_cancelled(&r.await));
        assert_eq!(n.get(), 15);
        Ok(())
    });
}

#[test]
fn outside_cancel_wins_over_children_failing_later() {
    // test_cancellation_in_body
    block_on(async {
        let r = spawn(async {
            task_group(|tg| async move {
                for _ in 0..5 {
                    let _child = tg.spawn(fail_after::<()>(ms(100), zero_division()))?;
                }
                sleep(secs(10)).await
            })
            .await
        })?;
        sleep(ms(50)).await?;
        assert!(!r.done());
        r.cancel(Some("test"));
        let out = r.await;
        match &out {
            Err(Error::Cancelled(c)) => assert_eq!(c.message(), Some("test")),
            other => panic!("expected Cancelled(\"test\"), got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn outside_cancel_of_a_group_with_no_children_cancels_the_body() {
    // test_taskgroup_17
    block_on(async {
        let n = counter();
        let n2 = n.clone();
        let r = spawn(async move {
            task_group(|_tg| async move {
                let r = sleep(secs(10)).await;
                if r.is_err() {
                    n2.set(n2.get() + 10);
                }
                r
            })
            .await
        })?;
        sleep(ms(100)).await?;
        r.cancel(None);
        assert!(is_cancelled(&r.await));
        assert_eq!(n.get(), 10);
        Ok(())
    });
}

#[test]
fn body_turning_an_outside_cancel_into_an_error_gives_a_group() {
    // test_taskgroup_18
    block_on(async {
        let r = spawn(async {
            task_group(|_tg| async move {
                if sleep(secs(10)).await.is_err() {
                    return Err::<(), _>(Error::InvalidArgument("my exc"));
                }
                Ok(())
            })
            .await
        })?;
        sleep(ms(100)).await?;
        r.cancel(None);
        let out = r.await;
        assert_eq!(group_errors(&out), ["invalid argument: my exc"]);
        Ok(())
    });
}

#[test]
fn body_error_during_its_cleanup_and_child_error_are_both_collected() {
    // test_taskgroup_19
    block_on(async {
        let r: Result<()> = task_group(|tg| async move {
            let _child = tg.spawn(fail_after::<()>(ms(100), zero_division()))?;
            let _ = sleep(secs(10)).await;
            Err(Error::InvalidArgument("my exc"))
        })
        .await;
        let mut errors = group_errors(&r);
        errors.sort();
        assert_eq!(
            errors,
            [
                "invalid argument: division by zero",
                "invalid argument: my exc"
            ]
        );
        Ok(())
    });
}

#[test]
fn child_crash_during_the_body_cleanup_of_an_outside_cancel_gives_a_group() {
    // test_taskgroup_15 (Python 3.12+: errors have priority over the propagated cancellation)
    block_on(async {
        let r = spawn(async {
            task_group(|tg| async move {
                let _child = tg.spawn(fail_after::<()>(ms(300), zero_division()))?;
                let r = sleep(secs(10)).await;
                if r.is_err() {
                    let _ = sleep(ms(500)).await;
                }
                r
            })
            .await
        })?;
        sleep(ms(100)).await?;
        assert!(!r.done());
        r.cancel(None);
        let out = r.await;
        assert_eq!(group_errors(&out), ["invalid argument: division by zero"]);
        Ok(())
    });
}

#[test]
fn outside_cancel_is_not_lost_when_the_group_reports_errors() {
    // taskgroups.py: "If the parent task is being cancelled from the outside of the taskgroup,
    // un-cancel and re-cancel the parent task, which will keep the cancel count stable."
    block_on(async {
        let reached = Rc::new(Cell::new(false));
        let rc = reached.clone();
        let r = spawn(async move {
            let g: Result<()> = task_group(|tg| async move {
                let _child = tg.spawn(fail_after::<()>(ms(300), zero_division()))?;
                let r = sleep(secs(10)).await;
                if r.is_err() {
                    let _ = sleep(ms(500)).await;
                }
                r
            })
            .await;
            assert_eq!(group_errors(&g).len(), 1);
            assert_eq!(current_task().unwrap().cancelling(), 1);
            // The outside request is still pending: the next await delivers it.
            let after = sleep(secs(1)).await;
            rc.set(true);
            after
        })?;
        sleep(ms(100)).await?;
        r.cancel(None);
        let out = r.clone().await;
        assert!(reached.get());
        assert!(is_cancelled(&out), "{out:?}");
        assert!(r.cancelled());
        Ok(())
    });
}

#[test]
fn child_crash_in_a_nested_runner_task_during_cleanup_gives_a_group() {
    // test_taskgroup_16 (Python 3.12+): the cancel reaches the awaited runner task.
    block_on(async {
        let nested = || async {
            task_group(|tg| async move {
                let _child = tg.spawn(fail_after::<()>(ms(300), zero_division()))?;
                let r = sleep(secs(10)).await;
                if r.is_err() {
                    let _ = sleep(ms(500)).await;
                }
                r
            })
            .await
        };
        let r = spawn(async move { spawn(nested())?.await })?;
        sleep(ms(100)).await?;
        assert!(!r.done());
        r.cancel(None);
        let out = r.await;
        assert_eq!(group_errors(&out), ["invalid argument: division by zero"]);
        Ok(())
    });
}

#[test]
fn nested_groups_inner_child_fails_outer_gets_a_group() {
    // test_taskgroup_13
    block_on(async {
        let r: Result<()> = task_group(|g1| async move {
            let _child = g1.spawn(fail_after::<()>(ms(100), Error::InvalidArgument("0.1")))?;
            task_group(|g2| async move {
                let _child = g2.spawn(fail_after::<()>(secs(10), Error::InvalidArgument("10")))?;
                Ok(())
            })
            .await
        })
        .await;
        let errors = group_errors(&r);
        assert_eq!(
            errors,
            ["invalid argument: 0.1"],
            "the inner group was cancelled"
        );
        Ok(())
    });
}

#[test]
fn nested_groups_inner_group_error_is_nested_in_the_outer_group() {
    // test_taskgroup_14
    block_on(async {
        let r: Result<()> = task_group(|g1| async move {
            let _child = g1.spawn(fail_after::<()>(secs(10), Error::InvalidArgument("10")))?;
            task_group(|g2| async move {
                let _child = g2.spawn(fail_after::<()>(ms(100), Error::InvalidArgument("0.1")))?;
                Ok(())
            })
            .await
        })
        .await;
        match &r {
            Err(Error::Group(outer)) => {
                assert_eq!(outer.len(), 1, "{outer:?}");
                match &outer[0] {
                    Error::Group(inner) => {
                        assert_eq!(inner.len(), 1);
                        assert!(matches!(inner[0], Error::InvalidArgument("0.1")));
                    }
                    other => panic!("expected the inner group, got {other:?}"),
                }
            }
            other => panic!("expected Error::Group, got {other:?}"),
        }
        Ok(())
    });
}

#[test]
fn nested_groups_outside_cancel_gives_cancelled() {
    // test_taskgroup_11 / test_taskgroup_12
    block_on(async {
        let r = spawn(async {
            task_group(|g1| async move {
                let _child = g1.spawn(sleep(secs(10)))?;
                task_group(|g2| async move {
                    for _ in 0..5 {
                        let _child = g2.spawn(fail_after::<()>(ms(100), zero_division()))?;
                    }
                    sleep(secs(10)).await
                })
                .await
            })
            .await
        })?;
        sleep(ms(50)).await?;
        assert!(!r.done());
        r.cancel(None);
        assert!(is_cancelled(&r.await));
        Ok(())
    });
}

#[test]
fn a_child_can_spawn_more_children_while_the_group_waits() {
    // test_taskgroup_24 / test_taskgroup_25
    block_on(async {
        let start = now();
        let done = counter();
        let d = done.clone();
        task_group(|tg| async move {
            let g = tg.clone();
            let _child = tg.spawn(async move {
                sleep(ms(100)).await?;
                for delay in [100, 200] {
                    let d = d.clone();
                    let _child = g.spawn(async move {
                        sleep(ms(delay)).await?;
                        d.set(d.get() + 1);
                        Ok(())
                    })?;
                }
                Ok(())
            })?;
            Ok(())
        })
        .await?;
        assert_eq!(done.get(), 2, "the group waited for the grandchildren too");
        assert_eq!(now() - start, ms(300));
        Ok(())
    });
}

#[test]
fn spawn_after_the_group_finished_is_invalid_state() {
    block_on(async {
        let tg: TaskGroup = task_group(|tg| async move {
            let _child = tg.spawn(value_after(ms(1), ()))?;
            Ok(tg)
        })
        .await?;
        let r = tg.spawn(async { Ok(()) });
        assert!(matches!(r, Err(Error::InvalidState(_))), "{r:?}");
        assert_eq!(tg.pending(), 0);
        Ok(())
    });
}

#[test]
fn spawn_while_shutting_down_after_a_failure_is_invalid_state() {
    block_on(async {
        let r: Result<()> = task_group(|tg| async move {
            let _child = tg.spawn(async { Err::<(), _>(zero_division()) })?;
            let _ = sleep(secs(1)).await; // cancelled by the failure
            let late = tg.spawn(async { Ok(()) });
            assert!(matches!(late, Err(Error::InvalidState(_))), "{late:?}");
            Ok(())
        })
        .await;
        assert_eq!(group_errors(&r).len(), 1);
        Ok(())
    });
}

#[test]
fn parent_cancelling_is_zero_after_the_group_cancelled_it_itself() {
    block_on(async {
        let me = current_task().unwrap();
        let r: Result<()> = task_group(|tg| async move {
            let _child = tg.spawn(fail_after::<()>(ms(10), zero_division()))?;
            sleep(secs(10)).await
        })
        .await;
        assert_eq!(group_errors(&r).len(), 1);
        assert_eq!(me.cancelling(), 0, "the group withdrew its own request");
        // And the task is not left with an undelivered cancellation.
        sleep(secs(1)).await?;
        Ok(())
    });
}

#[test]
fn parent_cancelling_is_zero_when_a_child_fails_after_the_body_finished() {
    block_on(async {
        let me = current_task().unwrap();
        let r: Result<()> = task_group(|tg| async move {
            let _child = tg.spawn(fail_after::<()>(ms(10), zero_division()))?;
            let _child = tg.spawn(sleep(secs(10)))?;
            Ok(())
        })
        .await;
        assert_eq!(group_errors(&r).len(), 1);
        assert_eq!(me.cancelling(), 0);
        sleep(secs(1)).await?;
        Ok(())
    });
}

#[test]
fn children_finishing_before_the_body_ends_are_fine() {
    block_on(async {
        let v = task_group(|tg| async move {
            let t = tg.spawn(async { Ok(1) })?;
            sleep(secs(1)).await?;
            assert!(t.done());
            assert_eq!(tg.pending(), 0);
            t.await
        })
        .await?;
        assert_eq!(v, 1);
        Ok(())
    });
}

#[test]
fn task_group_outside_a_task_is_invalid_state() {
    use std::future::Future as _;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let fut = std::pin::pin!(task_group(|_tg| async { Ok(()) }));
    assert!(matches!(
        fut.poll(&mut cx),
        std::task::Poll::Ready(Err(Error::InvalidState(_)))
    ));
}
