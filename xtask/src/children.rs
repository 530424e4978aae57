//! What every bench suite needs to run its measurements in child processes: the release build
//! of this binary, `taskset` pinning, and a server child that prints its address and is killed
//! when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::workspace;

/// Builds `target/release/xtask` (the binary every child runs) and returns its path.
pub(crate) fn build_release() -> Result<PathBuf, String> {
    eprintln!(
        "bench: building the release bench binary (cargo build --release -p xtask --bin xtask)"
    );
    let status = workspace::cargo_command()
        .args(["build", "--release", "--package", "xtask", "--bin", "xtask"])
        .status()
        .map_err(|e| format!("cannot run cargo build: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release -p xtask failed: {status}"));
    }
    let exe = workspace::target_dir(&workspace::metadata()?)?
        .join("release")
        .join("xtask");
    if exe.exists() {
        Ok(exe)
    } else {
        Err(format!("{} is missing after the build", exe.display()))
    }
}

/// True when `taskset -c <cpus> true` runs: pinning is possible on these CPUs.
pub(crate) fn taskset_works(cpus: &str) -> bool {
    Command::new("taskset")
        .args(["-c", cpus, "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `exe`, under `taskset -c <cpus>` when `pin` names CPUs.
pub(crate) fn command(exe: &Path, pin: Option<&str>) -> Command {
    match pin {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(exe);
            c
        }
        None => Command::new(exe),
    }
}

/// A running server child, killed when dropped.
pub(crate) struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `cmd` (a server subcommand) and waits for its `listening on ADDR` line.
    pub(crate) fn start(mut cmd: Command, name: &str) -> Result<Server, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the {name} server: {e}"))?;
        let mut line = String::new();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let addr = match BufReader::new(stdout).read_line(&mut line) {
            Ok(_) => line
                .trim()
                .strip_prefix("listening on ")
                .and_then(|a| a.parse().ok()),
            Err(_) => None,
        };
        // Built before the check so that a server that printed nonsense is killed on return.
        let server = Server {
            child,
            addr: addr.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
        };
        match addr {
            Some(_) => Ok(server),
            None => Err(format!("the {name} server printed `{}`", line.trim())),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `cmd` (a measuring child, named `what` in errors) to its end and parses the last
/// non-empty line it printed as JSON.
pub(crate) fn json_result(mut cmd: Command, what: &str) -> Result<serde_json::Value, String> {
    let out = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed: {}", out.status));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    serde_json::from_str(line).map_err(|e| format!("{what} printed `{line}`: {e}"))
}

/// A `--server NAME` argument, checked against the servers a bench knows.
pub(crate) fn known_server(name: &str, known: &[&str]) -> Result<String, String> {
    if known.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "unknown server `{name}` (known: {})",
            known.join(", ")
        ))
    }
}
