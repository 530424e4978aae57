//! The echo servers of `cargo xtask bench echo`, one per runtime, each run as its own process by
//! the hidden `xtask echo-server <name>`: it listens on 127.0.0.1 (a free port), prints
//! `listening on ADDR` on stdout and echoes every byte back until it is killed (or until its
//! watchdog ends it, so that no server outlives a broken run).
//!
//! Every server sets `TCP_NODELAY` on its connections (Tulipa's transports do, as asyncio's).

use std::collections::HashMap;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// The read buffer of one tokio or smol connection task.
const TASK_BUF: usize = 16 * 1024;
/// The one read buffer of the raw-epoll server (Tulipa's `READ_SIZE`).
const EPOLL_BUF: usize = 64 * 1024;

/// The servers, as named on the command line.
pub(crate) const SERVERS: [&str; 4] = ["tulipa", "tokio", "smol", "epoll"];

/// Raises the soft `RLIMIT_NOFILE` to the hard one (for the idle-connections row); returns the
/// limit in force.
pub(crate) fn raise_nofile() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    if lim.maximum != lim.current {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: lim.maximum,
                maximum: lim.maximum,
            },
        );
    }
    getrlimit(Resource::Nofile).current
}

/// Runs server `name` until killed, or until `lifetime` has passed.
pub(crate) fn serve(name: &str, lifetime: Duration) -> Result<(), String> {
    raise_nofile();
    std::thread::spawn(move || {
        std::thread::sleep(lifetime);
        eprintln!("echo-server: lifetime of {lifetime:?} over, exiting");
        std::process::exit(3);
    });
    let r = match name {
        "tulipa" => tulipa(|_| {}),
        "tokio" => tokio(),
        "smol" => smol(),
        "epoll" => epoll(),
        other => {
            return Err(format!(
                "unknown echo server `{other}` (known: {})",
                SERVERS.join(", ")
            ))
        }
    };
    r.map_err(|e| format!("echo-server {name}: {e}"))
}

/// Tells the parent where the server listens (the first line it reads).
pub(crate) fn announce(addr: std::net::SocketAddr) {
    println!("listening on {addr}");
    let _ = io::stdout().flush();
}

// ---------------------------------------------------------------------------------------------
// Tulipa: a tulipa-transport Protocol, as examples/echo_server.rs without its printing.

/// Also what `bench tls` serves over TLS.
pub(crate) mod tulipa_echo {
    use tulipa_transport::{Error, Protocol, Transport};

    #[derive(Default)]
    pub(crate) struct Echo {
        transport: Option<Transport>,
    }

    impl Protocol for Echo {
        fn connection_made(&mut self, transport: Transport) {
            self.transport = Some(transport);
        }

        fn data_received(&mut self, data: &[u8]) {
            if let Some(t) = &self.transport {
                let _ = t.write(data);
            }
        }

        fn eof_received(&mut self) -> bool {
            false
        }

        fn connection_lost(&mut self, _exc: Option<Error>) {
            self.transport = None;
        }

        fn pause_writing(&mut self) {
            if let Some(t) = &self.transport {
                t.pause_reading();
            }
        }

        fn resume_writing(&mut self) {
            if let Some(t) = &self.transport {
                t.resume_reading();
            }
        }
    }
}

/// Serves the echo Protocol until killed; `configure` adjusts the options (`bench tls` adds its
/// TLS configuration).
pub(crate) fn tulipa(
    configure: impl FnOnce(&mut tulipa_transport::ServerOptions),
) -> io::Result<()> {
    use tulipa_transport::{create_server, ServerOptions};
    let mut options = ServerOptions::default();
    options.backlog = 1024;
    configure(&mut options);
    tulipa_futures::run(async {
        let server = create_server(tulipa_echo::Echo::default, "127.0.0.1", 0, options).await?;
        let addr = server
            .local_addr()
            .ok_or_else(|| io::Error::other("the server has no address"))?;
        announce(addr);
        std::future::pending::<()>().await;
        drop(server);
        Ok::<(), tulipa_futures::Error>(())
    })
    .map_err(|e| io::Error::other(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// tokio: current-thread runtime, one task per connection.

fn tokio() -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        announce(listener.local_addr()?);
        loop {
            let (mut stream, _) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::task::spawn(async move {
                let mut buf = vec![0u8; TASK_BUF];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    })
}

// ---------------------------------------------------------------------------------------------
// smol: async-io's Async<TcpListener> and a LocalExecutor.

fn smol() -> io::Result<()> {
    use async_io::Async;
    use futures_lite::{AsyncReadExt, AsyncWriteExt};
    use std::rc::Rc;
    let ex = Rc::new(async_executor::LocalExecutor::new());
    let ex2 = ex.clone();
    async_io::block_on(ex.run(async move {
        let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0))?;
        announce(listener.get_ref().local_addr()?);
        loop {
            let (mut stream, _) = listener.accept().await?;
            let _ = stream.get_ref().set_nodelay(true);
            ex2.spawn(async move {
                let mut buf = vec![0u8; TASK_BUF];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            })
            .detach();
        }
    }))
}

// ---------------------------------------------------------------------------------------------
// Raw epoll, level-triggered: rustix's safe epoll calls, one read buffer for all connections.

struct EpollConn {
    stream: TcpStream,
    /// Echo bytes the socket did not take yet; while non-empty the connection is not read.
    pending: Vec<u8>,
}

fn epoll() -> io::Result<()> {
    use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};
    const LISTENER: u64 = u64::MAX;
    let ep = epoll::create(CreateFlags::CLOEXEC)?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    epoll::add(&ep, &listener, EventData::new_u64(LISTENER), EventFlags::IN)?;
    announce(listener.local_addr()?);

    let mut conns: HashMap<u64, EpollConn> = HashMap::new();
    let mut next_id: u64 = 0;
    let mut buf = vec![0u8; EPOLL_BUF];
    let mut events: Vec<epoll::Event> = Vec::with_capacity(1024);
    loop {
        events.clear();
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        for ev in &events {
            let id = ev.data.u64();
            let flags = ev.flags;
            if id == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            stream.set_nonblocking(true)?;
                            let _ = stream.set_nodelay(true);
                            epoll::add(&ep, &stream, EventData::new_u64(next_id), EventFlags::IN)?;
                            conns.insert(
                                next_id,
                                EpollConn {
                                    stream,
                                    pending: Vec::new(),
                                },
                            );
                            next_id += 1;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        // Out of descriptors and the like: try again on the next event.
                        Err(_) => break,
                    }
                }
                continue;
            }
            let Some(c) = conns.get_mut(&id) else {
                continue;
            };
            let mut close = false;
            if !c.pending.is_empty() {
                // Registered for OUT only: flush, and read again once everything is out.
                if flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
                    match write_some(&mut c.stream, &c.pending) {
                        Ok(n) => {
                            c.pending.drain(..n);
                            if c.pending.is_empty() {
                                epoll::modify(&ep, &c.stream, ev.data, EventFlags::IN)?;
                            }
                        }
                        Err(_) => close = true,
                    }
                }
            } else {
                match c.stream.read(&mut buf) {
                    Ok(0) => close = true,
                    Ok(n) => match write_some(&mut c.stream, &buf[..n]) {
                        Ok(w) if w == n => {}
                        Ok(w) => {
                            c.pending.extend_from_slice(&buf[w..n]);
                            epoll::modify(&ep, &c.stream, ev.data, EventFlags::OUT)?;
                        }
                        Err(_) => close = true,
                    },
                    Err(e)
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(_) => close = true,
                }
            }
            if close {
                if let Some(c) = conns.remove(&id) {
                    let _ = epoll::delete(&ep, &c.stream);
                }
            }
        }
    }
}

/// Writes as much of `data` as the socket takes now.
fn write_some(stream: &mut TcpStream, data: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < data.len() {
        match stream.write(&data[done..]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}
