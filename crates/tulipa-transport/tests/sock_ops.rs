//! `sock_*` operations on real non-blocking sockets.

use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, SockAddr, Socket, Type};
use tulipa_futures::{run, spawn};
use tulipa_transport::sock::{
    sock_accept, sock_connect, sock_recv, sock_recvfrom, sock_sendall, sock_sendto,
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

#[test]
fn accept_connect_sendall_recv_move_a_megabyte_intact() {
    run(async {
        let (l, addr) = listener();
        let server = spawn(async move {
            let (conn, _) = sock_accept(&l).await?;
            let mut got = Vec::new();
            loop {
                let chunk = sock_recv(&conn, 65536).await?;
                if chunk.is_empty() {
                    break;
                }
                got.extend_from_slice(&chunk);
            }
            Ok(got)
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
