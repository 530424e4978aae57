//! Helpers shared by the loop's test binaries.

use std::time::{Duration, Instant};

/// How long [`LoopThread::wait_until_blocked`] waits before it fails the test.
const BLOCK_LIMIT: Duration = Duration::from_secs(10);

/// The thread a loop runs on, as the kernel knows it. Another thread can wait until that loop is
/// really blocked in its poller before it acts, so that a test of a wake-up cannot pass by way of
/// the non-blocking path (the loop still running callbacks when the wake-up arrives).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LoopThread {
    /// The kernel's thread id, where `/proc` tells it (Linux); elsewhere nothing to wait on.
    tid: Option<u32>,
}

impl LoopThread {
    /// The calling thread.
    pub(crate) fn current() -> Self {
        let tid = std::fs::read_link("/proc/thread-self")
            .ok()
            .and_then(|p| p.file_name()?.to_str()?.parse().ok());
        LoopThread { tid }
    }

    /// Returns once the thread sits in an epoll wait (read from `/proc/self/task/TID/syscall`,
    /// which names the system call a blocked thread is in). Panics after [`BLOCK_LIMIT`]: a loop
    /// that never blocks with nothing to do is itself a bug. Without `/proc` it returns at once.
    pub(crate) fn wait_until_blocked(&self) {
        let Some(tid) = self.tid else { return };
        let path = format!("/proc/self/task/{tid}/syscall");
        let start = Instant::now();
        loop {
            let now = std::fs::read_to_string(&path).unwrap_or_default();
            let nr = now
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<i64>().ok());
            if nr.is_some_and(|nr| EPOLL_WAITS.contains(&nr)) {
                return;
            }
            assert!(
                start.elapsed() < BLOCK_LIMIT,
                "the loop thread never blocked in its poller (last: {now:?})"
            );
            std::thread::yield_now();
        }
    }
}

/// `epoll_wait`, `epoll_pwait`, `epoll_pwait2`: the waits of both Linux pollers the loop has.
#[cfg(target_arch = "x86_64")]
const EPOLL_WAITS: &[i64] = &[232, 281, 441];
#[cfg(target_arch = "aarch64")]
const EPOLL_WAITS: &[i64] = &[22, 441];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const EPOLL_WAITS: &[i64] = &[];
