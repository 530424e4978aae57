//! The names of the benchmark: suites (`loop`, `tasks`, `channels`), their workloads, the
//! runtimes.

use std::fmt;
use std::str::FromStr;

/// A group of workloads run by one `cargo xtask bench <suite>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// `bench loop`: the event loop (`tulipa-loop`) against the peers' tasks.
    Loop,
    /// `bench tasks`: tasks and futures (`tulipa-futures`) against the peers' tasks.
    Tasks,
    /// `bench channels`: `tulipa_futures::message` pipes against tokio's `mpsc` and
    /// `async-channel`.
    Channels,
}

impl Suite {
    /// The name used on command lines.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Loop => "loop",
            Suite::Tasks => "tasks",
            Suite::Channels => "channels",
        }
    }

    /// This suite's workloads, in report order.
    pub fn workloads(self) -> Vec<Workload> {
        Workload::ALL
            .into_iter()
            .filter(|w| w.suite() == self)
            .collect()
    }
}

impl FromStr for Suite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "loop" => Ok(Suite::Loop),
            "tasks" => Ok(Suite::Tasks),
            "channels" => Ok(Suite::Channels),
            _ => Err(format!(
                "unknown suite `{s}` (expected loop, tasks or channels)"
            )),
        }
    }
}

/// A workload of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// 1,000,000 callbacks (`call_soon`) or trivial tasks, each bumping a counter.
    Callbacks,
    /// 200,000 timers with pseudo-random 0–10 ms delays, run until all fired.
    Timers,
    /// 200,000 timers 10 s ahead, scheduled then cancelled.
    TimersCancel,
    /// 20,000 round trips from another thread onto the loop and back.
    ThreadsafeLatency,
    /// 1,000,000 trivial tasks spawned, then each awaited.
    Spawn,
    /// 200,000 tasks, each awaiting its own already-completed one-shot future.
    Tasks,
    /// 200,000 tasks, each awaiting a future that one resolver task completes.
    Resolve,
    /// 20,000 round trips to a thread pool (`run_in_executor`, `spawn_blocking`), one at a time.
    Executor,
    /// 100,000 tasks left pending on never-completed futures: RSS per pending task.
    PendingMemory,
    /// 1,000,000 `u64`s through a channel of capacity 1024 between two tasks of one loop
    /// (Tulipa: the local pipe, `message::local_buffered`).
    PipeLocal,
    /// As `pipe_local`, with Tulipa's thread-crossing pipe (`message::buffered`, behind a lock);
    /// the peers run the same code as in `pipe_local`.
    PipeShared,
    /// 1,000,000 `u64`s through a channel of capacity 1024 from a loop on one thread to a loop
    /// on another.
    PipeThreads,
    /// 200,000 `u64`s through a rendezvous (or capacity-1) channel between two tasks of one loop.
    RendezvousLocal,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 13] = [
        Workload::Callbacks,
        Workload::Timers,
        Workload::TimersCancel,
        Workload::ThreadsafeLatency,
        Workload::Spawn,
        Workload::Tasks,
        Workload::Resolve,
        Workload::Executor,
        Workload::PendingMemory,
        Workload::PipeLocal,
        Workload::PipeShared,
        Workload::PipeThreads,
        Workload::RendezvousLocal,
    ];

    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Callbacks => "callbacks",
            Workload::Timers => "timers",
            Workload::TimersCancel => "timers_cancel",
            Workload::ThreadsafeLatency => "threadsafe_latency",
            Workload::Spawn => "spawn",
            Workload::Tasks => "tasks",
            Workload::Resolve => "resolve",
            Workload::Executor => "executor",
            Workload::PendingMemory => "pending_memory",
            Workload::PipeLocal => "pipe_local",
            Workload::PipeShared => "pipe_shared",
            Workload::PipeThreads => "pipe_threads",
            Workload::RendezvousLocal => "rendezvous_local",
        }
    }

    /// The suite this workload belongs to.
    pub fn suite(self) -> Suite {
        match self {
            Workload::Callbacks
            | Workload::Timers
            | Workload::TimersCancel
            | Workload::ThreadsafeLatency => Suite::Loop,
            Workload::Spawn
            | Workload::Tasks
            | Workload::Resolve
            | Workload::Executor
            | Workload::PendingMemory => Suite::Tasks,
            Workload::PipeLocal
            | Workload::PipeShared
            | Workload::PipeThreads
            | Workload::RendezvousLocal => Suite::Channels,
        }
    }

    /// The CPUs (a `taskset -c` list) a pinned child of this workload runs on: core 1 for the
    /// one-loop workloads, cores 0 and 1 for `pipe_threads`, whose producer and consumer threads
    /// would otherwise take turns on one core.
    pub fn pin_cpus(self) -> &'static str {
        match self {
            Workload::PipeThreads => "0,1",
            _ => "1",
        }
    }

    /// True when the workload's result is memory per task rather than a rate.
    pub fn measures_memory(self) -> bool {
        self == Workload::PendingMemory
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Workload {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Workload::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Workload::ALL.iter().map(|w| w.name()).collect();
                format!(
                    "unknown workload `{s}` (expected one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// A runtime under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Tulipa: `tulipa-loop` (suite `loop`) or `tulipa-futures` tasks (suite `tasks`).
    Tulipa,
    /// tokio's current-thread runtime.
    Tokio,
    /// smol: `async-executor` on `async-io`.
    Smol,
}

impl Runtime {
    /// Every runtime, Tulipa first.
    pub const ALL: [Runtime; 3] = [Runtime::Tulipa, Runtime::Tokio, Runtime::Smol];

    /// The name used on command lines and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Tulipa => "tulipa",
            Runtime::Tokio => "tokio",
            Runtime::Smol => "smol",
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Runtime {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Runtime::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown runtime `{s}` (expected tulipa, tokio or smol)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(w.name().parse::<Workload>(), Ok(w));
        }
        for r in Runtime::ALL {
            assert_eq!(r.name().parse::<Runtime>(), Ok(r));
        }
        for s in [Suite::Loop, Suite::Tasks, Suite::Channels] {
            assert_eq!(s.name().parse::<Suite>(), Ok(s));
        }
    }

    #[test]
    fn suites_split_the_workloads() {
        assert_eq!(Suite::Loop.workloads().len(), 4);
        assert_eq!(
            Suite::Tasks.workloads(),
            [
                Workload::Spawn,
                Workload::Tasks,
                Workload::Resolve,
                Workload::Executor,
                Workload::PendingMemory
            ]
        );
        assert_eq!(
            Suite::Channels.workloads(),
            [
                Workload::PipeLocal,
                Workload::PipeShared,
                Workload::PipeThreads,
                Workload::RendezvousLocal
            ]
        );
        assert_eq!(Workload::PipeThreads.pin_cpus(), "0,1");
        assert_eq!(Workload::PipeLocal.pin_cpus(), "1");
    }
}
