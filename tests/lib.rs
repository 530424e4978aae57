//! Cross-crate tests of Tulipa live in this package's `tests/` folder; this library holds helpers
//! shared by them.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Builds examples of the `tulipa-examples` package with the cargo that runs the tests (in the
/// same profile), and returns each one's executable by name, as cargo reports it.
///
/// # Panics
///
/// When cargo cannot be run or the build fails: the tests that need the examples cannot go on.
pub fn build_examples(names: &[&str]) -> HashMap<String, PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--message-format=json"])
        .args(["-p", "tulipa-examples"])
        .arg("--manifest-path")
        .arg(&manifest)
        .stderr(Stdio::inherit());
    for name in names {
        cmd.args(["--example", name]);
    }
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("running cargo to build the examples");
    assert!(
        out.status.success(),
        "building the examples failed: {}",
        out.status
    );
    // Cargo prints one JSON object per line; each example's artifact names its executable.
    let mut bins = HashMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if !line.contains(r#""reason":"compiler-artifact""#) {
            continue;
        }
        for name in names {
            if line.contains(&format!(r#""name":"{name}""#)) {
                if let Some(exe) = json_string(line, "executable") {
                    bins.insert((*name).to_owned(), PathBuf::from(exe));
                }
            }
        }
    }
    bins
}

/// The value of the string field `key` in one line of JSON (enough for cargo's messages).
fn json_string(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!(r#""{key}":""#))? + key.len() + 4;
    let mut value = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => value.push(chars.next()?),
            c => value.push(c),
        }
    }
    None
}

/// A running process whose stdout is read line by line, and whose stderr is collected, on
/// threads; killed on drop if a failing test leaves it running.
#[derive(Debug)]
pub struct Running {
    /// The process (for its stdin, pid, …).
    pub child: Child,
    bound: Duration,
    lines: Receiver<String>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    /// Starts `cmd`; each later read waits at most `bound` for a line.
    pub fn spawn(mut cmd: Command, stdin: Stdio, bound: Duration) -> Running {
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
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
        let mut err = child.stderr.take().expect("stderr is piped");
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Running {
            child,
            bound,
            lines,
            stderr: Some(stderr),
        }
    }

    /// Reads lines until one satisfies `want`; returns every line read, that one last.
    pub fn read_until(&self, what: &str, want: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(self.bound) {
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
    pub fn read_to_end(&self) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(self.bound) {
                Ok(line) => seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return seen,
                Err(e) => panic!("waiting for the end of the output: {e:?}; output: {seen:#?}"),
            }
        }
    }

    /// Waits for the exit; returns the status and everything written to stderr.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let status = self.child.wait().expect("waiting for the process");
        let stderr = self
            .stderr
            .take()
            .map(|h| h.join().expect("the stderr reader"))
            .unwrap_or_default();
        (status, stderr)
    }

    /// Sends SIGINT.
    pub fn interrupt(&self) {
        let pid = self.child.id().to_string();
        let kill = Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("running kill");
        assert!(kill.success(), "kill -INT {pid}: {kill}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
