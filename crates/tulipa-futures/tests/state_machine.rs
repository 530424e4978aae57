//! Behaviour of `tulipa_futures::state_machine::StateMachine`, ported from gevent_async's
//! `@state` README: the flower (both branches), `transitions_to` validation (`ValidationError`),
//! `on_start` callbacks (the `Object.state` storing example) and the replacement of a state's
//! greenlet by the next one, which in Tulipa is asyncio's cancellation of the state's task.
//!
//! Every test runs on a virtual-time loop.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use common::{block_on, running, ticks};
use tulipa_futures::rt::EventLoop;
use tulipa_futures::state_machine::StateMachine;
use tulipa_futures::sync::Event;
use tulipa_futures::{sleep, Error, Result};

type Log = Rc<RefCell<Vec<String>>>;

fn is_validation<T>(r: &Result<T>) -> bool {
    matches!(r, Err(Error::Validation(_)))
}

// ---------------------------------------------------------------------------------------------
// The seed's flower
// ---------------------------------------------------------------------------------------------

/// The arguments a flower's state is entered with (`dead(is_eaten=True)`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Args {
    is_eaten: bool,
}

/// The seed's flower; `eaten` decides which branch `flowering` takes. Each state logs itself and
/// spends some (virtual) time before moving on.
fn flower(lp: &EventLoop, eaten: bool, log: &Log) -> StateMachine<Args> {
    let l = |log: &Log| log.clone();
    let (l1, l2, l3, l4, l5) = (l(log), l(log), l(log), l(log), l(log));
    StateMachine::<Args>::builder(lp)
        .state("sprouting", &["growing"], move |sm, _| {
            let log = l1.clone();
            async move {
                log.borrow_mut().push("germination".into());
                sleep(Duration::from_secs(1)).await?;
                sm.goto("growing", Args::default())
            }
        })
        .state("growing", &["flowering"], move |sm, _| {
            let log = l2.clone();
            async move {
                log.borrow_mut().push("photosynthesis".into());
                sleep(Duration::from_secs(10)).await?;
                sm.goto("flowering", Args::default())
            }
        })
        .state("flowering", &["dead", "withering"], move |sm, _| {
            let log = l3.clone();
            async move {
                log.borrow_mut().push("grow flowers".into());
                sleep(Duration::from_secs(5)).await?;
                if eaten {
                    sm.goto("dead", Args { is_eaten: true })
                } else {
                    sm.goto("withering", Args::default())
                }
            }
        })
        .state("withering", &["dead"], move |sm, _| {
            let log = l4.clone();
            async move {
                log.borrow_mut().push("dry up".into());
                sleep(Duration::from_secs(3)).await?;
                sm.goto("dead", Args::default())
            }
        })
        .state("dead", &[], move |_, args: Args| {
            let log = l5.clone();
            async move {
                if !args.is_eaten {
                    log.borrow_mut().push("clean up".into());
                }
                Ok(())
            }
        })
        .build()
}

#[test]
fn a_flower_that_is_not_eaten_withers_then_dies_and_cleans_up() {
    block_on(async {
        let lp = running();
        let log = Log::default();
        let f = flower(&lp, false, &log);
        let start = lp.time();
        f.start("sprouting", Args::default())?; // sprouting()  # spawns the initial state
        assert_eq!(f.current(), Some("sprouting"));
        f.wait_terminal().await?;
        assert_eq!(
            f.history(),
            ["sprouting", "growing", "flowering", "withering", "dead"]
        );
        assert_eq!(
            *log.borrow(),
            [
                "germination",
                "photosynthesis",
                "grow flowers",
                "dry up",
                "clean up"
            ]
        );
        assert_eq!(f.current(), Some("dead"));
        assert!(f.is_terminal());
        assert_eq!(lp.time() - start, Duration::from_secs(1 + 10 + 5 + 3));
        Ok(())
    });
}

#[test]
fn an_eaten_flower_dies_from_flowering_with_arguments_and_skips_clean_up() {
    block_on(async {
        let lp = running();
        let log = Log::default();
        let f = flower(&lp, true, &log);
        f.start("sprouting", Args::default())?;
        f.wait_terminal().await?;
        assert_eq!(f.history(), ["sprouting", "growing", "flowering", "dead"]);
        assert_eq!(
            *log.borrow(),
            ["germination", "photosynthesis", "grow flowers"],
            "dead(is_eaten=True) skips the clean-up phase"
        );
        Ok(())
    });
}

#[test]
fn the_current_state_follows_the_flower_as_it_grows() {
    block_on(async {
        let lp = running();
        let f = flower(&lp, false, &Log::default());
        f.start("sprouting", Args::default())?;
        assert!(!f.is_terminal());
        let mut seen = vec![f.current()];
        for secs in [2, 10, 5, 3] {
            sleep(Duration::from_secs(secs)).await?;
            seen.push(f.current());
        }
        assert_eq!(
            seen,
            [
                Some("sprouting"),
                Some("growing"),
                Some("flowering"),
                Some("withering"),
                Some("dead")
            ]
        );
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

#[test]
fn an_undeclared_transition_is_a_validation_error_and_the_machine_stays() {
    block_on(async {
        let lp = running();
        let f = flower(&lp, false, &Log::default());
        f.start("sprouting", Args::default())?;
        sleep(Duration::from_secs(2)).await?;
        assert_eq!(f.current(), Some("growing"));

        // growing only goes to flowering.
        let r = f.goto("dead", Args::default());
        assert!(is_validation(&r), "{r:?}");
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("'growing' -> 'dead'"), "{msg}");
        assert_eq!(f.current(), Some("growing"));
        assert_eq!(f.history(), ["sprouting", "growing"]);

        // The growing state was not disturbed: the flower goes on as before.
        f.wait_terminal().await?;
        assert_eq!(
            f.history(),
            ["sprouting", "growing", "flowering", "withering", "dead"]
        );
        // From a terminal state, nothing is declared.
        assert!(is_validation(&f.goto("sprouting", Args::default())));
        Ok(())
    });
}

#[test]
fn a_state_that_tries_an_undeclared_transition_gets_the_error_and_can_go_on() {
    block_on(async {
        let lp = running();
        let refused = Rc::new(Cell::new(false));
        let r2 = refused.clone();
        let sm = StateMachine::<()>::builder(&lp)
            .state("a", &["b"], move |sm, ()| {
                let refused = r2.clone();
                async move {
                    let r = sm.goto("c", ());
                    refused.set(is_validation(&r));
                    assert_eq!(sm.current(), Some("a"));
                    sm.goto("b", ())
                }
            })
            .state("b", &["c"], |sm, ()| async move { sm.goto("c", ()) })
            .state("c", &[], |_, ()| async { Ok(()) })
            .build();
        sm.start("a", ())?;
        sm.wait_terminal().await?;
        assert!(refused.get());
        assert_eq!(sm.history(), ["a", "b", "c"]);
        Ok(())
    });
}

#[test]
fn an_unknown_state_is_a_validation_error() {
    block_on(async {
        let lp = running();
        let f = flower(&lp, false, &Log::default());
        let r = f.start("seed", Args::default());
        assert!(is_validation(&r), "{r:?}");
        assert!(r.unwrap_err().to_string().contains("unknown state 'seed'"));
        assert_eq!(f.current(), None);

        f.start("sprouting", Args::default())?;
        assert!(is_validation(&f.goto("blooming", Args::default())));
        assert_eq!(f.current(), Some("sprouting"));
        assert_eq!(f.history(), ["sprouting"]);
        Ok(())
    });
}

#[test]
fn goto_before_start_is_a_validation_error() {
    block_on(async {
        let lp = running();
        let f = flower(&lp, false, &Log::default());
        let r = f.goto("growing", Args::default());
        assert!(is_validation(&r), "{r:?}");
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("before the machine started"));
        assert_eq!(f.current(), None);
        assert!(f.history().is_empty());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// on_start callbacks (the seed's Object.state example)
// ---------------------------------------------------------------------------------------------

/// The arguments of `a_state(self, store=False)`.
#[derive(Clone, Copy, Debug)]
struct Store {
    store: bool,
}

#[test]
fn on_start_sees_the_new_state_name_and_arguments_before_it_runs() {
    block_on(async {
        let lp = running();
        // class Object: def __init__(self): self.state = None
        let object_state: Rc<RefCell<Option<String>>> = Rc::default();
        let calls: Rc<RefCell<Vec<(String, bool)>>> = Rc::default();
        let seen_by_state: Rc<RefCell<Option<String>>> = Rc::default();

        let (target, c2, s2, o2) = (
            object_state.clone(),
            calls.clone(),
            seen_by_state.clone(),
            object_state.clone(),
        );
        let sm = StateMachine::<Store>::builder(&lp)
            .state("a_state", &["other_state"], move |_, _| {
                let (seen, obj) = (s2.clone(), o2.clone());
                async move {
                    // The callback ran before the state did.
                    *seen.borrow_mut() = obj.borrow().clone();
                    Ok(())
                }
            })
            .state("other_state", &[], |_, _| async { Ok(()) })
            // def on_transition(new_state, target, *args, **kwargs):
            //     if kwargs.get("store"): target.state = new_state
            .on_start(move |name, args: &Store| {
                c2.borrow_mut().push((name.to_string(), args.store));
                if args.store {
                    *target.borrow_mut() = Some(name.to_string());
                }
            })
            .build();

        // obj.a_state(store=True); sleep()
        sm.start("a_state", Store { store: true })?;
        assert_eq!(object_state.borrow().as_deref(), Some("a_state"));
        ticks(2).await?;
        assert_eq!(seen_by_state.borrow().as_deref(), Some("a_state"));

        // Without store=True, the callback runs but the object keeps its state.
        sm.goto("other_state", Store { store: false })?;
        assert_eq!(object_state.borrow().as_deref(), Some("a_state"));
        assert_eq!(
            *calls.borrow(),
            [
                ("a_state".to_string(), true),
                ("other_state".to_string(), false)
            ]
        );

        // A refused transition does not call on_start.
        assert!(is_validation(&sm.goto("a_state", Store { store: true })));
        assert_eq!(calls.borrow().len(), 2);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Replacement and the terminal state's outcome
// ---------------------------------------------------------------------------------------------

#[test]
fn a_state_replaced_while_it_awaits_gets_cancelled_and_can_clean_up() {
    block_on(async {
        let lp = running();
        let log = Log::default();
        let (l1, l2) = (log.clone(), log.clone());
        let sm = StateMachine::<()>::builder(&lp)
            .state("waiting", &["interrupted"], move |_, ()| {
                let log = l1.clone();
                async move {
                    let r = sleep(Duration::from_secs(3600)).await;
                    match r {
                        Ok(()) => log.borrow_mut().push("woke up".into()),
                        Err(e) => {
                            log.borrow_mut().push(format!("waiting: {e}"));
                            // Clean-up may await: the cancellation was delivered once.
                            sleep(Duration::from_secs(1)).await?;
                            log.borrow_mut().push("waiting: cleaned up".into());
                            return Err(e);
                        }
                    }
                    Ok(())
                }
            })
            .state("interrupted", &[], move |_, ()| {
                let log = l2.clone();
                async move {
                    log.borrow_mut().push("interrupted runs".into());
                    Ok(())
                }
            })
            .build();
        sm.start("waiting", ())?;
        ticks(2).await?;
        let start = lp.time();

        // Another task moves the machine on while `waiting` sleeps.
        sm.goto("interrupted", ())?;
        assert_eq!(sm.current(), Some("interrupted"));
        sm.wait_terminal().await?;
        sleep(Duration::from_secs(2)).await?;

        let log = log.borrow().clone();
        assert!(
            log.contains(&"waiting: cancelled: replaced by the next state".to_string()),
            "{log:?}"
        );
        assert!(log.contains(&"waiting: cleaned up".to_string()), "{log:?}");
        assert!(log.contains(&"interrupted runs".to_string()), "{log:?}");
        assert!(!log.contains(&"woke up".to_string()), "{log:?}");
        assert!(lp.time() - start < Duration::from_secs(3600));
        Ok(())
    });
}

#[test]
fn wait_terminal_returns_the_terminal_states_outcome() {
    block_on(async {
        let lp = running();
        let sm = StateMachine::<u32>::builder(&lp)
            .state("working", &["failed", "done"], |sm, n| async move {
                sleep(Duration::from_secs(1)).await?;
                if n > 2 {
                    sm.goto("failed", n)
                } else {
                    sm.goto("done", n)
                }
            })
            .state("failed", &[], |_, _| async {
                Err(Error::InvalidArgument("too many"))
            })
            .state("done", &[], |_, _| async { Ok(()) })
            .build();
        sm.start("working", 5)?;
        let err = sm.wait_terminal().await.unwrap_err();
        assert!(matches!(err, Error::InvalidArgument("too many")), "{err:?}");
        assert_eq!(sm.current(), Some("failed"));

        // A machine may be started again; this time it ends well.
        sm.start("working", 1)?;
        sm.wait_terminal().await?;
        assert_eq!(sm.current(), Some("done"));
        assert_eq!(sm.history(), ["working", "failed", "working", "done"]);
        Ok(())
    });
}

#[test]
fn wait_terminal_waits_through_a_state_that_blocks_until_an_event() {
    block_on(async {
        let lp = running();
        let go = Event::new();
        let g2 = go.clone();
        let sm = StateMachine::<()>::builder(&lp)
            .state("blocked", &["end"], move |sm, ()| {
                let go = g2.clone();
                async move {
                    go.wait().await?;
                    sm.goto("end", ())
                }
            })
            .state("end", &[], |_, ()| async { Ok(()) })
            .build();
        sm.start("blocked", ())?;
        let sm2 = sm.clone();
        let waiter = tulipa_futures::spawn(async move { sm2.wait_terminal().await })?;
        ticks(5).await?;
        assert!(!waiter.done());
        go.set();
        waiter.await?;
        assert_eq!(sm.current(), Some("end"));
        Ok(())
    });
}

#[test]
fn a_non_terminal_state_that_ends_without_a_transition_fails_wait_terminal() {
    block_on(async {
        let lp = running();
        let sm = StateMachine::<()>::builder(&lp)
            .state("stuck", &["end"], |_, ()| async { Ok(()) })
            .state("end", &[], |_, ()| async { Ok(()) })
            .build();
        sm.start("stuck", ())?;
        let r = sm.wait_terminal().await;
        assert!(is_validation(&r), "{r:?}");
        assert_eq!(sm.current(), Some("stuck"));
        Ok(())
    });
}

#[test]
fn a_replaced_state_cannot_move_the_machine_from_its_clean_up() {
    // In gevent_async the replaced greenlet is gone; here it may still run its clean-up, but it
    // no longer owns the machine: its `goto` is refused and the new state stays.
    block_on(async {
        let lp = running();
        let refused = Rc::new(RefCell::new(None));
        let r2 = refused.clone();
        let sm = StateMachine::<()>::builder(&lp)
            .state("old", &["new"], move |sm, ()| {
                let refused = r2.clone();
                async move {
                    if let Err(e) = sleep(Duration::from_secs(3600)).await {
                        // Clean-up that (wrongly) tries to move on, as if still current.
                        *refused.borrow_mut() = Some(sm.goto("next", ()));
                        return Err(e);
                    }
                    sm.goto("new", ())
                }
            })
            .state("new", &["next"], |_, ()| async {
                sleep(Duration::from_secs(10)).await
            })
            .state("next", &[], |_, ()| async { Ok(()) })
            .build();
        sm.start("old", ())?;
        ticks(2).await?;
        sm.goto("new", ())?;
        ticks(3).await?;
        let r = refused
            .borrow_mut()
            .take()
            .expect("the old state cleaned up");
        assert!(is_validation(&r), "{r:?}");
        assert_eq!(sm.current(), Some("new"));
        assert_eq!(sm.history(), ["old", "new"]);
        Ok(())
    });
}
