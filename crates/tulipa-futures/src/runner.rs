//! `run` (asyncio's `asyncio.run`) and `run_until_complete` for plain Rust futures.

use tulipa_loop::{policy, EventLoop};

use crate::error::Result;
use crate::task::{all_tasks, spawn_on};

/// Runs `fut` as the main task of a new loop and returns its outcome (asyncio's `run`).
///
/// The loop comes from the current policy and is set as this thread's loop while it runs. When
/// `fut` is done, the tasks still pending are cancelled and given up to [`SHUTDOWN_GRACE`] (on the
/// loop's clock) to finish; any still running then are aborted. Then the default executor is shut
/// down and the loop is closed.
///
/// # Errors
///
/// The main task's error; [`Error::Loop`](crate::Error::Loop) when the loop cannot be created or
/// a loop already runs on this thread.
///
/// # Examples
///
/// ```
/// let answer = tulipa_futures::run(async { Ok(6 * 7) })?;
/// assert_eq!(answer, 42);
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn run<F, T>(fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    if EventLoop::running().is_ok() {
        return Err(tulipa_loop::Error::NestedRun.into());
    }
    let lp = policy::new_event_loop()?;
    policy::set_event_loop(Some(lp.clone()));
    let outcome = run_until_complete(&lp, fut);
    shutdown(&lp);
    policy::set_event_loop(None);
    let _ = lp.close();
    outcome
}

/// Spawns `fut` on `lp` and runs the loop until it is done.
///
/// # Errors
///
/// The task's error, or the loop's ([`tulipa_loop::Error::StoppedBeforeComplete`] when someone
/// stopped the loop first).
pub fn run_until_complete<F, T>(lp: &EventLoop, fut: F) -> Result<T>
where
    F: std::future::Future<Output = Result<T>> + 'static,
    T: 'static,
{
    let task = spawn_on(lp, fut)?;
    lp.run_until_complete(task)?
}

/// How long `run` lets cancelled leftover tasks clean up before it aborts them (loop clock).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

/// Cancels what is left on `lp` and waits for it, then shuts the default executor down.
fn shutdown(lp: &EventLoop) {
    let left = all_tasks(lp);
    if !left.is_empty() {
        for t in &left {
            t.cancel(None);
        }
        let waiting = left.clone();
        let _ = run_until_complete(lp, async move {
            let all = async move {
                for t in waiting {
                    crate::wait::until_done(&t).await?;
                }
                Ok(())
            };
            crate::timeout(SHUTDOWN_GRACE, all).await
        });
        for t in left.iter().filter(|t| !t.done()) {
            // Stuck in a foreign future that never saw the request: drop it.
            t.abort();
        }
    }
    crate::executor::shutdown_default_executor_blocking(lp);
}
