//! Behaviour of the executors: `ThreadPoolExecutor`, `run_in_executor`, `ConcurrentFuture`,
//! `wrap_future` and `spawn_threadsafe`, ported from CPython's
//! `Lib/test/test_asyncio/test_futures.py` (wrap_future tests), `test_tasks.py`
//! (RunCoroutineThreadsafeTests), `test_base_events.py` (run_in_executor) and
//! `test_concurrent_futures` (PEP 3148 Future states, shutdown with cancel_futures).
//!
//! Loops use virtual time; threads synchronise with channels, never with sleeps. A real-time
//! bound appears only as a generous safety net (`SAFETY`) so that a bug fails instead of hanging.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::Duration;

use common::{block_on, is_cancelled};
use tulipa_futures::executor::default_max_workers;
use tulipa_futures::rt::EventLoop;
use tulipa_futures::{
    run, run_in_executor, run_until_complete, set_default_executor, shutdown_default_executor,
    sleep, spawn, spawn_threadsafe, wrap_future, ConcurrentFuture, Error, Result,
    ThreadPoolExecutor,
};

/// Only a safety net against hangs; nothing waits this long when the code is right.
const SAFETY: Duration = Duration::from_secs(30);

/// A pool of one worker kept busy until the returned sender is used (or dropped): jobs submitted
/// meanwhile stay queued.
fn busy_pool() -> (ThreadPoolExecutor, mpsc::Sender<()>, ConcurrentFuture<()>) {
    let pool = ThreadPoolExecutor::new(1, "busy");
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let blocker = pool
        .submit(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        })
        .unwrap();
    started_rx.recv_timeout(SAFETY).expect("the worker started");
    (pool, release_tx, blocker)
}

// ---------------------------------------------------------------------------------------------
// run_in_executor
// ---------------------------------------------------------------------------------------------

#[test]
fn run_in_executor_returns_the_closures_value() {
    let pool = ThreadPoolExecutor::new(2, "test");
    let p = pool.clone();
    let v = block_on(async move {
        let lp = EventLoop::running()?;
        run_in_executor(&lp, Some(&p), || (1..=10u64).product::<u64>())?.await
    });
    assert_eq!(v, 3_628_800);
    pool.shutdown(true, false);
}

#[test]
fn run_in_executor_with_the_default_executor() {
    let v = run(async {
        let lp = EventLoop::running()?;
        let v = run_in_executor(&lp, None, || "from the default pool")?.await?;
        shutdown_default_executor(&lp).await?;
        Ok(v)
    })
    .unwrap();
    assert_eq!(v, "from the default pool");
}

#[test]
fn set_default_executor_replaces_the_pool() {
    let pool = ThreadPoolExecutor::new(1, "custom-default");
    let p = pool.clone();
    let name = block_on(async move {
        let lp = EventLoop::running()?;
        set_default_executor(&lp, p);
        let name = run_in_executor(&lp, None, || {
            std::thread::current().name().map(str::to_owned)
        })?
        .await?;
        shutdown_default_executor(&lp).await?;
        Ok(name)
    });
    assert_eq!(name.as_deref(), Some("custom-default-0"));
    // The default executor was shut down: no more work.
    assert!(matches!(pool.submit(|| ()), Err(Error::ExecutorShutdown)));
}

#[test]
fn panic_in_the_closure_becomes_panicked() {
    let pool = ThreadPoolExecutor::new(1, "test");
    let p = pool.clone();
    let r = block_on(async move {
        let lp = EventLoop::running()?;
        let r: Result<u8> = run_in_executor(&lp, Some(&p), || panic!("bad job"))?.await;
        Ok(r)
    });
    match r {
        Err(Error::Panicked(m)) => assert_eq!(&*m, "bad job"),
        other => panic!("expected Panicked, got {other:?}"),
    }
    // The worker survived the panic.
    assert_eq!(pool.submit(|| 5).unwrap().result(Some(SAFETY)).unwrap(), 5);
    pool.shutdown(true, false);
}

#[test]
fn work_runs_on_another_thread() {
    let pool = ThreadPoolExecutor::new(1, "test");
    let p = pool.clone();
    let loop_thread = std::thread::current().id();
    let worker: ThreadId = block_on(async move {
        let lp = EventLoop::running()?;
        run_in_executor(&lp, Some(&p), || std::thread::current().id())?.await
    });
    assert_ne!(worker, loop_thread);
    pool.shutdown(true, false);
}

#[test]
fn several_workers_run_jobs_at_the_same_time() {
    let pool = ThreadPoolExecutor::new(2, "pair");
    let (a_tx, a_rx) = mpsc::channel();
    let (b_tx, b_rx) = mpsc::channel();
    // Each job needs the other to be running: with one thread they would time out.
    let a = pool
        .submit(move || {
            a_tx.send(()).unwrap();
            b_rx.recv_timeout(SAFETY).is_ok()
        })
        .unwrap();
    let b = pool
        .submit(move || {
            b_tx.send(()).unwrap();
            a_rx.recv_timeout(SAFETY).is_ok()
        })
        .unwrap();
    assert!(a.result(Some(SAFETY)).unwrap());
    assert!(b.result(Some(SAFETY)).unwrap());
    pool.shutdown(true, false);
}

#[test]
fn default_pool_size_is_min_32_cores_plus_4() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(default_max_workers(), (cores + 4).min(32));
    assert!(default_max_workers() >= 5);
}

#[test]
fn pool_size_is_at_least_one() {
    let pool = ThreadPoolExecutor::new(0, "zero");
    assert_eq!(pool.max_workers(), 1);
    assert_eq!(pool.submit(|| 1).unwrap().result(Some(SAFETY)).unwrap(), 1);
    pool.shutdown(true, false);
}

#[test]
fn submit_after_shutdown_is_executor_shutdown() {
    let pool = ThreadPoolExecutor::new(1, "test");
    pool.shutdown(true, false);
    assert!(matches!(pool.submit(|| 1), Err(Error::ExecutorShutdown)));
    let p = pool.clone();
    block_on(async move {
        let lp = EventLoop::running()?;
        let r = run_in_executor(&lp, Some(&p), || 1);
        assert!(matches!(r, Err(Error::ExecutorShutdown)), "{r:?}");
        Ok(())
    });
}

#[test]
fn shutdown_without_cancel_runs_queued_jobs() {
    let (pool, release, blocker) = busy_pool();
    let queued = pool.submit(|| "ran").unwrap();
    pool.shutdown(false, false);
    assert!(!queued.done());
    release.send(()).unwrap();
    assert_eq!(queued.result(Some(SAFETY)).unwrap(), "ran");
    blocker.result(Some(SAFETY)).unwrap();
    pool.shutdown(true, false);
}

#[test]
fn shutdown_with_cancel_pending_cancels_queued_jobs() {
    let (pool, release, blocker) = busy_pool();
    let ran = Arc::new(AtomicUsize::new(0));
    let queued: Vec<ConcurrentFuture<()>> = (0..3)
        .map(|_| {
            let ran = ran.clone();
            pool.submit(move || {
                ran.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap()
        })
        .collect();
    pool.shutdown(false, true);
    for q in &queued {
        assert!(q.cancelled());
        assert!(q.done());
        assert!(matches!(q.result(Some(Duration::ZERO)), Err(e) if e.is_cancelled()));
    }
    assert!(!blocker.done(), "the running job is not cancelled");
    release.send(()).unwrap();
    pool.shutdown(true, false);
    assert!(blocker.done() && !blocker.cancelled());
    assert_eq!(ran.load(Ordering::SeqCst), 0, "no queued job ran");
}

#[test]
fn cancelling_the_task_before_the_job_starts_cancels_the_job() {
    let (pool, release, blocker) = busy_pool();
    let ran = Arc::new(AtomicBool::new(false));
    let (p, r) = (pool.clone(), ran.clone());
    block_on(async move {
        let lp = EventLoop::running()?;
        let t = run_in_executor(&lp, Some(&p), move || r.store(true, Ordering::SeqCst))?;
        sleep(Duration::ZERO).await?;
        assert!(t.cancel(None));
        assert!(is_cancelled(&t.await));
        Ok(())
    });
    release.send(()).unwrap();
    pool.shutdown(true, false);
    blocker.result(Some(SAFETY)).unwrap();
    assert!(
        !ran.load(Ordering::SeqCst),
        "the job was cancelled before it started"
    );
}

#[test]
fn cancelling_the_task_while_the_job_runs_lets_the_job_finish() {
    let pool = ThreadPoolExecutor::new(1, "test");
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel();
    let p = pool.clone();
    block_on(async move {
        let lp = EventLoop::running()?;
        let t = run_in_executor(&lp, Some(&p), move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
            done_tx.send("finished").unwrap();
        })?;
        started_rx.recv_timeout(SAFETY).expect("the job started");
        assert!(t.cancel(None));
        assert!(is_cancelled(&t.clone().await));
        assert!(t.cancelled());
        release_tx.send(()).unwrap();
        Ok(())
    });
    assert_eq!(done_rx.recv_timeout(SAFETY).unwrap(), "finished");
    pool.shutdown(true, false);
}

// ---------------------------------------------------------------------------------------------
// ConcurrentFuture (PEP 3148)
// ---------------------------------------------------------------------------------------------

#[test]
fn concurrent_future_result_with_timeout_when_not_set_is_timeout() {
    let cf: ConcurrentFuture<u8> = ConcurrentFuture::new();
    assert!(matches!(
        cf.result(Some(Duration::ZERO)),
        Err(Error::Timeout)
    ));
    assert!(matches!(
        cf.take_result(Some(Duration::ZERO)),
        Err(Error::Timeout)
    ));
    assert!(!cf.done());
}

#[test]
fn concurrent_future_states() {
    let cf: ConcurrentFuture<u8> = ConcurrentFuture::new();
    assert!(!cf.done() && !cf.running() && !cf.cancelled());
    assert!(cf.set_running_or_notify_cancel());
    assert!(cf.running());
    assert!(!cf.cancel(), "a running future cannot be cancelled");
    cf.set_result(3).unwrap();
    assert!(cf.done() && !cf.running());
    assert!(matches!(cf.set_result(4), Err(Error::InvalidState(_))));
    assert_eq!(cf.result(None).unwrap(), 3);
    assert_eq!(cf.take_result(None).unwrap(), 3);
    assert!(matches!(cf.take_result(None), Err(Error::InvalidState(_))));
}

#[test]
fn concurrent_future_cancel_before_running() {
    let cf: ConcurrentFuture<u8> = ConcurrentFuture::new();
    assert!(cf.cancel());
    assert!(cf.cancel(), "cancelling again still reports cancelled");
    assert!(cf.cancelled() && cf.done());
    assert!(!cf.set_running_or_notify_cancel(), "the work must not run");
    assert!(matches!(cf.set_result(1), Err(Error::InvalidState(_))));
    assert!(matches!(cf.result(None), Err(e) if e.is_cancelled()));
}

#[test]
fn concurrent_future_set_from_another_thread_wakes_a_blocking_waiter() {
    let cf: ConcurrentFuture<String> = ConcurrentFuture::new();
    let c2 = cf.clone();
    let setter = std::thread::spawn(move || c2.set_result("hi".to_owned()).unwrap());
    assert_eq!(cf.result(Some(SAFETY)).unwrap(), "hi");
    setter.join().unwrap();
}

#[test]
fn concurrent_future_done_callbacks() {
    let cf: ConcurrentFuture<u8> = ConcurrentFuture::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    cf.add_done_callback(move |f| {
        assert!(f.done());
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    cf.set_result(1).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Added to a done future: called at once (PEP 3148).
    let c = calls.clone();
    cf.add_done_callback(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn awaiting_a_concurrent_future_on_a_loop() {
    let cf: ConcurrentFuture<u32> = ConcurrentFuture::new();
    let c2 = cf.clone();
    let v = block_on(async move {
        let setter = std::thread::spawn(move || c2.set_result(99).unwrap());
        let v = cf.await?;
        setter.join().unwrap();
        Ok(v)
    });
    assert_eq!(v, 99);
}

#[test]
fn awaiting_task_cancelled_cancels_a_pending_concurrent_future() {
    let cf: ConcurrentFuture<u32> = ConcurrentFuture::new();
    let c2 = cf.clone();
    block_on(async move {
        let t = spawn(c2)?;
        sleep(Duration::ZERO).await?;
        t.cancel(None);
        assert!(is_cancelled(&t.await));
        Ok(())
    });
    assert!(cf.cancelled());
}

#[test]
fn every_task_awaiting_the_same_concurrent_future_is_woken() {
    let cf: ConcurrentFuture<u32> = ConcurrentFuture::new();
    let woken = block_on(async move {
        let (a, b) = (cf.clone(), cf.clone());
        let first = spawn(async move { a.await.map(|_| "first") })?;
        let second = spawn(async move { b.await.map(|_| "second") })?;
        sleep(Duration::ZERO).await?; // both are waiting now
        cf.set_result(1)?;
        // The value moves to one awaiter; the other gets InvalidState, but both wake up.
        let limit = Duration::from_secs(3600);
        let r1 = tulipa_futures::timeout(limit, first).await;
        let r2 = tulipa_futures::timeout(limit, second).await;
        Ok([r1, r2]
            .iter()
            .filter(|r| !matches!(r, Err(Error::Timeout)))
            .count())
    });
    assert_eq!(woken, 2, "an awaiter was never woken");
}

// ---------------------------------------------------------------------------------------------
// wrap_future
// ---------------------------------------------------------------------------------------------

#[test]
fn wrap_future_gives_the_result_set_on_another_thread() {
    let cf: ConcurrentFuture<&'static str> = ConcurrentFuture::new();
    let c2 = cf.clone();
    let v = block_on(async move {
        let lp = EventLoop::running()?;
        let task = wrap_future(&lp, cf)?;
        let setter = std::thread::spawn(move || c2.set_result("wrapped").unwrap());
        let v = task.await?;
        setter.join().unwrap();
        Ok(v)
    });
    assert_eq!(v, "wrapped");
}

#[test]
fn wrap_future_passes_an_error_through() {
    let cf: ConcurrentFuture<u8> = ConcurrentFuture::new();
    cf.set_exception(Error::InvalidArgument("remote")).unwrap();
    let r = block_on(async move {
        let lp = EventLoop::running()?;
        Ok(wrap_future(&lp, cf)?.await)
    });
    assert!(matches!(r, Err(Error::InvalidArgument("remote"))));
}

#[test]
fn cancelling_the_wrapping_task_cancels_the_concurrent_future() {
    let cf: ConcurrentFuture<u8> = ConcurrentFuture::new();
    let c2 = cf.clone();
    block_on(async move {
        let lp = EventLoop::running()?;
        let t = wrap_future(&lp, c2)?;
        sleep(Duration::ZERO).await?;
        t.cancel(None);
        assert!(is_cancelled(&t.await));
        Ok(())
    });
    assert!(cf.cancelled());
}

#[test]
fn wrap_future_on_a_closed_loop_is_an_error() {
    let lp = EventLoop::new_virtual().unwrap();
    lp.close().unwrap();
    let r = wrap_future(&lp, ConcurrentFuture::<u8>::new());
    assert!(matches!(r, Err(Error::Loop(_))), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// spawn_threadsafe (run_coroutine_threadsafe)
// ---------------------------------------------------------------------------------------------

#[test]
fn cancelling_the_threadsafe_future_cancels_the_task() {
    let lp = EventLoop::new_virtual().unwrap();
    let handle = lp.loop_handle();
    let saw_cancel = Arc::new(AtomicBool::new(false));
    let finished: ConcurrentFuture<()> = ConcurrentFuture::new();
    let (saw, fin) = (saw_cancel.clone(), finished.clone());
    let (spawned_tx, spawned_rx) = mpsc::channel();
    let caller = std::thread::spawn(move || {
        let never: ConcurrentFuture<()> = ConcurrentFuture::new();
        let (started_tx, started_rx) = mpsc::channel();
        let cf = spawn_threadsafe(&handle, async move {
            started_tx.send(()).unwrap();
            let r = never.await;
            saw.store(matches!(&r, Err(e) if e.is_cancelled()), Ordering::SeqCst);
            fin.set_result(()).unwrap();
            r
        })
        .unwrap();
        started_rx.recv_timeout(SAFETY).expect("the task started");
        assert!(cf.cancel());
        spawned_tx.send(()).unwrap();
        cf
    });
    run_until_complete(&lp, finished).unwrap();
    spawned_rx.recv_timeout(SAFETY).unwrap();
    let cf = caller.join().unwrap();
    assert!(cf.cancelled());
    assert!(saw_cancel.load(Ordering::SeqCst), "the task was cancelled");
}

#[test]
fn spawn_threadsafe_on_a_closed_loop_is_an_error() {
    let lp = EventLoop::new_virtual().unwrap();
    let handle = lp.loop_handle();
    lp.close().unwrap();
    let r = spawn_threadsafe(&handle, async { Ok(1) });
    assert!(matches!(r, Err(Error::Loop(_))), "{r:?}");
}

#[test]
fn spawn_threadsafe_onto_a_loop_that_closes_before_running_it_fails_the_future() {
    let lp = EventLoop::new_virtual().unwrap();
    let handle = lp.loop_handle();
    // Queued while the loop is not running; the loop then closes without running it.
    let cf = spawn_threadsafe(&handle, async { Ok(1) }).unwrap();
    assert!(!cf.done());
    lp.close().unwrap();
    let r = cf.result(Some(SAFETY));
    assert!(matches!(r, Err(Error::Loop(_))), "{r:?}");
}

#[test]
fn spawn_threadsafe_task_aborted_by_the_loop_closing_fails_the_future() {
    let lp = EventLoop::new_virtual().unwrap();
    let handle = lp.loop_handle();
    let never: ConcurrentFuture<u32> = ConcurrentFuture::new();
    let started: ConcurrentFuture<()> = ConcurrentFuture::new();
    let s2 = started.clone();
    let cf = spawn_threadsafe(&handle, async move {
        s2.set_result(()).unwrap();
        never.await
    })
    .unwrap();
    run_until_complete(&lp, started).unwrap();
    assert!(!cf.done(), "the task waits");
    lp.close().unwrap(); // aborts the pending task
    let r = cf.result(Some(SAFETY));
    assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
}

#[test]
fn result_with_a_duration_max_timeout_waits_without_a_limit() {
    // Too large for the clock: no limit (it used to overflow and panic).
    let done = ConcurrentFuture::new();
    done.set_result(5u32).unwrap();
    assert_eq!(done.result(Some(Duration::MAX)).unwrap(), 5);
    assert_eq!(done.take_result(Some(Duration::MAX)).unwrap(), 5);
    let pool = ThreadPoolExecutor::new(1, "max-timeout");
    let cf = pool.submit(|| 6u32).unwrap();
    assert_eq!(cf.result(Some(Duration::MAX)).unwrap(), 6);
    pool.shutdown(true, false);
}

#[test]
fn a_burst_of_jobs_gets_one_worker_each_while_a_worker_is_idle() {
    // N jobs that all wait for each other: they finish only if each has its own thread. An idle
    // worker used to be counted for every submission of the burst until it woke up, so too few
    // threads started and the jobs deadlocked.
    const N: usize = 8;
    let pool = ThreadPoolExecutor::new(N + 1, "burst");
    for _ in 0..3 {
        // Leaves idle workers behind: the case that went wrong.
        pool.submit(|| ()).unwrap().result(Some(SAFETY)).unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(N));
        let jobs: Vec<_> = (0..N)
            .map(|_| {
                let b = barrier.clone();
                pool.submit(move || b.wait().is_leader()).unwrap()
            })
            .collect();
        let mut leaders = 0;
        for j in jobs {
            let leader = j
                .result(Some(SAFETY))
                .expect("every job got a worker: none waits forever for a later one");
            leaders += usize::from(leader);
        }
        assert_eq!(leaders, 1);
    }
    pool.shutdown(true, false);
}
