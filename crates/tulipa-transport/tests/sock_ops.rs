//! `sock_*` operations on real non-blocking sockets.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, SockAddr, Socket, Type};
use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;
use tulipa_futures::{run, spawn};

use tulipa_futures::Task;
use tulipa_transport::sock::{
    sock_accept, sock_connect, sock_recv, sock_recvfrom, sock_send, sock_sendall, sock_sendto,
};

fn listener() -> (Socket, SocketAddr) {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SockAddr::from(
        "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
    ))
    .unwrap();
    s.listen(8).unwrap();
    s.set_nonblocking(true).unwrap();
    let a = s.local_addr().unwrap().as_socket().unwrap();
    (s, a)
}

/// Everything `conn` receives until the peer's EOF, through `sock_recv`.
async fn recv_to_eof(conn: &Socket) -> tulipa_futures::Result<Vec<u8>> {
    let mut got = Vec::new();
    loop {
        let chunk = sock_recv(conn, 65536).await?;
        if chunk.is_empty() {
            return Ok(got);
        }
        got.extend_from_slice(&chunk);
    }
}

#[test]
fn accept_connect_sendall_recv_move_a_megabyte_intact() {
    run(async {
        let (l, addr) = listener();
        let server = spawn(async move {
            let (conn, _) = sock_accept(&l).await?;
            recv_to_eof(&conn).await
        })?;
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        sock_connect(&c, &SockAddr::from(addr)).await?;
        let data: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
        sock_sendall(&c, &data).await?;
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let got = server.await?;
        assert_eq!(got.len(), data.len());
        assert!(got == data);
        Ok(())
    })
    .unwrap();
}

#[test]
fn sock_connect_to_a_closed_port_is_refused() {
    let (l, addr) = listener();
    drop(l);
    let kind = run(async move {
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        Ok(sock_connect(&c, &SockAddr::from(addr))
            .await
            .err()
            .and_then(|e| e.io_kind()))
    })
    .unwrap();
    assert_eq!(kind, Some(std::io::ErrorKind::ConnectionRefused));
}

#[test]
fn sendto_and_recvfrom_exchange_datagrams() {
    run(async {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let (aa, ba) = (a.local_addr().unwrap(), b.local_addr().unwrap());
        let receiver = spawn(async move { sock_recvfrom(&b, 100).await.map_err(Into::into) })?;
        tulipa_futures::sleep(std::time::Duration::ZERO).await?;
        assert_eq!(sock_sendto(&a, b"datagram", ba).await?, 8);
        let (data, from) = receiver.await?;
        assert_eq!((data.as_slice(), from), (&b"datagram"[..], aa));
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_cancelled_recv_takes_nothing() {
    run(async {
        let (l, addr) = listener();
        let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        sock_connect(&c, &SockAddr::from(addr)).await?;
        let (conn, _) = sock_accept(&l).await?;
        let conn = std::rc::Rc::new(conn);
        let c2 = conn.clone();
        let blocked = spawn(async move { sock_recv(&c2, 16).await.map_err(Into::into) })?;
        tulipa_futures::sleep(std::time::Duration::ZERO).await?;
        blocked.cancel(None);
        assert!(blocked.clone().await.unwrap_err().is_cancelled());
        sock_sendall(&c, b"still here").await?;
        assert_eq!(sock_recv(&conn, 16).await?, b"still here");
        Ok(())
    })
    .unwrap();
}

/// Lets every ready callback run a few times (a yield, not a clock wait).
async fn settle() -> tulipa_futures::Result<()> {
    for _ in 0..3 {
        tulipa_futures::sleep(Duration::ZERO).await?;
    }
    Ok(())
}

/// A connected pair: (client, accepted).
async fn connected() -> tulipa_futures::Result<(Socket, Socket)> {
    let (l, addr) = listener();
    let c = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    c.set_nonblocking(true).unwrap();
    sock_connect(&c, &SockAddr::from(addr)).await?;
    let (conn, _) = sock_accept(&l).await?;
    Ok((c, conn))
}

#[test]
fn a_recv_cancelled_as_its_data_arrives_loses_no_byte() {
    run(async {
        let (c, conn) = connected().await?;
        let conn = Rc::new(conn);
        // Partial reads first: what a recv does not take stays for the next.
        sock_sendall(&c, b"abc").await?;
        assert_eq!(sock_recv(&conn, 2).await?, b"ab");
        assert_eq!(sock_recv(&conn, 16).await?, b"c");
        // A recv waiting for data; the data lands in the kernel, and the recv is cancelled
        // before it runs again.
        let c2 = conn.clone();
        let waiting: Task<Vec<u8>> =
            spawn(async move { sock_recv(&c2, 16).await.map_err(Into::into) })?;
        settle().await?;
        sock_sendall(&c, b"xyz").await?;
        waiting.cancel(None);
        assert!(waiting.clone().await.unwrap_err().is_cancelled());
        assert_eq!(sock_recv(&conn, 16).await?, b"xyz", "no byte lost");
        Ok(())
    })
    .unwrap();
}

#[test]
fn an_accept_cancelled_as_a_connection_arrives_leaves_it_for_the_next_accept() {
    run(async {
        let (l, addr) = listener();
        let l = Rc::new(l);
        let l2 = l.clone();
        let waiting: Task<SockAddr> =
            spawn(async move { Ok(sock_accept(&l2).await.map(|(_, a)| a)?) })?;
        settle().await?;
        assert!(!waiting.done());
        // The kernel completes the handshake at once (the connection waits in the backlog);
        // the accept is cancelled before it runs again.
        let client = std::net::TcpStream::connect(addr).unwrap();
        waiting.cancel(None);
        assert!(waiting.clone().await.unwrap_err().is_cancelled());
        let (_conn, peer) = sock_accept(&l).await?;
        assert_eq!(peer.as_socket(), client.local_addr().ok());
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_cancelled_connect_unregisters_its_wait() {
    // A listener whose accept queue is full (backlog 0, one connection nobody accepts): the
    // kernel drops further SYNs, so a connect to it stays in progress.
    let (stalled, addr) = {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(&SockAddr::from(
            "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
        ))
        .unwrap();
        s.listen(0).unwrap();
        let a = s.local_addr().unwrap().as_socket().unwrap();
        (s, a)
    };
    let _filler = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10)).unwrap();
    run(async move {
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let c = Rc::new(Socket::new(Domain::IPV4, Type::STREAM, None).unwrap());
        c.set_nonblocking(true).unwrap();
        let c2 = c.clone();
        let connecting: Task<()> =
            spawn(async move { Ok(sock_connect(&c2, &SockAddr::from(addr)).await?) })?;
        settle().await?;
        assert!(!connecting.done(), "the connect is in progress");
        connecting.cancel(None);
        assert!(connecting.clone().await.unwrap_err().is_cancelled());
        use std::os::fd::AsRawFd;
        assert!(
            !lp.remove_writer(c.as_raw_fd()),
            "no writer left registered for the cancelled connect"
        );
        // The loop connects other sockets as before.
        let (_l, good) = listener();
        let d = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        d.set_nonblocking(true).unwrap();
        sock_connect(&d, &SockAddr::from(good)).await?;
        drop(stalled);
        Ok(())
    })
    .unwrap();
}

#[test]
fn sock_send_reports_every_byte_it_sent_even_when_cancelled() {
    run(async {
        let (c, conn) = connected().await?;
        // Small kernel buffers, and a peer that does not read yet: the sends soon wait.
        c.set_send_buffer_size(16 * 1024).unwrap();
        conn.set_recv_buffer_size(16 * 1024).unwrap();
        let c = Rc::new(c);
        let sent = Rc::new(Cell::new(0usize));
        let (c2, s2) = (c.clone(), sent.clone());
        let data: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
        let d2 = data.clone();
        let sending: Task<()> = spawn(async move {
            while s2.get() < d2.len() {
                let n = sock_send(&c2, &d2[s2.get()..]).await?;
                assert!(n > 0);
                s2.set(s2.get() + n);
            }
            Ok(())
        })?;
        // Until the kernel pushes back: the count stops growing while the task waits.
        loop {
            let before = sent.get();
            settle().await?;
            if sent.get() == before && before > 0 {
                break;
            }
        }
        assert!(!sending.done(), "4 MiB do not fit in the kernel buffers");
        sending.cancel(None);
        assert!(sending.clone().await.unwrap_err().is_cancelled());
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let got = recv_to_eof(&conn).await?;
        assert_eq!(got.len(), sent.get(), "exactly the reported bytes went out");
        assert!(got[..] == data[..got.len()]);
        assert_eq!(sock_send(&c, b"").await.ok(), Some(0));
        Ok(())
    })
    .unwrap();
}
