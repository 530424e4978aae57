//! Staggered connection attempts (Happy Eyeballs).

use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, SockAddr, Socket, Type};
use tulipa_futures::{all_tasks, run, spawn, Task};
use tulipa_transport::streams::{start_server, DEFAULT_LIMIT};
use tulipa_transport::{
    create_connection, ConnectOptions, Error, Protocol, ServerOptions, Transport,
};

struct Quiet;

impl Protocol for Quiet {
    fn connection_made(&mut self, _t: Transport) {}
    fn data_received(&mut self, _d: &[u8]) {}
    fn connection_lost(&mut self, _e: Option<Error>) {}
}

#[test]
fn staggered_connect_reaches_the_address_that_listens() {
    run(async {
        // Listen on IPv4 only; where "localhost" also resolves to ::1, that address refuses.
        // This only checks the path through a name: the staggering itself is proved, whatever
        // the resolver answers, by `a_cancelled_staggered_connect_cancels_its_attempts` here and
        // by `connect::tests::a_stalled_first_address_is_overtaken_after_the_delay`.
        let server = start_server(
            |_r, _w| async { Ok(()) },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let mut o = ConnectOptions::default();
        o.happy_eyeballs_delay = Some(Duration::from_millis(250));
        let t = create_connection(|| Quiet, "localhost", port, o).await?;
        assert_eq!(t.peer_addr().map(|a| a.port()), Some(port));
        t.close();
        server.close();
        Ok(())
    })
    .unwrap();
}

/// A listener on 127.0.0.1 whose accept queue is full (backlog 0, one connection nobody
/// accepts): the kernel drops further SYNs, so a connect to it stays in progress.
fn full_listener() -> (Socket, std::net::TcpStream, SocketAddr) {
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    (l, filler, addr)
}

fn attempts(lp: &tulipa_futures::rt::EventLoop) -> Vec<String> {
    all_tasks(lp)
        .iter()
        .map(|t| t.name())
        .filter(|n| n.starts_with("happy eyeballs"))
        .collect()
}

/// Loop iterations a cancelled attempt may take to finish (it needs a few).
const MAX_ITERATIONS: usize = 1000;

#[test]
fn a_cancelled_staggered_connect_cancels_its_attempts() {
    let (_stalled, _filler, addr) = full_listener();
    run(async move {
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let connecting: Task<()> = spawn(async move {
            let mut o = ConnectOptions::default();
            o.happy_eyeballs_delay = Some(Duration::from_secs(3600));
            create_connection(|| Quiet, "127.0.0.1", addr.port(), o).await?;
            Ok(())
        })?;
        let bounded = async {
            while attempts(&lp).is_empty() {
                tulipa_futures::sleep(Duration::ZERO).await?;
            }
            Ok::<(), tulipa_futures::Error>(())
        };
        tulipa_futures::timeout(Duration::from_secs(20), bounded).await?;
        assert_eq!(
            attempts(&lp),
            [format!("happy eyeballs: connect to {addr}")]
        );
        connecting.cancel(Some("the caller gives up"));
        let r = connecting.clone().await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        // The attempt's cancellation is delivered on the next iterations: wait for it, loop
        // iteration by loop iteration, far longer than it needs.
        let mut iterations = 0;
        while !attempts(&lp).is_empty() {
            assert!(
                iterations < MAX_ITERATIONS,
                "attempts still alive {MAX_ITERATIONS} loop iterations after the connect was \
                 cancelled: {:?}",
                attempts(&lp)
            );
            tulipa_futures::sleep(Duration::ZERO).await?;
            iterations += 1;
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn staggered_connect_reports_every_failure_when_nothing_listens() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = run(async move {
        let mut o = ConnectOptions::default();
        o.happy_eyeballs_delay = Some(Duration::from_millis(50));
        Ok(create_connection(|| Quiet, "127.0.0.1", port, o)
            .await
            .err())
    })
    .unwrap()
    .expect("nothing listens");
    assert_eq!(
        err.io_kind(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "{err}"
    );
}
