//! A connect whose future is dropped before it returned (its task aborted, a foreign `select` or
//! timeout) closes the connection it made: nobody could ever reach that transport, and its
//! protocol, which holds it, would keep the socket open for good.
//!
//! Each test drops the connecting future at a fixed point: after the TCP connect, while the
//! protocol's `connection_made` is scheduled but has not run (the task aborts itself from the
//! protocol factory, so its future is dropped right after that step), or while the TLS
//! handshake is under way (the server aborts the client's task when the ClientHello arrives).
//! Each checks that the client's protocol gets `connection_made` then `connection_lost(None)`
//! and is dropped, and that the server sees the connection end.

mod common;

use std::rc::Rc;

use common::scenarios::{
    aborting_factory, assert_cancelled, create_connection_dropped_before_made,
};
use common::{run, Ev, Log, Rec};
use tulipa_futures::{spawn, Task};
use tulipa_transport::{connect_socket, create_server, Server, ServerOptions};

/// A server whose accepted connections are recorded in `slog`.
async fn recorded_server(
    slog: &Rc<Log>,
    hook: impl Fn(Rec) -> Rec + 'static,
) -> tulipa_transport::Result<(Server, u16)> {
    let slog = slog.clone();
    let server = create_server(
        move || hook(Rec::new(&slog)),
        "127.0.0.1",
        0,
        ServerOptions::default(),
    )
    .await?;
    let port = server.local_addr().expect("a TCP server").port();
    Ok((server, port))
}

/// Once a connect was dropped before `connection_made` ran: the client's side goes through
/// `connection_made` then `connection_lost(None)`, and its protocol is gone (only the test
/// holds `clog` now); the socket is closed, so the server reads EOF and closes its side.
async fn assert_both_sides_closed(clog: &Rc<Log>, slog: &Rc<Log>) -> tulipa_futures::Result<()> {
    clog.wait_lost().await?;
    assert_eq!(clog.events(), [Ev::Made, Ev::Lost(false)], "client calls");
    assert_eq!(
        Rc::strong_count(clog),
        1,
        "the client protocol was dropped (no protocol <-> transport cycle left)"
    );
    slog.wait_lost().await?;
    assert!(slog.has(&Ev::Eof), "server calls: {:?}", slog.kinds());
    Ok(())
}

#[test]
fn create_connection_dropped_before_connection_made_closes_the_connection() {
    run(async {
        let slog = Log::new();
        let (server, port) = recorded_server(&slog, |r| r).await?;
        let clog = Log::new();
        create_connection_dropped_before_made(port, &clog).await?;
        assert_both_sides_closed(&clog, &slog).await?;
        server.close();
        Ok(())
    });
}

#[test]
fn connect_socket_dropped_before_connection_made_closes_the_connection() {
    run(async {
        let slog = Log::new();
        let (server, port) = recorded_server(&slog, |r| r).await?;
        let std_sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let clog = Log::new();
        let factory = aborting_factory(&clog);
        let connecting: Task<()> = spawn(async move {
            connect_socket(std_sock.into(), factory).await?;
            unreachable!("the task was aborted");
        })?;
        assert_cancelled(connecting).await;
        assert_both_sides_closed(&clog, &slog).await?;
        server.close();
        Ok(())
    });
}

#[cfg(feature = "tls")]
#[test]
fn a_tls_connect_dropped_during_the_handshake_closes_the_connection() {
    use std::cell::RefCell;
    use std::time::Duration;

    use tulipa_futures::TaskRef;
    use tulipa_transport::{create_connection, ConnectOptions};

    run(async {
        // A plain TCP server that never answers the ClientHello: the handshake waits (for an
        // hour, longer than the test's bound), and the server aborts the connecting task when
        // the ClientHello arrives.
        let connecting_ref: Rc<RefCell<Option<TaskRef>>> = Rc::default();
        let slog = Log::new();
        let r2 = connecting_ref.clone();
        let (server, port) = recorded_server(&slog, move |rec| {
            let r3 = r2.clone();
            rec.on_data(move |_t, _hello| {
                if let Some(task) = r3.borrow_mut().take() {
                    task.abort();
                }
            })
        })
        .await?;
        let clog = Log::new();
        let c2 = clog.clone();
        let connecting: Task<()> = spawn(async move {
            let mut o = ConnectOptions::default();
            o.tls = Some(tulipa_transport::tls::client_config(&[]));
            o.tls_handshake_timeout = Some(Duration::from_secs(3600));
            create_connection(move || Rec::new(&c2), "127.0.0.1", port, o).await?;
            unreachable!("the task was aborted");
        })?;
        *connecting_ref.borrow_mut() = Some(connecting.as_task_ref());
        assert_cancelled(connecting).await;
        // The handshake never finished, so the user's protocol was never made; the socket is
        // closed under the unanswered handshake.
        slog.wait_lost().await?;
        assert!(
            slog.count(|e| matches!(e, Ev::Data(_))) > 0,
            "the ClientHello arrived"
        );
        assert!(!clog.has(&Ev::Made), "client calls: {:?}", clog.kinds());
        assert_eq!(
            Rc::strong_count(&clog),
            1,
            "the client protocol was dropped"
        );
        server.close();
        Ok(())
    });
}
