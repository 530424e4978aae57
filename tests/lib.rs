//! Cross-crate tests of Tulipa live in this package's `tests/` folder; this library holds helpers
//! shared by them.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
