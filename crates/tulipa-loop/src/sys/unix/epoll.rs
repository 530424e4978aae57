//! The Linux poller: epoll driven directly through `rustix`, level-triggered (edge-triggered for
//! the fds whose reader drains them, see `EventLoop::add_reader_edge`), with an `eventfd` for
//! wake-ups from other threads.
//!
//! Why not `polling` here: its epoll backend re-arms a one-shot `timerfd` and its notifier on
//! every wait (`timerfd_settime`, two `epoll_ctl`, a `read` of the notifier), five syscalls where
//! one does. A loop that wakes once per message pays them once per message, which is the gap
//! between a `polling`-based echo server and a raw epoll one (see `docs/benchmarks.md`). Here a
//! wait is one `epoll_pwait`: fds stay registered level-triggered, the timeout goes to the kernel
//! in milliseconds rounded up (a timer never fires early; asyncio and tokio keep 1 ms too), and
//! the `eventfd` is registered once, level-triggered, and read only when it fired.
//!
//! Registration contract: the loop deletes each fd from the interest set when the last callback
//! on it is removed and when the loop closes. A user who closes an fd without removing its reader
//! first (asyncio's rule says not to) leaves nothing stale behind: the kernel drops a closed fd
//! from the epoll set by itself, and the `ENOENT`/`EEXIST`/`EBADF` answers that follow are
//! handled below, never undefined behaviour.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rustix::event::epoll::{self, EventData, EventFlags};
use rustix::event::{eventfd, EventfdFlags, Timespec};

/// The `epoll` data of the notifier; fds are never negative, so no fd collides with it.
const NOTIFY: u64 = u64::MAX;
/// How many events one wait takes; more stay pending for the next wait (level-triggered).
const BATCH: usize = 1024;
/// Longest single wait: `epoll_pwait` takes an `int` of milliseconds. The loop simply waits again.
const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

/// A ready fd as one wait reported it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub(crate) fd: RawFd,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// The peer ended its side, the fd failed, or urgent data came (a read stops at its
    /// mark): no further edge may come for what is left.
    pub(crate) hangup: bool,
}

/// The buffer one wait fills; owned by the loop, reused across waits.
pub(crate) struct Events {
    list: Vec<epoll::Event>,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("len", &self.list.len())
            .finish()
    }
}

impl Events {
    pub(crate) fn new() -> Self {
        Events {
            list: Vec::with_capacity(BATCH),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.list.clear();
    }

    /// The fd events of the last wait (the notifier's own event is not one of them).
    pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.list.iter().filter_map(|ev| {
            let data = ev.data.u64();
            if data == NOTIFY {
                return None;
            }
            let f = ev.flags;
            Some(Ready {
                fd: data as RawFd,
                readable: f.intersects(read_flags() | EventFlags::RDHUP),
                writable: f.intersects(write_flags()),
                hangup: f.intersects(
                    EventFlags::RDHUP | EventFlags::HUP | EventFlags::ERR | EventFlags::PRI,
                ),
            })
        })
    }

    /// How many fd events the last wait reported.
    pub(crate) fn len(&self) -> usize {
        self.list
            .iter()
            .filter(|ev| ev.data.u64() != NOTIFY)
            .count()
    }
}

fn read_flags() -> EventFlags {
    EventFlags::IN | EventFlags::HUP | EventFlags::ERR | EventFlags::PRI
}

fn write_flags() -> EventFlags {
    EventFlags::OUT | EventFlags::HUP | EventFlags::ERR
}

/// An epoll instance plus its wake-up `eventfd`. `Send + Sync`: other threads only `notify`.
#[derive(Debug)]
pub(crate) struct Poller {
    epoll: OwnedFd,
    notifier: OwnedFd,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let notifier = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &notifier,
            EventData::new_u64(NOTIFY),
            EventFlags::IN,
        )?;
        Ok(Poller { epoll, notifier })
    }

    /// Registers `fd` for the given interest (level-triggered unless `edge`), or updates its
    /// registration.
    pub(crate) fn register(
        &self,
        fd: RawFd,
        readable: bool,
        writable: bool,
        edge: bool,
        existing: bool,
    ) -> io::Result<()> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::BADF.raw_os_error(),
            ));
        }
        // Edge-triggered, the end of the peer's stream is asked for too (`RDHUP`): data and the
        // end arriving together are one edge, and the loop must learn that an end is left.
        let mut flags = if edge {
            EventFlags::ET | EventFlags::RDHUP
        } else {
            EventFlags::empty()
        };
        if readable {
            flags |= read_flags();
        }
        if writable {
            flags |= write_flags();
        }
        let data = EventData::new_u64(fd as u64);
        // SAFETY: the borrow lasts only for the `epoll_ctl` call below; if the user closed `fd`,
        // the kernel answers EBADF (or the number names another open file, which the loop then
        // watches on the user's behalf, as `polling` and asyncio would too). epoll keeps no
        // reference to the borrow afterwards: it tracks the open file description itself.
        let source = unsafe { BorrowedFd::borrow_raw(fd) };
        let add = || epoll::add(&self.epoll, source, data, flags);
        let modify = || epoll::modify(&self.epoll, source, data, flags);
        let r = if existing {
            match modify() {
                // The user closed the fd and the number was reused: register the new file.
                Err(rustix::io::Errno::NOENT) => add(),
                r => r,
            }
        } else {
            match add() {
                Err(rustix::io::Errno::EXIST) => modify(),
                r => r,
            }
        };
        r.map_err(io::Error::from)
    }

    /// Removes `fd` from the interest set. Errors (the fd was already closed, so the kernel has
    /// dropped it itself) are ignored.
    pub(crate) fn delete(&self, fd: RawFd) {
        if fd < 0 {
            return;
        }
        // SAFETY: the borrow lasts only for this `epoll_ctl`; a closed fd makes it fail harmlessly.
        let source = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = epoll::delete(&self.epoll, source);
    }

    /// Waits up to `timeout` (forever when `None`) for events; one `epoll_pwait`, plus one
    /// `read` of the eventfd when another thread woke the loop.
    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.list.clear();
        let ts = timeout.map(|t| {
            let t = t.min(MAX_WAIT);
            Timespec {
                tv_sec: t.as_secs() as _,
                tv_nsec: t.subsec_nanos() as _,
            }
        });
        match epoll::wait(
            &self.epoll,
            rustix::buffer::spare_capacity(&mut events.list),
            ts.as_ref(),
        ) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        if events.list.iter().any(|ev| ev.data.u64() == NOTIFY) {
            self.drain_notifier();
        }
        Ok(())
    }

    /// Wakes the current or the next `wait`. Callers coalesce: one notify per sleep is enough.
    pub(crate) fn notify(&self) -> io::Result<()> {
        match rustix::io::write(&self.notifier, &1u64.to_ne_bytes()) {
            // The counter is saturated: a wake-up is pending anyway.
            Ok(_) | Err(rustix::io::Errno::AGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn drain_notifier(&self) {
        let mut buf = [0u8; 8];
        // Non-blocking: EAGAIN means another wait already drained it.
        let _ = rustix::io::read(self.notifier.as_fd(), &mut buf);
    }
}
