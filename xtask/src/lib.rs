//! Library half of Tulipa's `xtask`: the benchmark workloads (suites `loop`, `tasks` and
//! `channels`), shared by the `xtask` binary (`cargo xtask bench loop|tasks|channels`, which runs
//! each measurement in a child process) and the `tulipa-micro` binary (one workload on Tulipa
//! alone).
//!
//! The peer runtimes (tokio, smol's `async-executor` and `async-io`) are dependencies of this
//! package only; no Tulipa crate depends on them.

pub mod bench;
