//! Library half of Tulipa's `xtask`: the event-loop benchmark workloads, shared by the `xtask`
//! binary (`cargo xtask bench loop`, which runs each measurement in a child process) and the
//! `tulipa-micro` binary (one workload on Tulipa alone).
//!
//! The peer runtimes (tokio, smol's `async-executor` and `async-io`) are dependencies of this
//! package only; no Tulipa crate depends on them.

pub mod bench;
