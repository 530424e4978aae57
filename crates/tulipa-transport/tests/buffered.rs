//! `BufferedProtocol`: bytes land in the protocol's own buffer, without a copy: the transport
//! reads into `get_buffer`'s slice, and the copying `data_received` fallback is never used.

mod common;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use tulipa_futures::{run, sync::Event};
use tulipa_transport::streams::{start_server, DEFAULT_LIMIT};
use tulipa_transport::{
    create_connection, create_server, Buffered, BufferedProtocol, ConnectOptions, Error, Protocol,
    ServerOptions, Transport, READ_SIZE,
};

/// Forwards to a protocol, counting the calls of the copying path (`data_received`) and
/// keeping the size hints `get_buffer` was given.
struct NoCopy<P> {
    inner: P,
    copies: Rc<Cell<usize>>,
    hints: Rc<RefCell<Vec<usize>>>,
}

impl<P: Protocol> Protocol for NoCopy<P> {
    fn connection_made(&mut self, t: Transport) {
        self.inner.connection_made(t);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.copies.set(self.copies.get() + 1);
        self.inner.data_received(data);
    }
    fn eof_received(&mut self) -> bool {
        self.inner.eof_received()
    }
    fn connection_lost(&mut self, exc: Option<Error>) {
        self.inner.connection_lost(exc);
    }
    fn get_buffer(&mut self, size_hint: usize) -> Option<&mut [u8]> {
        self.hints.borrow_mut().push(size_hint);
        self.inner.get_buffer(size_hint)
    }
    fn buffer_updated(&mut self, nbytes: usize) {
        self.inner.buffer_updated(nbytes);
    }
}

struct Collector {
    buf: Vec<u8>,
    filled: usize,
    calls: Rc<RefCell<Vec<usize>>>,
    out: Rc<RefCell<Vec<u8>>>,
    done: Event,
}

impl BufferedProtocol for Collector {
    fn connection_made(&mut self, t: Transport) {
        t.write(b"send me a lot\n").unwrap();
    }
    fn get_buffer(&mut self, size_hint: usize) -> &mut [u8] {
        assert!(size_hint > 0);
        &mut self.buf[self.filled..]
    }
    fn buffer_updated(&mut self, n: usize) {
        self.calls.borrow_mut().push(n);
        self.out
            .borrow_mut()
            .extend_from_slice(&self.buf[self.filled..self.filled + n]);
        // Reuse the same small buffer: start over when full.
        self.filled = (self.filled + n) % self.buf.len();
    }
    fn connection_lost(&mut self, _exc: Option<Error>) {
        self.done.set();
    }
}

#[test]
fn a_buffered_protocol_receives_every_byte_through_its_own_buffer() {
    run(async {
        let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let p2 = payload.clone();
        let server = start_server(
            move |r, w| {
                let p = p2.clone();
                async move {
                    r.readline().await?;
                    w.write(&p)?;
                    w.drain().await?;
                    w.close();
                    Ok(())
                }
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (calls, out, done) = (
            Rc::new(RefCell::new(Vec::new())),
            Rc::new(RefCell::new(Vec::new())),
            Event::new(),
        );
        let (c2, o2, d2) = (calls.clone(), out.clone(), done.clone());
        let copies = Rc::new(Cell::new(0));
        let hints: Rc<RefCell<Vec<usize>>> = Rc::default();
        let (copies2, hints2) = (copies.clone(), hints.clone());
        let _t = create_connection(
            move || NoCopy {
                inner: Buffered(Collector {
                    buf: vec![0; 4096],
                    filled: 0,
                    calls: c2,
                    out: o2,
                    done: d2,
                }),
                copies: copies2,
                hints: hints2,
            },
            "127.0.0.1",
            port,
            ConnectOptions::default(),
        )
        .await?;
        done.wait().await?;
        assert!(*out.borrow() == payload, "every byte, in order");
        assert!(
            calls.borrow().iter().all(|&n| n <= 4096),
            "never more than the buffer offered"
        );
        assert_eq!(copies.get(), 0, "data_received (the copy) never reached");
        assert!(!hints.borrow().is_empty());
        assert!(
            hints.borrow().iter().all(|&h| h == READ_SIZE),
            "the transport asked for buffers itself: {:?}",
            hints.borrow()
        );
        server.close();
        Ok(())
    })
    .unwrap();
}

/// Keeps what it gets, for the server side.
struct Sink {
    buf: Vec<u8>,
    out: Rc<RefCell<Vec<u8>>>,
    done: Event,
}

impl BufferedProtocol for Sink {
    fn connection_made(&mut self, _t: Transport) {}
    fn get_buffer(&mut self, _size_hint: usize) -> &mut [u8] {
        &mut self.buf
    }
    fn buffer_updated(&mut self, n: usize) {
        self.out.borrow_mut().extend_from_slice(&self.buf[..n]);
    }
    fn connection_lost(&mut self, _exc: Option<Error>) {
        self.done.set();
    }
}

#[test]
fn accepted_connections_read_into_the_buffered_protocol_without_a_copy() {
    run(async {
        let (out, done) = (Rc::new(RefCell::new(Vec::new())), Event::new());
        let copies = Rc::new(Cell::new(0));
        let hints: Rc<RefCell<Vec<usize>>> = Rc::default();
        let (o2, d2, copies2, hints2) = (out.clone(), done.clone(), copies.clone(), hints.clone());
        let server = create_server(
            move || NoCopy {
                inner: Buffered(Sink {
                    buf: vec![0; 1000],
                    out: o2.clone(),
                    done: d2.clone(),
                }),
                copies: copies2.clone(),
                hints: hints2.clone(),
            },
            "127.0.0.1",
            0,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let p2 = payload.clone();
        let t = create_connection(
            move || NoCopy {
                inner: Buffered(Sink {
                    buf: vec![0; 10],
                    out: Rc::default(),
                    done: Event::new(),
                }),
                copies: Rc::default(),
                hints: Rc::default(),
            },
            "127.0.0.1",
            port,
            ConnectOptions::default(),
        )
        .await?;
        t.write(&p2)?;
        t.close();
        done.wait().await?;
        assert!(*out.borrow() == payload, "every byte, in order");
        assert_eq!(copies.get(), 0, "data_received (the copy) never reached");
        assert!(hints.borrow().iter().all(|&h| h == READ_SIZE));
        server.close();
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_small_buffer_gets_everything_already_queued_without_a_new_arrival() {
    // Edge-triggered reading: one edge for 20,000 queued bytes, a 1,000-byte buffer. Each full
    // buffer must be followed by another read, since the peer sends nothing more (and stays
    // open, so no end of stream brings an edge either).
    let n = 20_000;
    let payload: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let (peer, sock) = common::queued_tcp_pair(&payload);
    run(async move {
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let (calls, out, done) = (
            Rc::new(RefCell::new(Vec::new())),
            Rc::new(RefCell::new(Vec::new())),
            Event::new(),
        );
        let collector = Buffered(Collector {
            buf: vec![0; 1000],
            filled: 0,
            calls: calls.clone(),
            out: out.clone(),
            done: done.clone(),
        });
        let (t, made) = Transport::from_socket(&lp, sock, Box::new(collector))?;
        made.await?;
        let all_in = async {
            while out.borrow().len() < n {
                tulipa_futures::sleep(std::time::Duration::ZERO).await?;
            }
            Ok::<_, tulipa_futures::Error>(())
        };
        tulipa_futures::timeout(std::time::Duration::from_secs(30), all_in).await?;
        assert!(*out.borrow() == payload, "every byte, in order");
        assert!(calls.borrow().iter().all(|&k| k <= 1000));
        t.close();
        done.wait().await?;
        Ok::<_, tulipa_futures::Error>(())
    })
    .unwrap();
    drop(peer);
}
