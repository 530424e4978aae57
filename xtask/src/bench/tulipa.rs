//! The `loop` workloads on `tulipa-loop`: plain callbacks and timers on an [`EventLoop`], no tasks.
//!
//! `tulipa-micro` runs these same functions.

use std::cell::Cell;
use std::rc::Rc;
use std::thread;
use std::time::Instant;

use tulipa_loop::{EventLoop, TimerHandle};

use super::common::{self, Delays};
use super::{BenchResult, Sample, Workload};

/// Runs `workload` at its full size.
///
/// # Errors
///
/// When the loop fails or `workload` is not of suite `loop`.
pub fn run(workload: Workload) -> BenchResult {
    match workload {
        Workload::Callbacks => callbacks(common::CALLBACKS),
        Workload::Timers => timers(common::TIMERS),
        Workload::TimersCancel => timers_cancel(common::TIMERS),
        Workload::ThreadsafeLatency => threadsafe_latency(common::ROUND_TRIPS),
        Workload::Spawn
        | Workload::Tasks
        | Workload::Resolve
        | Workload::Executor
        | Workload::PendingMemory
        | Workload::PipeLocal
        | Workload::PipeShared
        | Workload::PipeThreads
        | Workload::RendezvousLocal => Err(super::wrong_suite(workload, "bench::tulipa")),
    }
}

/// `n` `call_soon` callbacks, each bumping a counter; the last one stops the loop. Measures
/// scheduling and running.
///
/// # Errors
///
/// When the loop fails.
pub fn callbacks(n: u64) -> BenchResult {
    let lp = EventLoop::new()?;
    let count = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    for _ in 1..n {
        let c = count.clone();
        lp.call_soon(move || c.set(c.get() + 1))?;
    }
    let (c, stopper) = (count.clone(), lp.clone());
    lp.call_soon(move || {
        c.set(c.get() + 1);
        stopper.stop();
    })?;
    lp.run_forever()?;
    let elapsed = start.elapsed();
    lp.close()?;
    check(count.get(), n, "callbacks ran")?;
    Ok(Sample::new(n, elapsed))
}

struct Fired {
    count: Cell<u64>,
    n: u64,
    lp: EventLoop,
}

impl Fired {
    fn fire(&self) {
        self.count.set(self.count.get() + 1);
        if self.count.get() == self.n {
            self.lp.stop();
        }
    }
}

/// `n` `call_later` timers at the deterministic 0–10 ms [`Delays`], run until all fired.
///
/// # Errors
///
/// When the loop fails.
pub fn timers(n: u64) -> BenchResult {
    let lp = EventLoop::new()?;
    let fired = Rc::new(Fired {
        count: Cell::new(0),
        n,
        lp: lp.clone(),
    });
    let start = Instant::now();
    for delay in Delays::new().take(usize::try_from(n)?) {
        let f = fired.clone();
        lp.call_later(delay, move || f.fire())?;
    }
    lp.run_forever()?;
    let elapsed = start.elapsed();
    lp.close()?;
    check(fired.count.get(), n, "timers fired")?;
    Ok(Sample::new(n, elapsed))
}

/// `n` timers 10 s ahead, then `TimerHandle::cancel` on each, then one loop iteration (which
/// drops the cancelled entries from the heap). Measures all three.
///
/// # Errors
///
/// When the loop fails or a cancelled timer is left behind.
pub fn timers_cancel(n: u64) -> BenchResult {
    let lp = EventLoop::new()?;
    let count = Rc::new(Cell::new(0u64));
    let start = Instant::now();
    let handles = (0..n)
        .map(|_| {
            let c = count.clone();
            lp.call_later(common::CANCEL_AHEAD, move || c.set(c.get() + 1))
        })
        .collect::<Result<Vec<TimerHandle>, _>>()?;
    for h in &handles {
        h.cancel();
    }
    drop(handles);
    lp.stop();
    lp.run_forever()?;
    let elapsed = start.elapsed();
    let stats = lp.stats();
    lp.close()?;
    check(count.get(), 0, "cancelled timers that ran")?;
    check(stats.timer_heap as u64, 0, "timer heap entries left")?;
    Ok(Sample::new(n, elapsed))
}

/// `n` round trips: another thread calls `LoopHandle::call_soon_threadsafe`, the callback on
/// the loop answers through a channel.
///
/// # Errors
///
/// When the loop fails or the measuring thread panics.
pub fn threadsafe_latency(n: u64) -> BenchResult {
    let lp = EventLoop::new()?;
    let door = lp.loop_handle();
    let worker = thread::spawn(move || {
        let result = common::round_trips(n, |reply| {
            door.call_soon_threadsafe(move || reply.send()).is_ok()
        });
        // The loop may already be closed if it failed; then there is nothing to stop.
        let _ = door.stop();
        result
    });
    let ran = lp.run_forever();
    let (took, elapsed) = worker.join().map_err(|_| "the measuring thread panicked")?;
    ran?;
    lp.close()?;
    check(took.len() as u64, n, "round trips")?;
    Ok(Sample::from_round_trips(&took, elapsed))
}

fn check(got: u64, want: u64, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("tulipa: {what}: {got}, expected {want}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_complete() {
        assert_eq!(callbacks(1000).unwrap().ops, 1000);
        assert_eq!(timers(500).unwrap().ops, 500);
        assert_eq!(timers_cancel(500).unwrap().ops, 500);
        let s = threadsafe_latency(50).unwrap();
        assert!(s.median_us.is_some_and(|us| us > 0.0));
    }
}
