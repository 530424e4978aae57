//! `create_connection`, `connect_socket`, `create_server` errors and `getaddrinfo`.
//!
//! Ports the TCP checks of CPython's `test_asyncio/test_events.py`
//! (`test_create_connection`, `test_create_connection_sock`,
//! `test_create_connection_local_addr`, `test_create_server_addr_in_use`,
//! `test_create_connection_refused`-style checks of `test_base_events.py`), on real sockets.

mod common;

use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;

use common::{pair, run, Ev, Log, Rec};
use socket2::{Domain, SockAddr, Socket, Type};
use tulipa_futures::{current_task, spawn};
use tulipa_transport::{
    connect_socket, create_connection, create_server, getaddrinfo, ConnectOptions, Error,
    ServerOptions,
};

/// A port that is bound but not listening: connecting to it is refused. Keep the socket alive
/// while the port is in use by the test.
fn refusing_port() -> (Socket, u16) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SockAddr::from(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))))
        .unwrap();
    let port = s.local_addr().unwrap().as_socket().unwrap().port();
    (s, port)
}

#[test]
fn connection_refused_is_an_io_error_and_makes_no_protocol() {
    run(async {
        let (_holder, port) = refusing_port();
        let made = Rc::new(std::cell::Cell::new(false));
        let m2 = made.clone();
        let log = Log::new();
        let r = create_connection(
            move || {
                m2.set(true);
                Rec::new(&log)
            },
            "127.0.0.1",
            port,
            ConnectOptions::default(),
        )
        .await;
        let err = r.unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(err.io_kind(), Some(ErrorKind::ConnectionRefused), "{err}");
        assert!(err.to_string().contains(&port.to_string()), "{err}");
        assert!(
            !made.get(),
            "the factory is not called when the connect fails"
        );
        Ok(())
    });
}

#[test]
fn create_server_on_a_port_in_use_is_addr_in_use() {
    run(async {
        let log = Log::new();
        let l2 = log.clone();
        let first = create_server(
            move || Rec::new(&l2),
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = first.local_addr().unwrap().port();
        let l3 = log.clone();
        let second = create_server(
            move || Rec::new(&l3),
            "127.0.0.1",
            port,
            ServerOptions::default(),
        )
        .await;
        let err = second.unwrap_err();
        assert_eq!(err.io_kind(), Some(ErrorKind::AddrInUse), "{err:?}");
        assert!(err.to_string().contains("bind"), "{err}");
        // The first server is unharmed.
        assert!(first.is_serving());
        first.close();
        Ok(())
    });
}

#[test]
fn create_connection_with_local_addr_binds_it_first() {
    run(async {
        let local: SocketAddr = "127.0.0.2:0".parse().unwrap();
        let slog = Log::new();
        let s2 = slog.clone();
        let server = create_server(
            move || Rec::new(&s2),
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let mut options = ConnectOptions::default();
        options.local_addr = Some(local);
        let clog = Log::new();
        let c2 = clog.clone();
        let t = create_connection(move || Rec::new(&c2), "127.0.0.1", port, options).await?;
        slog.wait_made().await?;
        assert_eq!(t.local_addr().unwrap().ip(), local.ip());
        assert_eq!(slog.transport().peer_addr(), t.local_addr());
        t.close();
        slog.wait_lost().await?;
        server.close();
        Ok(())
    });
}

#[test]
fn create_connection_resolves_a_name_and_tries_each_address() {
    run(async {
        // "localhost" may resolve to ::1 first; the server listens on 127.0.0.1 only, so that
        // address must be tried after the refused one.
        let addrs = getaddrinfo("localhost", 80).await?;
        assert!(addrs.iter().all(|a| a.port() == 80));
        assert!(
            addrs
                .iter()
                .any(|a| a.ip() == IpAddr::from(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
        let p = pair(|r| r, |r| r).await?;
        let port = p.server.local_addr().unwrap().port();
        let clog = Log::new();
        let c2 = clog.clone();
        let t = create_connection(
            move || Rec::new(&c2),
            "localhost",
            port,
            ConnectOptions::default(),
        )
        .await?;
        assert_eq!(t.peer_addr(), p.server.local_addr());
        t.write(b"by name")?;
        t.close();
        clog.wait_lost().await?;
        p.client.close();
        p.server.close();
        Ok(())
    });
}

#[test]
fn getaddrinfo_parses_literals_on_the_spot() {
    run(async {
        assert_eq!(
            getaddrinfo("127.0.0.1", 8080).await?,
            ["127.0.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            getaddrinfo("::1", 9).await?,
            ["[::1]:9".parse::<SocketAddr>().unwrap()]
        );
        Ok(())
    });
}

#[test]
fn connect_socket_attaches_a_protocol_to_a_connected_socket() {
    run(async {
        let p = pair(|r| r.on_data(|t, d| t.write(d).unwrap()), |r| r).await?;
        let addr = p.server.local_addr().unwrap();
        // A blocking connect: the kernel completes the handshake without the server accepting.
        let std_sock = std::net::TcpStream::connect(addr).unwrap();
        let clog = Log::new();
        let c2 = clog.clone();
        let t = connect_socket(Socket::from(std_sock), move || Rec::new(&c2)).await?;
        assert!(clog.has(&Ev::Made));
        t.write(b"through an adopted socket")?;
        clog.wait_bytes(25).await?;
        assert_eq!(clog.received(), b"through an adopted socket");
        t.close();
        clog.wait_lost().await?;
        p.client.close();
        p.server.close();
        Ok(())
    });
}

#[test]
fn create_connection_cancelled_while_attaching_leaves_no_connection_open() {
    run(async {
        let slog = Log::new();
        let s2 = slog.clone();
        let server = create_server(
            move || Rec::new(&s2),
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let clog = Log::new();
        let c2 = clog.clone();
        // The protocol factory runs inside the connecting task, once the socket is connected:
        // a cancellation requested there arrives at the next await, the wait for
        // connection_made.
        let task = spawn(async move {
            let r = create_connection(
                move || {
                    current_task().expect("inside a task").cancel(None);
                    Rec::new(&c2)
                },
                "127.0.0.1",
                port,
                ConnectOptions::default(),
            )
            .await;
            Ok(r.map(|_| ()))
        })?;
        let r = task.await?;
        assert!(
            matches!(&r, Err(e) if e.is_cancelled()),
            "create_connection returns the cancellation: {r:?}"
        );
        // No one holds the transport: it must not stay open. The server sees the end.
        slog.wait_lost().await?;
        clog.wait_lost().await?;
        assert_eq!(slog.kinds(), ["made", "eof", "lost"]);
        server.close();
        Ok(())
    });
}
