//! # ticker — the Tulipa event loop in one small program
//!
//! ```text
//! cargo run --release --example ticker                     # tick every 500 ms until Ctrl-C
//! cargo run --release --example ticker -- --ticks 5        # stop by itself after 5 ticks
//! cargo run --release --example ticker -- --interval-ms 100
//! ```
//!
//! One thread, one [`EventLoop`], four kinds of work sharing it without a lock or a thread:
//!
//! 1. a **repeating timer** ([`EventLoop::call_repeatedly`]) prints `tick N`;
//! 2. a **one-shot timer** ([`EventLoop::call_later`]) prints a message once;
//! 3. a **reader on stdin** ([`EventLoop::add_reader`]) echoes every line you type, and removes
//!    itself at end of input (Ctrl-D, or the end of a pipe);
//! 4. a **signal handler** ([`EventLoop::add_signal_handler`]) turns Ctrl-C (SIGINT) into a clean
//!    stop: the loop returns from `run_forever`, is closed, and the program says goodbye and exits
//!    with status 0.
//!
//! Program output goes to stdout; logs go to stderr through `tracing_subscriber::fmt`.
//!
//! Everything here runs as a callback on the loop's thread, so callbacks share state through
//! plain `Rc<Cell<_>>`: they never run at the same time. Callbacks that need the loop capture a
//! clone of it (`EventLoop` is a cheap reference-counted handle).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use tulipa_loop::signal::SIGINT;
use tulipa_loop::EventLoop;

const USAGE: &str = "\
usage: ticker [--ticks N] [--interval-ms M]

  --ticks N          stop after N ticks (default: run until Ctrl-C)
  --interval-ms M    milliseconds between ticks (default: 500)

Type lines on stdin to have them echoed; Ctrl-D ends stdin, Ctrl-C stops.";

/// Command-line options.
#[derive(Debug)]
struct Options {
    /// Stop after this many ticks; `None` runs until SIGINT.
    ticks: Option<u64>,
    /// Time between two ticks.
    interval: Duration,
}

fn main() -> ExitCode {
    // Logs to stderr, so that stdout carries only the program's own output.
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_target(false)
        .init();

    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("ticker: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    match run(&options) {
        Ok(ticks) => {
            println!("goodbye after {ticks} tick(s)");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(%error, "the event loop failed");
            ExitCode::FAILURE
        }
    }
}

/// Sets everything up on a new loop, runs it until something stops it, and returns the number
/// of ticks printed.
fn run(options: &Options) -> tulipa_loop::Result<u64> {
    let lp = EventLoop::new()?;
    tracing::info!(
        pid = std::process::id(),
        interval = ?options.interval,
        ticks = ?options.ticks,
        "ticker started; type a line to have it echoed, Ctrl-C to stop"
    );

    // 1. The repeating timer. Each tick is scheduled one interval after the previous one ran,
    //    so a slow tick delays the following ones instead of making them bunch up.
    let ticks = Rc::new(Cell::new(0u64));
    let ticker = {
        let (lp2, ticks, limit) = (lp.clone(), ticks.clone(), options.ticks);
        lp.call_repeatedly(options.interval, move || {
            ticks.set(ticks.get() + 1);
            println!("tick {}", ticks.get());
            if Some(ticks.get()) == limit {
                // `stop` lets the callbacks already ready in this iteration finish, then
                // `run_forever` returns.
                lp2.stop();
            }
        })?
    };

    // 2. The one-shot timer: halfway between the second and the third tick.
    lp.call_later(options.interval * 5 / 2, || {
        println!("one-shot: call_later fired, between tick 2 and tick 3");
    })?;

    // 3. The stdin reader.
    watch_stdin(&lp);

    // 4. Ctrl-C. The handler does not run in signal context: the signal only wakes the loop,
    //    which then calls this closure like any other callback, so it may do anything.
    let lp2 = lp.clone();
    lp.add_signal_handler(SIGINT, move || {
        println!("SIGINT received, stopping");
        lp2.stop();
    })?;

    lp.run_forever()?;

    ticker.cancel();
    // Closing drops every pending callback, the stdin reader and the signal handler. The
    // callbacks above hold clones of `lp`; closing is what breaks those reference cycles.
    lp.close()?;
    Ok(ticks.get())
}

/// Echoes stdin line by line from a reader callback; at end of input the reader removes itself.
///
/// The loop calls the reader only when stdin is readable, and the reader then makes exactly one
/// `read`, which returns at once with data, or with 0 at end of input: it never blocks the loop.
/// Reads are not looped until `WouldBlock` because that would need `O_NONBLOCK` on stdin, a flag
/// that lives on the file description shared with the terminal and the shell that started us.
/// One read per readiness is enough: the reader is level-triggered, so if more input is waiting
/// the loop calls it again on its next iteration.
fn watch_stdin(lp: &EventLoop) {
    // A duplicate of fd 0 wrapped in a `File`: reads go straight to the descriptor, with none of
    // `io::Stdin`'s buffering in between (buffered bytes would be invisible to the poller).
    let stdin = match io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(error) => {
            tracing::warn!(%error, "cannot duplicate stdin; not echoing input");
            return;
        }
    };
    let fd = stdin.as_raw_fd();
    let lp2 = lp.clone();
    let mut partial = Vec::new(); // bytes of a line whose newline has not arrived yet

    let added = lp.add_reader(fd, move || {
        let mut buf = [0u8; 4096];
        match (&stdin).read(&mut buf) {
            Ok(0) => {
                if !partial.is_empty() {
                    echo(&std::mem::take(&mut partial));
                }
                println!("stdin closed");
                // Removing the reader drops this closure, and with it `stdin` (the duplicate
                // fd), after the fd has left the poller: the order asyncio asks for.
                lp2.remove_reader(fd);
            }
            Ok(n) => {
                partial.extend_from_slice(&buf[..n]);
                while let Some(end) = partial.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = partial.drain(..=end).collect();
                    echo(&line[..end]);
                }
            }
            // Readiness can be spurious (another process sharing the terminal read first).
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => {
                tracing::warn!(%error, "reading stdin failed; no longer echoing input");
                lp2.remove_reader(fd);
            }
        }
    });
    if let Err(error) = added {
        // For example stdin redirected from a regular file, which epoll cannot watch.
        tracing::warn!(%error, "stdin cannot be watched; not echoing input");
    }
}

fn echo(line: &[u8]) {
    let line = String::from_utf8_lossy(line);
    println!("echo: {}", line.trim_end_matches('\r'));
}

/// Parses the command line; `Ok(None)` means help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Options>, String> {
    let mut options = Options {
        ticks: None,
        interval: Duration::from_millis(500),
    };
    while let Some(arg) = args.next() {
        // Accept both `--name value` and `--name=value`.
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "-h" | "--help" => return Ok(None),
            "--ticks" => {
                let v = value("--ticks")?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("--ticks: not a number: {v:?}"))?;
                if n == 0 {
                    return Err("--ticks must be at least 1".into());
                }
                options.ticks = Some(n);
            }
            "--interval-ms" => {
                let v = value("--interval-ms")?;
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("--interval-ms: not a number: {v:?}"))?;
                if ms == 0 {
                    return Err("--interval-ms must be at least 1".into());
                }
                options.interval = Duration::from_millis(ms);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(options))
}
