//! `cargo xtask ci`: the checks CI runs, in order, stopping at the first failure.

use std::time::{Duration, Instant};

use crate::{layers, workspace};

enum Action {
    /// `cargo` with these arguments and extra environment.
    Cargo(
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    ),
    /// The layering check, in this process.
    Layers,
}

struct Step {
    name: &'static str,
    action: Action,
}

const STEPS: [Step; 7] = [
    Step {
        name: "fmt",
        action: Action::Cargo(&["fmt", "--all", "--check"], &[]),
    },
    Step {
        name: "clippy",
        action: Action::Cargo(
            &[
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
    },
    Step {
        // The transport without its default `tls` feature (no rustls) must build cleanly too, tests
        // included (the TLS test binaries require the feature).
        name: "clippy-no-tls",
        action: Action::Cargo(
            &[
                "clippy",
                "-p",
                "tulipa-transport",
                "--no-default-features",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
    },
    Step {
        name: "layers",
        action: Action::Layers,
    },
    Step {
        name: "doc",
        action: Action::Cargo(
            &["doc", "--workspace", "--no-deps"],
            &[("RUSTDOCFLAGS", "-D warnings")],
        ),
    },
    Step {
        name: "test",
        action: Action::Cargo(&["test", "--workspace"], &[]),
    },
    Step {
        // The loop's portable poller (`polling`: what macOS and the BSDs run) tested on Linux,
        // in its own target directory so that the main build is not invalidated.
        name: "test-polling-backend",
        action: Action::Cargo(
            &[
                "test",
                "-p",
                "tulipa-loop",
                "--target-dir",
                "target/polling",
            ],
            &[("RUSTFLAGS", "--cfg tulipa_polling")],
        ),
    },
];

impl Step {
    fn describe(&self) -> String {
        match &self.action {
            Action::Cargo(args, env) => {
                let env: Vec<String> = env.iter().map(|(k, v)| format!("{k}=\"{v}\" ")).collect();
                format!("{}cargo {}", env.concat(), args.join(" "))
            }
            Action::Layers => "cargo xtask layers".to_string(),
        }
    }

    fn run(&self) -> Result<(), String> {
        match &self.action {
            Action::Layers => layers::run(),
            Action::Cargo(args, env) => {
                let mut cmd = workspace::cargo_command();
                cmd.args(*args);
                for (key, value) in *env {
                    // Keep flags the caller set; ours come last.
                    let value = match std::env::var(key) {
                        Ok(old) if !old.trim().is_empty() => format!("{old} {value}"),
                        _ => (*value).to_string(),
                    };
                    cmd.env(key, value);
                }
                let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
                if status.success() {
                    Ok(())
                } else {
                    Err(format!("`{}` exited with {status}", self.describe()))
                }
            }
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Runs every step; the first failure ends the run with an error naming the step.
pub(crate) fn run() -> Result<(), String> {
    let total = Instant::now();
    let mut done: Vec<(&str, Duration)> = Vec::new();
    for (i, step) in STEPS.iter().enumerate() {
        println!(
            "ci: [{}/{}] {}: {}",
            i + 1,
            STEPS.len(),
            step.name,
            step.describe()
        );
        let started = Instant::now();
        let result = step.run();
        let took = started.elapsed();
        if let Err(e) = result {
            let rest: Vec<&str> = STEPS[i + 1..].iter().map(|s| s.name).collect();
            let skipped = if rest.is_empty() {
                String::new()
            } else {
                format!("; not run: {}", rest.join(", "))
            };
            return Err(format!(
                "ci FAILED at step `{}` after {}: {e}{skipped}",
                step.name,
                secs(took)
            ));
        }
        println!(
            "ci: [{}/{}] {} ok in {}",
            i + 1,
            STEPS.len(),
            step.name,
            secs(took)
        );
        done.push((step.name, took));
    }
    println!(
        "ci: all {} steps passed in {}",
        STEPS.len(),
        secs(total.elapsed())
    );
    for (name, took) in done {
        println!("ci:   {name:<8} {:>9}", secs(took));
    }
    Ok(())
}
