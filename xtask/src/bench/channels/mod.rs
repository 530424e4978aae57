//! Suite `channels`: `tulipa_futures::message` pipes against tokio's `mpsc` and `async-channel`,
//! one module per runtime ([`tulipa`], [`tokio`], [`smol`]), the same three workloads in each.
//!
//! - `pipe_local`: [`ITEMS`] `u64`s through a channel of capacity [`CAPACITY`] from a producer
//!   task to the main task of the same loop, which receives and sums them;
//! - `pipe_threads`: [`ITEMS`] `u64`s through a channel of capacity [`CAPACITY`] from a producer
//!   thread to a consumer thread, each running its own loop (runtime);
//! - `rendezvous_local`: [`RENDEZVOUS_ITEMS`] `u64`s as in `pipe_local`, through Tulipa's
//!   rendezvous `pipe()` against the peers' capacity-1 channels (neither has a rendezvous
//!   channel).
//!
//! Local workloads: the time starts inside the main task, before the producer is spawned, and
//! stops when the last item is received. `pipe_threads`: both threads build their loop, meet at a
//! [`Barrier`](std::sync::Barrier), and the consumer's clock runs from there to its last item.
//! Every run checks the sum of what was received.

pub mod smol;
pub mod tokio;
pub mod tulipa;

/// Items in `pipe_local` and `pipe_threads`.
pub const ITEMS: u64 = 1_000_000;
/// Items in `rendezvous_local`.
pub const RENDEZVOUS_ITEMS: u64 = 200_000;
/// Capacity of the buffered channels.
pub const CAPACITY: usize = 1024;

/// The sum of the items `0..n`, which every consumer must arrive at.
pub fn expected_sum(n: u64) -> u64 {
    n * n.saturating_sub(1) / 2
}

/// An error unless `got` is the sum of `0..n`.
fn check(runtime: &str, got: u64, n: u64) -> Result<(), String> {
    let want = expected_sum(n);
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "{runtime}: sum of the items received: {got}, expected {want}"
        ))
    }
}

/// The name of a thread of `pipe_threads`.
fn thread_name(runtime: &str, role: &str) -> String {
    format!("{runtime}-bench-{role}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_sum_is_gauss() {
        assert_eq!(expected_sum(0), 0);
        assert_eq!(expected_sum(1), 0);
        assert_eq!(expected_sum(4), 6);
        assert!(check("x", 6, 4).is_ok());
        assert!(check("x", 5, 4).is_err());
    }
}
