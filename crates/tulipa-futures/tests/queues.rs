//! Behaviour of `tulipa_futures::queue::Queue`, ported from CPython's
//! `Lib/test/test_asyncio/test_queues.py` (QueueBasicTests, QueueGetTests, QueuePutTests,
//! LifoQueueTests, PriorityQueueTests, _QueueJoinTestMixin, _QueueShutdownTestMixin), plus a
//! seeded stress test with producers, consumers and random cancellations.
//!
//! Every test runs on a virtual-time loop and interleaves tasks with `sleep(Duration::ZERO)`, so
//! the orderings are deterministic and nothing sleeps for real.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tulipa_futures::queue::Queue;
use tulipa_futures::rt::EventLoop;
use tulipa_futures::{current_task, run_until_complete, sleep, spawn, Error, Result, Task};

/// Runs `fut` as the main task of a fresh virtual-time loop and returns its value.
///
/// A deadlock (every task waiting, nothing scheduled) lets virtual time jump to a watchdog that
/// stops the loop, so a lost wake-up fails the test at once instead of hanging it.
fn block_on<T: 'static>(fut: impl std::future::Future<Output = Result<T>> + 'static) -> T {
    let lp = EventLoop::new_virtual().expect("a virtual-time loop");
    let lp2 = lp.clone();
    let _watchdog = lp
        .call_later(Duration::from_secs(24 * 3600), move || lp2.stop())
        .expect("scheduling the watchdog");
    let out = run_until_complete(&lp, fut);
    let _ = lp.close();
    out.expect("the test's main task failed")
}

/// Lets every other ready task take `n` steps.
async fn ticks(n: usize) -> Result<()> {
    for _ in 0..n {
        sleep(Duration::ZERO).await?;
    }
    Ok(())
}

fn is_cancelled<T>(r: &Result<T>) -> bool {
    matches!(r, Err(e) if e.is_cancelled())
}

/// True when no getter and no putter is queued (no stale waiter left behind).
fn no_waiters<T>(q: &Queue<T>) -> bool {
    let d = format!("{q:?}");
    d.contains("getters: 0") && d.contains("putters: 0")
}

fn getter<T: 'static>(q: &Queue<T>) -> Result<Task<T>> {
    let q = q.clone();
    spawn(async move { q.get().await })
}

fn putter<T: 'static>(q: &Queue<T>, item: T) -> Result<Task<()>> {
    let q = q.clone();
    spawn(async move { q.put(item).await })
}

fn drain<T>(q: &Queue<T>) -> Vec<T> {
    std::iter::from_fn(|| q.get_nowait().ok()).collect()
}

// ---------------------------------------------------------------------------------------------
// Basics: order, size (QueueBasicTests, LifoQueueTests, PriorityQueueTests)
// ---------------------------------------------------------------------------------------------

#[test]
fn fifo_queue_order() {
    let q = Queue::new(0);
    for i in [1, 3, 2] {
        q.put_nowait(i).unwrap();
    }
    assert_eq!(drain(&q), [1, 3, 2]);
}

#[test]
fn lifo_queue_order() {
    let q = Queue::lifo(0);
    for i in [1, 3, 2] {
        q.put_nowait(i).unwrap();
    }
    assert_eq!(drain(&q), [2, 3, 1]);
}

#[test]
fn priority_queue_order() {
    let q = Queue::priority(0);
    for i in [1, 3, 2] {
        q.put_nowait(i).unwrap();
    }
    assert_eq!(drain(&q), [1, 2, 3]);

    // (priority, payload) pairs, as asyncio's documentation suggests.
    let q = Queue::priority(0);
    for p in [(5, "low"), (1, "urgent"), (3, "normal"), (1, "also urgent")] {
        q.put_nowait(p).unwrap();
    }
    assert_eq!(
        drain(&q),
        [(1, "also urgent"), (1, "urgent"), (3, "normal"), (5, "low")]
    );
}

/// test_empty / test_full / test_maxsize.
#[test]
fn qsize_empty_full_and_maxsize() {
    let q = Queue::new(0);
    assert!(q.empty() && !q.full());
    assert_eq!(q.maxsize(), 0);
    for i in 0..1000 {
        q.put_nowait(i).unwrap();
    }
    assert!(!q.full(), "maxsize 0 is unbounded");
    assert_eq!(q.qsize(), 1000);

    let q = Queue::new(2);
    assert_eq!(q.maxsize(), 2);
    q.put_nowait(1).unwrap();
    assert!(!q.empty() && !q.full());
    q.put_nowait(2).unwrap();
    assert!(q.full());
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get_nowait().unwrap(), 1);
    assert!(!q.full());
}

/// test_nonblocking_put_exception / test_nonblocking_get_exception.
#[test]
fn nowait_on_full_or_empty_fails() {
    let q = Queue::new(1);
    assert!(matches!(q.get_nowait(), Err(Error::QueueEmpty)));
    q.put_nowait(1).unwrap();
    assert!(matches!(q.put_nowait(2), Err(Error::QueueFull)));
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_nowait().unwrap(), 1);
    assert!(matches!(q.get_nowait(), Err(Error::QueueEmpty)));

    let q = Queue::lifo(1);
    q.put_nowait(1).unwrap();
    assert!(matches!(q.put_nowait(2), Err(Error::QueueFull)));
    let q = Queue::priority(1);
    q.put_nowait(1).unwrap();
    assert!(matches!(q.put_nowait(2), Err(Error::QueueFull)));
}

// ---------------------------------------------------------------------------------------------
// Waiting get and put (QueueGetTests, QueuePutTests)
// ---------------------------------------------------------------------------------------------

/// test_blocking_get / test_blocking_put: no waiting when there is an item / room.
#[test]
fn get_and_put_return_at_once_when_possible() {
    block_on(async {
        let q = Queue::new(0);
        q.put(1).await?;
        q.put(2).await?;
        assert_eq!(q.get().await?, 1);
        assert_eq!(q.get().await?, 2);
        Ok(())
    })
}

/// test_blocking_get_wait: a get waits until an item is put.
#[test]
fn get_waits_until_a_put() {
    block_on(async {
        let q = Queue::new(0);
        let g = getter(&q)?;
        ticks(3).await?;
        assert!(!g.done());
        q.put_nowait("item")?;
        assert_eq!(g.await?, "item");
        assert!(q.empty());
        assert!(no_waiters(&q));
        Ok(())
    })
}

/// test_maxsize / test_blocking_put_wait: back-pressure; a put on a full queue waits for a get.
#[test]
fn put_waits_while_full_until_a_get() {
    block_on(async {
        let q = Queue::new(2);
        let have_been_put = Rc::new(RefCell::new(Vec::new()));
        let p = {
            let (q, log) = (q.clone(), have_been_put.clone());
            spawn(async move {
                for i in 0..3 {
                    q.put(i).await?;
                    log.borrow_mut().push(i);
                }
                Ok(())
            })?
        };
        ticks(3).await?;
        assert_eq!(
            *have_been_put.borrow(),
            [0, 1],
            "the putter is blocked after two items"
        );
        assert!(q.full());
        assert_eq!(q.get_nowait()?, 0);
        ticks(3).await?;
        assert_eq!(*have_been_put.borrow(), [0, 1, 2]);
        p.await?;
        assert_eq!(drain(&q), [1, 2]);
        Ok(())
    })
}

/// test_get_with_waiting_putters.
#[test]
fn get_with_waiting_putters() {
    block_on(async {
        let q = Queue::new(1);
        let pa = putter(&q, "a")?;
        let pb = putter(&q, "b")?;
        ticks(2).await?;
        assert_eq!(q.get().await?, "a");
        assert_eq!(q.get().await?, "b");
        pa.await?;
        pb.await?;
        assert!(no_waiters(&q));
        Ok(())
    })
}

/// test_put_with_waiting_getters.
#[test]
fn put_with_waiting_getters() {
    block_on(async {
        let q = Queue::new(0);
        let g = getter(&q)?;
        ticks(1).await?;
        q.put("a").await?;
        assert_eq!(g.await?, "a");
        Ok(())
    })
}

/// Getters and putters are served in the order they came.
#[test]
fn waiting_getters_and_putters_are_served_fifo() {
    block_on(async {
        let q = Queue::new(0);
        let gs = (0..4).map(|_| getter(&q)).collect::<Result<Vec<_>>>()?;
        ticks(1).await?;
        for i in 0..4 {
            q.put_nowait(i)?;
        }
        let mut got = Vec::new();
        for g in gs {
            got.push(g.await?);
        }
        assert_eq!(got, [0, 1, 2, 3]);

        let q = Queue::new(1);
        q.put_nowait(-1)?;
        let mut ps = Vec::new();
        for i in 0..4 {
            ps.push(putter(&q, i)?);
            ticks(1).await?;
        }
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(q.get().await?);
        }
        assert_eq!(got, [-1, 0, 1, 2, 3]);
        for p in ps {
            p.await?;
        }
        Ok(())
    })
}

/// A get arriving while a woken getter has not run yet queues behind it (FIFO), and is not
/// stranded: once the first getter has its item, the next item goes to the newcomer.
#[test]
fn getter_queued_behind_a_woken_getter_gets_the_next_item() {
    block_on(async {
        let q = Queue::new(0);
        let g1 = getter(&q)?;
        ticks(1).await?;
        q.put_nowait(1)?; // wakes g1
        q.put_nowait(2)?; // nobody else waits yet
        let second = q.get().await?; // queues behind g1, which has not run yet
        assert_eq!(g1.await?, 1);
        assert_eq!(second, 2);
        assert!(no_waiters(&q));
        Ok(())
    })
}

/// As above for putters: a put arriving while a woken putter has not run yet queues behind it,
/// and gets the slot still free once that putter is done.
#[test]
fn putter_queued_behind_a_woken_putter_gets_the_next_slot() {
    block_on(async {
        let q = Queue::new(2);
        q.put_nowait(0)?;
        q.put_nowait(1)?;
        let p1 = putter(&q, 2)?;
        ticks(1).await?;
        assert_eq!(q.get_nowait()?, 0); // wakes p1
        assert_eq!(q.get_nowait()?, 1); // a second free slot, nobody else waits yet
        q.put(3).await?; // queues behind p1, which has not run yet
        p1.await?;
        assert_eq!(drain(&q), [2, 3]);
        assert!(no_waiters(&q));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Cancellation (test_get_cancelled_race, test_put_cancelled_race, test_cancelled_*_not_held)
// ---------------------------------------------------------------------------------------------

/// test_get_cancelled_race: a cancelled waiting get takes nothing; the next put goes to the next
/// getter.
#[test]
fn cancelled_get_then_put_goes_to_next_getter() {
    block_on(async {
        let q = Queue::new(0);
        let g1 = getter(&q)?;
        let g2 = getter(&q)?;
        ticks(1).await?;
        g1.cancel(None);
        ticks(1).await?;
        assert!(g1.done());
        assert!(is_cancelled(&g1.await));
        q.put_nowait("a")?;
        assert_eq!(g2.await?, "a");
        assert!(q.empty());
        assert!(no_waiters(&q));
        Ok(())
    })
}

/// test_cancelled_getters_not_being_held_in_self_getters: a getter cancelled after an item was
/// put for it (before it ran) leaves the item to the next getter.
#[test]
fn getter_cancelled_after_item_arrived_passes_it_on() {
    block_on(async {
        let q = Queue::new(0);
        let g1 = getter(&q)?;
        let g2 = getter(&q)?;
        let g3 = getter(&q)?;
        ticks(1).await?;
        q.put_nowait("a")?; // wakes g1 ...
        g1.cancel(None); // ... which is cancelled before it runs
        assert!(is_cancelled(&g1.await));
        assert_eq!(g2.await?, "a");
        ticks(2).await?;
        assert!(!g3.done());
        q.put_nowait("b")?;
        assert_eq!(g3.await?, "b");
        assert!(no_waiters(&q));
        Ok(())
    })
}

/// The same when the getter's task is aborted (its get future dropped).
#[test]
fn getter_aborted_after_item_arrived_passes_it_on() {
    block_on(async {
        let q = Queue::new(0);
        let g1 = getter(&q)?;
        let g2 = getter(&q)?;
        ticks(1).await?;
        q.put_nowait("a")?;
        g1.abort();
        assert!(is_cancelled(&g1.await));
        assert_eq!(g2.await?, "a");
        assert!(no_waiters(&q));
        Ok(())
    })
}

/// test_put_cancelled: a cancelled waiting put leaves the queue unchanged.
#[test]
fn cancelled_put_leaves_queue_unchanged() {
    block_on(async {
        let q = Queue::new(1);
        q.put_nowait("a")?;
        let p = putter(&q, "X")?;
        ticks(2).await?;
        p.cancel(None);
        assert!(is_cancelled(&p.await));
        assert_eq!(q.qsize(), 1);
        assert!(no_waiters(&q));
        assert_eq!(q.get_nowait()?, "a");
        assert!(q.empty());
        ticks(2).await?;
        assert!(q.empty(), "the cancelled item never shows up");
        // join counts only what was put.
        q.task_done()?;
        q.join().await?;
        Ok(())
    })
}

/// test_put_cancelled_race: a cancelled putter among waiting putters neither puts its item nor
/// holds up the others.
#[test]
fn put_cancelled_race() {
    block_on(async {
        let q = Queue::new(1);
        let put_a = putter(&q, "a")?;
        let put_b = putter(&q, "b")?;
        let put_c = putter(&q, "X")?;
        ticks(1).await?;
        assert!(put_a.done());
        assert!(!put_b.done());
        put_c.cancel(None);
        ticks(1).await?;
        assert!(put_c.done());
        assert_eq!(q.get_nowait()?, "a");
        put_b.await?;
        assert_eq!(q.get_nowait()?, "b");
        assert!(is_cancelled(&put_c.await));
        assert!(q.empty());
        assert!(no_waiters(&q));
        Ok(())
    })
}

/// test_cancelled_puts_not_being_held_in_self_putters: a putter cancelled after a slot was freed
/// for it passes the slot on to the next putter.
#[test]
fn putter_cancelled_after_slot_freed_passes_it_on() {
    block_on(async {
        let q = Queue::new(1);
        q.put_nowait("a")?;
        let p1 = putter(&q, "X")?;
        let p2 = putter(&q, "b")?;
        ticks(1).await?;
        assert_eq!(q.get_nowait()?, "a"); // wakes p1 ...
        p1.cancel(None); // ... which is cancelled before it runs
        assert!(is_cancelled(&p1.await));
        p2.await?;
        assert_eq!(drain(&q), ["b"]);
        assert!(no_waiters(&q));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// join / task_done (_QueueJoinTestMixin)
// ---------------------------------------------------------------------------------------------

/// test_task_done: join waits until task_done was called for every item.
#[test]
fn join_waits_until_task_done_for_every_item() {
    block_on(async {
        let q = Queue::new(0);
        for i in 0..100u64 {
            q.put_nowait(i)?;
        }
        let sum = Rc::new(Cell::new(0u64));
        let workers = (0..2)
            .map(|_| {
                let (q, sum) = (q.clone(), sum.clone());
                spawn(async move {
                    loop {
                        let item = match q.get().await {
                            Ok(i) => i,
                            Err(Error::QueueShutDown) => return Ok(()),
                            Err(e) => return Err(e),
                        };
                        ticks(1).await?; // work on it
                        sum.set(sum.get() + item);
                        q.task_done()?;
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        q.join().await?;
        assert_eq!(sum.get(), (0..100).sum::<u64>());
        assert!(q.empty());
        q.shutdown(false);
        for w in workers {
            w.await?;
        }
        Ok(())
    })
}

/// join does not return between get and task_done.
#[test]
fn join_waits_for_task_done_not_for_get() {
    block_on(async {
        let q = Queue::new(0);
        q.put_nowait(1)?;
        q.put_nowait(2)?;
        let joined = Rc::new(Cell::new(false));
        let j = {
            let (q, joined) = (q.clone(), joined.clone());
            spawn(async move {
                q.join().await?;
                joined.set(true);
                Ok(())
            })?
        };
        assert_eq!(q.get_nowait()?, 1);
        assert_eq!(q.get_nowait()?, 2);
        ticks(2).await?;
        assert!(!joined.get(), "empty, but not done");
        q.task_done()?;
        ticks(2).await?;
        assert!(!joined.get());
        q.task_done()?;
        j.await?;
        assert!(joined.get());
        // A new item makes join wait again.
        q.put_nowait(3)?;
        let j2 = {
            let q = q.clone();
            spawn(async move { q.join().await })?
        };
        ticks(2).await?;
        assert!(!j2.done());
        q.get_nowait()?;
        q.task_done()?;
        j2.await?;
        Ok(())
    })
}

/// test_join_empty_queue.
#[test]
fn join_on_a_queue_without_unfinished_items_returns_at_once() {
    block_on(async {
        let q: Queue<i32> = Queue::new(0);
        q.join().await?;
        q.join().await?;
        Ok(())
    })
}

/// test_task_done_underflow.
#[test]
fn task_done_too_often_is_invalid_argument() {
    block_on(async {
        let q = Queue::new(0);
        assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
        q.put_nowait(1)?;
        q.get().await?;
        q.task_done()?;
        assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
        Ok(())
    })
}

/// A joiner that is cancelled leaves; join still works for others.
#[test]
fn cancelled_join_leaves_others_waiting() {
    block_on(async {
        let q = Queue::new(0);
        q.put_nowait(1)?;
        let j1 = {
            let q = q.clone();
            spawn(async move { q.join().await })?
        };
        let j2 = {
            let q = q.clone();
            spawn(async move { q.join().await })?
        };
        ticks(1).await?;
        j1.cancel(None);
        assert!(is_cancelled(&j1.await));
        q.get_nowait()?;
        q.task_done()?;
        j2.await?;
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// shutdown (_QueueShutdownTestMixin, Python 3.13)
// ---------------------------------------------------------------------------------------------

/// test_shutdown_empty: put fails, get fails, join returns.
#[test]
fn shutdown_makes_put_fail() {
    block_on(async {
        let q = Queue::new(0);
        assert!(!q.is_shutdown());
        q.shutdown(false);
        assert!(q.is_shutdown());
        assert!(matches!(q.put_nowait(1), Err(Error::QueueShutDown)));
        assert!(matches!(q.put(1).await, Err(Error::QueueShutDown)));
        assert!(matches!(q.get_nowait(), Err(Error::QueueShutDown)));
        assert!(matches!(q.get().await, Err(Error::QueueShutDown)));
        q.join().await?;
        q.shutdown(false); // again: no effect
        q.shutdown(true);
        assert!(q.is_shutdown());
        Ok(())
    })
}

/// test_shutdown_nonempty: get drains the remaining items, then fails.
#[test]
fn shutdown_get_drains_remaining_items_then_fails() {
    block_on(async {
        let q = Queue::new(0);
        for i in 1..=3 {
            q.put_nowait(i)?;
        }
        q.shutdown(false);
        assert_eq!(q.qsize(), 3);
        assert!(matches!(q.put_nowait(4), Err(Error::QueueShutDown)));
        assert_eq!(q.get().await?, 1);
        assert_eq!(q.get_nowait()?, 2);
        assert_eq!(q.get().await?, 3);
        assert!(matches!(q.get().await, Err(Error::QueueShutDown)));
        assert!(matches!(q.get_nowait(), Err(Error::QueueShutDown)));

        // join still waits for task_done of the items got.
        let j = {
            let q = q.clone();
            spawn(async move { q.join().await })?
        };
        ticks(2).await?;
        assert!(!j.done());
        for _ in 0..3 {
            q.task_done()?;
        }
        j.await?;
        Ok(())
    })
}

/// test_shutdown_immediate: the queued items are dropped and count as done; join returns.
#[test]
fn shutdown_immediate_drops_items_and_releases_join() {
    block_on(async {
        let q = Queue::new(0);
        let dropped = Rc::new(Cell::new(0));
        struct Counted(Rc<Cell<i32>>);
        impl Drop for Counted {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        for _ in 0..3 {
            q.put_nowait(Counted(dropped.clone()))?;
        }
        let j = {
            let q = q.clone();
            spawn(async move { q.join().await })?
        };
        ticks(2).await?;
        assert!(!j.done());
        q.shutdown(true);
        assert_eq!(dropped.get(), 3, "the queued items are dropped");
        assert!(q.empty());
        j.await?;
        assert!(matches!(q.get().await, Err(Error::QueueShutDown)));
        assert!(matches!(q.task_done(), Err(Error::InvalidArgument(_))));
        Ok(())
    })
}

/// test_shutdown_immediate_with_unfinished: items already got but not done keep join waiting.
#[test]
fn shutdown_immediate_keeps_join_waiting_for_items_already_got() {
    block_on(async {
        let q = Queue::new(0);
        for i in 0..3 {
            q.put_nowait(i)?;
        }
        assert_eq!(q.get_nowait()?, 0); // got, not yet done
        q.shutdown(true);
        let j = {
            let q = q.clone();
            spawn(async move { q.join().await })?
        };
        ticks(2).await?;
        assert!(!j.done());
        q.task_done()?;
        j.await?;
        Ok(())
    })
}

/// test_shutdown_getter / test_shutdown_putter: waiting getters and putters wake with
/// `QueueShutDown`.
#[test]
fn shutdown_wakes_waiting_getters_and_putters() {
    block_on(async {
        let q: Queue<i32> = Queue::new(0);
        let gs = (0..3).map(|_| getter(&q)).collect::<Result<Vec<_>>>()?;
        ticks(2).await?;
        q.shutdown(false);
        for g in gs {
            assert!(matches!(g.await, Err(Error::QueueShutDown)));
        }
        assert!(no_waiters(&q));

        let q = Queue::new(1);
        q.put_nowait(0)?;
        let ps = (1..=3).map(|i| putter(&q, i)).collect::<Result<Vec<_>>>()?;
        ticks(2).await?;
        q.shutdown(false);
        for p in ps {
            assert!(matches!(p.await, Err(Error::QueueShutDown)));
        }
        assert!(no_waiters(&q));
        // The item already queued can still be got.
        assert_eq!(q.get().await?, 0);
        assert!(matches!(q.get().await, Err(Error::QueueShutDown)));

        // A putter woken for a free slot but not yet run when the queue shuts down does not put.
        let q = Queue::new(1);
        q.put_nowait(0)?;
        let p = putter(&q, 1)?;
        ticks(1).await?;
        assert_eq!(q.get_nowait()?, 0); // wakes p
        q.shutdown(false);
        assert!(matches!(p.await, Err(Error::QueueShutDown)));
        assert!(q.empty());

        // An immediate shutdown wakes the getters too.
        let q: Queue<i32> = Queue::new(0);
        let g = getter(&q)?;
        ticks(1).await?;
        q.shutdown(true);
        assert!(matches!(g.await, Err(Error::QueueShutDown)));
        assert!(no_waiters(&q));
        Ok(())
    })
}

/// Getters waiting on an empty queue when a non-immediate shutdown comes with items queued
/// meanwhile drain those items first.
#[test]
fn shutdown_waiting_getters_drain_items_put_before_it() {
    block_on(async {
        let q = Queue::new(0);
        let gs = (0..3).map(|_| getter(&q)).collect::<Result<Vec<_>>>()?;
        ticks(1).await?;
        q.put_nowait("a")?;
        q.put_nowait("b")?;
        q.shutdown(false);
        let mut got = Vec::new();
        for g in gs {
            got.push(g.await);
        }
        assert_eq!(got.iter().filter(|r| r.is_ok()).count(), 2);
        assert!(matches!(got[0], Ok("a")));
        assert!(matches!(got[1], Ok("b")));
        assert!(matches!(got[2], Err(Error::QueueShutDown)));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Stress: producers and consumers on a bounded queue, random cancellations
// ---------------------------------------------------------------------------------------------

/// xorshift64*: a tiny deterministic generator, so each seed replays the same interleaving.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// Takes back a delivered cancellation so the task carries on (asyncio's `uncancel`).
fn absorb_cancel(e: Error) -> Result<()> {
    if e.is_cancelled() {
        if let Some(t) = current_task() {
            t.uncancel();
        }
        Ok(())
    } else {
        Err(e)
    }
}

#[derive(Default)]
struct Tally {
    got: RefCell<Vec<u32>>,
    cancelled_puts: Cell<u32>,
    cancelled_gets: Cell<u32>,
}

/// How a stress run is set up.
#[derive(Clone, Copy)]
struct Mix {
    /// The queue is FIFO: check each producer's order.
    fifo: bool,
    /// Consumers sometimes poll with `get_nowait` instead of waiting in `get`. Off, a wake-up lost
    /// by a waiting getter is not papered over by a poller and ends in a stall (a test failure).
    nowait: bool,
}

/// Runs producers and consumers on `queue` while a canceller cancels one of them every few
/// steps; checks that every item put is got exactly once (and, for FIFO, that each producer's
/// items come out in the order it put them).
fn stress(seed: u64, queue: Queue<u32>, mix: Mix) {
    const PRODUCERS: u32 = 4;
    const ITEMS: u32 = 150;
    const CONSUMERS: usize = 3;
    const CANCEL_BUDGET: u32 = 20_000;

    block_on(async move {
        let q = queue;
        let rng = Rc::new(RefCell::new(Rng(seed)));
        let tally = Rc::new(Tally::default());

        let producers = (0..PRODUCERS)
            .map(|p| {
                let (q, rng, tally) = (q.clone(), rng.clone(), tally.clone());
                spawn(async move {
                    for i in 0..ITEMS {
                        let item = p * ITEMS + i;
                        // Retry until put: a cancelled put must not have queued the item, or it
                        // would be got twice.
                        loop {
                            match q.put(item).await {
                                Ok(()) => break,
                                Err(e) => {
                                    absorb_cancel(e)?;
                                    tally.cancelled_puts.set(tally.cancelled_puts.get() + 1);
                                }
                            }
                        }
                        let pause = rng.borrow_mut().below(3);
                        if let Err(e) = ticks(pause).await {
                            absorb_cancel(e)?;
                        }
                    }
                    Ok(())
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let consumers = (0..CONSUMERS)
            .map(|_| {
                let (q, rng, tally) = (q.clone(), rng.clone(), tally.clone());
                spawn(async move {
                    loop {
                        let nowait = mix.nowait && rng.borrow_mut().below(4) == 0;
                        let got = if nowait {
                            match q.get_nowait() {
                                Err(Error::QueueEmpty) => {
                                    if let Err(e) = ticks(1).await {
                                        absorb_cancel(e)?;
                                    }
                                    continue;
                                }
                                other => other,
                            }
                        } else {
                            q.get().await
                        };
                        match got {
                            Ok(item) => {
                                tally.got.borrow_mut().push(item);
                                let work = rng.borrow_mut().below(3);
                                if let Err(e) = ticks(work).await {
                                    absorb_cancel(e)?;
                                }
                                q.task_done()?;
                            }
                            Err(Error::QueueShutDown) => return Ok(()),
                            Err(e) => {
                                absorb_cancel(e)?;
                                tally.cancelled_gets.set(tally.cancelled_gets.get() + 1);
                            }
                        }
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let stop = Rc::new(Cell::new(false));
        let canceller = {
            let (rng, stop) = (rng.clone(), stop.clone());
            let targets: Vec<_> = producers
                .iter()
                .map(Task::as_task_ref)
                .chain(consumers.iter().map(Task::as_task_ref))
                .collect();
            spawn(async move {
                // Bounded, so that a stall (a lost wake-up) leaves the loop idle and the
                // watchdog fails the test, instead of the canceller keeping it busy forever.
                for _ in 0..CANCEL_BUDGET {
                    if stop.get() {
                        return Ok(true);
                    }
                    let pause = 1 + rng.borrow_mut().below(4);
                    ticks(pause).await?;
                    let victim = rng.borrow_mut().below(targets.len());
                    targets[victim].cancel(None);
                }
                Ok(false)
            })?
        };

        for p in producers {
            p.await?;
        }
        q.join().await?;
        stop.set(true);
        assert!(
            canceller.await?,
            "seed {seed}: the run outlasted the canceller's budget"
        );
        q.shutdown(false);
        for c in consumers {
            c.await?;
        }

        let got = tally.got.borrow().clone();
        let mut sorted = got.clone();
        sorted.sort_unstable();
        let expected: Vec<u32> = (0..PRODUCERS * ITEMS).collect();
        assert_eq!(
            sorted, expected,
            "seed {seed}: every item put is got exactly once"
        );
        if mix.fifo {
            for p in 0..PRODUCERS {
                let mine: Vec<u32> = got.iter().copied().filter(|i| i / ITEMS == p).collect();
                assert!(
                    mine.windows(2).all(|w| w[0] < w[1]),
                    "seed {seed}: producer {p}'s order"
                );
            }
        }
        assert!(
            tally.cancelled_puts.get() > 0,
            "seed {seed}: some put was cancelled"
        );
        assert!(
            tally.cancelled_gets.get() > 0,
            "seed {seed}: some get was cancelled"
        );
        assert!(q.empty());
        assert!(no_waiters(&q), "seed {seed}: {q:?}");
        Ok(())
    });
}

#[test]
fn stress_bounded_fifo_with_random_cancellations() {
    for seed in [0x5eed, 42, 7_777_777, 0xdead_beef] {
        for nowait in [true, false] {
            let mix = Mix { fifo: true, nowait };
            stress(seed, Queue::new(3), mix);
            stress(seed, Queue::new(1), mix);
        }
    }
}

#[test]
fn stress_bounded_lifo_and_priority_with_random_cancellations() {
    for seed in [1, 2] {
        for nowait in [true, false] {
            let mix = Mix {
                fifo: false,
                nowait,
            };
            stress(seed, Queue::lifo(2), mix);
            stress(seed, Queue::priority(4), mix);
        }
    }
}

/// FIFO: each producer's items come out in the order it put them.
#[test]
fn stress_fifo_keeps_each_producers_order() {
    let q = Queue::new(2);
    let order = Rc::new(RefCell::new(Vec::new()));
    let o2 = order.clone();
    block_on(async move {
        let producers = (0..3u32)
            .map(|p| {
                let q = q.clone();
                spawn(async move {
                    for i in 0..50 {
                        q.put((p, i)).await?;
                    }
                    Ok(())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let consumers = (0..2)
            .map(|_| {
                let (q, o2) = (q.clone(), o2.clone());
                spawn(async move {
                    loop {
                        match q.get().await {
                            Ok(x) => o2.borrow_mut().push(x),
                            Err(Error::QueueShutDown) => return Ok(()),
                            Err(e) => return Err(e),
                        }
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for p in producers {
            p.await?;
        }
        while !q.empty() {
            ticks(1).await?;
        }
        q.shutdown(false);
        for c in consumers {
            c.await?;
        }
        Ok(())
    });
    let order = order.borrow();
    assert_eq!(order.len(), 150);
    for p in 0..3 {
        let mine: Vec<u32> = order
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, i)| *i)
            .collect();
        assert_eq!(mine, (0..50).collect::<Vec<_>>(), "producer {p}");
    }
}
