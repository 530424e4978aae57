//! A small multi-client TCP chat server: every line a client sends goes to all the others.
//!
//! Run: `cargo run --release --example chat -- --addr 127.0.0.1:7777`, then connect a few
//! `nc 127.0.0.1 7777`. The first line a client sends is its name. Ctrl-C stops the server.

use std::cell::RefCell;
use std::rc::Rc;

use tulipa_futures::{run, sync::Event, Error};
use tulipa_transport::streams::{start_server, StreamWriter, DEFAULT_LIMIT};
use tulipa_transport::ServerOptions;

/// The connected clients: (id, name, writer).
type Room = Rc<RefCell<Vec<(u64, String, StreamWriter)>>>;

/// A client's seat in the room: it leaves when its handler ends, however that happens — EOF,
/// a reset, a line over the limit (`?` returns early): a dead client's writer must not stay in
/// the room and be written to for ever.
struct Seat {
    room: Room,
    id: u64,
    name: String,
}

impl Seat {
    fn take(room: &Room, id: u64, name: String, writer: StreamWriter) -> Seat {
        broadcast(room, id, &format!("* {name} joined\n"));
        room.borrow_mut().push((id, name.clone(), writer));
        Seat {
            room: room.clone(),
            id,
            name,
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.room.borrow_mut().retain(|(i, _, _)| *i != self.id);
        broadcast(&self.room, self.id, &format!("* {} left\n", self.name));
    }
}

fn broadcast(room: &Room, from: u64, text: &str) {
    for (id, _, w) in room.borrow().iter() {
        if *id != from {
            // A slow client does not hold the others up: its transport buffers (and it would
            // get `pause_writing`); a broken one fails here and leaves on its own.
            let _ = w.write(text.as_bytes());
        }
    }
}

fn main() -> Result<(), Error> {
    let addr = std::env::args()
        .skip_while(|a| a != "--addr")
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let (host, port) = addr.rsplit_once(':').expect("--addr HOST:PORT");
    let port: u16 = port.parse().expect("a port number");
    let host = host.to_owned();
    run(async move {
        let room: Room = Rc::default();
        let next_id = Rc::new(std::cell::Cell::new(0u64));
        let r2 = room.clone();
        let server = start_server(
            move |reader, writer| {
                let room = r2.clone();
                let id = next_id.get() + 1;
                next_id.set(id);
                async move {
                    writer.write(b"name? ")?;
                    let name = String::from_utf8_lossy(&reader.readline().await?)
                        .trim()
                        .to_owned();
                    if name.is_empty() {
                        return Ok(());
                    }
                    let _seat = Seat::take(&room, id, name.clone(), writer.clone());
                    loop {
                        let line = reader.readline().await?;
                        if line.is_empty() {
                            break;
                        }
                        let text = String::from_utf8_lossy(&line);
                        broadcast(&room, id, &format!("{name}: {}\n", text.trim_end()));
                    }
                    writer.close();
                    Ok(()) // `_seat` leaves the room here, or wherever `?` returns above
                }
            },
            &host,
            port,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        println!("chat on {}", server.local_addr().expect("a TCP server"));
        let stop = Event::new();
        let s2 = stop.clone();
        let lp = tulipa_futures::rt::EventLoop::running()?;
        lp.add_signal_handler(tulipa_futures::rt::signal::SIGINT, move || s2.set())?;
        stop.wait().await?;
        server.close();
        for (_, _, w) in room.borrow().iter() {
            w.close();
        }
        println!("bye");
        Ok(())
    })
}
