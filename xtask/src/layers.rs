//! `cargo xtask layers`: the layering rule of docs/ARCHITECTURE (and
//! `shared/tools/check_layers.py`), checked from `cargo metadata`.
//!
//! A Tulipa crate may have a normal dependency only on the Tulipa crate exactly one layer below
//! it; nothing depends on the facade `tulipa`, which may depend on all of them. Dev- and build-
//! dependencies are free. Crates not created yet are reported, not an error. The peer runtimes
//! of the benchmark (tokio, smol, …) may not be normal dependencies of any Tulipa crate.

use serde_json::Value;

use crate::workspace;

/// The layered crates and their layers.
const LAYERS: [(&str, u32); 5] = [
    ("tulipa-loop", 0),
    ("tulipa-futures", 1),
    ("tulipa-transport", 2),
    ("tulipa-process", 3),
    ("tulipa-http", 3),
];

/// The facade: may depend on every layer, nothing may depend on it.
const FACADE: &str = "tulipa";

/// Benchmark peers: dependencies of xtask only.
const PEER_RUNTIMES: [&str; 5] = ["tokio", "smol", "async-io", "async-executor", "async-std"];

fn layer(name: &str) -> Option<u32> {
    LAYERS.iter().find(|(n, _)| *n == name).map(|(_, l)| *l)
}

fn names_at(level: u32) -> Vec<&'static str> {
    LAYERS
        .iter()
        .filter(|(_, l)| *l == level)
        .map(|(n, _)| *n)
        .collect()
}

/// What the check found.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    /// Layered crates present in the workspace.
    present: Vec<String>,
    /// Layered crates not created yet.
    missing: Vec<String>,
    /// One line per offending dependency edge.
    broken: Vec<String>,
}

/// Checks the packages of `cargo metadata` output.
fn check(metadata: &Value) -> Result<Outcome, String> {
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata has no `packages` array")?;
    let mut outcome = Outcome::default();
    let names: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    for (name, _) in LAYERS {
        if names.contains(&name) {
            outcome.present.push(name.to_string());
        } else {
            outcome.missing.push(name.to_string());
        }
    }
    for pkg in packages {
        let name = pkg["name"].as_str().ok_or("a package without a name")?;
        let own = layer(name);
        if own.is_none() && name != FACADE {
            continue;
        }
        let deps = pkg["dependencies"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default();
        for dep in deps {
            // `kind` is null for normal dependencies, "dev" or "build" otherwise.
            if !matches!(dep["kind"].as_str(), None | Some("normal")) {
                continue;
            }
            let target = dep["name"].as_str().ok_or("a dependency without a name")?;
            let edge = format!("{name} -> {target}");
            if PEER_RUNTIMES.contains(&target) {
                outcome.broken.push(format!(
                    "{edge}: `{target}` is a benchmark peer; only xtask may depend on it"
                ));
            }
            let Some(own) = own else { continue }; // the facade may depend on every layer
            if target == FACADE {
                outcome.broken.push(format!(
                    "{edge}: nothing may depend on the facade `{FACADE}`"
                ));
            } else if let Some(theirs) = layer(target) {
                if theirs + 1 != own {
                    let allowed = match own.checked_sub(1) {
                        Some(below) => {
                            format!("may depend only on {}", names_at(below).join(" or "))
                        }
                        None => "may depend on no Tulipa crate".to_string(),
                    };
                    outcome.broken.push(format!(
                        "{edge}: layer {own} depends on layer {theirs}; {name} {allowed}"
                    ));
                }
            }
        }
    }
    Ok(outcome)
}

/// Runs the check and prints its findings.
pub(crate) fn run() -> Result<(), String> {
    let outcome = check(&workspace::metadata()?)?;
    for line in &outcome.broken {
        eprintln!("layers: BROKEN {line}");
    }
    if !outcome.missing.is_empty() {
        println!("layers: not created yet: {}", outcome.missing.join(", "));
    }
    if outcome.broken.is_empty() {
        println!(
            "layers: ok ({} of {} layered crates present: {})",
            outcome.present.len(),
            LAYERS.len(),
            outcome.present.join(", ")
        );
        Ok(())
    } else {
        Err(format!(
            "the layering rule is broken by {} dependency edge(s), listed above",
            outcome.broken.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pkg(name: &str, deps: &[(&str, Option<&str>)]) -> Value {
        let deps: Vec<Value> = deps
            .iter()
            .map(|(n, kind)| json!({ "name": n, "kind": kind }))
            .collect();
        json!({ "name": name, "dependencies": deps })
    }

    fn broken(packages: Vec<Value>) -> Vec<String> {
        check(&json!({ "packages": packages })).unwrap().broken
    }

    #[test]
    fn the_intended_graph_passes() {
        let b = broken(vec![
            pkg("tulipa-loop", &[("polling", None)]),
            pkg(
                "tulipa-futures",
                &[("tulipa-loop", None), ("tulipa", Some("dev"))],
            ),
            pkg(
                "tulipa-transport",
                &[("tulipa-futures", None), ("tulipa-loop", Some("dev"))],
            ),
            pkg("tulipa-http", &[("tulipa-transport", Some("normal"))]),
            pkg("tulipa", &[("tulipa-loop", None), ("tulipa-http", None)]),
            pkg("tulipa-examples", &[("tulipa", None)]),
            pkg("xtask", &[("tokio", None), ("tulipa-loop", None)]),
        ]);
        assert!(b.is_empty(), "{b:?}");
    }

    #[test]
    fn skipping_a_layer_is_named() {
        let b = broken(vec![pkg("tulipa-http", &[("tulipa-loop", None)])]);
        assert_eq!(b.len(), 1);
        assert!(b[0].starts_with("tulipa-http -> tulipa-loop: layer 3 depends on layer 0"));
        assert!(b[0].ends_with("tulipa-http may depend only on tulipa-transport"));
    }

    #[test]
    fn upward_sideways_facade_and_peer_edges_fail() {
        let b = broken(vec![
            pkg("tulipa-loop", &[("tulipa-futures", None)]),
            pkg("tulipa-process", &[("tulipa-http", None)]),
            pkg("tulipa-futures", &[("tulipa", None), ("tokio", None)]),
        ]);
        assert_eq!(b.len(), 4, "{b:?}");
        assert!(b[0].contains("may depend on no Tulipa crate"));
        assert!(b[2].contains("facade"));
        assert!(b[3].contains("benchmark peer"));
    }

    #[test]
    fn missing_crates_are_reported() {
        let o = check(&json!({ "packages": [pkg("tulipa-loop", &[])] })).unwrap();
        assert_eq!(o.present, ["tulipa-loop"]);
        assert_eq!(o.missing.len(), 4);
    }
}
