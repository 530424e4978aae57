//! A server on several loops and threads sharing one port (SO_REUSEPORT).

use std::collections::HashSet;
use std::io::Read;
use std::net::TcpStream;

use tulipa_transport::multicore::serve_on_threads;
use tulipa_transport::{Error, Protocol, Transport};

/// Answers each connection with the name of the thread that accepted it, then closes.
struct WhoAmI;

impl Protocol for WhoAmI {
    fn connection_made(&mut self, t: Transport) {
        let name = std::thread::current().name().unwrap_or("?").to_owned();
        let _ = t.write(name.as_bytes());
        t.close();
    }
    fn data_received(&mut self, _data: &[u8]) {}
    fn connection_lost(&mut self, _exc: Option<Error>) {}
}

#[test]
fn connections_are_served_by_the_loops_of_several_threads() {
    let mut server = serve_on_threads(2, "127.0.0.1", 0, || WhoAmI).unwrap();
    let port = server.port();
    assert_ne!(port, 0);
    assert_eq!(server.loops().len(), 2);
    let mut seen = HashSet::new();
    // The kernel hashes connections over the two sockets; 200 connections reach both in practice.
    for _ in 0..200 {
        // Send nothing: closing with unread data would make the server's kernel reset.
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut name = String::new();
        c.read_to_string(&mut name).unwrap();
        assert!(
            name.starts_with("tulipa-shard-"),
            "served by a shard thread, got {name:?}"
        );
        seen.insert(name);
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "both shards accepted connections: {seen:?}");
    server.stop();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens after stop"
    );
}
