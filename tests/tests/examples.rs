//! The examples, run as real processes.
//!
//! `examples/ticker.rs` is built once with the same cargo that runs these tests, then started
//! with its stdin and stdout connected to the test. The tests wait on the ticker's output lines,
//! never on the clock; each wait has a generous bound so a broken ticker fails the test instead
//! of hanging it.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// How long any single expected line may take (a cold build is done before the clock starts).
const BOUND: Duration = Duration::from_secs(60);

/// The path of the ticker binary, built on first use.
fn ticker() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_ticker)
}

fn build_ticker() -> PathBuf {
    tulipa_tests::build_examples(&["ticker"])
        .remove("ticker")
        .expect("cargo reported the ticker's executable")
}

/// A running ticker; killed on drop if a failing test leaves it running.
struct Ticker {
    child: Child,
    lines: Receiver<String>,
}

impl Ticker {
    fn start(args: &[&str], stdin: Stdio) -> Ticker {
        let mut child = Command::new(ticker())
            .args(args)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the ticker");
        // A thread turns stdout into a channel of lines, so that waits can be bounded.
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ticker { child, lines }
    }

    /// Reads lines until one satisfies `want`; returns every line read, that one last.
    fn read_until(&self, what: &str, want: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(BOUND) {
                Ok(line) => {
                    let done = want(&line);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("waiting for {what}: {e:?}; output so far: {seen:#?}"),
            }
        }
    }

    /// Reads the rest of the output, up to end of file.
    fn read_to_end(&self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(BOUND) {
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return seen,
                Err(e) => panic!("waiting for the ticker to exit: {e:?}; output: {seen:#?}"),
            }
        }
    }

    fn wait(&mut self) -> ExitStatus {
        self.child.wait().expect("waiting for the ticker")
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn ticker_echoes_stdin_prints_three_ticks_and_exits_zero() {
    // Stdin is one end of a socket pair holding the whole input, end of file included, before
    // the ticker starts: the echo cannot race with `--ticks 3`.
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.write_all(b"hello tulipa\nsecond line\n").unwrap();
    drop(ours);
    let mut ticker = Ticker::start(
        &["--ticks", "3", "--interval-ms", "10"],
        Stdio::from(OwnedFd::from(theirs)),
    );
    let out = ticker.read_to_end();
    let status = ticker.wait();
    assert!(status.success(), "exit status {status}; output: {out:#?}");

    assert!(out.iter().any(|l| l == "echo: hello tulipa"), "{out:#?}");
    assert!(out.iter().any(|l| l == "echo: second line"), "{out:#?}");
    assert!(out.iter().any(|l| l == "stdin closed"), "{out:#?}");
    let ticks: Vec<&str> = out
        .iter()
        .filter(|l| l.starts_with("tick "))
        .map(String::as_str)
        .collect();
    assert_eq!(ticks, ["tick 1", "tick 2", "tick 3"]);
    assert_eq!(
        out.last().map(String::as_str),
        Some("goodbye after 3 tick(s)")
    );
}

#[test]
fn ticker_stops_cleanly_on_sigint() {
    let mut ticker = Ticker::start(&["--interval-ms", "20"], Stdio::piped());
    let mut stdin = ticker.child.stdin.take().expect("stdin is piped");

    ticker.read_until("the first tick", |l| l == "tick 1");

    // A real pipe this time: the line is echoed while the ticker runs.
    stdin.write_all(b"ping\n").unwrap();
    stdin.flush().unwrap();
    ticker.read_until("the echo", |l| l == "echo: ping");

    let pid = ticker.child.id().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("running kill");
    assert!(kill.success(), "kill -INT {pid}: {kill}");

    let rest = ticker.read_to_end();
    let status = ticker.wait();
    drop(stdin);
    assert!(status.success(), "exit status {status}; output: {rest:#?}");
    assert!(
        rest.iter().any(|l| l == "SIGINT received, stopping"),
        "{rest:#?}"
    );
    let last = rest.last().map(String::as_str).unwrap_or_default();
    assert!(
        last.starts_with("goodbye after ") && last.ends_with(" tick(s)"),
        "last line {last:?}; output: {rest:#?}"
    );
}
