//! Pieces shared by the workloads of every runtime: sizes, the deterministic delays, a countdown
//! that wakes one waiting future, round-trip timing, current and peak RSS.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Callbacks (or tasks) in the `callbacks` workload.
pub const CALLBACKS: u64 = 1_000_000;
/// Timers in the `timers` and `timers_cancel` workloads.
pub const TIMERS: u64 = 200_000;
/// Upper bound of the random timer delays, in microseconds (10 ms).
pub const MAX_DELAY_US: u64 = 10_000;
/// How far ahead `timers_cancel` schedules its timers.
pub const CANCEL_AHEAD: Duration = Duration::from_secs(10);
/// Round trips in the `threadsafe_latency` workload.
pub const ROUND_TRIPS: u64 = 20_000;

/// The delays of the `timers` workload: xorshift64 from a fixed seed, 0–10 ms in whole
/// microseconds, the same sequence for every runtime.
#[derive(Debug, Clone)]
pub struct Delays {
    state: u64,
}

impl Delays {
    /// The sequence from its fixed seed.
    pub fn new() -> Self {
        Delays {
            state: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

impl Default for Delays {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        Some(Duration::from_micros(x % (MAX_DELAY_US + 1)))
    }
}

/// Counts down from `n`; the call of [`done`](Countdown::done) that reaches zero wakes the future
/// of [`wait`](Countdown::wait). `Send + Sync`, so tokio's `spawn` accepts it; on one thread
/// its atomics are uncontended.
#[derive(Debug)]
pub struct Countdown {
    left: AtomicU64,
    waker: Mutex<Option<Waker>>,
}

impl Countdown {
    /// A countdown from `n`.
    pub fn new(n: u64) -> Arc<Self> {
        Arc::new(Countdown {
            left: AtomicU64::new(n),
            waker: Mutex::new(None),
        })
    }

    /// Counts one; wakes the waiter when this was the last.
    pub fn done(&self) {
        if self.left.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self
                .waker
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(w) = waker {
                w.wake();
            }
        }
    }

    /// Resolves once the count reached zero.
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.left.load(Ordering::Acquire) == 0 {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap_or_else(PoisonError::into_inner) = Some(cx.waker().clone());
            // Checked again under the stored waker: a `done` in between would have missed it.
            if self.left.load(Ordering::Acquire) == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
}

/// Counts a [`Countdown`] down when dropped: put into a task's future, it tells when the runtime
/// has really dropped a cancelled task.
#[derive(Debug)]
pub struct DropSignal(pub Arc<Countdown>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.done();
    }
}

/// The reply end of one round trip: the callback on the loop calls [`send`](Reply::send).
#[derive(Debug)]
pub struct Reply(mpsc::Sender<()>);

impl Reply {
    /// Answers the thread waiting for this round trip.
    pub fn send(self) {
        // The measuring thread waits for every reply; a send can only fail once it is gone.
        let _ = self.0.send(());
    }
}

/// Times `n` round trips from the calling thread: each one hands a [`Reply`] to `submit`, which
/// must get it answered on the loop's thread (and return true), and waits for the answer. Stops
/// early when `submit` returns false. Returns every round trip's duration in nanoseconds and the
/// total time.
pub fn round_trips(n: u64, mut submit: impl FnMut(Reply) -> bool) -> (Vec<u64>, Duration) {
    let (tx, rx) = mpsc::channel();
    let mut took = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    let start = Instant::now();
    for _ in 0..n {
        let t0 = Instant::now();
        if !submit(Reply(tx.clone())) || rx.recv().is_err() {
            break;
        }
        took.push(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
    }
    (took, start.elapsed())
}

/// The median of `values` (the upper one of the two middle values for an even count); `None`
/// when empty.
pub fn median<T: Copy + PartialOrd>(values: &[T]) -> Option<T> {
    percentile(values, 50)
}

/// The `p`-th percentile of `values` (nearest rank, `p` in 0..=100); `None` when empty.
pub fn percentile<T: Copy + PartialOrd>(values: &[T], p: usize) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let rank = (v.len() * p.min(100) / 100).min(v.len().saturating_sub(1));
    v.get(rank).copied()
}

/// This process's peak resident set size in KiB (`VmHWM` of `/proc/self/status`); `None` where
/// that file does not exist.
pub fn peak_rss_kib() -> Option<u64> {
    proc_status_kib("VmHWM:")
}

/// This process's current resident set size in KiB (`VmRSS` of `/proc/self/status`); `None`
/// where that file does not exist.
pub fn rss_kib() -> Option<u64> {
    proc_status_kib("VmRSS:")
}

fn proc_status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_deterministic_and_bounded() {
        let a: Vec<_> = Delays::new().take(1000).collect();
        let b: Vec<_> = Delays::new().take(1000).collect();
        assert_eq!(a, b);
        assert!(a.iter().all(|d| *d <= Duration::from_micros(MAX_DELAY_US)));
        assert!(a.iter().any(|d| *d > Duration::from_millis(5)));
    }

    #[test]
    fn median_picks_the_middle() {
        assert_eq!(median(&[3, 1, 2]), Some(2));
        assert_eq!(median::<u32>(&[]), None);
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 99), Some(100));
        assert_eq!(percentile(&v, 100), Some(100));
        assert_eq!(percentile(&v, 0), Some(1));
    }

    #[test]
    fn countdown_wakes_its_waiter() {
        let cd = Countdown::new(2);
        cd.done();
        cd.done();
        futures_lite::future::block_on(cd.wait());
    }

    #[test]
    fn rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(peak_rss_kib().is_some_and(|kib| kib > 0));
            assert!(rss_kib().is_some_and(|kib| kib > 0));
        }
    }
}
