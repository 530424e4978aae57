//! A UDP echo server: every datagram goes back to its sender (a `DatagramProtocol`).
//!
//! Run: `cargo run --release --example udp_echo -- --addr 127.0.0.1:9999`, then for example
//! `nc -u 127.0.0.1 9999`. Ctrl-C stops it.

use std::net::SocketAddr;

use tulipa_futures::{run, sync::Event, Error};
use tulipa_transport::{
    create_datagram_endpoint, DatagramOptions, DatagramProtocol, DatagramTransport,
};

/// Sends each datagram back where it came from.
#[derive(Default)]
struct Echo {
    transport: Option<DatagramTransport>,
}

impl DatagramProtocol for Echo {
    fn connection_made(&mut self, transport: DatagramTransport) {
        self.transport = Some(transport);
    }

    fn datagram_received(&mut self, data: &[u8], addr: SocketAddr) {
        if let Some(t) = &self.transport {
            // Queued by the transport if the socket is momentarily full.
            let _ = t.sendto(data, Some(addr));
        }
    }

    fn error_received(&mut self, exc: tulipa_transport::Error) {
        eprintln!("udp error: {exc}");
    }

    fn connection_lost(&mut self, _exc: Option<tulipa_transport::Error>) {
        self.transport = None;
    }
}

fn main() -> Result<(), Error> {
    let addr: SocketAddr = std::env::args()
        .skip_while(|a| a != "--addr")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned())
        .parse()
        .expect("--addr HOST:PORT");
    run(async move {
        let mut options = DatagramOptions::default();
        options.local_addr = Some(addr);
        let endpoint = create_datagram_endpoint(Echo::default, options).await?;
        println!("udp echo on {}", endpoint.local_addr().expect("bound"));
        let stop = Event::new();
        let s2 = stop.clone();
        let lp = tulipa_futures::rt::EventLoop::running()?;
        lp.add_signal_handler(tulipa_futures::rt::signal::SIGINT, move || s2.set())?;
        stop.wait().await?;
        endpoint.close();
        println!("bye");
        Ok(())
    })
}
