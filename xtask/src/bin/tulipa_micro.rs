//! `tulipa-micro`: one workload on Tulipa alone, one JSON line out.
//!
//! ```text
//! cargo run --release -p xtask --bin tulipa-micro -- callbacks|timers|timers_cancel|threadsafe_latency
//! cargo run --release -p xtask --bin tulipa-micro -- spawn|tasks|resolve|executor|pending_memory
//! cargo run --release -p xtask --bin tulipa-micro -- pipe_local|pipe_shared|pipe_threads|rendezvous_local
//! {"bench":"callbacks","ops_per_s":12345678}
//! {"bench":"pending_memory","ops_per_s":3456789,"bytes_per_task":321.0}
//! ```

use std::process::ExitCode;

use xtask::bench::{self, Runtime, Workload};

const USAGE: &str =
    "usage: tulipa-micro callbacks|timers|timers_cancel|threadsafe_latency\n       \
                     tulipa-micro spawn|tasks|resolve|executor|pending_memory\n       \
                     tulipa-micro pipe_local|pipe_shared|pipe_threads|rendezvous_local";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(name), None) = (args.next(), args.next()) else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let workload = match name.parse::<Workload>() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tulipa-micro: {e}");
            return ExitCode::from(2);
        }
    };
    match bench::measure(Runtime::Tulipa, workload) {
        Ok(sample) => {
            let mut line = serde_json::json!({
                "bench": workload.name(),
                "ops_per_s": sample.ops_per_s().round() as u64,
            });
            if let Some(bytes) = sample.bytes_per_task {
                line["bytes_per_task"] = bytes.round().into();
            }
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tulipa-micro: {workload} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
