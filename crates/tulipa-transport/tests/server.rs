//! `create_server` and `Server`: listening, start/stop serving, closing, waiting, clients.
//!
//! Ports CPython's `test_asyncio/test_server.py` (`test_start_server_1`,
//! `test_wait_closed_basic`, `test_close_clients`, `test_abort_clients`) and the server parts
//! of `test_events.py` (`test_create_server`, `test_create_server_reuse_port`,
//! `test_server_close`), on real sockets.

mod common;

use std::cell::RefCell;
use std::io::ErrorKind;
use std::rc::Rc;

use common::scenarios::paused_reader;
use common::{connect, fill, pair, pattern, run, settle, small_socket_buffers, Ev, Log, Rec};
use tulipa_futures::{spawn, Task};
use tulipa_transport::streams::{open_connection, start_server, DEFAULT_LIMIT};
use tulipa_transport::{create_server, Error, Protocol, ServerOptions, Transport};

/// The logs of a server's connections, in accept order.
type Logs = Rc<RefCell<Vec<Rc<Log>>>>;

/// A protocol factory that gives every connection its own log, kept in [`Logs`].
fn logging_factory() -> (impl Fn() -> Rec + 'static, Logs) {
    let logs: Logs = Rc::default();
    let l2 = logs.clone();
    let factory = move || {
        let log = Log::new();
        l2.borrow_mut().push(log.clone());
        Rec::new(&log)
    };
    (factory, logs)
}

/// A server on 127.0.0.1 whose every connection gets its own log, in accept order.
async fn logging_server(
    options: ServerOptions,
) -> tulipa_transport::Result<(tulipa_transport::Server, Logs)> {
    let (factory, logs) = logging_factory();
    let server = create_server(factory, "127.0.0.1", 0, options).await?;
    Ok((server, logs))
}

/// The log of the first accepted connection, once its `connection_made` ran.
async fn first_accepted(logs: &Logs) -> tulipa_futures::Result<Rc<Log>> {
    common::until(|| !logs.borrow().is_empty()).await?;
    let slog = logs.borrow()[0].clone();
    slog.wait_made().await?;
    Ok(slog)
}

/// The client sends `data`, the server's side receives it, the client closes, and both sides
/// lose the connection.
async fn send_then_close(
    t: &Transport,
    clog: &Log,
    slog: &Log,
    data: &[u8],
) -> tulipa_futures::Result<()> {
    t.write(data)?;
    slog.wait_bytes(data.len()).await?;
    t.close();
    clog.wait_lost().await?;
    slog.wait_lost().await?;
    Ok(())
}

#[test]
fn create_server_on_port_zero_listens_and_serves() {
    run(async {
        let (server, logs) = logging_server(ServerOptions::default()).await?;
        assert!(server.is_serving());
        let sockets = server.sockets();
        assert_eq!(sockets.len(), 1);
        let addr = server.local_addr().unwrap();
        assert_eq!(sockets[0].as_socket(), Some(addr));
        assert_ne!(addr.port(), 0);
        assert!(addr.ip().is_loopback());
        assert!(format!("{server:?}").contains("serving: true"));

        let (t1, _) = connect(addr.port()).await?;
        let (t2, _) = connect(addr.port()).await?;
        common::until(|| logs.borrow().len() == 2).await?;
        let all = logs.borrow().clone();
        for log in all {
            log.wait_made().await?;
        }
        t1.close();
        t2.close();
        let all = logs.borrow().clone();
        for log in all {
            log.wait_lost().await?;
        }
        server.close();
        Ok(())
    });
}

#[test]
fn start_serving_false_accepts_only_after_start_serving() {
    run(async {
        let mut options = ServerOptions::default();
        options.start_serving = false;
        let (server, logs) = logging_server(options).await?;
        assert!(!server.is_serving());
        let port = server.local_addr().unwrap().port();
        // The kernel completes the handshake (the socket listens), but nobody accepts.
        let (t, clog) = connect(port).await?;
        settle(5).await?;
        assert!(logs.borrow().is_empty());
        server.start_serving()?;
        server.start_serving()?; // idempotent
        assert!(server.is_serving());
        let slog = first_accepted(&logs).await?;
        send_then_close(&t, &clog, &slog, b"late").await?;
        server.close();
        Ok(())
    });
}

#[test]
fn close_stops_listening_and_keeps_accepted_connections() {
    run(async {
        let p = pair(|r| r.on_data(|t, d| t.write(d).unwrap()), |r| r).await?;
        let port = p.server.local_addr().unwrap().port();
        p.server.close();
        p.server.close(); // idempotent
        assert!(!p.server.is_serving());
        assert!(p.server.sockets().is_empty());
        assert_eq!(p.server.local_addr(), None);
        assert!(matches!(p.server.start_serving(), Err(Error::Closed)));

        // The listening socket is gone...
        let err = connect(port).await.unwrap_err();
        assert_eq!(err.io_kind(), Some(ErrorKind::ConnectionRefused), "{err}");
        // ...the accepted connection is not.
        p.client.write(b"still here")?;
        p.clog.wait_bytes(10).await?;
        assert_eq!(p.clog.received(), b"still here");
        p.client.close();
        p.slog.wait_lost().await?;
        p.server.wait_closed().await?;
        Ok(())
    });
}

#[test]
fn wait_closed_waits_for_close_and_for_the_clients() {
    run(async {
        // asyncio's test_wait_closed_basic: the handler reads to EOF, then closes.
        let server = start_server(
            |reader, writer| async move {
                let _ = reader.read_to_end().await;
                writer.close();
                writer.wait_closed().await
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let s1 = server.clone();
        let task1 = spawn(async move { Ok(s1.wait_closed().await?) })?;
        settle(3).await?;
        assert!(!task1.done(), "not closed: waits");

        let port = server.local_addr().unwrap().port();
        let (_reader, writer) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
        let s2 = server.clone();
        let task2 = spawn(async move { Ok(s2.wait_closed().await?) })?;
        settle(3).await?;
        assert!(
            !task1.done() && !task2.done(),
            "a client, not closed: waits"
        );

        server.close();
        settle(3).await?;
        let s3 = server.clone();
        let task3 = spawn(async move { Ok(s3.wait_closed().await?) })?;
        settle(3).await?;
        assert!(
            !task1.done() && !task2.done() && !task3.done(),
            "closed, but a client is open: waits"
        );

        writer.close();
        writer.wait_closed().await?;
        task1.await?;
        task2.await?;
        task3.await?;
        server.wait_closed().await?; // at once now
        Ok(())
    });
}

#[test]
fn wait_closed_after_close_clients_waits_until_the_buffer_is_flushed_and_the_connection_lost() {
    run(async {
        // The client does not read, so the server's transport keeps a large buffer.
        let p = pair(|r| r.on_made(small_socket_buffers), paused_reader).await?;
        let accepted = p.accepted();
        let written = fill(&accepted, 256 * 1024, 0);
        p.server.close();
        p.server.close_clients();
        assert!(accepted.is_closing() && accepted.get_write_buffer_size() > 0);
        let s1 = p.server.clone();
        let slog = p.slog.clone();
        // What the server side had seen when wait_closed returned.
        let waiting: Task<bool> = spawn(async move {
            s1.wait_closed().await?;
            Ok(slog.lost())
        })?;
        settle(5).await?;
        assert!(
            !waiting.done(),
            "closing, not lost: the buffer is still flushing"
        );
        assert!(!p.slog.lost());

        p.client.resume_reading();
        assert!(waiting.await?, "wait_closed returned after connection_lost");
        p.clog.wait_lost().await?;
        assert_eq!(p.clog.received(), pattern(written), "every byte flushed");
        assert_eq!(p.slog.kinds().last(), Some(&"lost"));
        assert!(p.slog.error().is_none());
        Ok(())
    });
}

#[test]
fn the_recorder_counts_a_second_connection_lost_and_reports_it() {
    // The tests' `Rec` must see a broken contract: it records the call before checking (a
    // panic would be caught by the transport and only logged) and reports it through `run`.
    let log = Log::new();
    let mut rec = Rec::new(&log);
    rec.connection_lost(None);
    rec.connection_lost(None);
    assert_eq!(log.count(|e| matches!(e, Ev::Lost(_))), 2);
    let broken = common::violations();
    assert_eq!(broken.len(), 1, "{broken:?}");
    assert!(
        broken[0].contains("connection_lost called twice"),
        "{broken:?}"
    );
}

#[test]
fn close_clients_closes_every_accepted_connection() {
    run(async {
        let (server, logs) = logging_server(ServerOptions::default()).await?;
        let port = server.local_addr().unwrap().port();
        let (_t1, c1) = connect(port).await?;
        let (_t2, c2) = connect(port).await?;
        common::until(|| logs.borrow().len() == 2).await?;
        let s1 = server.clone();
        let waiting: Task<()> = spawn(async move { Ok(s1.wait_closed().await?) })?;
        settle(3).await?;
        assert!(!waiting.done());

        server.close();
        server.close_clients();
        waiting.await?;
        for log in [&c1, &c2] {
            log.wait_lost().await?;
            assert_eq!(log.kinds(), ["made", "eof", "lost"]);
        }
        let all = logs.borrow().clone();
        for log in all {
            log.wait_lost().await?;
            assert_eq!(log.kinds(), ["made", "lost"]);
        }
        Ok(())
    });
}

#[test]
fn abort_clients_drops_what_they_had_buffered() {
    run(async {
        // The client does not read, so the server's transport buffers.
        let p = pair(|r| r.on_made(small_socket_buffers), paused_reader).await?;
        let accepted = p.accepted();
        fill(&accepted, 128 * 1024, 0);
        assert!(accepted.get_write_buffer_size() > 0);
        let s1 = p.server.clone();
        let waiting: Task<()> = spawn(async move { Ok(s1.wait_closed().await?) })?;
        settle(3).await?;
        assert!(!waiting.done());

        p.server.close();
        p.server.abort_clients();
        assert_eq!(accepted.get_write_buffer_size(), 0);
        waiting.await?;
        p.slog.wait_lost().await?;
        assert!(p.slog.error().is_none());
        assert_eq!(p.slog.kinds().last(), Some(&"lost"));
        p.client.close();
        p.clog.wait_lost().await?;
        Ok(())
    });
}

#[test]
fn serve_forever_cancelled_closes_the_server() {
    run(async {
        // asyncio's test_start_server_1: the handler cancels the task in serve_forever.
        let main: Rc<RefCell<Option<Task<()>>>> = Rc::default();
        let m2 = main.clone();
        let mut options = ServerOptions::default();
        options.start_serving = false;
        let server = start_server(
            move |reader, writer| {
                let main = m2.clone();
                async move {
                    reader.readline().await?;
                    if let Some(t) = main.borrow().as_ref() {
                        t.cancel(Some("enough"));
                    }
                    writer.write(b"1")?;
                    writer.close();
                    writer.wait_closed().await
                }
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            options,
        )
        .await?;
        assert!(!server.is_serving());
        let port = server.local_addr().unwrap().port();
        let s1 = server.clone();
        let task: Task<()> = spawn(async move { Ok(s1.serve_forever().await?) })?;
        *main.borrow_mut() = Some(task.clone());
        settle(2).await?;
        assert!(server.is_serving());

        let (reader, writer) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
        writer.write(&[b'1'; 5 * 1024])?;
        writer.write(b"\n")?;
        assert_eq!(reader.readexactly(1).await?, b"1");
        let r = task.await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert!(!server.is_serving());
        assert!(server.sockets().is_empty());
        let again = server.serve_forever().await;
        assert!(matches!(again, Err(Error::Closed)), "{again:?}");
        writer.close();
        server.wait_closed().await?;
        Ok(())
    });
}

#[test]
fn reuse_port_lets_two_servers_share_a_port() {
    run(async {
        let mut options = ServerOptions::default();
        options.reuse_port = true;
        let (a, _) = logging_server(options.clone()).await?;
        let port = a.local_addr().unwrap().port();
        let log = Log::new();
        let l2 = log.clone();
        let b = create_server(move || Rec::new(&l2), "127.0.0.1", port, options).await?;
        assert_eq!(b.local_addr().unwrap().port(), port);
        a.close();
        b.close();
        Ok(())
    });
}

#[test]
fn each_accepted_connection_gets_a_fresh_protocol() {
    run(async {
        let (server, logs) = logging_server(ServerOptions::default()).await?;
        let port = server.local_addr().unwrap().port();
        let mut clients = Vec::new();
        for i in 0..5u8 {
            let (t, _) = connect(port).await?;
            t.write(&[i])?;
            clients.push(t);
        }
        common::until(|| logs.borrow().len() == 5).await?;
        let logs = logs.borrow().clone();
        for log in &logs {
            log.wait_bytes(1).await?;
            assert_eq!(log.count(|e| *e == Ev::Made), 1);
        }
        let mut firsts: Vec<u8> = logs.iter().map(|l| l.received()[0]).collect();
        firsts.sort_unstable();
        assert_eq!(firsts, [0, 1, 2, 3, 4]);
        server.close();
        server.close_clients();
        for t in &clients {
            assert!(!t.is_closing());
        }
        server.wait_closed().await?;
        for log in &logs {
            log.wait_lost().await?;
        }
        Ok(())
    });
}

/// The status flags of `fd` as `/proc/self/fdinfo` shows them (octal `flags:` line).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn fd_status_flags(fd: std::os::fd::RawFd) -> u32 {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .expect("a flags line");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

#[test]
fn accepted_connections_are_non_blocking_close_on_exec_and_know_both_addresses() {
    run(async {
        let p = pair(|r| r, |r| r).await?;
        let a = p.accepted();
        // accept4 made it non-blocking and close-on-exec in one call (no fcntl afterwards).
        assert_eq!(a.with_socket(|s| s.nonblocking().unwrap()), Some(true));
        #[cfg(all(
            target_os = "linux",
            any(target_arch = "x86_64", target_arch = "aarch64")
        ))]
        {
            const O_NONBLOCK: u32 = 0o4000;
            const O_CLOEXEC: u32 = 0o2000000;
            let flags = fd_status_flags(a.fd());
            assert_ne!(flags & O_NONBLOCK, 0, "O_NONBLOCK in {flags:o}");
            assert_ne!(flags & O_CLOEXEC, 0, "O_CLOEXEC in {flags:o}");
        }
        assert_eq!(a.with_socket(|s| s.tcp_nodelay().unwrap()), Some(true));
        // The peer's address comes from accept; the local one is read on request, once.
        assert_eq!(a.peer_addr(), p.client.local_addr());
        assert_eq!(a.local_addr(), p.server.local_addr());
        assert_eq!(
            a.sockname().and_then(|s| s.as_socket()),
            p.server.local_addr()
        );
        assert!(format!("{a:?}").contains("127.0.0.1"));
        // Addresses read while the connection was open stay known after it is lost.
        p.client.close();
        p.slog.wait_lost().await?;
        assert!(a.with_socket(|_| ()).is_none(), "socket released");
        assert_eq!(a.peer_addr(), p.client.local_addr());
        assert_eq!(a.local_addr(), p.server.local_addr());
        p.server.close();
        Ok(())
    });
}

#[test]
fn from_sockets_makes_a_blocking_listener_non_blocking_and_serves_it() {
    run(async {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = socket2::Socket::from(std_listener);
        // A duplicate shares the file status flags, O_NONBLOCK among them.
        let dup = listener.try_clone().unwrap();
        assert!(!dup.nonblocking().unwrap(), "std listeners block");
        let (factory, logs) = logging_factory();
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let server =
            tulipa_transport::Server::from_sockets(&lp, vec![listener], Rc::new(factory), 8)?;
        assert!(
            dup.nonblocking().unwrap(),
            "from_sockets made it non-blocking"
        );
        server.start_serving()?;
        // Accepting drains the queue until accept would block: with a blocking listener the
        // loop would hang in the second accept and this connection would never be served.
        let (t, clog) = connect(addr.port()).await?;
        let slog = first_accepted(&logs).await?;
        send_then_close(&t, &clog, &slog, b"served").await?;
        server.close();
        server.wait_closed().await?;
        drop(dup);
        Ok(())
    });
}

#[test]
fn from_sockets_refuses_a_listener_that_is_not_a_byte_stream() {
    // asyncio: "A Stream Socket was expected". Accepted connections are read as streams.
    run(async {
        let dir = std::env::temp_dir().join(format!("tulipa-seqpacket-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let listener =
            socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::SEQPACKET, None).unwrap();
        listener
            .bind(&socket2::SockAddr::unix(&dir).unwrap())
            .unwrap();
        listener.listen(4).unwrap();
        let (factory, _logs) = logging_factory();
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let err = tulipa_transport::Server::from_sockets(&lp, vec![listener], Rc::new(factory), 8)
            .expect_err("a SOCK_SEQPACKET listener");
        match &err {
            tulipa_transport::Error::Io { source, .. } => {
                assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput, "{err}");
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        let _ = std::fs::remove_file(&dir);
        Ok(())
    });
}

#[test]
fn an_empty_host_listens_on_every_interface() {
    run(async {
        let (factory, logs) = logging_factory();
        let server = create_server(factory, "", 0, ServerOptions::default()).await?;
        let addrs: Vec<_> = server
            .sockets()
            .iter()
            .filter_map(|a| a.as_socket())
            .collect();
        let port = addrs[0].port();
        assert_ne!(port, 0);
        assert_eq!(addrs[0], std::net::SocketAddr::from(([0, 0, 0, 0], port)));
        if let Some(v6) = addrs.get(1) {
            // One socket per family, on the same port.
            assert_eq!(*v6, std::net::SocketAddr::from(([0u16; 8], port)));
        }
        assert!(addrs.len() <= 2, "{addrs:?}");
        let (t, clog) = connect(port).await?;
        let slog = first_accepted(&logs).await?;
        assert_eq!(
            slog.transport().local_addr(),
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        );
        t.close();
        clog.wait_lost().await?;
        server.close();
        server.close_clients();
        server.wait_closed().await?;
        Ok(())
    });
}
