//! Many cores: one server on N loops on N threads sharing one port through `SO_REUSEPORT`.
//!
//! Tulipa has no work-stealing scheduler: each thread runs its own loop, and the kernel spreads
//! incoming connections over the listening sockets (one per loop) that share the port. Every
//! connection then lives on one loop for its whole life.

use std::fmt;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tulipa_futures::rt::{EventLoop, LoopHandle};

use crate::error::{Error, Result};
use crate::protocol::Protocol;
use crate::server::{create_server, ServerOptions};

/// A server running on several threads, one loop each; see the [module docs](self).
pub struct ShardedServer {
    port: u16,
    loops: Vec<LoopHandle>,
    threads: Vec<JoinHandle<()>>,
}

/// Starts `threads` loops, each with a listening socket on `host:port` (`SO_REUSEPORT`), and
/// serves connections with protocols made by `factory` on the loop that accepted them. With port
/// 0 the first loop picks a free port and the others join it.
///
/// # Errors
///
/// When a thread cannot be started or a socket cannot be bound (for example the port is taken
/// by a socket without `SO_REUSEPORT`); loops already started are stopped.
pub fn serve_on_threads<F, P>(
    threads: usize,
    host: &str,
    port: u16,
    factory: F,
) -> Result<ShardedServer>
where
    F: Fn() -> P + Clone + Send + 'static,
    P: Protocol,
{
    let mut server = ShardedServer {
        port,
        loops: Vec::new(),
        threads: Vec::new(),
    };
    for i in 0..threads.max(1) {
        let (tx, rx) = mpsc::channel::<std::result::Result<(u16, LoopHandle), String>>();
        let (shard_host, shard_port, factory) = (host.to_owned(), server.port, factory.clone());
        let t = std::thread::Builder::new()
            .name(format!("tulipa-shard-{i}"))
            .spawn(move || shard(&shard_host, shard_port, factory, tx))
            .map_err(|e| Error::io("spawn a server thread", e))?;
        server.threads.push(t);
        match rx.recv() {
            Ok(Ok((bound, handle))) => {
                server.port = bound;
                server.loops.push(handle);
            }
            Ok(Err(msg)) => {
                server.stop();
                return Err(Error::io(
                    format!("server thread {i} on {host}:{port}"),
                    std::io::Error::other(msg),
                ));
            }
            Err(_) => {
                server.stop();
                return Err(Error::Closed);
            }
        }
    }
    Ok(server)
}

fn shard<F, P>(
    host: &str,
    port: u16,
    factory: F,
    tx: mpsc::Sender<std::result::Result<(u16, LoopHandle), String>>,
) where
    F: Fn() -> P + 'static,
    P: Protocol,
{
    let lp = match EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            let _ = tx.send(Err(e.to_string()));
            return;
        }
    };
    let handle = lp.loop_handle();
    let host = host.to_owned();
    let made = tulipa_futures::run_until_complete(&lp, async move {
        let o = ServerOptions {
            reuse_port: true,
            ..ServerOptions::default()
        };
        Ok(create_server(factory, &host, port, o).await?)
    });
    let server = match made {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(e.to_string()));
            let _ = lp.close();
            return;
        }
    };
    let bound = server.local_addr().map_or(port, |a| a.port());
    let _ = tx.send(Ok((bound, handle)));
    // Serve until the loop is stopped from outside (`ShardedServer::stop`).
    if let Err(e) = lp.run_forever() {
        tracing::error!(error = %e, "server shard loop failed");
    }
    server.close();
    server.abort_clients();
    let _ = lp.close();
}

impl ShardedServer {
    /// The shared port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The loops, one per thread (to schedule work on them from outside).
    pub fn loops(&self) -> &[LoopHandle] {
        &self.loops
    }

    /// Stops every loop and joins its thread. Connections still open are dropped with their loop.
    pub fn stop(&mut self) {
        for l in self.loops.drain(..) {
            let _ = l.stop();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for ShardedServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl fmt::Debug for ShardedServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedServer")
            .field("port", &self.port)
            .field("threads", &self.threads.len())
            .finish()
    }
}
