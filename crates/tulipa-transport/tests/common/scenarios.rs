//! Scenarios run by more than one test: once by the test of the behaviour, which checks what
//! happened, and again in a loop by `fd_leak.rs`, which counts the file descriptors left after.
//! Each checks what every caller relies on and returns what the callers check further.

use std::rc::Rc;

use tulipa_futures::{current_task, spawn, Task};
use tulipa_transport::{create_connection, ConnectOptions};

use super::{fill, pair, small_socket_buffers, Log, Pair, Rec};

/// A peer that vanishes while the client writes: the server side pauses reading, the client
/// fills both kernel buffers, then the accepted side closes with unread bytes in its receive
/// queue, so its kernel answers RST. Returns once both sides lost the connection, the client
/// with an error.
pub(crate) async fn peer_vanishes_mid_write() -> tulipa_futures::Result<Pair> {
    let p = pair(paused_reader, |r| r).await?;
    small_socket_buffers(&p.client);
    fill(&p.client, 64 * 1024, 0);
    p.accepted().close();
    p.slog.wait_lost().await?;
    p.clog.wait_lost().await?;
    assert_eq!(p.clog.kinds().last(), Some(&"lost(error)"));
    Ok(p)
}

/// A `Rec` that shrinks its socket's buffers and pauses reading in `connection_made`: a peer
/// that does not read, so the other side's writes pile up.
pub(crate) fn paused_reader(r: Rec) -> Rec {
    r.on_made(|t| {
        small_socket_buffers(t);
        t.pause_reading();
    })
}

/// Aborts the current task, from inside it: its future is dropped right after this step.
pub(crate) fn abort_self() {
    current_task().expect("called inside a task").abort();
}

/// A protocol factory that aborts the current task, then records into `log`. A connect runs
/// it once the TCP connect succeeded, just before the transport is made and its
/// `connection_made` scheduled: the connecting future is dropped at that point.
pub(crate) fn aborting_factory(log: &Rc<Log>) -> impl FnOnce() -> Rec {
    let log = log.clone();
    move || {
        abort_self();
        Rec::new(&log)
    }
}

/// The connecting task ended cancelled (aborted, or cancelled while it waited).
pub(crate) async fn assert_cancelled(connecting: Task<()>) {
    let r = connecting.clone().await;
    assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
}

/// A `create_connection` to `port` on 127.0.0.1 whose future is dropped before the protocol's
/// `connection_made` ran (its task aborts itself from the factory, recording into `clog`).
/// Returns once that task ended, aborted.
pub(crate) async fn create_connection_dropped_before_made(
    port: u16,
    clog: &Rc<Log>,
) -> tulipa_futures::Result<()> {
    let factory = aborting_factory(clog);
    let connecting: Task<()> = spawn(async move {
        create_connection(factory, "127.0.0.1", port, ConnectOptions::default()).await?;
        unreachable!("the task was aborted");
    })?;
    assert_cancelled(connecting).await;
    Ok(())
}
