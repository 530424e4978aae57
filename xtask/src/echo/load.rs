//! The load generator of `cargo xtask bench echo` (the hidden `xtask echo-load`): one thread,
//! non-blocking sockets under a level-triggered epoll (rustix), so that one core drives every
//! connection without thread switches.
//!
//! - Throughput mode: `--conns` connections each keep `--depth` messages of `--size` bytes in
//!   flight (a new message is sent as soon as one echo is complete), for `--warmup` then
//!   `--duration` seconds; messages completed during the measured window count, and each one's
//!   round trip (from being queued to its last echoed byte) goes into the percentiles.
//! - Fixed-rate mode (`--rate R`): at most one message in flight per connection, and messages
//!   are started at `R` per second in total; reports the server's CPU use over the window.
//! - Idle mode (`--idle N`): opens `N` connections, one 1-byte round trip on each, and reports
//!   the server's `VmRSS` before and after.
//!
//! Prints one JSON line.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, CreateFlags, EventData, EventFlags};

/// What to do; see the module docs.
#[derive(Debug)]
pub(crate) struct LoadOptions {
    pub(crate) addr: SocketAddr,
    pub(crate) conns: usize,
    pub(crate) size: usize,
    pub(crate) depth: usize,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    pub(crate) rate: Option<f64>,
    pub(crate) idle: Option<usize>,
    pub(crate) server_pid: Option<u32>,
}

struct Conn {
    stream: TcpStream,
    /// Bytes queued and not written yet.
    to_send: usize,
    /// Bytes of the oldest message in flight already echoed.
    received: usize,
    /// When each message in flight was queued, oldest first.
    queued_at: VecDeque<Instant>,
    /// Registered for OUT as well as IN.
    wants_out: bool,
}

/// utime + stime of `pid`, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / rustix::param::clock_ticks_per_second() as f64)
}

/// `VmRSS` of `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Runs the load as `o` says and returns the JSON line.
pub(crate) fn run(o: &LoadOptions) -> Result<String, String> {
    if let Some(n) = o.idle {
        return idle(o, n).map_err(|e| format!("echo-load --idle {n}: {e}"));
    }
    drive(o).map_err(|e| format!("echo-load: {e}"))
}

fn idle(o: &LoadOptions, n: usize) -> io::Result<String> {
    let limit = super::servers::raise_nofile();
    let pid = o
        .server_pid
        .ok_or_else(|| io::Error::other("--idle needs --server-pid"))?;
    let before = rss_kib(pid).ok_or_else(|| io::Error::other("cannot read the server's RSS"))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conns = Vec::with_capacity(n);
    let mut byte = [0u8; 1];
    for i in 0..n {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("only {i} connections in 60 s")));
        }
        let mut s = connect(o.addr).map_err(|e| {
            io::Error::other(format!("connection {i} (RLIMIT_NOFILE {limit:?}): {e}"))
        })?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"x")?;
        s.read_exact(&mut byte)?;
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(pid).ok_or_else(|| io::Error::other("cannot read the server's RSS"))?;
    let per_conn = (after as f64 - before as f64) * 1024.0 / n as f64;
    drop(conns);
    Ok(format!(
        "{{\"idle_conns\":{n},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"bytes_per_conn\":{per_conn:.1}}}"
    ))
}

fn drive(o: &LoadOptions) -> io::Result<String> {
    let ep = epoll::create(CreateFlags::CLOEXEC)?;
    let mut conns = Vec::with_capacity(o.conns);
    for i in 0..o.conns {
        let s = connect(o.addr)?;
        s.set_nonblocking(true)?;
        epoll::add(&ep, &s, EventData::new_u64(i as u64), EventFlags::IN)?;
        conns.push(Conn {
            stream: s,
            to_send: 0,
            received: 0,
            queued_at: VecDeque::with_capacity(o.depth),
            wants_out: false,
        });
    }
    let payload = vec![b'x'; (o.size * o.depth).max(64 * 1024)];
    let mut buf = vec![0u8; 256 * 1024];
    let mut events: Vec<epoll::Event> = Vec::with_capacity(1024);
    let mut latencies_ns: Vec<u32> = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    let window_start = start + o.warmup;
    let end = window_start + o.duration;
    let mut completed: u64 = 0;
    let mut cpu_before = None;
    // Fixed rate: connections with nothing in flight wait here for their turn.
    let mut idle: VecDeque<usize> = VecDeque::new();
    let mut started: u64 = 0;
    let tick = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 200_000,
    };

    let queue = |c: &mut Conn, ep: &rustix::fd::OwnedFd, i: usize, n: usize| -> io::Result<()> {
        let now = Instant::now();
        for _ in 0..n {
            c.queued_at.push_back(now);
        }
        c.to_send += n * o.size;
        flush(c, &payload)?;
        set_out(c, ep, i)
    };

    match o.rate {
        None => {
            for (i, c) in conns.iter_mut().enumerate() {
                queue(c, &ep, i, o.depth)?;
            }
        }
        Some(_) => idle.extend(0..conns.len()),
    }

    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if cpu_before.is_none() && now >= window_start {
            cpu_before = o.server_pid.and_then(cpu_seconds);
        }
        if let Some(rate) = o.rate {
            let due = ((now - start).as_secs_f64() * rate) as u64;
            while started < due {
                let Some(i) = idle.pop_front() else { break };
                queue(&mut conns[i], &ep, i, 1)?;
                started += 1;
            }
            // Missed starts (every connection busy) are not made up for later.
            started = started.max(due.saturating_sub(conns.len() as u64));
        }
        events.clear();
        let timeout = if o.rate.is_some() { Some(&tick) } else { None };
        let timeout = timeout.or(Some(&rustix::event::Timespec {
            tv_sec: 0,
            tv_nsec: 50_000_000,
        }));
        match epoll::wait(&ep, rustix::buffer::spare_capacity(&mut events), timeout) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let now = Instant::now();
        let measuring = now >= window_start && now < end;
        for ev in &events {
            let i = ev.data.u64() as usize;
            let flags = ev.flags;
            let c = &mut conns[i];
            if flags.contains(EventFlags::OUT) {
                flush(c, &payload)?;
                set_out(c, &ep, i)?;
            }
            if !flags.intersects(EventFlags::IN | EventFlags::ERR | EventFlags::HUP) {
                continue;
            }
            let n = match c.stream.read(&mut buf) {
                Ok(0) => return Err(io::Error::other("the server closed a connection")),
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                    continue
                }
                Err(e) => return Err(e),
            };
            c.received += n;
            let mut done = 0;
            while c.received >= o.size {
                c.received -= o.size;
                let queued = c
                    .queued_at
                    .pop_front()
                    .ok_or_else(|| io::Error::other("echoed more than was sent"))?;
                if measuring {
                    completed += 1;
                    let ns = now.duration_since(queued).as_nanos();
                    latencies_ns.push(ns.min(u32::MAX as u128) as u32);
                }
                done += 1;
            }
            if done > 0 {
                match o.rate {
                    None => queue(c, &ep, i, done)?,
                    Some(_) => idle.extend(std::iter::repeat_n(i, done)),
                }
            }
        }
    }
    let window = o.duration.as_secs_f64();
    let cpu_after = o.server_pid.and_then(cpu_seconds);
    let cpu = match (cpu_before, cpu_after) {
        (Some(b), Some(a)) => format!("{:.4}", (a - b) / window),
        _ => "null".to_string(),
    };
    latencies_ns.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies_ns.is_empty() {
            return 0.0;
        }
        let k = ((latencies_ns.len() as f64 * p).ceil() as usize).clamp(1, latencies_ns.len());
        f64::from(latencies_ns[k - 1]) / 1000.0
    };
    Ok(format!(
        "{{\"msgs_per_s\":{:.1},\"p50_us\":{:.2},\"p99_us\":{:.2},\"server_cpu\":{cpu}}}",
        completed as f64 / window,
        pct(0.50),
        pct(0.99)
    ))
}

/// Writes queued bytes until the socket would block.
fn flush(c: &mut Conn, payload: &[u8]) -> io::Result<()> {
    while c.to_send > 0 {
        let n = c.to_send.min(payload.len());
        match c.stream.write(&payload[..n]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(w) => c.to_send -= w,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Registers for OUT while bytes wait, for IN alone otherwise.
fn set_out(c: &mut Conn, ep: &rustix::fd::OwnedFd, i: usize) -> io::Result<()> {
    let want = c.to_send > 0;
    if want != c.wants_out {
        let flags = if want {
            EventFlags::IN | EventFlags::OUT
        } else {
            EventFlags::IN
        };
        epoll::modify(ep, &c.stream, EventData::new_u64(i as u64), flags)?;
        c.wants_out = want;
    }
    Ok(())
}
