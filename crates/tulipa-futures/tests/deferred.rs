//! Behaviour of `tulipa_futures::deferred::Deferred`, ported from gevent_async's
//! `DeferredCallHandler` README: the `Manager` example, `Lemming` (exceptions), `ABitSlow`
//! (timeouts), `process(forever, whitelist)`, `stop_processing` and direct ("at your own risk")
//! access to the state.
//!
//! Every test runs on a virtual-time loop: the ten-second call of `ABitSlow` takes no real time.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use common::{block_on, running, ticks};
use tulipa_futures::deferred::Deferred;
use tulipa_futures::rt::{EventLoop, ExceptionContext};
use tulipa_futures::{sleep, spawn, Error, Result};

/// What the exception handler was told: (message, source, error or panic text).
type Reports = Rc<RefCell<Vec<(String, Option<String>, String)>>>;

/// Installs an exception handler on the running loop that records every context.
fn capture_reports() -> Reports {
    let reports: Reports = Rc::default();
    let r2 = reports.clone();
    running().set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        let detail = match (&ctx.error, &ctx.panic) {
            (Some(e), _) => e.to_string(),
            (None, Some(p)) => p.clone(),
            (None, None) => String::new(),
        };
        r2.borrow_mut()
            .push((ctx.message.clone(), ctx.source.clone(), detail));
    }));
    reports
}

/// A call body that records `name` in `log`.
fn logger(log: &Rc<RefCell<Vec<&'static str>>>, name: &'static str) -> impl FnOnce() {
    let log = log.clone();
    move || log.borrow_mut().push(name)
}

// ---------------------------------------------------------------------------------------------
// The seed's Manager
// ---------------------------------------------------------------------------------------------

/// The resources a `Manager` keeps: per-resource values and their total. The invariant is
/// `total == sum(values)`; a management step breaks it while it runs (it recomputes the total
/// piece by piece, across awaits) and restores it before it processes calls.
#[derive(Default)]
struct Resources {
    values: RefCell<BTreeMap<&'static str, u64>>,
    total: Cell<u64>,
    managing: Cell<bool>,
    steps: Cell<u32>,
}

impl Resources {
    fn consistent(&self) -> bool {
        !self.managing.get() && self.total.get() == self.values.borrow().values().sum::<u64>()
    }
}

/// One step of the manager: manage (with awaits, state incoherent meanwhile), then process the
/// pending calls.
async fn manage(manager: &Deferred<Resources>) -> Result<()> {
    let res = manager.state().clone();
    res.managing.set(true);
    res.total.set(0);
    let snapshot: Vec<u64> = res.values.borrow().values().copied().collect();
    for v in snapshot {
        sleep(Duration::from_millis(1)).await?;
        res.total.set(res.total.get() + v);
    }
    res.managing.set(false);
    res.steps.set(res.steps.get() + 1);
    manager.process(false, None).await
}

#[test]
fn manager_applies_oneway_updates_from_monitors_and_sync_access_sees_a_consistent_state() {
    block_on(async {
        let manager = Deferred::new(Resources::default());
        let running_flag = Rc::new(Cell::new(true));

        // gevent.spawn(manager.run)
        let (m, flag) = (manager.clone(), running_flag.clone());
        let owner = spawn(async move {
            while flag.get() {
                manage(&m).await?;
                sleep(Duration::from_millis(2)).await?;
            }
            Ok(())
        })?;

        // for resource in resources: gevent.spawn(monitor, resource)
        let mut monitors = Vec::new();
        for (name, period_ms) in [("disk", 3u64), ("cpu", 5), ("net", 7)] {
            let m = manager.clone();
            monitors.push(spawn(async move {
                for event in 1..=10u64 {
                    sleep(Duration::from_millis(period_ms)).await?;
                    m.oneway("update_resource", move |res: Rc<Resources>| async move {
                        let old = res.values.borrow_mut().insert(name, event).unwrap_or(0);
                        res.total.set(res.total.get() - old + event);
                        Ok(())
                    });
                }
                Ok(())
            })?);
        }

        // consumer(): every sync access sees the resources properly managed.
        let mut incoherent_direct_reads = 0;
        let mut accesses = 0;
        while monitors.iter().any(|t| !t.done()) {
            let (ok, total) = manager
                .sync("access_resources", None, |res: Rc<Resources>| async move {
                    Ok((res.consistent(), res.total.get()))
                })
                .await?;
            assert!(ok, "a sync access saw the manager mid-step (total {total})");
            accesses += 1;
            // Direct access does not wait for the manager: it may see it mid-step.
            for _ in 0..3 {
                sleep(Duration::from_millis(1)).await?;
                if !manager.state().consistent() {
                    incoherent_direct_reads += 1;
                }
            }
        }
        for t in monitors {
            t.await?;
        }

        // Every update was applied: the last event of each monitor is 10.
        let values = manager
            .sync("access_resources", None, |res: Rc<Resources>| async move {
                assert!(res.consistent());
                Ok(res.values.borrow().clone())
            })
            .await?;
        assert_eq!(
            values,
            BTreeMap::from([("cpu", 10), ("disk", 10), ("net", 10)])
        );
        assert!(accesses > 5, "the consumer ran while the monitors did");
        assert!(
            incoherent_direct_reads > 0,
            "direct reads do catch the manager mid-step"
        );
        assert!(manager.state().steps.get() > 5);

        running_flag.set(false);
        owner.await
    });
}

#[test]
fn direct_state_access_bypasses_the_mailbox() {
    block_on(async {
        let manager = Deferred::new(RefCell::new(vec![1, 2, 3]));
        // Nobody processes calls, yet the state can be read (and written) directly.
        manager.oneway("push", |v: Rc<RefCell<Vec<i32>>>| async move {
            v.borrow_mut().push(4);
            Ok(())
        });
        assert_eq!(*manager.state().borrow(), [1, 2, 3]);
        manager.state().borrow_mut().push(9);
        assert_eq!(manager.pending(), 1);
        manager.process(false, None).await?;
        assert_eq!(*manager.state().borrow(), [1, 2, 3, 9, 4]);
        assert!(Rc::ptr_eq(
            manager.state(),
            &manager.clone().state().clone()
        ));
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Exceptions (the seed's Lemming)
// ---------------------------------------------------------------------------------------------

async fn kaboom(_: Rc<()>) -> Result<()> {
    Err(Error::InvalidArgument("#high pitched# oh no!"))
}

#[test]
fn lemming_sync_error_reaches_the_caller_and_oneway_error_the_exception_handler() {
    block_on(async {
        let reports = capture_reports();
        let lemming = Deferred::new(());
        let owner_side = lemming.clone();
        // spawn(lemming.process, forever=True)
        let owner = spawn(async move { owner_side.process(true, None).await })?;

        // try: lemming.sync.kaboom() except Exception: pass  # We should hit that
        let err = lemming.sync("kaboom", None, kaboom).await.unwrap_err();
        assert!(matches!(
            err,
            Error::InvalidArgument("#high pitched# oh no!")
        ));
        assert!(reports.borrow().is_empty(), "a sync error is the caller's");

        // lemming.oneway.kaboom()  # produces an exception log entry
        lemming.oneway("kaboom", kaboom);
        // A sync call posted after it runs after it: once it returns, the oneway call has run.
        lemming.sync("flush", None, |_| async { Ok(()) }).await?;
        let got = reports.borrow().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        let (message, source, detail) = &got[0];
        assert_eq!(message, "a oneway deferred call failed");
        assert_eq!(source.as_deref(), Some("deferred call 'kaboom'"));
        assert!(detail.contains("#high pitched# oh no!"), "{detail}");

        // The lemming is still processing.
        assert_eq!(lemming.sync("alive", None, |_| async { Ok(7) }).await?, 7);
        lemming.stop_processing();
        owner.await
    });
}

#[test]
fn a_panicking_oneway_call_is_reported_and_the_owner_keeps_processing() {
    block_on(async {
        let reports = capture_reports();
        let d = Deferred::new(Cell::new(0u32));
        let owner_side = d.clone();
        let owner = spawn(async move { owner_side.process(true, None).await })?;

        d.oneway("explode", |_| async { panic!("the call blew up") });
        d.oneway("count", |n: Rc<Cell<u32>>| async move {
            n.set(n.get() + 1);
            Ok(())
        });
        assert_eq!(
            d.sync("read", None, |n| async move { Ok(n.get()) }).await?,
            1
        );

        let got = reports.borrow().clone();
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, "a deferred call panicked");
        assert_eq!(got[0].1.as_deref(), Some("deferred call 'explode'"));
        assert!(got[0].2.contains("the call blew up"), "{}", got[0].2);
        assert!(!owner.done(), "the owner task survived the panic");
        d.stop_processing();
        owner.await
    });
}

#[test]
fn a_panicking_sync_call_gives_the_caller_panicked_and_the_owner_keeps_processing() {
    block_on(async {
        let d = Deferred::new(());
        let owner_side = d.clone();
        let owner = spawn(async move { owner_side.process(true, None).await })?;

        // A generous limit, so that a lost result fails the test instead of hanging it.
        let err = d
            .sync("explode", Some(Duration::from_secs(60)), |_| async {
                if true {
                    panic!("sync call blew up");
                }
                Ok(())
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Panicked(m) if m.contains("sync call blew up")),
            "{err:?}"
        );
        assert_eq!(d.sync("alive", None, |_| async { Ok(1) }).await?, 1);
        d.stop_processing();
        owner.await
    });
}

// ---------------------------------------------------------------------------------------------
// Timeouts (the seed's ABitSlow)
// ---------------------------------------------------------------------------------------------

async fn taking_my_time(done: Rc<Cell<bool>>) -> Result<()> {
    sleep(Duration::from_secs(10)).await?;
    done.set(true);
    Ok(())
}

#[test]
fn a_bit_slow_sync_with_timeout_gives_timeout_while_the_call_runs_on() {
    block_on(async {
        let lp = running();
        let slow = Deferred::new(Cell::new(false));
        let owner_side = slow.clone();
        let owner = spawn(async move { owner_side.process(true, None).await })?;

        let start = lp.time();
        // try: slow.sync(timeout=1).taking_my_time() except gevent.Timeout: pass
        let err = slow
            .sync(
                "taking_my_time",
                Some(Duration::from_secs(1)),
                taking_my_time,
            )
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(lp.time() - start, Duration::from_secs(1));
        assert!(!slow.state().get(), "the call is still sleeping");

        // It had started, so it runs to its end; the next call waits for it.
        let finished = slow
            .sync("check", None, |done: Rc<Cell<bool>>| async move {
                Ok(done.get())
            })
            .await?;
        assert!(finished);
        assert_eq!(lp.time() - start, Duration::from_secs(10));
        slow.stop_processing();
        owner.await
    });
}

#[test]
fn a_sync_call_that_timed_out_before_it_started_is_withdrawn() {
    block_on(async {
        let slow = Deferred::new(Cell::new(false));
        let owner_side = slow.clone();
        let owner = spawn(async move { owner_side.process(true, None).await })?;
        // Keep the owner busy for ten seconds.
        slow.oneway("taking_my_time", taking_my_time);
        ticks(2).await?;
        assert_eq!(slow.pending(), 0, "the slow call has started");

        let ran = Rc::new(Cell::new(false));
        let r2 = ran.clone();
        let err = slow
            .sync(
                "too_late",
                Some(Duration::from_secs(1)),
                move |_| async move {
                    r2.set(true);
                    Ok(())
                },
            )
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(
            slow.pending(),
            0,
            "the call that never started is withdrawn"
        );

        // Once the slow call is over, the withdrawn one does not run.
        slow.sync("after", None, |_| async { Ok(()) }).await?;
        assert!(slow.state().get());
        assert!(!ran.get());
        slow.stop_processing();
        owner.await
    });
}

#[test]
fn cancelling_a_task_blocked_in_sync_withdraws_its_call() {
    block_on(async {
        let d = Deferred::new(());
        let ran = Rc::new(Cell::new(false));
        let (d2, r2) = (d.clone(), ran.clone());
        let caller = spawn(async move {
            d2.sync("never", None, move |_| async move {
                r2.set(true);
                Ok(())
            })
            .await
        })?;
        ticks(2).await?;
        assert_eq!(d.pending(), 1);
        caller.cancel(None);
        assert!(caller.clone().await.unwrap_err().is_cancelled());
        assert_eq!(d.pending(), 0);
        d.process(false, None).await?;
        assert!(!ran.get());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// process(forever, whitelist) and stop_processing
// ---------------------------------------------------------------------------------------------

#[test]
fn calls_run_in_posting_order() {
    block_on(async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let d = Deferred::new(());
        for name in ["a", "b", "c", "d"] {
            let f = logger(&log, name);
            d.oneway(name, move |_| async move {
                f();
                Ok(())
            });
        }
        // A sync call posted from another task lines up behind them.
        let (d2, f) = (d.clone(), logger(&log, "sync"));
        let caller = spawn(async move {
            d2.sync("sync", None, move |_| async move {
                f();
                Ok(())
            })
            .await
        })?;
        ticks(2).await?;
        let f = logger(&log, "e");
        d.oneway("e", move |_| async move {
            f();
            Ok(())
        });
        d.process(false, None).await?;
        caller.await?;
        assert_eq!(*log.borrow(), ["a", "b", "c", "d", "sync", "e"]);
        Ok(())
    });
}

#[test]
fn process_without_forever_runs_what_is_queued_and_returns() {
    block_on(async {
        let lp = running();
        let log = Rc::new(RefCell::new(Vec::new()));
        let d = Deferred::new(());

        // Nothing queued: returns at once, without waiting.
        let start = lp.time();
        d.process(false, None).await?;
        assert_eq!(lp.time(), start);

        for name in ["one", "two", "three"] {
            let f = logger(&log, name);
            d.oneway(name, move |_| async move {
                f();
                Ok(())
            });
        }
        d.process(false, None).await?;
        assert_eq!(*log.borrow(), ["one", "two", "three"]);
        assert_eq!(d.pending(), 0);

        // A call posted later waits for the next process.
        let f = logger(&log, "four");
        d.oneway("four", move |_| async move {
            f();
            Ok(())
        });
        ticks(3).await?;
        assert_eq!(d.pending(), 1);
        assert_eq!(log.borrow().len(), 3);
        d.process(false, None).await?;
        assert_eq!(log.borrow().last(), Some(&"four"));
        Ok(())
    });
}

#[test]
fn a_whitelist_runs_only_the_named_calls_and_leaves_the_others_queued_in_order() {
    block_on(async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let d = Deferred::new(());
        for (name, tag) in [
            ("a", "a1"),
            ("b", "b1"),
            ("a", "a2"),
            ("c", "c1"),
            ("b", "b2"),
        ] {
            let f = logger(&log, tag);
            d.oneway(name, move |_| async move {
                f();
                Ok(())
            });
        }
        d.process(false, Some(&["a"])).await?;
        assert_eq!(*log.borrow(), ["a1", "a2"]);
        assert_eq!(d.pending(), 3);
        d.process(false, Some(&["c", "b"])).await?;
        assert_eq!(*log.borrow(), ["a1", "a2", "b1", "c1", "b2"]);
        assert_eq!(d.pending(), 0);
        Ok(())
    });
}

#[test]
fn forever_with_a_whitelist_waits_for_allowed_calls_only() {
    block_on(async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let d = Deferred::new(());
        let owner_side = d.clone();
        let owner = spawn(async move { owner_side.process(true, Some(&["urgent"])).await })?;
        for (name, tag) in [("later", "l1"), ("urgent", "u1"), ("later", "l2")] {
            let f = logger(&log, tag);
            d.oneway(name, move |_| async move {
                f();
                Ok(())
            });
        }
        ticks(5).await?;
        assert_eq!(*log.borrow(), ["u1"]);
        assert_eq!(d.pending(), 2);
        assert!(!owner.done(), "still waiting for urgent calls");

        d.stop_processing();
        owner.await?;
        d.process(false, None).await?;
        assert_eq!(*log.borrow(), ["u1", "l1", "l2"]);
        Ok(())
    });
}

#[test]
fn stop_processing_ends_process_forever() {
    block_on(async {
        let d = Deferred::new(Cell::new(0u32));
        let owner_side = d.clone();
        let owner = spawn(async move { owner_side.process(true, None).await })?;
        for _ in 0..3 {
            d.oneway("inc", |n: Rc<Cell<u32>>| async move {
                n.set(n.get() + 1);
                Ok(())
            });
        }
        assert_eq!(
            d.sync("read", None, |n| async move { Ok(n.get()) }).await?,
            3
        );
        ticks(3).await?;
        assert!(!owner.done(), "process(forever) waits for more calls");

        d.stop_processing();
        owner.await?;

        // Nobody processes any more: calls stay queued.
        d.oneway("inc", |n: Rc<Cell<u32>>| async move {
            n.set(n.get() + 1);
            Ok(())
        });
        ticks(3).await?;
        assert_eq!(d.pending(), 1);
        assert_eq!(d.state().get(), 3);
        Ok(())
    });
}

#[test]
fn stop_processing_from_inside_a_call_returns_after_that_call() {
    block_on(async {
        let log = Rc::new(RefCell::new(Vec::new()));
        let d = Deferred::new(());
        let stopper = d.clone();
        let f = logger(&log, "stop");
        d.oneway("stop", move |_| async move {
            f();
            stopper.stop_processing();
            Ok(())
        });
        let f = logger(&log, "after");
        d.oneway("after", move |_| async move {
            f();
            Ok(())
        });
        d.process(true, None).await?;
        assert_eq!(*log.borrow(), ["stop"]);
        assert_eq!(d.pending(), 1);
        Ok(())
    });
}

#[test]
fn cancelling_the_owner_in_process_forever_leaves_calls_queued() {
    block_on(async {
        let d = Deferred::new(());
        let owner_side = d.clone();
        let owner = spawn(async move { owner_side.process(true, None).await })?;
        ticks(2).await?;
        owner.cancel(None);
        assert!(owner.clone().await.unwrap_err().is_cancelled());
        d.oneway("queued", |_| async { Ok(()) });
        assert_eq!(d.pending(), 1);
        Ok(())
    });
}
