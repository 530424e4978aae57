//! Helpers shared by the transport tests (a module, not a test target).
//!
//! - [`Rec`], a protocol that records every call it gets into a [`Log`], with optional hooks
//!   that run inside the callbacks (to test re-entrant transport calls);
//! - [`Log::wait_for`], which waits on the log's own change notifications, never on the clock;
//! - [`pair`], a server and a client connected over 127.0.0.1 with a `Rec` on each side, and
//!   [`connect`], a client alone;
//! - [`scenarios`], the scenarios both a behaviour test and the fd-counting loop run;
//! - [`run`], which runs a test body on a fresh loop with a generous bound, so a broken
//!   transport fails the test instead of hanging it.

#![allow(dead_code)]

pub(crate) mod scenarios;

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::rc::Rc;
use std::time::Duration;

use tulipa_futures::sync::Event;
use tulipa_transport::{
    create_connection, create_server, ConnectOptions, Error, Protocol, Server, ServerOptions,
    Transport,
};

/// The bound on a whole test body (a broken test fails after it instead of hanging).
pub(crate) const BOUND: Duration = Duration::from_secs(90);

/// The bound on one [`Log::wait_for`], shorter than [`BOUND`] so its message is the one seen.
pub(crate) const STEP_BOUND: Duration = Duration::from_secs(30);

/// What a [`Rec`] protocol was told, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ev {
    Made,
    Data(Vec<u8>),
    Eof,
    /// `connection_lost`; `true` when it carried an error (kept in [`Log::error`]).
    Lost(bool),
    PauseWriting,
    ResumeWriting,
}

/// The record of one connection's protocol calls.
#[derive(Default)]
pub(crate) struct Log {
    events: RefCell<Vec<Ev>>,
    error: RefCell<Option<Error>>,
    transport: RefCell<Option<Transport>>,
    /// The write-buffer size seen at each pause_writing / resume_writing.
    flow_sizes: RefCell<Vec<usize>>,
    changed: Event,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("calls", &self.kinds())
            .field("error", &self.error())
            .finish()
    }
}

impl Log {
    pub(crate) fn new() -> Rc<Log> {
        Rc::new(Log::default())
    }

    pub(crate) fn push(&self, ev: Ev) {
        self.events.borrow_mut().push(ev);
        self.changed.set();
    }

    /// Notes a broken protocol contract (a second `connection_lost`, data after EOF, …): kept
    /// for [`violations`], which [`run`] checks after the test body. The callback that found
    /// it must not panic: the transport catches protocol panics, so the failure would be lost.
    pub(crate) fn violation(&self, what: &str) {
        let msg = format!("{what}: {:?}", self.kinds());
        VIOLATIONS.with(|v| v.borrow_mut().push(msg));
    }

    pub(crate) fn events(&self) -> Vec<Ev> {
        self.events.borrow().clone()
    }

    /// The calls by name, consecutive `data` calls collapsed into one: easy to compare.
    pub(crate) fn kinds(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for ev in self.events.borrow().iter() {
            let k = match ev {
                Ev::Made => "made",
                Ev::Data(_) => "data",
                Ev::Eof => "eof",
                Ev::Lost(false) => "lost",
                Ev::Lost(true) => "lost(error)",
                Ev::PauseWriting => "pause_writing",
                Ev::ResumeWriting => "resume_writing",
            };
            if k == "data" && out.last() == Some(&"data") {
                continue;
            }
            out.push(k);
        }
        out
    }

    /// How many recorded calls satisfy `pred`.
    pub(crate) fn count(&self, pred: impl Fn(&Ev) -> bool) -> usize {
        self.events.borrow().iter().filter(|e| pred(e)).count()
    }

    pub(crate) fn has(&self, ev: &Ev) -> bool {
        self.events.borrow().contains(ev)
    }

    pub(crate) fn lost(&self) -> bool {
        self.count(|e| matches!(e, Ev::Lost(_))) > 0
    }

    /// Every byte passed to `data_received`, in order.
    pub(crate) fn received(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ev in self.events.borrow().iter() {
            if let Ev::Data(d) = ev {
                out.extend_from_slice(d);
            }
        }
        out
    }

    pub(crate) fn received_len(&self) -> usize {
        self.events
            .borrow()
            .iter()
            .map(|e| match e {
                Ev::Data(d) => d.len(),
                _ => 0,
            })
            .sum()
    }

    /// The error `connection_lost` got, if any.
    pub(crate) fn error(&self) -> Option<Error> {
        self.error.borrow().clone()
    }

    pub(crate) fn flow_sizes(&self) -> Vec<usize> {
        self.flow_sizes.borrow().clone()
    }

    /// The transport `connection_made` got.
    pub(crate) fn transport(&self) -> Transport {
        self.transport
            .borrow()
            .clone()
            .expect("connection_made has run")
    }

    /// Waits (on the log's change notifications) until `cond` holds.
    ///
    /// # Panics
    ///
    /// After [`STEP_BOUND`], with what was waited for and the calls recorded so far.
    pub(crate) async fn wait_for(
        &self,
        what: &str,
        cond: impl Fn(&Log) -> bool,
    ) -> tulipa_futures::Result<()> {
        let waiting = async {
            loop {
                self.changed.clear();
                if cond(self) {
                    return Ok(());
                }
                self.changed.wait().await?;
            }
        };
        match tulipa_futures::timeout(STEP_BOUND, waiting).await {
            Err(e) if e.is_timeout() => {
                panic!(
                    "timed out waiting for {what}; calls so far: {:?}",
                    self.kinds()
                )
            }
            r => r,
        }
    }

    pub(crate) async fn wait_made(&self) -> tulipa_futures::Result<()> {
        self.wait_for("connection_made", |l| l.has(&Ev::Made)).await
    }

    pub(crate) async fn wait_lost(&self) -> tulipa_futures::Result<()> {
        self.wait_for("connection_lost", Log::lost).await
    }

    pub(crate) async fn wait_eof(&self) -> tulipa_futures::Result<()> {
        self.wait_for("eof_received", |l| l.has(&Ev::Eof)).await
    }

    pub(crate) async fn wait_bytes(&self, n: usize) -> tulipa_futures::Result<()> {
        self.wait_for(&format!("{n} bytes"), |l| l.received_len() >= n)
            .await
    }
}

type Hook = Box<dyn FnMut(&Transport)>;
type DataHook = Box<dyn FnMut(&Transport, &[u8])>;

/// A protocol that records its calls into a [`Log`]; hooks run inside the callbacks, after
/// the call is recorded.
pub(crate) struct Rec {
    log: Rc<Log>,
    transport: Option<Transport>,
    keep_open: bool,
    /// This protocol's own progress (a log may be shared by several protocols).
    made: bool,
    eof: bool,
    lost: bool,
    on_made: Option<Hook>,
    on_data: Option<DataHook>,
    on_eof: Option<Hook>,
    on_pause: Option<Hook>,
    on_resume: Option<Hook>,
}

impl Rec {
    pub(crate) fn new(log: &Rc<Log>) -> Rec {
        Rec {
            log: log.clone(),
            transport: None,
            keep_open: false,
            made: false,
            eof: false,
            lost: false,
            on_made: None,
            on_data: None,
            on_eof: None,
            on_pause: None,
            on_resume: None,
        }
    }

    /// `eof_received` returns true (the connection stays half-open).
    pub(crate) fn keep_open(mut self) -> Rec {
        self.keep_open = true;
        self
    }

    pub(crate) fn on_made(mut self, f: impl FnMut(&Transport) + 'static) -> Rec {
        self.on_made = Some(Box::new(f));
        self
    }

    pub(crate) fn on_data(mut self, f: impl FnMut(&Transport, &[u8]) + 'static) -> Rec {
        self.on_data = Some(Box::new(f));
        self
    }

    pub(crate) fn on_eof(mut self, f: impl FnMut(&Transport) + 'static) -> Rec {
        self.on_eof = Some(Box::new(f));
        self
    }

    pub(crate) fn on_pause(mut self, f: impl FnMut(&Transport) + 'static) -> Rec {
        self.on_pause = Some(Box::new(f));
        self
    }

    pub(crate) fn on_resume(mut self, f: impl FnMut(&Transport) + 'static) -> Rec {
        self.on_resume = Some(Box::new(f));
        self
    }

    /// The transport, for a callback that needs one; `None` (a violation) before
    /// `connection_made` or after `connection_lost`.
    fn current(&self, what: &str) -> Option<Transport> {
        if self.transport.is_none() {
            self.log.violation(&format!(
                "{what} before connection_made or after connection_lost"
            ));
        }
        self.transport.clone()
    }
}

// Each callback records its call first and checks the contract after: a panic here would be
// caught by the transport (and only logged), so a broken contract is kept as a violation
// (see `Log::violation`) and reported by `run` instead.
impl Protocol for Rec {
    fn connection_made(&mut self, transport: Transport) {
        let again = std::mem::replace(&mut self.made, true);
        *self.log.transport.borrow_mut() = Some(transport.clone());
        self.transport = Some(transport.clone());
        self.log.push(Ev::Made);
        if again {
            self.log.violation("connection_made called twice");
        }
        if let Some(f) = self.on_made.as_mut() {
            f(&transport);
        }
    }

    fn data_received(&mut self, data: &[u8]) {
        let late = self.eof || self.lost;
        self.log.push(Ev::Data(data.to_vec()));
        if late {
            self.log
                .violation("data_received after eof_received or connection_lost");
        }
        let t = self.current("data_received");
        if let (Some(f), Some(t)) = (self.on_data.as_mut(), t) {
            f(&t, data);
        }
    }

    fn eof_received(&mut self) -> bool {
        let again = std::mem::replace(&mut self.eof, true);
        self.log.push(Ev::Eof);
        if again {
            self.log.violation("eof_received called twice");
        }
        let t = self.current("eof_received");
        if let (Some(f), Some(t)) = (self.on_eof.as_mut(), t) {
            f(&t);
        }
        self.keep_open
    }

    fn connection_lost(&mut self, exc: Option<Error>) {
        let again = std::mem::replace(&mut self.lost, true);
        self.log.push(Ev::Lost(exc.is_some()));
        if again {
            self.log.violation("connection_lost called twice");
        }
        *self.log.error.borrow_mut() = exc;
        self.transport = None;
    }

    fn pause_writing(&mut self) {
        let t = self.current("pause_writing");
        let size = t.as_ref().map_or(0, Transport::get_write_buffer_size);
        self.log.flow_sizes.borrow_mut().push(size);
        self.log.push(Ev::PauseWriting);
        if let (Some(f), Some(t)) = (self.on_pause.as_mut(), t) {
            f(&t);
        }
    }

    fn resume_writing(&mut self) {
        let t = self.current("resume_writing");
        let size = t.as_ref().map_or(0, Transport::get_write_buffer_size);
        self.log.flow_sizes.borrow_mut().push(size);
        self.log.push(Ev::ResumeWriting);
        if let (Some(f), Some(t)) = (self.on_resume.as_mut(), t) {
            f(&t);
        }
    }
}

thread_local! {
    /// The contract violations the [`Rec`] protocols of this thread's test found.
    static VIOLATIONS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Takes the contract violations recorded on this thread so far (see [`Log::violation`]).
pub(crate) fn violations() -> Vec<String> {
    VIOLATIONS.with(|v| std::mem::take(&mut *v.borrow_mut()))
}

/// Runs `body` as the main task of a fresh loop, bounded by [`BOUND`]; panics on error, and
/// when a [`Rec`] saw its protocol contract broken (the loop is gone by then, so every
/// callback of the test has run).
pub(crate) fn run<F>(body: F)
where
    F: std::future::Future<Output = tulipa_futures::Result<()>> + 'static,
{
    violations();
    tulipa_futures::run(async move { tulipa_futures::timeout(BOUND, body).await })
        .unwrap_or_else(|e| panic!("test body failed: {e}"));
    let broken = violations();
    assert!(broken.is_empty(), "protocol contract broken: {broken:#?}");
}

/// Lets every callback that is ready run, `n` times over (a yield, not a clock wait).
pub(crate) async fn settle(n: usize) -> tulipa_futures::Result<()> {
    for _ in 0..n {
        tulipa_futures::sleep(Duration::ZERO).await?;
    }
    Ok(())
}

/// Yields to the loop until `cond` holds (for states no callback reports, such as bytes in a
/// socket's receive queue); bounded by the caller's [`run`].
pub(crate) async fn until(cond: impl Fn() -> bool) -> tulipa_futures::Result<()> {
    while !cond() {
        tulipa_futures::sleep(Duration::ZERO).await?;
    }
    Ok(())
}

/// A server and a client connected over 127.0.0.1, each with a [`Rec`].
pub(crate) struct Pair {
    pub(crate) server: Server,
    pub(crate) client: Transport,
    pub(crate) clog: Rc<Log>,
    pub(crate) slog: Rc<Log>,
}

impl Pair {
    /// The accepted (server-side) transport.
    pub(crate) fn accepted(&self) -> Transport {
        self.slog.transport()
    }
}

/// Connects a client to a fresh server; `server` and `client` customise the `Rec` of each
/// side. Returns once both sides' `connection_made` have run.
pub(crate) async fn pair(
    server: impl Fn(Rec) -> Rec + 'static,
    client: impl FnOnce(Rec) -> Rec,
) -> tulipa_transport::Result<Pair> {
    let slog = Log::new();
    let factory = {
        let slog = slog.clone();
        move || server(Rec::new(&slog))
    };
    let srv = create_server(factory, "127.0.0.1", 0, ServerOptions::default()).await?;
    let port = srv.local_addr().expect("a TCP server").port();
    let clog = Log::new();
    let proto = client(Rec::new(&clog));
    let t = create_connection(move || proto, "127.0.0.1", port, ConnectOptions::default()).await?;
    assert!(
        clog.has(&Ev::Made),
        "create_connection returns after connection_made"
    );
    slog.wait_made().await?;
    Ok(Pair {
        server: srv,
        client: t,
        clog,
        slog,
    })
}

/// Connects to `port` on 127.0.0.1 with a fresh [`Rec`]; returns the transport and its log.
pub(crate) async fn connect(port: u16) -> tulipa_transport::Result<(Transport, Rc<Log>)> {
    let log = Log::new();
    let l2 = log.clone();
    let t = create_connection(
        move || Rec::new(&l2),
        "127.0.0.1",
        port,
        ConnectOptions::default(),
    )
    .await?;
    Ok((t, log))
}

/// Bytes waiting in the socket's receive queue (MSG_PEEK), without taking them.
pub(crate) fn peek_len(t: &Transport) -> usize {
    t.with_socket(|s| {
        let mut buf = [MaybeUninit::<u8>::uninit(); 64 * 1024];
        s.peek(&mut buf).unwrap_or(0)
    })
    .unwrap_or(0)
}

/// Small kernel buffers, so that a paused peer makes the transport's own buffer grow quickly.
pub(crate) fn small_socket_buffers(t: &Transport) {
    t.with_socket(|s| {
        let _ = s.set_send_buffer_size(32 * 1024);
        let _ = s.set_recv_buffer_size(32 * 1024);
    });
}

/// `n` bytes of a pattern that shows misordered or lost bytes.
pub(crate) fn pattern(n: usize) -> Vec<u8> {
    pattern_at(0, n)
}

/// Bytes `start..start + n` of [`pattern`].
pub(crate) fn pattern_at(start: usize, n: usize) -> Vec<u8> {
    (start..start + n)
        .map(|i| ((i * 7 + i / 251) % 251) as u8)
        .collect()
}

/// Writes 64 KiB chunks of the pattern (continuing from `offset`) until the transport buffers
/// more than `want` bytes; returns the bytes written. Panics if the kernel takes 256 MiB
/// without pushing back.
pub(crate) fn fill(t: &Transport, want: usize, offset: usize) -> usize {
    let chunk = 64 * 1024;
    let mut written = 0;
    while t.get_write_buffer_size() <= want {
        t.write(&pattern_at(offset + written, chunk))
            .expect("write while filling");
        written += chunk;
        assert!(
            written < 256 << 20,
            "the kernel took 256 MiB without pushing back"
        );
    }
    written
}

/// A connected TCP pair over 127.0.0.1 whose receiving end already holds all of `data` in its
/// socket, returned with the sending end (the peer, which the caller keeps open). Wrapping the
/// receiver in a transport then gives one readiness edge for everything queued, and no further
/// arrival (no more data, no end of stream) brings another.
pub(crate) fn queued_tcp_pair(data: &[u8]) -> (std::net::TcpStream, socket2::Socket) {
    use std::io::Write;
    use std::net::{SocketAddr, TcpStream};
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    // Room for all of it in the receiver's queue (inherited by the accepted socket).
    listener
        .set_recv_buffer_size(4 * data.len() + 64 * 1024)
        .expect("SO_RCVBUF");
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    listener.bind(&any.into()).expect("bind");
    listener.listen(1).expect("listen");
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut peer = TcpStream::connect(addr).expect("connect");
    let (receiver, _) = listener.accept().expect("accept");
    peer.write_all(data).expect("write");
    let mut buf = vec![0u8; data.len()];
    let receiver = std::net::TcpStream::from(receiver);
    // Bounded by the caller's test bound; the bytes are on their way through loopback.
    while receiver.peek(&mut buf).expect("peek") < data.len() {
        std::thread::yield_now();
    }
    (peer, receiver.into())
}
