//! # sync_primitives — asyncio's queues and locks between Tulipa tasks
//!
//! ```text
//! cargo run --release --example sync_primitives
//! ```
//!
//! Four small scenes, one per primitive, all on one thread and one event loop:
//!
//! 1. a bounded [`Queue`]: a producer puts jobs faster than two consumers take them, so `put`
//!    waits whenever the queue is full (back-pressure); each consumer marks each job done with
//!    `task_done`, and `join` returns once every job put has been done;
//! 2. a [`Semaphore`] of 2 lets at most two of five workers run at once;
//! 3. a [`Lock`] keeps a read-await-write update atomic: without it, tasks interleaving at the
//!    await would lose updates;
//! 4. an [`Event`] releases every task waiting for it at once.
//!
//! The tasks share state through `Rc<Cell<_>>`: they never run at the same time, so no atomic
//! operation is needed; the primitives are about ordering across `.await`s, not about threads.

use std::cell::{Cell, RefCell};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use tulipa_futures::queue::Queue;
use tulipa_futures::sync::{Event, Lock, Semaphore};
use tulipa_futures::{run, sleep, spawn, Result};

/// Scene 1: a bounded queue with one producer, two consumers and `join`.
async fn queue_scene() -> Result<()> {
    const JOBS: u32 = 6;
    let queue = Queue::new(2); // at most two jobs waiting
    let max_seen = Rc::new(Cell::new(0));
    let done = Rc::new(RefCell::new(Vec::new()));

    // Two consumers: take a job, work on it a little, mark it done. They loop forever; once the
    // work is over they are cancelled (a consumer waiting in `get` gets `Err(Cancelled)`).
    let mut consumers: Vec<tulipa_futures::Task<()>> = Vec::new();
    for who in ["consumer A", "consumer B"] {
        let (q, done) = (queue.clone(), done.clone());
        consumers.push(spawn(async move {
            loop {
                let job: u32 = q.get().await?;
                sleep(Duration::from_millis(5)).await?; // the work
                println!("queue: {who} finished job {job}");
                done.borrow_mut().push(job);
                q.task_done()?;
            }
        })?);
    }

    // The producer: `put` waits while the queue is full.
    for job in 1..=JOBS {
        queue.put(job).await?;
        max_seen.set(max_seen.get().max(queue.qsize()));
    }
    println!("queue: all {JOBS} jobs put");

    // `join` returns once `task_done` was called for every job put.
    queue.join().await?;
    let mut finished = done.borrow().clone();
    finished.sort_unstable();
    println!(
        "queue: joined; {} jobs processed, each once: {}",
        finished.len(),
        finished == (1..=JOBS).collect::<Vec<_>>()
    );
    println!(
        "queue: never more than {} of {} jobs waiting",
        max_seen.get(),
        queue.maxsize()
    );

    for c in consumers {
        c.cancel(None);
        let _ = c.await; // Err(Cancelled): the consumers were waiting in `get`
    }
    Ok(())
}

/// Scene 2: a semaphore limits how many workers run at once.
async fn semaphore_scene() -> Result<()> {
    let sem = Semaphore::new(2);
    let running = Rc::new(Cell::new(0));
    let most = Rc::new(Cell::new(0));
    let mut workers = Vec::new();
    for id in 1..=5 {
        let (sem, running, most) = (sem.clone(), running.clone(), most.clone());
        workers.push(spawn(async move {
            let _permit = sem.acquire().await?; // released when `_permit` drops
            running.set(running.get() + 1);
            most.set(most.get().max(running.get()));
            sleep(Duration::from_millis(5)).await?;
            running.set(running.get() - 1);
            Ok(id)
        })?);
    }
    for w in workers {
        w.await?;
    }
    println!("semaphore: at most {} of 5 workers ran at once", most.get());
    Ok(())
}

/// Scene 3: a lock makes a read-await-write update atomic.
async fn lock_scene() -> Result<()> {
    let lock = Lock::new();
    let counter = Rc::new(Cell::new(0));
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (lock, counter) = (lock.clone(), counter.clone());
        tasks.push(spawn(async move {
            let _guard = lock.acquire().await?;
            let read = counter.get();
            // Another task would run here and read the same value if it did not need the lock.
            sleep(Duration::from_millis(1)).await?;
            counter.set(read + 1);
            Ok(())
        })?);
    }
    for t in tasks {
        t.await?;
    }
    println!("lock: counter = {} after 10 increments", counter.get());
    Ok(())
}

/// Scene 4: an event releases all its waiters at once.
async fn event_scene() -> Result<()> {
    let ready = Event::new();
    let mut waiters = Vec::new();
    for id in 1..=3 {
        let ready = ready.clone();
        waiters.push(spawn(async move {
            ready.wait().await?;
            Ok(id)
        })?);
    }
    sleep(Duration::from_millis(5)).await?;
    let waiting = waiters.iter().filter(|w| !w.done()).count();
    println!("event: {waiting} waiters blocked before set");
    ready.set();
    let mut released = Vec::new();
    for w in waiters {
        released.push(w.await?);
    }
    println!("event: set; waiters {released:?} released");
    Ok(())
}

fn main() -> ExitCode {
    let all = async {
        queue_scene().await?;
        semaphore_scene().await?;
        lock_scene().await?;
        event_scene().await
    };
    match run(all) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sync_primitives: {error}");
            ExitCode::FAILURE
        }
    }
}
