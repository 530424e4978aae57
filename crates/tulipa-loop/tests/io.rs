//! fd callbacks: `add_reader`, `add_writer`, `remove_reader`, `remove_writer`.
//!
//! Ports the reader/writer checks of CPython's `test_asyncio/test_events.py`
//! (`test_reader_callback`, `test_writer_callback`, `test_add_reader_*`, `test_remove_*`) and
//! `test_selector_events.py`, on real sockets made with `UnixStream::pair`. Where a test needs to
//! stop "after nothing more happens", it uses a virtual-time loop: its timers fire only once the
//! fds are quiet, with no real waiting.

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use tulipa_loop::{Error, EventLoop, ExceptionContext, Handle};

/// Sets a flag when dropped: tells whether the loop dropped a closure that captured it.
struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

fn counter() -> Rc<Cell<usize>> {
    Rc::new(Cell::new(0))
}

fn stop_later(lp: &EventLoop, delay: Duration) {
    let lp2 = lp.clone();
    lp.call_later(delay, move || lp2.stop()).unwrap();
}

#[test]
fn reader_is_called_when_data_arrives() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let got = Rc::new(RefCell::new(Vec::new()));
    let (g, lp2) = (got.clone(), lp.clone());
    let mut rb = b.try_clone().unwrap();
    lp.add_reader(b.as_raw_fd(), move || {
        let mut buf = [0u8; 64];
        let n = rb.read(&mut buf).unwrap();
        g.borrow_mut().extend_from_slice(&buf[..n]);
        lp2.stop();
    })
    .unwrap();
    a.write_all(b"ping").unwrap();
    lp.run_forever().unwrap();
    assert_eq!(&*got.borrow(), b"ping");
    assert!(lp.remove_reader(b.as_raw_fd()));
    lp.close().unwrap();
}

#[test]
fn reader_that_does_not_drain_runs_again_on_every_iteration() {
    // Level-triggered, as the PEP says: the fd stays readable, so the reader runs again.
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    a.write_all(b"x").unwrap();
    let calls = counter();
    let iterations = counter();
    // A call_soon chain counts iterations: one link per iteration.
    fn tick(lp: &EventLoop, n: Rc<Cell<usize>>) {
        n.set(n.get() + 1);
        let lp2 = lp.clone();
        lp.call_soon(move || tick(&lp2, n)).unwrap();
    }
    let (lp2, it) = (lp.clone(), iterations.clone());
    lp.call_soon(move || tick(&lp2, it)).unwrap();
    let (c, lp2, fd) = (calls.clone(), lp.clone(), b.as_raw_fd());
    lp.add_reader(fd, move || {
        c.set(c.get() + 1);
        if c.get() == 3 {
            assert!(lp2.remove_reader(fd));
            lp2.stop();
        }
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 3);
    assert_eq!(iterations.get(), 3, "one reader call per iteration");
    lp.close().unwrap();
}

#[test]
fn reader_that_drains_is_not_called_again() {
    let lp = EventLoop::new_virtual().unwrap();
    let (mut a, b) = pair();
    a.write_all(b"once").unwrap();
    let calls = counter();
    let (c, mut rb) = (calls.clone(), b.try_clone().unwrap());
    lp.add_reader(b.as_raw_fd(), move || {
        c.set(c.get() + 1);
        let mut buf = [0u8; 64];
        assert_eq!(rb.read(&mut buf).unwrap(), 4);
    })
    .unwrap();
    stop_later(&lp, Duration::from_secs(1));
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 1);
    lp.close().unwrap();
}

#[test]
fn second_add_reader_replaces_the_first() {
    let lp = EventLoop::new().unwrap();
    let (mut a, b) = pair();
    let first_dropped = Rc::new(Cell::new(false));
    let first_calls = counter();
    let (c, guard) = (first_calls.clone(), DropFlag(first_dropped.clone()));
    let h1 = lp
        .add_reader(b.as_raw_fd(), move || {
            let _ = &guard;
            c.set(c.get() + 1);
        })
        .unwrap();
    let second_calls = counter();
    let (c, lp2, fd) = (second_calls.clone(), lp.clone(), b.as_raw_fd());
    lp.add_reader(fd, move || {
        c.set(c.get() + 1);
        lp2.remove_reader(fd);
        lp2.stop();
    })
    .unwrap();
    assert!(
        first_dropped.get(),
        "the replaced closure is dropped at once"
    );
    assert!(
        h1.cancelled(),
        "the replaced reader's handle reports cancelled"
    );
    assert_eq!(lp.stats().readers, 1);
    a.write_all(b"x").unwrap();
    lp.run_forever().unwrap();
    assert_eq!((first_calls.get(), second_calls.get()), (0, 1));
    lp.close().unwrap();
}

#[test]
fn remove_reader_returns_true_then_false() {
    let lp = EventLoop::new().unwrap();
    let (_a, b) = pair();
    let fd = b.as_raw_fd();
    assert!(!lp.remove_reader(fd), "nothing registered yet");
    lp.add_reader(fd, || {}).unwrap();
    assert!(lp.remove_reader(fd));
    assert!(!lp.remove_reader(fd));
    assert_eq!(lp.stats().readers, 0);
    lp.close().unwrap();
}

#[test]
fn remove_writer_returns_true_then_false() {
    let lp = EventLoop::new().unwrap();
    let (a, _b) = pair();
    let fd = a.as_raw_fd();
    assert!(!lp.remove_writer(fd));
    lp.add_writer(fd, || {}).unwrap();
    assert!(!lp.remove_reader(fd), "a writer is not a reader");
    assert!(lp.remove_writer(fd));
    assert!(!lp.remove_writer(fd));
    lp.close().unwrap();
}

#[test]
fn remove_reader_drops_the_closure_and_stops_the_calls() {
    let lp = EventLoop::new_virtual().unwrap();
    let (mut a, b) = pair();
    a.write_all(b"x").unwrap();
    let dropped = Rc::new(Cell::new(false));
    let calls = counter();
    let (c, guard) = (calls.clone(), DropFlag(dropped.clone()));
    lp.add_reader(b.as_raw_fd(), move || {
        let _ = &guard;
        c.set(c.get() + 1);
    })
    .unwrap();
    assert!(lp.remove_reader(b.as_raw_fd()));
    assert!(dropped.get());
    stop_later(&lp, Duration::from_secs(1));
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 0);
    lp.close().unwrap();
}

#[test]
fn cancelling_the_reader_handle_stops_the_calls() {
    let lp = EventLoop::new_virtual().unwrap();
    let (mut a, b) = pair();
    a.write_all(b"x").unwrap();
    let calls = counter();
    let dropped = Rc::new(Cell::new(false));
    let (c, guard) = (calls.clone(), DropFlag(dropped.clone()));
    let h: Handle = lp
        .add_reader(b.as_raw_fd(), move || {
            let _ = &guard;
            c.set(c.get() + 1);
        })
        .unwrap();
    h.cancel();
    assert!(h.cancelled());
    assert!(dropped.get());
    stop_later(&lp, Duration::from_secs(1));
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 0);
    assert_eq!(
        lp.stats().readers,
        0,
        "a cancelled reader unregisters itself"
    );
    assert!(!lp.remove_reader(b.as_raw_fd()));
    lp.close().unwrap();
}

#[test]
fn reader_can_cancel_its_own_handle() {
    let lp = EventLoop::new_virtual().unwrap();
    let (mut a, b) = pair();
    a.write_all(b"x").unwrap();
    let calls = counter();
    let slot: Rc<RefCell<Option<Handle>>> = Rc::new(RefCell::new(None));
    let (c, s) = (calls.clone(), slot.clone());
    let h = lp
        .add_reader(b.as_raw_fd(), move || {
            c.set(c.get() + 1);
            s.borrow().as_ref().expect("handle stored").cancel();
        })
        .unwrap();
    *slot.borrow_mut() = Some(h);
    stop_later(&lp, Duration::from_secs(1));
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 1);
    slot.borrow_mut().take();
    lp.close().unwrap();
}

#[test]
fn writer_on_a_socket_is_called() {
    let lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    let calls = counter();
    let (c, lp2, fd) = (calls.clone(), lp.clone(), a.as_raw_fd());
    let mut wa = a.try_clone().unwrap();
    lp.add_writer(fd, move || {
        c.set(c.get() + 1);
        wa.write_all(b"pong").unwrap();
        assert!(lp2.remove_writer(fd));
        lp2.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 1);
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert_eq!(lp.stats().writers, 0);
    lp.close().unwrap();
}

#[test]
fn reader_and_writer_on_the_same_fd_are_both_called() {
    let lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    b.write_all(b"x").unwrap();
    let fd = a.as_raw_fd();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.add_reader(fd, move || {
        s.borrow_mut().push("read");
        lp2.remove_reader(fd);
        if lp2.stats().writers == 0 {
            lp2.stop();
        }
    })
    .unwrap();
    let (s, lp2) = (seen.clone(), lp.clone());
    lp.add_writer(fd, move || {
        s.borrow_mut().push("write");
        lp2.remove_writer(fd);
        if lp2.stats().readers == 0 {
            lp2.stop();
        }
    })
    .unwrap();
    let s = lp.stats();
    assert_eq!((s.readers, s.writers), (1, 1));
    lp.run_forever().unwrap();
    let mut seen = seen.borrow().clone();
    seen.sort_unstable();
    assert_eq!(seen, ["read", "write"]);
    lp.close().unwrap();
}

#[test]
fn removing_the_writer_keeps_the_reader_of_the_same_fd() {
    let lp = EventLoop::new().unwrap();
    let (a, mut b) = pair();
    let fd = a.as_raw_fd();
    let reads = counter();
    let (r, lp2, mut ra) = (reads.clone(), lp.clone(), a.try_clone().unwrap());
    lp.add_reader(fd, move || {
        let mut buf = [0u8; 8];
        let _ = ra.read(&mut buf).unwrap();
        r.set(r.get() + 1);
        lp2.stop();
    })
    .unwrap();
    lp.add_writer(fd, || {}).unwrap();
    assert!(lp.remove_writer(fd));
    assert_eq!(lp.stats().readers, 1);
    b.write_all(b"x").unwrap();
    lp.run_forever().unwrap();
    assert_eq!(reads.get(), 1);
    lp.close().unwrap();
}

#[test]
fn reader_on_an_invalid_fd_is_an_error() {
    let lp = EventLoop::new().unwrap();
    for fd in [-1, 1_000_000] {
        let err = lp.add_reader(fd, || {}).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "fd {fd}: {err:?}");
        assert!(
            err.to_string().contains("add_reader"),
            "message names the operation: {err}"
        );
        let err = lp.add_writer(fd, || {}).unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "fd {fd}: {err:?}");
    }
    let s = lp.stats();
    assert_eq!(
        (s.readers, s.writers),
        (0, 0),
        "a failed registration leaves nothing behind"
    );
    lp.close().unwrap();
}

#[test]
fn reader_on_a_regular_file_is_an_error() {
    // epoll refuses regular files (they are always ready); the loop reports it, never panics.
    let lp = EventLoop::new().unwrap();
    let file = std::fs::File::open(file!())
        .or_else(|_| std::fs::File::open(std::env::current_exe().unwrap()));
    let file = file.unwrap();
    let result = lp.add_reader(file.as_raw_fd(), || {});
    if cfg!(target_os = "linux") {
        assert!(matches!(result, Err(Error::Io { .. })), "{result:?}");
        assert_eq!(lp.stats().readers, 0);
    }
    lp.remove_reader(file.as_raw_fd());
    lp.close().unwrap();
}

#[test]
fn stats_counts_readers_and_writers() {
    let lp = EventLoop::new().unwrap();
    let (a, b) = pair();
    let (c, d) = pair();
    lp.add_reader(a.as_raw_fd(), || {}).unwrap();
    lp.add_reader(b.as_raw_fd(), || {}).unwrap();
    lp.add_writer(b.as_raw_fd(), || {}).unwrap();
    lp.add_writer(c.as_raw_fd(), || {}).unwrap();
    let s = lp.stats();
    assert_eq!((s.readers, s.writers), (2, 2));
    lp.remove_reader(b.as_raw_fd());
    lp.remove_writer(c.as_raw_fd());
    lp.add_reader(d.as_raw_fd(), || {}).unwrap();
    let s = lp.stats();
    assert_eq!((s.readers, s.writers), (2, 1));
    lp.close().unwrap();
    let s = lp.stats();
    assert_eq!(
        (s.readers, s.writers),
        (0, 0),
        "close drops every registration"
    );
}

#[test]
fn close_drops_fd_callbacks() {
    let lp = EventLoop::new().unwrap();
    let (a, b) = pair();
    let (r, w) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
    let g = DropFlag(r.clone());
    lp.add_reader(a.as_raw_fd(), move || {
        let _ = &g;
    })
    .unwrap();
    let g = DropFlag(w.clone());
    lp.add_writer(b.as_raw_fd(), move || {
        let _ = &g;
    })
    .unwrap();
    lp.close().unwrap();
    assert!(r.get() && w.get());
}

#[test]
fn reader_sees_eof_when_the_peer_closes() {
    let lp = EventLoop::new().unwrap();
    let (a, b) = pair();
    let eof = Rc::new(Cell::new(false));
    let (e, lp2, fd, mut rb) = (
        eof.clone(),
        lp.clone(),
        b.as_raw_fd(),
        b.try_clone().unwrap(),
    );
    lp.add_reader(fd, move || {
        let mut buf = [0u8; 8];
        if rb.read(&mut buf).unwrap() == 0 {
            e.set(true);
            lp2.remove_reader(fd);
            lp2.stop();
        }
    })
    .unwrap();
    drop(a);
    lp.run_forever().unwrap();
    assert!(eof.get());
    lp.close().unwrap();
}

#[test]
fn reader_that_panics_stays_registered_and_runs_again() {
    // asyncio keeps an fd callback that raised: the error is reported and the next readiness
    // calls it again. (Only call_repeatedly ends on a panic.)
    let lp = EventLoop::new_virtual().unwrap();
    let reports = Rc::new(RefCell::new(Vec::new()));
    let r = reports.clone();
    lp.set_exception_handler(Some(move |_: &EventLoop, ctx: &ExceptionContext| {
        r.borrow_mut().push(ctx.panic.clone().unwrap_or_default());
    }));
    let (mut a, b) = pair();
    a.write_all(b"x").unwrap();
    let calls = counter();
    let (c, mut rb) = (calls.clone(), b.try_clone().unwrap());
    lp.add_reader(b.as_raw_fd(), move || {
        c.set(c.get() + 1);
        if c.get() == 1 {
            panic!("reader fails once");
        }
        let mut buf = [0u8; 8];
        let _ = rb.read(&mut buf).unwrap();
    })
    .unwrap();
    stop_later(&lp, Duration::from_secs(1));
    lp.run_forever().unwrap();
    assert_eq!(*reports.borrow(), ["reader fails once"]);
    assert_eq!(
        calls.get(),
        2,
        "called again after the panic, then drained the fd"
    );
    assert_eq!(lp.stats().readers, 1);
    lp.close().unwrap();
}

#[cfg(not(tulipa_polling))]
#[test]
fn edge_reader_is_called_once_per_arrival_not_on_every_iteration() {
    // `add_reader_edge` on Linux epoll: a reader that leaves data behind is not called again
    // until more arrives (a level-triggered reader would make this virtual loop spin).
    let lp = EventLoop::new_virtual().unwrap();
    let (mut a, b) = pair();
    a.write_all(b"x").unwrap();
    let calls = counter();
    let c = calls.clone();
    lp.add_reader_edge(b.as_raw_fd(), move || c.set(c.get() + 1))
        .unwrap();
    stop_later(&lp, Duration::from_secs(1));
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 1);
    a.write_all(b"y").unwrap();
    stop_later(&lp, Duration::from_secs(1));
    lp.run_forever().unwrap();
    assert_eq!(calls.get(), 2, "new data is a new edge");
    assert!(lp.remove_reader(b.as_raw_fd()));
    lp.close().unwrap();
}

#[test]
fn edge_reader_sees_the_end_that_came_with_the_data() {
    // Data and the peer's end arrive before the loop looks: one edge. The reader's first read
    // is short (it got the data); the loop must call it again so that it reads the end.
    let lp = EventLoop::new_virtual().unwrap();
    let (mut a, b) = pair();
    a.write_all(b"last words").unwrap();
    a.shutdown(std::net::Shutdown::Write).unwrap();
    let reads = Rc::new(RefCell::new(Vec::new()));
    let (r, lp2, fd) = (reads.clone(), lp.clone(), b.as_raw_fd());
    let mut rb = b.try_clone().unwrap();
    lp.add_reader_edge(fd, move || {
        let mut buf = [0u8; 4096];
        let n = rb.read(&mut buf).unwrap();
        r.borrow_mut().push(n);
        if n == 0 {
            assert!(lp2.remove_reader(fd));
            lp2.stop();
        }
    })
    .unwrap();
    stop_later(&lp, Duration::from_secs(1));
    lp.run_forever().unwrap();
    assert_eq!(*reads.borrow(), [10, 0], "the end was read after the data");
    lp.close().unwrap();
}
