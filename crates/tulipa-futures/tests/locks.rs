//! Behaviour of `tulipa_futures::sync`, ported from CPython's `Lib/test/test_asyncio/test_locks.py`
//! (LockTests, EventTests, ConditionTests, SemaphoreTests, BarrierTests).
//!
//! Every test runs on a virtual-time loop and interleaves tasks with `sleep(Duration::ZERO)`
//! (one yield lets every other ready task take one step), so the orderings are deterministic and
//! nothing sleeps for real. Cancellation is asyncio's: `Task::cancel` is delivered as
//! `Err(Cancelled)` by the next Tulipa awaitable the task polls.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tulipa_futures::rt::EventLoop;
use tulipa_futures::sync::{Barrier, Condition, Event, Lock, Semaphore};
use tulipa_futures::{run_until_complete, sleep, spawn, Error, Result, Task};

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

type Log<T> = Rc<RefCell<Vec<T>>>;

fn log<T>() -> Log<T> {
    Rc::new(RefCell::new(Vec::new()))
}

fn taken<T: Clone>(l: &Log<T>) -> Vec<T> {
    l.borrow().clone()
}

fn is_cancelled<T>(r: &Result<T>) -> bool {
    matches!(r, Err(e) if e.is_cancelled())
}

/// True when the primitive's `Debug` output reports no queued waiter (no stale waiter left).
fn no_waiters(x: &impl std::fmt::Debug) -> bool {
    format!("{x:?}").contains("waiters: 0")
}

// ---------------------------------------------------------------------------------------------
// Lock (LockTests)
// ---------------------------------------------------------------------------------------------

/// A task that takes `lock`, logs `id`, holds the lock for one yield, then releases it.
fn lock_user(lock: &Lock, order: &Log<usize>, id: usize) -> Result<Task<()>> {
    let (lock, order) = (lock.clone(), order.clone());
    spawn(async move {
        let _g = lock.acquire().await?;
        order.borrow_mut().push(id);
        ticks(1).await
    })
}

#[test]
fn lock_acquire_release_and_locked() {
    block_on(async {
        let lock = Lock::new();
        assert!(!lock.locked());
        let g = lock.acquire().await?;
        assert!(lock.locked());
        assert!(lock.try_acquire().is_none());
        assert!(g.lock().is_some_and(|l| l.ptr_eq(&lock)));
        drop(g);
        assert!(!lock.locked());
        // The guard is the only way to release in normal use; `release` is the explicit form.
        let g = lock.try_acquire().expect("a free lock with no waiters");
        assert!(lock.locked());
        drop(g);
        assert!(!lock.locked());
        Ok(())
    })
}

#[test]
fn lock_release_of_unlocked_lock_is_invalid_state() {
    block_on(async {
        let lock = Lock::new();
        assert!(matches!(lock.release(), Err(Error::InvalidState(_))));
        let g = lock.acquire().await?;
        lock.release()?; // released behind the guard's back
        assert!(matches!(lock.release(), Err(Error::InvalidState(_))));
        drop(g); // the guard's own release fails quietly; nothing is left locked
        assert!(!lock.locked());
        Ok(())
    })
}

/// test_acquire: waiters get the lock in the order they asked for it.
#[test]
fn lock_acquirers_are_served_fifo() {
    block_on(async {
        let lock = Lock::new();
        let order = log();
        let g = lock.acquire().await?;
        let tasks = (1..=5)
            .map(|i| lock_user(&lock, &order, i))
            .collect::<Result<Vec<_>>>()?;
        ticks(1).await?;
        assert!(taken(&order).is_empty());
        drop(g);
        for t in tasks {
            t.await?;
        }
        assert_eq!(taken(&order), [1, 2, 3, 4, 5]);
        assert!(!lock.locked());
        assert!(no_waiters(&lock));
        Ok(())
    })
}

/// A task arriving just after a release, while the lock is handed to a waiter that has not run
/// yet, queues behind that waiter instead of taking the momentarily free lock.
#[test]
fn lock_has_no_barging() {
    block_on(async {
        let lock = Lock::new();
        let order = log();
        let g = lock.acquire().await?;
        let first = lock_user(&lock, &order, 1)?;
        ticks(1).await?;
        drop(g);
        // Handed to `first`, which has not run yet: free, but not for newcomers.
        assert!(!lock.locked());
        assert!(lock.try_acquire().is_none());
        let g = lock.acquire().await?; // the newcomer: must queue behind `first`
        order.borrow_mut().push(2);
        drop(g);
        first.await?;
        assert_eq!(taken(&order), [1, 2]);
        assert!(!lock.locked());
        Ok(())
    })
}

/// test_acquire_cancel: a cancelled waiting acquire returns `Err(Cancelled)` without the lock and
/// leaves the queue; the lock then goes to the next waiter.
#[test]
fn lock_cancelled_waiting_acquire_returns_cancelled_and_lock_goes_on() {
    block_on(async {
        let lock = Lock::new();
        let order = log();
        let g = lock.acquire().await?;
        let t1 = lock_user(&lock, &order, 1)?;
        let t2 = lock_user(&lock, &order, 2)?;
        let t3 = lock_user(&lock, &order, 3)?;
        ticks(1).await?;
        assert!(t2.cancel(None));
        ticks(1).await?;
        assert!(t2.done());
        assert!(is_cancelled(&t2.await));
        assert!(
            lock.locked(),
            "the cancelled waiter must not have released anything"
        );
        drop(g);
        t1.await?;
        t3.await?;
        assert_eq!(taken(&order), [1, 3]);
        assert!(!lock.locked());
        assert!(no_waiters(&lock));
        Ok(())
    })
}

/// test_cancel_race: a waiter is cancelled and the lock released before it runs; the next waiter
/// must still get the lock.
#[test]
fn lock_cancel_then_release_before_waiter_runs() {
    block_on(async {
        let lock = Lock::new();
        let order = log();
        let g = lock.acquire().await?;
        let t1 = lock_user(&lock, &order, 1)?;
        let t2 = lock_user(&lock, &order, 2)?;
        ticks(1).await?;
        t1.cancel(None);
        drop(g);
        assert!(is_cancelled(&t1.await));
        t2.await?;
        assert_eq!(taken(&order), [2]);
        assert!(!lock.locked());
        assert!(no_waiters(&lock));
        Ok(())
    })
}

/// test_cancel_release_race / test_finished_waiter_cancelled: the lock is handed to a waiter,
/// which is cancelled before it runs. It returns `Err(Cancelled)` and hands the lock on; the lock
/// is not left locked with nobody holding it.
#[test]
fn lock_cancel_after_hand_off_passes_lock_on() {
    block_on(async {
        let lock = Lock::new();
        let order = log();
        let g = lock.acquire().await?;
        let t1 = lock_user(&lock, &order, 1)?;
        let t2 = lock_user(&lock, &order, 2)?;
        let t3 = lock_user(&lock, &order, 3)?;
        ticks(1).await?;
        drop(g); // handed to t1
        t1.cancel(None);
        assert!(is_cancelled(&t1.await));
        t2.await?;
        t3.await?;
        assert_eq!(taken(&order), [2, 3]);
        assert!(!lock.locked());
        assert!(no_waiters(&lock));
        // The lock still works.
        drop(lock.try_acquire().expect("free"));
        Ok(())
    })
}

/// Rust's own way to give up: an aborted task's acquire future is dropped. A hand-off it had
/// received goes on to the next waiter.
#[test]
fn lock_aborted_waiter_after_hand_off_passes_lock_on() {
    block_on(async {
        let lock = Lock::new();
        let order = log();
        let g = lock.acquire().await?;
        let t1 = lock_user(&lock, &order, 1)?;
        let t2 = lock_user(&lock, &order, 2)?;
        ticks(1).await?;
        drop(g);
        t1.abort();
        assert!(is_cancelled(&t1.await));
        t2.await?;
        assert_eq!(taken(&order), [2]);
        assert!(!lock.locked());
        Ok(())
    })
}

/// A task cancelled before its first step does not take a free lock.
#[test]
fn lock_acquire_in_a_cancelled_task_takes_nothing() {
    block_on(async {
        let lock = Lock::new();
        let order = log();
        let t = lock_user(&lock, &order, 1)?;
        t.cancel(None);
        assert!(is_cancelled(&t.await));
        assert!(taken(&order).is_empty());
        assert!(!lock.locked());
        Ok(())
    })
}

/// test_cancel_release_race with several cancellations: only the live waiters get the lock,
/// each once, in order.
#[test]
fn lock_many_cancelled_waiters_do_not_stall_the_queue() {
    block_on(async {
        let lock = Lock::new();
        let order = log();
        let g = lock.acquire().await?;
        let tasks = (0..6)
            .map(|i| lock_user(&lock, &order, i))
            .collect::<Result<Vec<_>>>()?;
        ticks(1).await?;
        for i in [0, 2, 3, 5] {
            tasks[i].cancel(None);
        }
        drop(g);
        let mut outcomes = Vec::new();
        for t in tasks {
            outcomes.push(t.await.is_ok());
        }
        assert_eq!(outcomes, [false, true, false, false, true, false]);
        assert_eq!(taken(&order), [1, 4]);
        assert!(!lock.locked());
        assert!(no_waiters(&lock));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Event (EventTests)
// ---------------------------------------------------------------------------------------------

fn event_waiter(ev: &Event, woken: &Log<usize>, id: usize) -> Result<Task<()>> {
    let (ev, woken) = (ev.clone(), woken.clone());
    spawn(async move {
        ev.wait().await?;
        woken.borrow_mut().push(id);
        Ok(())
    })
}

#[test]
fn event_set_clear_is_set() {
    block_on(async {
        let ev = Event::new();
        assert!(!ev.is_set());
        ev.set();
        assert!(ev.is_set());
        ev.set();
        assert!(ev.is_set());
        ev.clear();
        assert!(!ev.is_set());
        ev.set();
        ev.wait().await?; // set: returns at once
        Ok(())
    })
}

/// test_wait: set wakes every waiter.
#[test]
fn event_set_wakes_every_waiter() {
    block_on(async {
        let ev = Event::new();
        let woken = log();
        let tasks = (1..=3)
            .map(|i| event_waiter(&ev, &woken, i))
            .collect::<Result<Vec<_>>>()?;
        ticks(2).await?;
        assert!(taken(&woken).is_empty());
        ev.set();
        ticks(1).await?;
        assert_eq!(taken(&woken), [1, 2, 3]);
        for t in tasks {
            t.await?;
        }
        // A waiter arriving while set returns at once.
        event_waiter(&ev, &woken, 4)?.await?;
        assert!(no_waiters(&ev));
        Ok(())
    })
}

/// test_clear_with_waiters: a waiter woken by `set` returns even if the event is cleared before
/// it runs; a waiter arriving after `clear` waits for the next `set`.
#[test]
fn event_clear_after_set_still_wakes_the_waiting() {
    block_on(async {
        let ev = Event::new();
        let woken = log();
        let t1 = event_waiter(&ev, &woken, 1)?;
        ticks(1).await?;
        ev.set();
        ev.clear();
        assert!(!ev.is_set());
        ev.set();
        ev.set();
        ev.clear();
        ticks(1).await?;
        assert_eq!(taken(&woken), [1]);
        t1.await?;
        let t2 = event_waiter(&ev, &woken, 2)?;
        ticks(3).await?;
        assert!(!t2.done());
        ev.set();
        t2.await?;
        assert_eq!(taken(&woken), [1, 2]);
        assert!(no_waiters(&ev));
        Ok(())
    })
}

/// test_wait_cancel: a cancelled waiter returns `Err(Cancelled)`; the others are still woken.
#[test]
fn event_cancelled_waiter_leaves_and_others_are_woken() {
    block_on(async {
        let ev = Event::new();
        let woken = log();
        let t1 = event_waiter(&ev, &woken, 1)?;
        let t2 = event_waiter(&ev, &woken, 2)?;
        let t3 = event_waiter(&ev, &woken, 3)?;
        ticks(1).await?;
        t2.cancel(None);
        assert!(is_cancelled(&t2.await));
        assert!(format!("{ev:?}").contains("waiters: 2"));
        ev.set();
        t1.await?;
        t3.await?;
        assert_eq!(taken(&woken), [1, 3]);
        assert!(no_waiters(&ev));
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Condition (ConditionTests)
// ---------------------------------------------------------------------------------------------

/// A task that waits on `cond` once (under its lock) and logs `id` while holding the lock again.
fn cond_waiter(cond: &Condition, woken: &Log<usize>, id: usize) -> Result<Task<()>> {
    let (cond, woken) = (cond.clone(), woken.clone());
    spawn(async move {
        let mut g = cond.acquire().await?;
        cond.wait(&mut g).await?;
        assert!(cond.lock().locked(), "wait returns with the lock held");
        woken.borrow_mut().push(id);
        Ok(())
    })
}

/// test_wait: notify(n) wakes n waiters, in FIFO order, each holding the lock when it resumes.
#[test]
fn condition_notify_wakes_n_waiters_in_order() {
    block_on(async {
        let cond = Condition::new();
        let woken = log();
        let tasks = (1..=3)
            .map(|i| cond_waiter(&cond, &woken, i))
            .collect::<Result<Vec<_>>>()?;
        ticks(2).await?;
        assert!(!cond.lock().locked(), "waiting releases the lock");

        let g = cond.acquire().await?;
        cond.notify(1)?;
        ticks(2).await?;
        assert!(taken(&woken).is_empty(), "woken waiters need the lock");
        drop(g);
        ticks(2).await?;
        assert_eq!(taken(&woken), [1]);

        let g = cond.acquire().await?;
        cond.notify(1)?;
        cond.notify(2048)?; // more than there are: wakes the rest
        drop(g);
        for t in tasks {
            t.await?;
        }
        assert_eq!(taken(&woken), [1, 2, 3]);
        assert!(!cond.lock().locked());
        assert!(no_waiters(&cond));
        Ok(())
    })
}

/// test_notify_all.
#[test]
fn condition_notify_all_wakes_everyone() {
    block_on(async {
        let cond = Condition::new();
        let woken = log();
        let tasks = (1..=4)
            .map(|i| cond_waiter(&cond, &woken, i))
            .collect::<Result<Vec<_>>>()?;
        ticks(2).await?;
        {
            let _g = cond.acquire().await?;
            cond.notify_all()?;
        }
        for t in tasks {
            t.await?;
        }
        assert_eq!(taken(&woken), [1, 2, 3, 4]);
        assert!(no_waiters(&cond));
        Ok(())
    })
}

/// test_wait_unacquired / test_notify_unacquired / test_notify_all_unacquired.
#[test]
fn condition_without_the_lock_is_invalid_state() {
    block_on(async {
        let cond = Condition::new();
        assert!(matches!(cond.notify(1), Err(Error::InvalidState(_))));
        assert!(matches!(cond.notify_all(), Err(Error::InvalidState(_))));

        // A guard of another lock does not hold this condition's lock.
        let other = Lock::new();
        let mut g = other.acquire().await?;
        assert!(matches!(
            cond.wait(&mut g).await,
            Err(Error::InvalidState(_))
        ));
        assert!(other.locked(), "a refused wait releases nothing");
        assert!(matches!(
            cond.wait_for(&mut g, || false).await,
            Err(Error::InvalidState(_))
        ));

        // Nor does a guard of another condition.
        let cond2 = Condition::new();
        let mut g2 = cond2.acquire().await?;
        assert!(matches!(
            cond.wait(&mut g2).await,
            Err(Error::InvalidState(_))
        ));
        assert!(cond2.lock().locked());
        Ok(())
    })
}

/// test_wait_for: the predicate is checked under the lock after each notification.
#[test]
fn condition_wait_for_rechecks_predicate() {
    block_on(async {
        let cond = Condition::new();
        let presult = Rc::new(Cell::new(false));
        let calls = Rc::new(Cell::new(0));
        let (c2, p2, n2) = (cond.clone(), presult.clone(), calls.clone());
        let t = spawn(async move {
            let mut g = c2.acquire().await?;
            c2.wait_for(&mut g, || {
                n2.set(n2.get() + 1);
                p2.get()
            })
            .await?;
            assert!(c2.lock().locked());
            Ok(n2.get())
        })?;
        ticks(2).await?;
        assert_eq!(calls.get(), 1);

        {
            let _g = cond.acquire().await?;
            cond.notify(1)?;
        }
        ticks(3).await?;
        assert_eq!(calls.get(), 2);
        assert!(!t.done());

        {
            let _g = cond.acquire().await?;
            presult.set(true);
            cond.notify(1)?;
        }
        assert_eq!(t.await?, 3);
        // Already true: no wait at all.
        let mut g = cond.acquire().await?;
        cond.wait_for(&mut g, || true).await?;
        assert!(cond.lock().locked());
        Ok(())
    })
}

/// test_wait_cancel_contested: a waiter cancelled while another task holds the lock returns only
/// once it holds the lock again, with `Err(Cancelled)`.
#[test]
fn condition_cancelled_wait_reacquires_lock_before_returning() {
    block_on(async {
        let cond = Condition::new();
        let saw_lock = Rc::new(Cell::new(None));
        let (c2, s2) = (cond.clone(), saw_lock.clone());
        let t = spawn(async move {
            let mut g = c2.acquire().await?;
            let r = c2.wait(&mut g).await;
            s2.set(Some(c2.lock().locked()));
            drop(g);
            r
        })?;
        ticks(2).await?;
        assert!(!cond.lock().locked());

        let g = cond.acquire().await?;
        t.cancel(None);
        ticks(3).await?;
        assert!(!t.done(), "the cancelled wait must wait for the lock");
        assert_eq!(saw_lock.get(), None);
        drop(g);
        assert!(is_cancelled(&t.await));
        assert_eq!(saw_lock.get(), Some(true));
        assert!(
            !cond.lock().locked(),
            "the waiter's guard released it afterwards"
        );
        assert!(no_waiters(&cond));
        Ok(())
    })
}

/// test_wait_cancel_after_notify / test_cancelled_wakeup: a waiter notified and then cancelled
/// before it runs passes the notification on, so the next waiter is woken (no lost wake-up).
#[test]
fn condition_cancelled_after_notify_passes_notification_on() {
    block_on(async {
        let cond = Condition::new();
        let state = Rc::new(Cell::new(0i32));
        let consumed = log();
        let consumer = |id: usize| {
            let (cond, state, consumed) = (cond.clone(), state.clone(), consumed.clone());
            spawn(async move {
                let mut g = cond.acquire().await?;
                loop {
                    cond.wait_for(&mut g, || state.get() != 0).await?;
                    if state.get() < 0 {
                        return Ok(());
                    }
                    state.set(state.get() - 1);
                    consumed.borrow_mut().push(id);
                }
            })
        };
        let c0 = consumer(0)?;
        let c1 = consumer(1)?;
        ticks(2).await?;
        {
            let _g = cond.acquire().await?;
            state.set(1);
            cond.notify(1)?; // wakes c0 ...
            c0.cancel(None); // ... which is cancelled before it runs
        }
        assert!(is_cancelled(&c0.await));
        ticks(3).await?;
        assert_eq!(
            state.get(),
            0,
            "the item was consumed: the notification was not lost"
        );
        assert_eq!(taken(&consumed), [1]);
        {
            let _g = cond.acquire().await?;
            state.set(-1);
            cond.notify_all()?;
        }
        c1.await?;
        assert!(!cond.lock().locked());
        assert!(no_waiters(&cond));
        Ok(())
    })
}

/// As above, but the notified waiter's task is aborted (its wait future dropped): the
/// notification still goes to the next waiter.
#[test]
fn condition_aborted_after_notify_passes_notification_on() {
    block_on(async {
        let cond = Condition::new();
        let woken = log();
        let t1 = cond_waiter(&cond, &woken, 1)?;
        let t2 = cond_waiter(&cond, &woken, 2)?;
        ticks(2).await?;
        {
            let _g = cond.acquire().await?;
            cond.notify(1)?;
            t1.abort();
        }
        assert!(is_cancelled(&t1.await));
        ticks(3).await?;
        assert_eq!(taken(&woken), [2]);
        t2.await?;
        assert!(!cond.lock().locked());
        assert!(no_waiters(&cond));
        Ok(())
    })
}

/// A cancelled waiter that was not notified leaves the queue; later notifications reach the others.
#[test]
fn condition_cancelled_waiter_does_not_swallow_a_later_notify() {
    block_on(async {
        let cond = Condition::new();
        let woken = log();
        let t1 = cond_waiter(&cond, &woken, 1)?;
        let t2 = cond_waiter(&cond, &woken, 2)?;
        ticks(2).await?;
        t1.cancel(None);
        assert!(is_cancelled(&t1.await));
        {
            let _g = cond.acquire().await?;
            cond.notify(1)?;
        }
        t2.await?;
        assert_eq!(taken(&woken), [2]);
        Ok(())
    })
}

/// test_explicit_lock: conditions over a shared lock.
#[test]
fn condition_over_a_shared_lock() {
    block_on(async {
        let lock = Lock::new();
        let c1 = Condition::with_lock(lock.clone());
        let c2 = Condition::with_lock(lock.clone());
        assert!(c1.lock().ptr_eq(&lock) && c2.lock().ptr_eq(&lock));
        let woken = log();
        let t = cond_waiter(&c2, &woken, 1)?;
        ticks(2).await?;
        let mut g = lock.acquire().await?;
        assert!(c1.lock().locked());
        c1.notify_all()?; // nobody waits on c1
        c2.notify(1)?;
        // A guard of the shared lock is good for either condition.
        c1.wait_for(&mut g, || true).await?;
        drop(g);
        t.await?;
        assert_eq!(taken(&woken), [1]);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Semaphore and BoundedSemaphore (SemaphoreTests)
// ---------------------------------------------------------------------------------------------

/// A task that takes a unit, logs `id`, and keeps the unit (forgotten) until given back.
fn sem_taker(sem: &Semaphore, order: &Log<usize>, id: usize) -> Result<Task<()>> {
    let (sem, order) = (sem.clone(), order.clone());
    spawn(async move {
        sem.acquire().await?.forget();
        order.borrow_mut().push(id);
        Ok(())
    })
}

#[test]
fn semaphore_value_and_locked() {
    block_on(async {
        let sem = Semaphore::new(3);
        assert_eq!(sem.value(), 3);
        assert!(!sem.locked());
        let a = sem.acquire().await?;
        let b = sem.acquire().await?;
        assert_eq!(sem.value(), 1);
        assert!(!sem.locked());
        let c = sem.acquire().await?;
        assert_eq!(sem.value(), 0);
        assert!(sem.locked());
        drop((a, b, c));
        assert_eq!(sem.value(), 3);
        // Zero units: locked from the start.
        assert!(Semaphore::new(0).locked());
        Ok(())
    })
}

/// test_acquire: waiters get units in FIFO order as units are released.
#[test]
fn semaphore_waiters_are_served_fifo() {
    block_on(async {
        let sem = Semaphore::new(0);
        let order = log();
        let tasks = (1..=4)
            .map(|i| sem_taker(&sem, &order, i))
            .collect::<Result<Vec<_>>>()?;
        ticks(1).await?;
        assert!(sem.locked());
        sem.release()?;
        ticks(2).await?;
        assert_eq!(taken(&order), [1]);
        sem.release()?;
        sem.release()?;
        ticks(2).await?;
        assert_eq!(taken(&order), [1, 2, 3]);
        sem.release()?;
        for t in tasks {
            t.await?;
        }
        assert_eq!(taken(&order), [1, 2, 3, 4]);
        assert_eq!(sem.value(), 0);
        assert!(no_waiters(&sem));
        Ok(())
    })
}

/// test_acquire_cancel: a cancelled waiting acquire takes no unit and leaves no waiter.
#[test]
fn semaphore_cancelled_acquire_takes_no_unit() {
    block_on(async {
        let sem = Semaphore::new(1);
        let order = log();
        let held = sem.acquire().await?;
        let t = sem_taker(&sem, &order, 1)?;
        ticks(1).await?;
        t.cancel(None);
        assert!(is_cancelled(&t.await));
        assert!(no_waiters(&sem));
        drop(held);
        assert_eq!(sem.value(), 1, "no unit leaked");
        assert!(!sem.locked());
        Ok(())
    })
}

/// test_acquire_cancel_before_awoken / test_acquire_hang: waiters cancelled just before a release
/// pass the unit on to the next live waiter.
#[test]
fn semaphore_cancel_around_release_hands_unit_on() {
    block_on(async {
        let sem = Semaphore::new(0);
        let order = log();
        let t1 = sem_taker(&sem, &order, 1)?;
        let t2 = sem_taker(&sem, &order, 2)?;
        let t3 = sem_taker(&sem, &order, 3)?;
        let t4 = sem_taker(&sem, &order, 4)?;
        ticks(1).await?;
        t1.cancel(None);
        t2.cancel(None);
        sem.release()?; // reserved for t1, which is cancelled: goes to t2, then t3
        ticks(3).await?;
        assert!(t1.done() && t2.done() && t3.done());
        assert!(!t4.done());
        assert!(is_cancelled(&t1.await));
        assert!(is_cancelled(&t2.await));
        t3.await?;
        assert_eq!(taken(&order), [3]);
        assert!(sem.locked());
        t4.cancel(None);
        assert!(is_cancelled(&t4.await));
        assert_eq!(sem.value(), 0);
        assert!(no_waiters(&sem));
        Ok(())
    })
}

/// A unit reserved for a waiter that is then cancelled (grant before cancel) goes to the next.
#[test]
fn semaphore_cancel_after_grant_hands_unit_on() {
    block_on(async {
        let sem = Semaphore::bounded(1);
        let order = log();
        let held = sem.acquire().await?;
        let t1 = sem_taker(&sem, &order, 1)?;
        let t2 = sem_taker(&sem, &order, 2)?;
        ticks(1).await?;
        drop(held); // reserved for t1
        t1.cancel(None);
        assert!(is_cancelled(&t1.await));
        t2.await?;
        assert_eq!(taken(&order), [2]);
        sem.release()?; // t2's forgotten unit
        assert_eq!(sem.value(), 1);
        assert!(no_waiters(&sem));
        Ok(())
    })
}

/// test_acquire_no_hang: a waiter cancelled while the unit is held; the unit is free afterwards.
#[test]
fn semaphore_no_hang_after_cancelled_waiter() {
    block_on(async {
        let sem = Semaphore::new(1);
        let t = {
            let sem = sem.clone();
            spawn(async move {
                let _g = sem.acquire().await?;
                Ok(())
            })?
        };
        {
            let _g = sem.acquire().await?;
            ticks(1).await?;
            t.cancel(None);
            ticks(1).await?;
        }
        assert!(is_cancelled(&t.await));
        let _g = sem.acquire().await?;
        assert_eq!(sem.value(), 0);
        Ok(())
    })
}

/// test_acquire_fifo_order_2: a task that releases and re-acquires queues behind the waiters;
/// once the earlier waiters are through, the unit it released comes back to it.
#[test]
fn semaphore_fifo_order_with_reacquire() {
    block_on(async {
        let sem = Semaphore::new(1);
        let order = log();
        let c1 = sem_taker(&sem, &order, 1)?;
        let c2 = {
            let (sem, order) = (sem.clone(), order.clone());
            spawn(async move {
                sem.acquire().await?.forget();
                order.borrow_mut().push(2);
                sem.release()?;
                sem.acquire().await?.forget();
                order.borrow_mut().push(4);
                Ok(())
            })?
        };
        let c3 = sem_taker(&sem, &order, 3)?;
        ticks(1).await?;
        sem.release()?;
        sem.release()?;
        c1.await?;
        c2.await?;
        c3.await?;
        assert_eq!(taken(&order), [1, 2, 3, 4]);
        assert_eq!(sem.value(), 0);
        Ok(())
    })
}

/// test_acquire_fifo_order_3: a cancelled first waiter does not hold up the others.
#[test]
fn semaphore_fifo_order_with_cancelled_first_waiter() {
    block_on(async {
        let sem = Semaphore::new(0);
        let order = log();
        let t1 = sem_taker(&sem, &order, 1)?;
        let t2 = sem_taker(&sem, &order, 2)?;
        let t3 = sem_taker(&sem, &order, 3)?;
        ticks(1).await?;
        t1.cancel(None);
        sem.release()?;
        sem.release()?;
        t2.await?;
        t3.await?;
        assert!(is_cancelled(&t1.await));
        assert_eq!(taken(&order), [2, 3]);
        assert_eq!(sem.value(), 0);
        Ok(())
    })
}

/// test_acquire_fifo_order_4: units released while a waiter is being woken are not stranded:
/// tasks that queued behind it (FIFO) are woken as soon as it has taken its unit.
#[test]
fn semaphore_successful_acquire_wakes_waiters_queued_behind() {
    block_on(async {
        let sem = Semaphore::new(0);
        let order = log();
        let c1 = sem_taker(&sem, &order, 1)?;
        let c2 = {
            let (sem, order) = (sem.clone(), order.clone());
            spawn(async move {
                sem.release()?;
                sem.release()?;
                sem.release()?;
                assert!(sem.locked(), "c1 has not woken up yet");
                sem.acquire().await?.forget();
                order.borrow_mut().push(2);
                Ok(())
            })?
        };
        let c3 = sem_taker(&sem, &order, 3)?;
        ticks(1).await?;
        assert_eq!(sem.value(), 2);
        assert!(format!("{sem:?}").contains("waiters: 3"));
        c1.await?;
        c2.await?;
        c3.await?;
        assert_eq!(taken(&order), [1, 2, 3]);
        assert_eq!(sem.value(), 0);
        assert!(no_waiters(&sem));
        Ok(())
    })
}

/// test_release_not_acquired / test_release_no_waiters: a bounded semaphore refuses to go above its
/// initial value, counting units reserved for woken waiters.
#[test]
fn bounded_semaphore_over_release_is_invalid_argument() {
    block_on(async {
        let sem = Semaphore::bounded(2);
        assert!(matches!(sem.release(), Err(Error::InvalidArgument(_))));
        let g = sem.acquire().await?;
        g.forget();
        sem.release()?;
        assert_eq!(sem.value(), 2);
        assert!(matches!(sem.release(), Err(Error::InvalidArgument(_))));

        // With a waiter woken but not yet run, its reserved unit still counts.
        let a = sem.acquire().await?;
        let b = sem.acquire().await?;
        let order = log();
        let t = sem_taker(&sem, &order, 1)?;
        ticks(1).await?;
        a.forget();
        sem.release()?; // reserved for t
        assert_eq!(sem.value(), 0);
        drop(b);
        assert_eq!(sem.value(), 1);
        assert!(matches!(sem.release(), Err(Error::InvalidArgument(_))));
        t.await?;
        sem.release()?; // t's forgotten unit
        assert_eq!(sem.value(), 2);
        assert!(matches!(sem.release(), Err(Error::InvalidArgument(_))));

        // An unbounded semaphore may grow.
        let free = Semaphore::new(0);
        free.release()?;
        free.release()?;
        assert_eq!(free.value(), 2);
        Ok(())
    })
}

/// `SemaphoreGuard::forget` keeps the unit taken until `release`.
#[test]
fn semaphore_guard_forget_then_release() {
    block_on(async {
        let sem = Semaphore::new(1);
        sem.acquire().await?.forget();
        assert_eq!(sem.value(), 0);
        assert!(sem.locked());
        let order = log();
        let t = sem_taker(&sem, &order, 1)?;
        ticks(2).await?;
        assert!(!t.done());
        sem.release()?;
        t.await?;
        assert_eq!(taken(&order), [1]);
        assert_eq!(sem.value(), 0);
        sem.release()?;
        assert_eq!(sem.value(), 1);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Barrier (BarrierTests)
// ---------------------------------------------------------------------------------------------

fn barrier_waiter(b: &Barrier, out: &Log<Result<usize>>) -> Result<Task<()>> {
    let (b, out) = (b.clone(), out.clone());
    spawn(async move {
        let r = b.wait().await;
        let cancelled = is_cancelled(&r);
        out.borrow_mut().push(r);
        if cancelled {
            Err(Error::cancelled(None))
        } else {
            Ok(())
        }
    })
}

fn indices(out: &Log<Result<usize>>) -> Vec<usize> {
    let mut v: Vec<usize> = out
        .borrow()
        .iter()
        .map(|r| *r.as_ref().expect("an index"))
        .collect();
    v.sort_unstable();
    v
}

fn all_broken(out: &Log<Result<usize>>) -> bool {
    out.borrow()
        .iter()
        .all(|r| matches!(r, Err(Error::BrokenBarrier)))
}

/// test_barrier / test_wait_more_than_parties: the parties arrive, wait, and get the distinct
/// indices 0..parties.
#[test]
fn barrier_parties_get_distinct_indices() {
    block_on(async {
        let b = Barrier::new(4);
        assert_eq!(b.parties(), 4);
        let out = log();
        let mut tasks = Vec::new();
        for i in 0..3 {
            tasks.push(barrier_waiter(&b, &out)?);
            ticks(2).await?;
            assert_eq!(b.n_waiting(), i + 1);
            assert!(out.borrow().is_empty());
        }
        tasks.push(barrier_waiter(&b, &out)?);
        for t in tasks {
            t.await?;
        }
        assert_eq!(indices(&out), [0, 1, 2, 3]);
        assert_eq!(b.n_waiting(), 0);
        assert!(!b.broken());
        // One party: never waits.
        assert_eq!(Barrier::new(1).wait().await?, 0);
        Ok(())
    })
}

/// test_barrier_multi / test_draining_state: the barrier is reusable; arrivals during a round's
/// drain wait for the next round.
#[test]
fn barrier_is_reusable_for_several_rounds() {
    block_on(async {
        let b = Barrier::new(3);
        let rounds = log();
        let tasks = (0..3)
            .map(|_| {
                let (b, rounds) = (b.clone(), rounds.clone());
                spawn(async move {
                    for round in 0..5 {
                        let i = b.wait().await?;
                        rounds.borrow_mut().push((round, i));
                    }
                    Ok(())
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for t in tasks {
            t.await?;
        }
        let rounds = taken(&rounds);
        assert_eq!(rounds.len(), 15);
        for round in 0..5 {
            let mut idx: Vec<usize> = rounds
                .iter()
                .filter(|(r, _)| *r == round)
                .map(|(_, i)| *i)
                .collect();
            idx.sort_unstable();
            assert_eq!(idx, [0, 1, 2], "round {round}");
        }
        assert_eq!(b.n_waiting(), 0);
        assert!(!b.broken());
        Ok(())
    })
}

/// test_abort_barrier: abort wakes the waiters with `BrokenBarrier`; later callers get it too;
/// reset makes the barrier usable again (test_abort_and_reset).
#[test]
fn barrier_abort_breaks_waiters_and_later_callers() {
    block_on(async {
        let b = Barrier::new(3);
        let out = log();
        let t1 = barrier_waiter(&b, &out)?;
        let t2 = barrier_waiter(&b, &out)?;
        ticks(2).await?;
        assert_eq!(b.n_waiting(), 2);
        b.abort().await?;
        assert!(b.broken());
        t1.await?;
        t2.await?;
        assert_eq!(out.borrow().len(), 2);
        assert!(all_broken(&out));
        assert!(matches!(b.wait().await, Err(Error::BrokenBarrier)));

        b.reset().await?;
        assert!(!b.broken());
        let out = log();
        let tasks = (0..3)
            .map(|_| barrier_waiter(&b, &out))
            .collect::<Result<Vec<_>>>()?;
        for t in tasks {
            t.await?;
        }
        assert_eq!(indices(&out), [0, 1, 2]);
        Ok(())
    })
}

/// test_reset_barrier_while_tasks_waiting: waiters get `BrokenBarrier`; the barrier is not broken
/// afterwards and serves a full round.
#[test]
fn barrier_reset_while_waiting_breaks_the_waiters_only() {
    block_on(async {
        let b = Barrier::new(3);
        let out = log();
        let t1 = barrier_waiter(&b, &out)?;
        let t2 = barrier_waiter(&b, &out)?;
        ticks(2).await?;
        b.reset().await?;
        t1.await?;
        t2.await?;
        assert!(all_broken(&out));
        assert!(!b.broken());
        assert_eq!(b.n_waiting(), 0);

        let out = log();
        let tasks = (0..3)
            .map(|_| barrier_waiter(&b, &out))
            .collect::<Result<Vec<_>>>()?;
        for t in tasks {
            t.await?;
        }
        assert_eq!(indices(&out), [0, 1, 2]);
        Ok(())
    })
}

/// test_filling_tasks_cancel_one: a cancelled waiter leaves without breaking the barrier. (As in
/// asyncio, the waiter arriving next takes the index the cancelled one gave up, so the round's
/// indices need not be distinct; every party passes.)
#[test]
fn barrier_cancelled_waiter_does_not_break_it() {
    block_on(async {
        let b = Barrier::new(3);
        let out = log();
        let t1 = barrier_waiter(&b, &out)?;
        ticks(2).await?;
        assert_eq!(b.n_waiting(), 1);
        let t2 = barrier_waiter(&b, &out)?;
        ticks(2).await?;
        assert_eq!(b.n_waiting(), 2);

        t1.cancel(None);
        ticks(3).await?;
        assert_eq!(b.n_waiting(), 1);
        assert!(is_cancelled(&t1.await));
        assert!(!b.broken());
        out.borrow_mut().clear();

        let t3 = barrier_waiter(&b, &out)?;
        ticks(2).await?;
        assert_eq!(b.n_waiting(), 2);
        let t4 = barrier_waiter(&b, &out)?;
        t2.await?;
        t3.await?;
        t4.await?;
        assert_eq!(indices(&out), [1, 1, 2]);
        assert_eq!(b.n_waiting(), 0);
        assert!(!b.broken());

        // The next round is a full one again, with distinct indices.
        let out = log();
        let tasks = (0..3)
            .map(|_| barrier_waiter(&b, &out))
            .collect::<Result<Vec<_>>>()?;
        for t in tasks {
            t.await?;
        }
        assert_eq!(indices(&out), [0, 1, 2]);
        Ok(())
    })
}
