//! `tulipa-micro`: one workload on Tulipa alone, one JSON line out.
//!
//! ```text
//! cargo run --release -p xtask --bin tulipa-micro -- callbacks|timers|timers_cancel|threadsafe_latency
//! {"bench":"callbacks","ops_per_s":12345678}
//! ```

use std::process::ExitCode;

use xtask::bench::{tulipa, Workload};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (Some(name), None) = (args.next(), args.next()) else {
        eprintln!("usage: tulipa-micro callbacks|timers|timers_cancel|threadsafe_latency");
        return ExitCode::from(2);
    };
    let workload = match name.parse::<Workload>() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tulipa-micro: {e}");
            return ExitCode::from(2);
        }
    };
    match tulipa::run(workload) {
        Ok(sample) => {
            let line = serde_json::json!({
                "bench": workload.name(),
                "ops_per_s": sample.ops_per_s().round() as u64,
            });
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tulipa-micro: {workload} failed: {e}");
            ExitCode::FAILURE
        }
    }
}
