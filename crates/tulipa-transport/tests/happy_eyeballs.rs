//! Staggered connection attempts (Happy Eyeballs).

use std::time::Duration;

use tulipa_futures::run;
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
        // Listen on IPv4 only; "localhost" usually resolves to ::1 as well, which then refuses.
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
