//! Signals through a self-pipe (asyncio's `signal.set_wakeup_fd`, done per signal).
//!
//! `signal-hook` installs the process-wide handler; on delivery it only writes a byte into the
//! write end of a socket pair. The loop watches the read end with an ordinary reader and runs the
//! user's handler as a normal callback, so the handler never runs in signal context and may do
//! anything a callback may do.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;

use signal_hook::SigId;

use crate::error::{Error, Result};

/// Checks that `sig` names a signal that may be caught.
pub(crate) fn validate(sig: i32) -> Result<()> {
    if !(1..=64).contains(&sig) {
        return Err(Error::InvalidSignal {
            signal: sig,
            reason: "not a valid signal number",
        });
    }
    if signal_hook::consts::FORBIDDEN.contains(&sig) {
        return Err(Error::InvalidSignal {
            signal: sig,
            reason: "this signal cannot be caught (SIGKILL, SIGSTOP, SIGILL, SIGFPE, SIGSEGV)",
        });
    }
    Ok(())
}

/// True on the process's main thread (the thread whose id equals the process id).
pub(crate) fn is_main_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        // "/proc/thread-self" links to "<pid>/task/<tid>"; the main thread has tid == pid.
        match std::fs::read_link("/proc/thread-self") {
            Ok(p) => {
                let s = p.to_string_lossy();
                let mut parts = s.split('/');
                let pid = parts.next();
                let tid = parts.nth(1);
                pid.is_some() && pid == tid
            }
            Err(_) => std::thread::current().name() == Some("main"),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        std::thread::current().name() == Some("main")
    }
}

/// One caught signal: the registration and the read end of its self-pipe.
#[derive(Debug)]
pub(crate) struct SignalPipe {
    id: SigId,
    read: UnixStream,
}

impl SignalPipe {
    pub(crate) fn register(sig: i32) -> Result<SignalPipe> {
        let op = || format!("add_signal_handler({sig})");
        let (read, write) = UnixStream::pair().map_err(|e| Error::io(op(), e))?;
        read.set_nonblocking(true).map_err(|e| Error::io(op(), e))?;
        write
            .set_nonblocking(true)
            .map_err(|e| Error::io(op(), e))?;
        let id = signal_hook::low_level::pipe::register(sig, write).map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidInput {
                Error::InvalidSignal {
                    signal: sig,
                    reason: "the operating system refused to catch it",
                }
            } else {
                Error::io(op(), e)
            }
        })?;
        Ok(SignalPipe { id, read })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Empties the pipe; several deliveries may have collapsed into one wake-up.
    pub(crate) fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.read).read(&mut buf) {
            if n == 0 {
                break;
            }
        }
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        signal_hook::low_level::unregister(self.id);
    }
}
