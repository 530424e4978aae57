//! # select_gather — scatter work to tasks, gather the results as they come in
//!
//! ```text
//! cargo run --release --example select_gather
//! ```
//!
//! mitogen's `Select` idiom on Tulipa tasks:
//!
//! 1. **scatter**: each job runs as its own task ([`spawn`]); here a job "takes" some time (a
//!    [`sleep`]) and computes a sum of squares. One job fails, one is far too slow;
//! 2. **gather**: a oneshot [`Select`] holds the tasks. [`Select::get`] returns whichever result is
//!    ready first, tagged with the [`MemberId`] of the task it came from, and with `oneshot` the
//!    task then leaves the select, so the loop below sees each job exactly once, in completion
//!    order (not in the order the jobs were started). A job's error is just its message;
//! 3. **timeout**: `get(Some(limit))` fails with [`Error::Timeout`] when nothing arrives in time.
//!    The program then gives up on the jobs still running and cancels them (asyncio's
//!    `Task.cancel`: each gets `Err(Cancelled)` at its next await).
//!
//! Everything runs on one thread, in one event loop started by [`run`].

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use tulipa_futures::select::{MemberId, Select};
use tulipa_futures::{run, sleep, spawn, Error, Result, Task};

/// How long the gatherer waits for the next result before giving up on the rest.
const PATIENCE: Duration = Duration::from_millis(300);

/// The jobs: name, how long each takes (ms), and its input (`None`: the job fails). They are
/// deliberately started in an order different from the one they finish in. Their durations are
/// 50 ms apart: results that become ready in the same loop iteration come out in the select's
/// fair rotation order, which is not necessarily the order they finished in.
const JOBS: [(&str, u64, Option<u64>); 5] = [
    ("medium", 200, Some(100)),
    ("tiny", 50, Some(1)),
    ("huge", 5_000, Some(1000)),
    ("broken", 150, None),
    ("small", 100, Some(10)),
];

/// The work itself: wait a while (as a remote call would), then compute `1² + 2² + … + n²`.
async fn work(takes: Duration, input: Option<u64>) -> Result<u64> {
    sleep(takes).await?;
    match input {
        Some(n) => Ok((1..=n).map(|i| i * i).sum()),
        None => Err(Error::InvalidArgument("this job has no input")),
    }
}

async fn scatter_gather() -> Result<u64> {
    // Scatter: one task per job, all in one oneshot select.
    let select = Select::new(true);
    let mut started: HashMap<MemberId, (&'static str, Task<u64>)> = HashMap::new();
    for (name, ms, input) in JOBS {
        let task = spawn(work(Duration::from_millis(ms), input))?;
        task.set_name(name);
        // The select gets a handle to the task; we keep another one to cancel it later.
        let id = select.add_future(task.clone());
        started.insert(id, (name, task));
    }
    println!("scattered {} jobs", started.len());

    // Gather, in completion order, until every job answered or the patience ran out.
    let mut total = 0;
    let mut results = 0;
    while !select.is_empty() {
        match select.get(Some(PATIENCE)).await {
            Ok((id, outcome)) => {
                // With oneshot, the job that answered has left the select.
                let (name, _) = started.remove(&id).expect("every member was started here");
                match outcome {
                    Ok(value) => {
                        println!("gathered {name}: {value}");
                        total += value;
                        results += 1;
                    }
                    Err(error) => println!("job {name} failed: {error}"),
                }
            }
            Err(Error::Timeout) => {
                println!(
                    "no result within {} ms: {} job(s) still running",
                    PATIENCE.as_millis(),
                    select.len()
                );
                break;
            }
            Err(other) => return Err(other),
        }
    }

    // Whatever did not answer in time is cancelled; awaiting it shows how it ended.
    for (name, task) in started.into_values() {
        task.cancel(Some("gave up waiting"));
        match task.await {
            Err(e) if e.is_cancelled() => println!("cancelled {name} ({e})"),
            other => println!("{name} ended anyway: {other:?}"),
        }
    }
    println!("total of {results} results: {total}");
    Ok(total)
}

fn main() -> ExitCode {
    match run(scatter_gather()) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("select_gather: {error}");
            ExitCode::FAILURE
        }
    }
}
