//! Unix-domain stream sockets (asyncio's `create_unix_connection`, `create_unix_server`).

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::rc::Rc;

use socket2::{Domain, SockAddr, Socket, Type};
use tulipa_futures::rt::EventLoop;

use crate::error::{Error, Result};
use crate::protocol::{Protocol, ProtocolFactory};
use crate::server::{Server, ServerOptions};
use crate::transport::Transport;

fn addr(path: &Path) -> Result<SockAddr> {
    SockAddr::unix(path).map_err(|e| Error::io(format!("unix address {}", path.display()), e))
}

/// Connects to the Unix socket at `path` and attaches a protocol made by `factory`.
///
/// # Cancel safety
///
/// Cancel-safe. Cancelled while connecting, the socket is closed and no protocol is made.
/// Cancelled once the protocol is made (while its `connection_made` is pending), the transport
/// is aborted: the protocol gets `connection_made`, then `connection_lost(None)`, and the
/// connection does not stay open. The same holds when the future is dropped before it returned
/// (the task aborted, a `select` or timeout from another runtime).
///
/// # Errors
///
/// [`Error::Io`] (for example `NotFound` or `ConnectionRefused`); cancellation.
pub async fn create_unix_connection<P: Protocol>(
    factory: impl FnOnce() -> P,
    path: impl AsRef<Path>,
) -> Result<Transport> {
    let lp = EventLoop::running()?;
    let path = path.as_ref();
    let sock = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)
        .map_err(|e| Error::io("unix socket", e))?;
    sock.set_nonblocking(true)
        .map_err(|e| Error::io("set_nonblocking", e))?;
    crate::sock::sock_connect(&sock, &addr(path)?).await?;
    let (t, made) = Transport::from_socket(&lp, sock, Box::new(factory()))?;
    crate::connect::until_made(&t, made).await?;
    Ok(t)
}

/// Listens on the Unix socket `path`. A stale socket file left by an earlier server is removed
/// first (a path that exists and is not a socket is an error); the file is removed again when the
/// server is closed.
///
/// # Cancel safety
///
/// Nothing to lose: it does not wait (the future is ready on its first poll).
///
/// # Errors
///
/// [`Error::Io`]: `AddrInUse` when `path` exists and is not a socket, bind and listen failures.
pub async fn create_unix_server(
    factory: impl ProtocolFactory,
    path: impl AsRef<Path>,
    options: ServerOptions,
) -> Result<Server> {
    let lp = EventLoop::running()?;
    let path = path.as_ref();
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)
                .map_err(|e| Error::io(format!("remove stale {}", path.display()), e))?;
        } else {
            return Err(Error::io(
                format!("bind to {}", path.display()),
                io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "the path exists and is not a socket",
                ),
            ));
        }
    }
    let sock = Socket::new(Domain::UNIX, Type::STREAM.cloexec(), None)
        .map_err(|e| Error::io("unix socket", e))?;
    sock.set_nonblocking(true)
        .map_err(|e| Error::io("set_nonblocking", e))?;
    sock.bind(&addr(path)?)
        .map_err(|e| Error::io(format!("bind to {}", path.display()), e))?;
    sock.listen(options.backlog)
        .map_err(|e| Error::io(format!("listen on {}", path.display()), e))?;
    let server = Server::from_sockets(&lp, vec![sock], Rc::new(factory), options.backlog)?;
    server.remove_on_close(path.to_path_buf());
    if options.start_serving {
        server.start_serving()?;
    }
    Ok(server)
}
