//! The portable poller: `polling` (kqueue, event ports, epoll), level-triggered. Used on every
//! Unix but Linux, and on Linux with `--cfg tulipa_polling` (CI builds and tests it that way).
//!
//! `polling` marks registration `unsafe` because the poller must not outlive the source's
//! registration on every backend. The loop keeps that contract: it deletes each fd from the poller
//! when the last callback on it is removed and when the loop closes; the user's side of the contract
//! (remove the reader before closing the fd) is asyncio's rule too and is documented on
//! `add_reader`. On epoll and kqueue a closed fd leaves the interest set by itself, so a user who
//! breaks that rule gets stale-fd errors, which are handled here, never undefined behaviour.

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use polling::{Event, PollMode};

/// A ready fd as one wait reported it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ready {
    pub(crate) fd: RawFd,
    pub(crate) readable: bool,
    pub(crate) writable: bool,
    /// Always false: this backend is level-triggered only.
    pub(crate) hangup: bool,
}

/// The buffer one wait fills; owned by the loop, reused across waits.
#[derive(Debug)]
pub(crate) struct Events(polling::Events);

impl Events {
    pub(crate) fn new() -> Self {
        Events(polling::Events::with_capacity(
            NonZeroUsize::new(1024).expect("1024 is not zero"),
        ))
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Ready> + '_ {
        self.0.iter().map(|ev| Ready {
            fd: ev.key as RawFd,
            readable: ev.readable,
            writable: ev.writable,
            hangup: false,
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

fn interest(fd: RawFd, readable: bool, writable: bool) -> Event {
    // The key is the fd itself: fds are unique within a process while open.
    let key = usize::try_from(fd).unwrap_or(usize::MAX - 1);
    match (readable, writable) {
        (true, true) => Event::all(key),
        (true, false) => Event::readable(key),
        (false, true) => Event::writable(key),
        (false, false) => Event::none(key),
    }
}

/// `polling::Poller`, with the loop's registration rules.
#[derive(Debug)]
pub(crate) struct Poller(polling::Poller);

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        polling::Poller::new().map(Poller)
    }

    /// Registers `fd` for the given interest, or updates an existing registration. Always
    /// level-triggered: `edge` is a hint that every reader drains, and level-triggered
    /// notification is correct for those too (edge mode is not on every `polling` backend).
    pub(crate) fn register(
        &self,
        fd: RawFd,
        readable: bool,
        writable: bool,
        _edge: bool,
        existing: bool,
    ) -> io::Result<()> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(9)); // EBADF
        }
        let ev = interest(fd, readable, writable);
        let add = || {
            // SAFETY: the fd is deleted from this poller by `delete` before the loop forgets it
            // and when the loop closes; see the module documentation for the user's half.
            unsafe { self.0.add_with_mode(fd, ev, PollMode::Level) }
        };
        let modify = || {
            // SAFETY: `fd` is an open descriptor the caller registered (or the call fails with
            // EBADF/ENOENT, which is handled); the borrow lasts only for this syscall.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            self.0.modify_with_mode(borrowed, ev, PollMode::Level)
        };
        if existing {
            match modify() {
                // The user closed the fd and the number was reused: register the new one afresh.
                Err(e) if e.raw_os_error() == Some(2) => add(),
                r => r,
            }
        } else {
            match add() {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => modify(),
                r => r,
            }
        }
    }

    /// Removes `fd` from the poller. Errors (the fd was already closed) are ignored: the kernel
    /// has dropped the registration itself then.
    pub(crate) fn delete(&self, fd: RawFd) {
        if fd < 0 {
            return;
        }
        // SAFETY: the borrow lasts only for this syscall; a closed fd makes it fail harmlessly.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let _ = self.0.delete(borrowed);
    }

    pub(crate) fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        events.0.clear();
        self.0.wait(&mut events.0, timeout).map(|_| ())
    }

    pub(crate) fn notify(&self) -> io::Result<()> {
        self.0.notify()
    }
}
