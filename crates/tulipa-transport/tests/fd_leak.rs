//! No file descriptor outlives its connection.
//!
//! Alone in its own test binary on purpose: it counts the entries of `/proc/self/fd`, which
//! other tests running in parallel threads of the same process would disturb; its tests take
//! turns through [`SERIAL`]. Clean closes and aborts, and the failure paths: refused connects,
//! a taken port, resets, a peer vanishing mid-write, cancelled and dropped connects, Unix
//! sockets, UDP.

mod common;

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use common::scenarios::{
    assert_cancelled, create_connection_dropped_before_made, peer_vanishes_mid_write,
};
use common::{connect, pair, run, Log, Rec};
use socket2::{Domain, SockAddr, Socket, Type};
use tulipa_futures::sync::Event;
use tulipa_futures::{spawn, Task};
use tulipa_transport::streams::{open_connection, start_server, DEFAULT_LIMIT};
use tulipa_transport::unix::{create_unix_connection, create_unix_server};
use tulipa_transport::{
    create_connection, create_datagram_endpoint, create_server, ConnectOptions, DatagramOptions,
    DatagramProtocol, DatagramTransport, Error, ServerOptions,
};

/// Held by each test for its whole run: the fd count is process-wide.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("reading /proc/self/fd")
        .count()
}

/// Skips the test (`None`) where `/proc/self/fd` does not exist; else takes [`SERIAL`].
fn serial() -> Option<std::sync::MutexGuard<'static, ()>> {
    if !std::path::Path::new("/proc/self/fd").exists() {
        println!("skipped: no /proc/self/fd on this system");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Waits (yielding to the loop, bounded) until at most `before` fds are open, then checks it:
/// the fds of lost connections are closed by callbacks a few iterations later.
async fn back_to(before: usize, what: &str) -> tulipa_futures::Result<()> {
    let settled = common::until(|| open_fds() <= before);
    if tulipa_futures::timeout(Duration::from_secs(20), settled)
        .await
        .is_err()
    {
        panic!("{what}: {} fds open, {before} before", open_fds());
    }
    assert_eq!(open_fds(), before, "{what}");
    Ok(())
}

/// Runs `cycle(0)` once as a warm-up, so that only per-cycle fds are compared, then
/// `cycle(1)` to `cycle(n)`, and checks with [`back_to`] that the count is back where it was
/// after the warm-up.
async fn cycles<F, C>(n: usize, what: &str, cycle: C) -> tulipa_futures::Result<()>
where
    C: Fn(usize) -> F,
    F: std::future::Future<Output = tulipa_futures::Result<()>>,
{
    cycle(0).await?;
    let before = open_fds();
    for i in 1..=n {
        cycle(i).await?;
    }
    back_to(before, what).await
}

#[test]
fn fifty_connect_close_cycles_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    run(async {
        // One server (with its listening socket) for the whole test; the count starts after it
        // and after the warm-up cycle.
        let server = create_server(
            || Rec::new(&Log::new()).on_data(|t, d| t.write(d).unwrap()),
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        // Protocols: clean close or abort from the client. The server side of each connection
        // sees its EOF and closes soon after: `back_to` waits for the accepted transports.
        cycles(50, "after 50 connect and close cycles", |i| async move {
            let (t, log) = connect(port).await?;
            t.write(format!("cycle {i}").as_bytes())?;
            log.wait_bytes(6).await?;
            if i % 2 == 0 {
                t.close();
            } else {
                t.abort();
            }
            log.wait_lost().await?;
            Ok(())
        })
        .await?;
        server.close();
        Ok(())
    });
}

#[test]
fn fifty_stream_servers_and_connections_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    run(async {
        cycles(
            50,
            "after 50 stream server and connection cycles",
            |_| async {
                let server = start_server(
                    |reader, writer| async move {
                        let line = reader.readline().await?;
                        writer.write(&line)?;
                        writer.close();
                        writer.wait_closed().await
                    },
                    "127.0.0.1",
                    0,
                    DEFAULT_LIMIT,
                    ServerOptions::default(),
                )
                .await?;
                let port = server.local_addr().unwrap().port();
                let (reader, writer) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
                writer.write(b"ping\n")?;
                assert_eq!(reader.readline().await?, b"ping\n");
                assert_eq!(reader.read_to_end().await?, b"");
                writer.close();
                writer.wait_closed().await?;
                server.close();
                server.wait_closed().await?;
                Ok(())
            },
        )
        .await
    });
}

/// A port on 127.0.0.1 that nobody listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn refused_connects_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    let port = closed_port();
    run(async move {
        let before = open_fds();
        for _ in 0..20 {
            let err = create_connection(
                || Rec::new(&Log::new()),
                "127.0.0.1",
                port,
                ConnectOptions::default(),
            )
            .await
            .unwrap_err();
            assert_eq!(
                err.io_kind(),
                Some(std::io::ErrorKind::ConnectionRefused),
                "{err}"
            );
        }
        back_to(before, "after 20 refused connects").await
    });
}

#[test]
fn address_in_use_leaves_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    run(async {
        let taken = create_server(
            || Rec::new(&Log::new()),
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = taken.local_addr().unwrap().port();
        let before = open_fds();
        for _ in 0..20 {
            let err = create_server(
                || Rec::new(&Log::new()),
                "127.0.0.1",
                port,
                ServerOptions::default(),
            )
            .await
            .unwrap_err();
            assert_eq!(err.io_kind(), Some(std::io::ErrorKind::AddrInUse), "{err}");
        }
        back_to(before, "after 20 binds to a taken port").await?;
        taken.close();
        Ok(())
    });
}

#[test]
fn connections_reset_by_the_peer_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    run(async {
        cycles(10, "after 10 resets", |_| async {
            let p = pair(|r| r, |r| r).await?;
            // SO_LINGER 0: the close sends RST instead of FIN.
            p.client
                .with_socket(|s| s.set_linger(Some(Duration::ZERO)).unwrap());
            p.client.abort();
            p.clog.wait_lost().await?;
            p.slog.wait_lost().await?;
            p.server.close();
            p.server.wait_closed().await?;
            Ok(())
        })
        .await
    });
}

#[test]
fn peers_vanishing_mid_write_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    run(async {
        cycles(10, "after 10 peers vanished mid-write", |_| async {
            let p = peer_vanishes_mid_write().await?;
            p.server.close();
            p.server.wait_closed().await?;
            Ok(())
        })
        .await
    });
}

#[test]
fn cancelled_connects_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    // A listener whose accept queue is full (backlog 0, one connection nobody accepts): the
    // kernel drops further SYNs, so each connect stays in progress until cancelled.
    let stalled = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    stalled
        .bind(&SockAddr::from(SocketAddr::from(([127, 0, 0, 1], 0))))
        .unwrap();
    stalled.listen(0).unwrap();
    let addr = stalled.local_addr().unwrap().as_socket().unwrap();
    let _filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    run(async move {
        let before = open_fds();
        for _ in 0..10 {
            let connecting: Task<()> = spawn(async move {
                create_connection(
                    || Rec::new(&Log::new()),
                    "127.0.0.1",
                    addr.port(),
                    ConnectOptions::default(),
                )
                .await?;
                Ok(())
            })?;
            // Let the connect start (its socket exists and waits for writability).
            common::until(|| open_fds() > before).await?;
            connecting.cancel(None);
            assert_cancelled(connecting).await;
        }
        back_to(before, "after 10 cancelled connects").await
    });
}

#[test]
fn connects_dropped_before_connection_made_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    run(async move {
        let server = create_server(
            || Rec::new(&Log::new()),
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let before = open_fds();
        for _ in 0..10 {
            create_connection_dropped_before_made(port, &Log::new()).await?;
        }
        // Client sockets, and the server's accepted ones once they read EOF.
        back_to(before, "after 10 connects dropped before connection_made").await?;
        server.close();
        Ok(())
    });
}

#[test]
fn unix_servers_and_connections_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    let dir = std::env::temp_dir().join(format!("tulipa-fd-leak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sock");
    let p2 = path.clone();
    run(async move {
        let cycle = move |_| {
            let path = p2.clone();
            async move {
                let slog = Log::new();
                let s2 = slog.clone();
                let server = create_unix_server(
                    move || Rec::new(&s2).on_data(|t, d| t.write(d).unwrap()),
                    &path,
                    ServerOptions::default(),
                )
                .await?;
                let clog = Log::new();
                let c2 = clog.clone();
                let t = create_unix_connection(move || Rec::new(&c2), &path).await?;
                t.write(b"ping")?;
                clog.wait_bytes(4).await?;
                t.close();
                clog.wait_lost().await?;
                slog.wait_lost().await?;
                server.close();
                server.wait_closed().await?;
                Ok(())
            }
        };
        cycles(10, "after 10 unix server and connection cycles", cycle).await
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A datagram protocol that reports arrivals and its `connection_lost` through events.
struct Udp {
    t: Option<DatagramTransport>,
    got: Rc<RefCell<Vec<Vec<u8>>>>,
    arrived: Event,
    lost: Event,
}

impl DatagramProtocol for Udp {
    fn connection_made(&mut self, t: DatagramTransport) {
        self.t = Some(t);
    }
    fn datagram_received(&mut self, data: &[u8], _addr: SocketAddr) {
        self.got.borrow_mut().push(data.to_vec());
        self.arrived.set();
    }
    fn connection_lost(&mut self, _exc: Option<Error>) {
        self.t = None;
        self.lost.set();
    }
}

#[test]
fn closed_datagram_endpoints_leave_no_fd_behind() {
    let Some(_serial) = serial() else { return };
    run(async {
        let before = open_fds();
        for i in 0..20u8 {
            let (arrived, lost) = (Event::new(), Event::new());
            let got: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
            let (a2, l2, g2) = (arrived.clone(), lost.clone(), got.clone());
            let mut o = DatagramOptions::default();
            o.local_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
            let t = create_datagram_endpoint(
                move || Udp {
                    t: None,
                    got: g2,
                    arrived: a2,
                    lost: l2,
                },
                o,
            )
            .await?;
            // A datagram to itself, so the endpoint has done real work before it closes.
            t.sendto(&[i], t.local_addr())?;
            arrived.wait().await?;
            assert_eq!(*got.borrow(), [vec![i]]);
            t.close();
            lost.wait().await?;
        }
        back_to(before, "after 20 datagram endpoints").await
    });
}
