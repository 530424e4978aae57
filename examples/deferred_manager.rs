//! # deferred_manager — gevent_async's `Manager`: one owner task, calls posted to it
//!
//! ```text
//! cargo run --release --example deferred_manager
//! ```
//!
//! A manager owns some resources and manages them in steps; a step takes a while (it awaits) and
//! leaves the resources incoherent until it is over. Nobody else may touch them mid-step. With a
//! [`Deferred`], the others do not touch the resources at all: they *post calls* that the manager
//! runs itself, between its steps, with [`Deferred::process`]:
//!
//! - three **monitors** forward events with [`Deferred::oneway`] (`update_resource`): fire and
//!   forget, the monitor goes on at once;
//! - a **consumer** reads with [`Deferred::sync`] (`access_resources`), which waits for the
//!   manager to run the call: the resources it sees are never mid-step;
//! - for comparison, the consumer also peeks with [`Deferred::state`], the direct access the
//!   seed calls "at your own risk", and counts how often that catches the manager mid-step.
//!
//! The manager stops when a `shutdown` call reaches it through the same mailbox, so it first
//! runs every call posted before.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use tulipa_futures::deferred::Deferred;
use tulipa_futures::{run, sleep, spawn, Result};

/// How many events each monitor forwards.
const EVENTS: u64 = 5;

/// What the manager owns. Only the manager's task touches it (through the calls it runs), so
/// plain `Cell`/`RefCell` are enough: nothing runs at the same time on this one thread.
#[derive(Default)]
struct Resources {
    /// The latest value reported for each resource.
    values: RefCell<BTreeMap<&'static str, u64>>,
    /// The sum of `values`; a management step recomputes it piece by piece.
    total: Cell<u64>,
    /// True while a management step runs (the resources are then incoherent).
    managing: Cell<bool>,
    /// Management steps done so far.
    steps: Cell<u64>,
    /// Cleared by the `shutdown` call.
    running: Cell<bool>,
}

impl Resources {
    /// Coherent: not mid-step, and the total matches the values.
    fn coherent(&self) -> bool {
        !self.managing.get() && self.total.get() == self.values.borrow().values().sum::<u64>()
    }
}

/// `Manager.manage`: a step that needs the resources to itself, then the pending calls.
async fn manage(manager: &Deferred<Resources>) -> Result<()> {
    let res = manager.state();
    // Do things with resources, with the assurance that nothing else modifies them meanwhile.
    res.managing.set(true);
    res.total.set(0);
    let values: Vec<u64> = res.values.borrow().values().copied().collect();
    for v in values {
        sleep(Duration::from_millis(1)).await?; // a step takes time
        res.total.set(res.total.get() + v);
    }
    res.managing.set(false);
    res.steps.set(res.steps.get() + 1);

    // self.process(): run the calls posted so far, in order, then return.
    manager.process(false, None).await
}

/// `Manager.run`: `while True: self.manage()`, until a `shutdown` call clears `running`.
async fn run_manager(manager: Deferred<Resources>) -> Result<()> {
    manager.state().running.set(true);
    while manager.state().running.get() {
        manage(&manager).await?;
        sleep(Duration::from_millis(2)).await?;
    }
    Ok(())
}

/// `monitor(target)`: forwards each event of one resource to the manager, without waiting.
async fn monitor(manager: Deferred<Resources>, name: &'static str, every: Duration) -> Result<()> {
    for event in 1..=EVENTS {
        sleep(every).await?;
        // manager.oneway.update_resource(event): runs later, in the manager's task.
        manager.oneway("update_resource", move |res: Rc<Resources>| async move {
            let old = res.values.borrow_mut().insert(name, event).unwrap_or(0);
            res.total.set(res.total.get() - old + event);
            println!("manager: {name} = {event}");
            Ok(())
        });
    }
    Ok(())
}

async fn main_task() -> Result<()> {
    let manager = Deferred::new(Resources::default());

    // gevent.spawn(manager.run)
    let owner = spawn(run_manager(manager.clone()))?;

    // for resource in resources: gevent.spawn(monitor, resource)
    let mut monitors = Vec::new();
    for (name, ms) in [("disk", 3), ("cpu", 5), ("net", 7)] {
        let every = Duration::from_millis(ms);
        monitors.push(spawn(monitor(manager.clone(), name, every))?);
    }

    // consumer(): sync access while the monitors run.
    let (mut snapshots, mut incoherent) = (0, 0);
    let (mut peeks, mut caught_mid_step) = (0, 0);
    while monitors.iter().any(|m| !m.done()) {
        let coherent = manager
            .sync("access_resources", None, |res: Rc<Resources>| async move {
                Ok(res.coherent())
            })
            .await?;
        snapshots += 1;
        if !coherent {
            incoherent += 1;
        }
        // The risky way, for comparison: read the state directly, a few times.
        for _ in 0..3 {
            sleep(Duration::from_millis(1)).await?;
            peeks += 1;
            if !manager.state().coherent() {
                caught_mid_step += 1;
            }
        }
    }
    for m in monitors {
        m.await?;
    }
    println!("consumer: {snapshots} sync snapshots, {incoherent} incoherent");
    println!("consumer: {caught_mid_step} of {peeks} direct reads caught the manager mid-step");

    // A last sync access sees every update: the monitors' calls were posted before it.
    let summary = manager
        .sync("access_resources", None, |res: Rc<Resources>| async move {
            let values = res.values.borrow();
            let parts: Vec<String> = values.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Ok(format!("{} total={}", parts.join(" "), res.total.get()))
        })
        .await?;
    println!("final: {summary}");

    // Stop the manager through its own mailbox, then wait for it.
    manager.oneway("shutdown", |res: Rc<Resources>| async move {
        res.running.set(false);
        Ok(())
    });
    owner.await?;
    println!(
        "manager stopped after {} steps",
        manager.state().steps.get()
    );
    Ok(())
}

fn main() -> ExitCode {
    match run(main_task()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("deferred_manager: {error}");
            ExitCode::FAILURE
        }
    }
}
