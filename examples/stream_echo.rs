//! An echo server in coroutine style, on the streams API (asyncio's `start_server`).
//!
//! Run: `cargo run --release --example stream_echo -- --addr 127.0.0.1:8888`
//! then, for example, `nc 127.0.0.1 8888`. Ctrl-C stops it.

use tulipa_futures::{run, sync::Event, Error};
use tulipa_transport::streams::{start_server, DEFAULT_LIMIT};
use tulipa_transport::ServerOptions;

fn main() -> Result<(), Error> {
    let addr = std::env::args()
        .skip_while(|a| a != "--addr")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let (host, port) = addr.rsplit_once(':').expect("--addr HOST:PORT");
    let port: u16 = port.parse().expect("a port number");
    let host = host.to_owned();
    run(async move {
        let server = start_server(
            |reader, writer| async move {
                // One task per connection: read a line, write it back, until the peer closes.
                loop {
                    let line = reader.readline().await?;
                    if line.is_empty() {
                        break; // EOF
                    }
                    writer.write(&line)?;
                    writer.drain().await?; // respect the peer's pace (flow control)
                }
                writer.close();
                Ok(())
            },
            &host,
            port,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        println!(
            "listening on {}",
            server.local_addr().expect("a TCP server")
        );
        // Serve until SIGINT.
        let stop = Event::new();
        let s2 = stop.clone();
        let lp = tulipa_futures::rt::EventLoop::running()?;
        lp.add_signal_handler(tulipa_futures::rt::signal::SIGINT, move || s2.set())?;
        stop.wait().await?;
        server.close();
        println!("bye");
        Ok(())
    })
}
