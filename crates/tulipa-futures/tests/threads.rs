//! vanilla's `h.thread` (`tulipa_futures::threads`): the examples of vanilla's docs (ticker,
//! `thread.call(add, 2, 3)`, the pool sleeper gathered by a router, `Pool.wrap`), then the
//! contract of child threads, one-off calls and pools. Completion order is forced with channels,
//! never with sleeps.

use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, SystemTime};

use tulipa_futures::message::{self, Pair};
use tulipa_futures::{run, sleep, threads, Error, Result};

// ---- vanilla's examples ---------------------------------------------------------------------

#[test]
fn vanilla_ticker_child_sends_until_the_parent_leaves() {
    run(async {
        let child = threads::spawn(|parent: Pair<SystemTime, ()>| async move {
            loop {
                if parent.send(SystemTime::now()).await.is_err() {
                    return Ok(()); // the parent stopped listening
                }
                sleep(Duration::from_millis(1)).await?;
            }
        })?;
        let mut last = SystemTime::UNIX_EPOCH;
        for _ in 0..3 {
            let t = child.recv().await?;
            assert!(t >= last);
            last = t;
        }
        child.join().await
    })
    .unwrap();
}

#[test]
fn vanilla_thread_call_add() {
    fn add(a: i32, b: i32) -> i32 {
        a + b
    }
    let five = run(async { threads::call(|| add(2, 3))?.recv().await }).unwrap();
    assert_eq!(five, 5);
}

#[test]
fn vanilla_pool_sleeper_gathers_in_completion_order() {
    // vanilla: sleepers of 0.2, 0.1 and 0.05 s on a pool of 2 come back 0.1, 0.05, 0.2. Here each
    // job waits for its own go-ahead instead of sleeping, and the test gives the go-aheads in
    // that completion order.
    run(async {
        let p = threads::pool(2);
        let (gather_tx, gather) = message::router();
        let mut go = Vec::new();
        for x in [0.2, 0.1, 0.05] {
            let (tx, rx) = mpsc::channel::<()>();
            go.push(tx);
            let sleeper = move || {
                rx.recv().ok();
                x
            };
            let _forwarder = p.call(sleeper)?.pipe(gather_tx.clone())?;
        }
        drop(gather_tx);
        go[1].send(()).ok();
        assert_eq!(gather.recv().await?, 0.1);
        go[2].send(()).ok(); // runs on the thread the 0.1 sleeper freed
        assert_eq!(gather.recv().await?, 0.05);
        go[0].send(()).ok();
        assert_eq!(gather.recv().await?, 0.2);
        assert!(
            matches!(gather.recv().await, Err(Error::Closed)),
            "every source is done"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn vanilla_pool_wrap_runs_calls_on_the_shared_object() {
    struct Db {
        posts: Vec<(&'static str, &'static str)>,
        queries: u32,
    }
    run(async {
        let p = threads::pool(2);
        let db = p.wrap(Db {
            posts: vec![("Mike", "My first blog post!"), ("Eliot", "MongoDB is fun")],
            queries: 0,
        });
        let response = db.call(|db| {
            db.queries += 1;
            db.posts
                .iter()
                .find(|(author, _)| *author == "Mike")
                .map(|(_, text)| *text)
        })?;
        assert_eq!(response.recv().await?, Some("My first blog post!"));
        assert_eq!(db.call(|db| db.queries)?.recv().await?, 1);
        Ok(())
    })
    .unwrap();
}

// ---- child threads --------------------------------------------------------------------------

#[test]
fn child_runs_its_own_loop_on_another_thread() {
    run(async {
        let here = std::thread::current().id();
        let parent_loop = tulipa_futures::rt::EventLoop::running()?.id();
        let child = threads::spawn(
            |parent: Pair<(std::thread::ThreadId, u64), ()>| async move {
                let lp = tulipa_futures::rt::EventLoop::running()?;
                parent.send((std::thread::current().id(), lp.id())).await
            },
        )?;
        let (there, child_loop) = child.recv().await?;
        assert_ne!(here, there);
        assert_ne!(parent_loop, child_loop);
        child.join().await
    })
    .unwrap();
}

#[test]
fn child_and_parent_talk_both_ways_until_the_parent_closes() {
    run(async {
        let child = threads::spawn(|parent: Pair<String, String>| async move {
            loop {
                match parent.recv().await {
                    Ok(s) => parent.send(s.to_uppercase()).await?,
                    Err(Error::Closed) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })?;
        for word in ["tulip", "vanilla", "asyncio"] {
            child.send(word.to_owned()).await?;
            assert_eq!(child.recv().await?, word.to_uppercase());
        }
        child.sender.close();
        assert!(
            matches!(child.recv().await, Err(Error::Closed)),
            "the child returned"
        );
        child.join().await
    })
    .unwrap();
}

#[test]
fn child_pipes_carry_many_items() {
    run(async {
        let child = threads::spawn(|parent: Pair<u64, u64>| async move {
            let mut sum = 0;
            while let Ok(i) = parent.recv().await {
                sum += i;
            }
            parent.send(sum).await
        })?;
        for i in 0..10_000 {
            child.send(i).await?;
        }
        child.sender.close();
        assert_eq!(child.recv().await?, (0..10_000).sum::<u64>());
        child.join().await
    })
    .unwrap();
}

#[test]
fn child_error_and_panic_come_back_through_join() {
    run(async {
        let failing =
            threads::spawn(|_: Pair<(), ()>| async { Err(Error::InvalidState("child failed")) })?;
        assert!(matches!(
            failing.join().await,
            Err(Error::InvalidState("child failed"))
        ));
        let panicking = threads::spawn(|_: Pair<(), ()>| async {
            if true {
                panic!("child panicked");
            }
            Ok(())
        })?;
        let err = panicking.join().await.unwrap_err();
        assert!(
            matches!(&err, Error::Panicked(m) if m.contains("child panicked")),
            "{err}"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn child_end_closes_its_pipes() {
    run(async {
        let child = threads::spawn(|parent: Pair<u8, u8>| async move {
            parent.send(1).await // then returns: its ends are dropped
        })?;
        assert_eq!(child.recv().await?, 1);
        assert!(matches!(child.recv().await, Err(Error::Closed)));
        assert!(matches!(child.send(2).await, Err(Error::Closed)));
        child.join().await
    })
    .unwrap();
}

// ---- one-off calls and pools ----------------------------------------------------------------

#[test]
fn call_gives_one_result_then_closed() {
    run(async {
        let rx = threads::call(|| "once")?;
        assert_eq!(rx.recv().await?, "once");
        assert!(matches!(rx.recv().await, Err(Error::Closed)));
        Ok(())
    })
    .unwrap();
}

#[test]
fn call_that_panics_closes_with_panicked() {
    run(async {
        let rx = threads::call(|| -> u8 { panic!("boom") })?;
        let err = rx.recv().await.unwrap_err();
        assert!(
            matches!(&err, Error::Panicked(m) if m.contains("boom")),
            "{err}"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn pool_runs_calls_in_parallel_up_to_its_size() {
    run(async {
        let p = threads::pool(2);
        assert_eq!(p.size(), 2);
        // Both calls must be running at the same time to get past the barrier.
        let barrier = Arc::new(Barrier::new(2));
        let calls: Vec<_> = (0..2)
            .map(|i| {
                let b = barrier.clone();
                p.call(move || {
                    b.wait();
                    i
                })
            })
            .collect::<Result<_>>()?;
        let mut got = Vec::new();
        for c in calls {
            got.push(c.recv().await?);
        }
        assert_eq!(got, [0, 1]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn pool_results_gathered_by_a_router() {
    run(async {
        let p = threads::pool(3);
        let (tx, gather) = message::router();
        for i in 0..20u32 {
            let _forwarder = p.call(move || i * i)?.pipe(tx.clone())?;
        }
        drop(tx);
        let mut got = Vec::new();
        while let Ok(v) = gather.recv().await {
            got.push(v);
        }
        got.sort_unstable();
        assert_eq!(got, (0..20u32).map(|i| i * i).collect::<Vec<_>>());
        Ok(())
    })
    .unwrap();
}

#[test]
fn wrapped_object_survives_a_panicking_call() {
    run(async {
        let p = threads::pool(1);
        let counter = p.wrap(0u32);
        counter.call(|c| *c += 1)?.recv().await?;
        let err = counter
            .call(|_| -> () { panic!("bad call") })?
            .recv()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Panicked(_)));
        counter.call(|c| *c += 1)?.recv().await?;
        assert_eq!(counter.call(|c| *c)?.recv().await?, 2);
        Ok(())
    })
    .unwrap();
}

#[test]
fn pool_refuses_calls_after_shutdown() {
    run(async {
        let p = threads::pool(1);
        p.shutdown(false);
        assert!(matches!(p.call(|| 1), Err(Error::ExecutorShutdown)));
        Ok(())
    })
    .unwrap();
}
