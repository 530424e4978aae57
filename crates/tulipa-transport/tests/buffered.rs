//! `BufferedProtocol`: bytes land in the protocol's own buffer.

use std::cell::RefCell;
use std::rc::Rc;

use tulipa_futures::{run, sync::Event};
use tulipa_transport::streams::{start_server, DEFAULT_LIMIT};
use tulipa_transport::{
    create_connection, Buffered, BufferedProtocol, ConnectOptions, Error, ServerOptions, Transport,
};

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
        let _t = create_connection(
            move || {
                Buffered(Collector {
                    buf: vec![0; 4096],
                    filled: 0,
                    calls: c2,
                    out: o2,
                    done: d2,
                })
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
        server.close();
        Ok(())
    })
    .unwrap();
}
