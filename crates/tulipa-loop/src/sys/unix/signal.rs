//! Signals through a self-pipe (asyncio's `signal.set_wakeup_fd`, done per signal).
//!
//! `signal-hook` installs the process-wide handler; on delivery it only writes a byte into the
//! write end of a socket pair. The loop watches the read end with an ordinary reader and runs the
//! user's handler as a normal callback, so the handler never runs in signal context and may do
//! anything a callback may do.
//!
//! Removing the handler (or closing its loop) gives the signal its default action back, as
//! asyncio's `remove_signal_handler` does with `SIG_DFL`: signal-hook keeps its process-wide
//! handler installed, so each caught signal also gets a "conditional default" action that emulates
//! the default action (terminate, for most signals) whenever no Tulipa handler holds the signal.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

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

/// Per signal: the flag that makes signal-hook run the default action (registered once per
/// signal for the life of the process), and how many Tulipa self-pipes hold the signal. The
/// flag is true exactly when none does: several loops on the main thread may each hold one.
struct DefaultAction {
    sig: i32,
    flag: Arc<AtomicBool>,
    holders: usize,
}

static DEFAULT_ACTION: Mutex<Vec<DefaultAction>> = Mutex::new(Vec::new());

/// A self-pipe starts holding `sig`: its default action is off.
fn hold(sig: i32) -> io::Result<()> {
    let mut all = DEFAULT_ACTION
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let entry = match all.iter().position(|d| d.sig == sig) {
        Some(i) => &mut all[i],
        None => {
            let flag = Arc::new(AtomicBool::new(false));
            signal_hook::flag::register_conditional_default(sig, flag.clone())?;
            all.push(DefaultAction {
                sig,
                flag,
                holders: 0,
            });
            let last = all.len() - 1;
            &mut all[last]
        }
    };
    entry.holders += 1;
    entry.flag.store(false, Ordering::SeqCst);
    Ok(())
}

/// A self-pipe lets go of `sig`: the default action is back once no other one holds it.
fn release(sig: i32) {
    let mut all = DEFAULT_ACTION
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(entry) = all.iter_mut().find(|d| d.sig == sig) {
        entry.holders = entry.holders.saturating_sub(1);
        if entry.holders == 0 {
            entry.flag.store(true, Ordering::SeqCst);
        }
    }
}

/// One caught signal: the registration and the read end of its self-pipe.
#[derive(Debug)]
pub(crate) struct SignalPipe {
    id: SigId,
    read: UnixStream,
    /// The signal, released when this pipe goes (see [`release`]).
    sig: i32,
}

impl SignalPipe {
    pub(crate) fn register(sig: i32) -> Result<SignalPipe> {
        let op = || format!("add_signal_handler({sig})");
        let (read, write) = UnixStream::pair().map_err(|e| Error::io(op(), e))?;
        read.set_nonblocking(true).map_err(|e| Error::io(op(), e))?;
        write
            .set_nonblocking(true)
            .map_err(|e| Error::io(op(), e))?;
        let refused = |e: io::Error| {
            if e.kind() == io::ErrorKind::InvalidInput {
                Error::InvalidSignal {
                    signal: sig,
                    reason: "the operating system refused to catch it",
                }
            } else {
                Error::io(op(), e)
            }
        };
        hold(sig).map_err(refused)?;
        let id = match signal_hook::low_level::pipe::register(sig, write) {
            Ok(id) => id,
            Err(e) => {
                release(sig);
                return Err(refused(e));
            }
        };
        Ok(SignalPipe { id, read, sig })
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
        release(self.sig);
    }
}
