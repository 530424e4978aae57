//! Low-level socket operations as awaitables (asyncio's `loop.sock_*`).
//!
//! Each takes a non-blocking [`Socket`] and waits for readiness with a one-shot reader or writer
//! on the running loop. All are cancel-safe: when one returns `Err(Cancelled)` (or is dropped),
//! nothing was read, sent or accepted by it — except [`sock_sendall`], which may have sent a
//! prefix it cannot report (see its docs; [`sock_send`] is the cancel-safe alternative), and
//! [`sock_connect`], which leaves the connect under way in the kernel.

use std::io::{self, Read};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use socket2::{SockAddr, Socket};
use tulipa_futures::rt::EventLoop;
use tulipa_futures::Future;

use crate::error::{Error, Result};
use crate::sys::{EINPROGRESS, SEND_FLAGS};

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Waits until `fd` is readable (`write == false`) or writable; the one-shot registration is
/// removed however the wait ends (also on cancellation or drop).
pub(crate) async fn wait_ready(lp: &EventLoop, fd: RawFd, write: bool) -> Result<()> {
    let ready: Future<()> = Future::new(lp);
    let r2 = ready.clone();
    let fire = move || {
        let _ = r2.set_result(());
    };
    if write {
        lp.add_writer(fd, fire)?;
    } else {
        lp.add_reader(fd, fire)?;
    }
    let _guard = Unregister {
        lp: lp.clone(),
        fd,
        write,
    };
    ready.await?;
    Ok(())
}

struct Unregister {
    lp: EventLoop,
    fd: RawFd,
    write: bool,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if self.write {
            self.lp.remove_writer(self.fd);
        } else {
            self.lp.remove_reader(self.fd);
        }
    }
}

/// Receives up to `n` bytes (asyncio's `sock_recv`); an empty vector means EOF.
///
/// # Cancel safety
///
/// Cancel-safe: nothing is read unless returned.
///
/// # Errors
///
/// The socket's error; cancellation.
pub async fn sock_recv(sock: &Socket, n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let got = sock_recv_into(sock, &mut buf).await?;
    buf.truncate(got);
    Ok(buf)
}

/// Receives into `buf` (asyncio's `sock_recv_into`); returns the count (0: EOF).
///
/// # Cancel safety
///
/// Cancel-safe: nothing is read unless returned.
///
/// # Errors
///
/// The socket's error; cancellation.
pub async fn sock_recv_into(sock: &Socket, buf: &mut [u8]) -> Result<usize> {
    let lp = EventLoop::running()?;
    loop {
        match (&*sock).read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if retry(&e) => wait_ready(&lp, sock.as_raw_fd(), false).await?,
            Err(e) => return Err(Error::io("sock_recv", e)),
        }
    }
}

/// Sends one piece of `data`: as much as the socket takes with one `send`, waiting until it
/// takes at least one byte; returns how many it took (at most `data.len()`; 0 only for an
/// empty `data`). Loop over it to send everything and always know how far you got.
///
/// # Cancel safety
///
/// Cancel-safe: bytes are sent only by the `send` whose count is returned, so a cancelled
/// (or dropped) `sock_send` sent nothing.
///
/// # Errors
///
/// The socket's error (for example `BrokenPipe` or `ConnectionReset`); cancellation.
pub async fn sock_send(sock: &Socket, data: &[u8]) -> Result<usize> {
    if data.is_empty() {
        return Ok(0);
    }
    let lp = EventLoop::running()?;
    loop {
        match sock.send_with_flags(data, SEND_FLAGS) {
            Ok(n) => return Ok(n),
            Err(e) if retry(&e) => wait_ready(&lp, sock.as_raw_fd(), true).await?,
            Err(e) => return Err(Error::io("sock_send", e)),
        }
    }
}

/// Sends all of `data` (asyncio's `sock_sendall`).
///
/// # Cancel safety
///
/// Not cancel-safe. It sends with as many `send`s as the socket needs, waiting for
/// writability between them; cancelled (or dropped) during such a wait, the bytes already
/// handed to the kernel (a prefix of `data`, of any length) go out, and how many they were is
/// lost with the future: the stream is then at an unknown position. asyncio's `sock_sendall`
/// has the same limit. Use [`sock_send`] in a loop to know at every point how much was sent,
/// or a transport, whose buffered writes do not depend on the writer staying alive.
///
/// # Errors
///
/// The socket's error; cancellation.
pub async fn sock_sendall(sock: &Socket, data: &[u8]) -> Result<()> {
    let lp = EventLoop::running()?;
    let mut sent = 0;
    while sent < data.len() {
        match sock.send_with_flags(&data[sent..], SEND_FLAGS) {
            Ok(n) => sent += n,
            Err(e) if retry(&e) => wait_ready(&lp, sock.as_raw_fd(), true).await?,
            Err(e) => return Err(Error::io("sock_sendall", e)),
        }
    }
    Ok(())
}

/// Connects a non-blocking socket (asyncio's `sock_connect`).
///
/// # Cancel safety
///
/// A cancelled connect unregisters its wait but leaves the connect under way in the kernel:
/// the socket may still become connected, and cannot be connected again; close it.
///
/// # Errors
///
/// The connect error (for example `ConnectionRefused`); cancellation.
pub async fn sock_connect(sock: &Socket, addr: &SockAddr) -> Result<()> {
    let lp = EventLoop::running()?;
    let op = || match (addr.as_socket(), addr.as_pathname()) {
        (Some(a), _) => format!("sock_connect to {a}"),
        (None, Some(p)) => format!("sock_connect to {}", p.display()),
        _ => "sock_connect".to_owned(),
    };
    match sock.connect(addr) {
        Ok(()) => return Ok(()),
        Err(e)
            if e.raw_os_error() == Some(EINPROGRESS) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(Error::io(op(), e)),
    }
    wait_ready(&lp, sock.as_raw_fd(), true).await?;
    match sock.take_error() {
        Ok(None) => Ok(()),
        Ok(Some(e)) | Err(e) => Err(Error::io(op(), e)),
    }
}

/// Accepts a connection on a listening non-blocking socket (asyncio's `sock_accept`); the new
/// socket is non-blocking too.
///
/// # Cancel safety
///
/// Cancel-safe: no connection is accepted unless returned.
///
/// # Errors
///
/// The accept error; cancellation.
pub async fn sock_accept(sock: &Socket) -> Result<(Socket, SockAddr)> {
    let lp = EventLoop::running()?;
    loop {
        match sock.accept() {
            Ok((s, addr)) => {
                s.set_nonblocking(true)
                    .map_err(|e| Error::io("sock_accept", e))?;
                return Ok((s, addr));
            }
            Err(e) if retry(&e) || e.kind() == io::ErrorKind::ConnectionAborted => {
                wait_ready(&lp, sock.as_raw_fd(), false).await?;
            }
            Err(e) => return Err(Error::io("sock_accept", e)),
        }
    }
}

/// Sends one datagram to `addr` (asyncio's `sock_sendto`); returns the bytes sent. Datagram
/// operations take a non-blocking `std::net::UdpSocket` (make one from a `Socket` with `.into()`).
///
/// # Cancel safety
///
/// Cancel-safe: the datagram is sent whole or not at all.
///
/// # Errors
///
/// The socket's error; cancellation.
pub async fn sock_sendto(sock: &UdpSocket, data: &[u8], addr: SocketAddr) -> Result<usize> {
    let lp = EventLoop::running()?;
    loop {
        match sock.send_to(data, addr) {
            Ok(n) => return Ok(n),
            Err(e) if retry(&e) => wait_ready(&lp, sock.as_raw_fd(), true).await?,
            Err(e) => return Err(Error::io(format!("sock_sendto {addr}"), e)),
        }
    }
}

/// Receives one datagram of at most `n` bytes and its sender (asyncio's `sock_recvfrom`).
///
/// # Cancel safety
///
/// Cancel-safe: no datagram is taken unless returned.
///
/// # Errors
///
/// The socket's error; cancellation.
pub async fn sock_recvfrom(sock: &UdpSocket, n: usize) -> Result<(Vec<u8>, SocketAddr)> {
    let lp = EventLoop::running()?;
    let mut buf = vec![0u8; n];
    loop {
        match sock.recv_from(&mut buf) {
            Ok((got, from)) => {
                buf.truncate(got);
                return Ok((buf, from));
            }
            Err(e) if retry(&e) => wait_ready(&lp, sock.as_raw_fd(), false).await?,
            Err(e) => return Err(Error::io("sock_recvfrom", e)),
        }
    }
}
