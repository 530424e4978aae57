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

    /// Returns once the thread sits in an epoll wait that may block, read from
    /// `/proc/self/task/TID/syscall` (the system call a blocked thread is in, and its
    /// arguments); a zero timeout, the non-blocking poll, does not count. Panics after
    /// [`BLOCK_LIMIT`]: a loop that never blocks with nothing to do is itself a bug.
    ///
    /// Where that file cannot tell (no `/proc`, a sandbox that hides it, an architecture whose
    /// numbers are not listed here) it returns at once, and the test checks less.
    pub(crate) fn wait_until_blocked(&self) {
        let Some(tid) = self.tid else { return };
        if EPOLL_WAITS.is_empty() {
            return;
        }
        let path = format!("/proc/self/task/{tid}/syscall");
        let start = Instant::now();
        loop {
            let Ok(now) = std::fs::read_to_string(&path) else {
                return;
            };
            match blocking_epoll_wait(&now) {
                Some(true) => return,
                Some(false) => {}
                // Neither a syscall nor "running": this kernel does not say.
                None => return,
            }
            assert!(
                start.elapsed() < BLOCK_LIMIT,
                "the loop thread never blocked in its poller (last: {now:?})"
            );
            std::thread::yield_now();
        }
    }
}

/// Whether a `/proc/.../syscall` line shows an epoll wait that may block; `None` when the line
/// says nothing useful.
fn blocking_epoll_wait(line: &str) -> Option<bool> {
    if line.starts_with("running") {
        return Some(false);
    }
    let mut fields = line.split_whitespace();
    let nr: i64 = fields.next()?.parse().ok()?;
    if !EPOLL_WAITS.contains(&nr) {
        return Some(false);
    }
    if nr == EPOLL_PWAIT2 {
        // Its timeout is a pointer (null: no limit); what it points to is not shown.
        return Some(true);
    }
    // epoll_wait / epoll_pwait: the fourth argument is the timeout in ms, 0 = do not block.
    let timeout = fields.nth(3)?;
    let timeout = u64::from_str_radix(timeout.trim_start_matches("0x"), 16).ok()?;
    Some(timeout != 0)
}

/// `epoll_wait`, `epoll_pwait`, `epoll_pwait2`: the waits of both Linux pollers the loop has.
#[cfg(target_arch = "x86_64")]
const EPOLL_WAITS: &[i64] = &[232, 281, EPOLL_PWAIT2];
#[cfg(target_arch = "aarch64")]
const EPOLL_WAITS: &[i64] = &[22, EPOLL_PWAIT2];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const EPOLL_WAITS: &[i64] = &[];
/// `epoll_pwait2`, whose timeout argument is a pointer (the same number on both).
const EPOLL_PWAIT2: i64 = 441;
