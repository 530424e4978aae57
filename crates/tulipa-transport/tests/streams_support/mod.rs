//! Helpers shared by the streams tests (a module, not a test target): a connected pair of
//! streams over 127.0.0.1 and a look at a reader's buffer.

#![allow(dead_code)]

use std::cell::RefCell;
use std::rc::Rc;

use crate::common::until;
use tulipa_transport::streams::{open_connection, start_server, StreamReader, StreamWriter};
use tulipa_transport::{Server, ServerOptions};

/// The number of bytes a reader holds, from its `Debug` output (there is no public getter).
pub(crate) fn buffered(reader: &StreamReader) -> usize {
    debug_field(reader, "buffered: ")
        .parse()
        .expect("Debug shows buffered")
}

/// True while a read of `reader` waits for data (from its `Debug` output).
pub(crate) fn waiting(reader: &StreamReader) -> bool {
    debug_field(reader, "waiting: ") == "true"
}

/// How many times the reader copied its buffer because a `fill_buf` loan still held it (the
/// `loan_copies` diagnostic of its `Debug` output).
pub(crate) fn loan_copies(reader: &StreamReader) -> u64 {
    debug_field(reader, "loan_copies: ")
        .parse()
        .expect("Debug shows loan_copies")
}

fn debug_field(reader: &StreamReader, name: &str) -> String {
    let dbg = format!("{reader:?}");
    let rest = &dbg[dbg.find(name).unwrap_or_else(|| panic!("{name} in {dbg}")) + name.len()..];
    rest[..rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len())]
        .to_owned()
}

/// The accepted connections of a [`server_handing_out`].
pub(crate) type Accepted = Rc<RefCell<Vec<(StreamReader, StreamWriter)>>>;

/// A stream server whose handler gets the accepted reader and writer handed out through
/// `accepted`, and otherwise does nothing (the test drives both ends).
pub(crate) async fn server_handing_out(
    limit: usize,
) -> tulipa_transport::Result<(Server, Accepted)> {
    let accepted: Accepted = Rc::default();
    let a2 = accepted.clone();
    let server = start_server(
        move |r, w| {
            a2.borrow_mut().push((r, w));
            async { Ok(()) }
        },
        "127.0.0.1",
        0,
        limit,
        ServerOptions::default(),
    )
    .await?;
    Ok((server, accepted))
}

/// The next connection `accepted` gets.
pub(crate) async fn next_accepted(
    accepted: &Accepted,
) -> tulipa_futures::Result<(StreamReader, StreamWriter)> {
    until(|| !accepted.borrow().is_empty()).await?;
    Ok(accepted.borrow_mut().remove(0))
}

/// A connected pair of streams: (client reader, client writer, server reader, server writer).
pub(crate) async fn stream_pair(
    client_limit: usize,
    server_limit: usize,
) -> tulipa_transport::Result<(
    Server,
    StreamReader,
    StreamWriter,
    StreamReader,
    StreamWriter,
)> {
    let (server, accepted) = server_handing_out(server_limit).await?;
    let port = server.local_addr().unwrap().port();
    let (cr, cw) = open_connection("127.0.0.1", port, client_limit).await?;
    let (sr, sw) = next_accepted(&accepted).await?;
    Ok((server, cr, cw, sr, sw))
}
