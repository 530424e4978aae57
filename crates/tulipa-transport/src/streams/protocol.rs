//! The protocol behind streams (asyncio's `StreamReaderProtocol`).

use std::rc::Rc;

use super::reader::StreamReader;
use super::writer::{Owner, Shared};
use crate::error::Error;
use crate::protocol::Protocol;
use crate::transport::Transport;

/// Feeds a [`StreamReader`] and tells the writers about flow control and the connection's end.
pub(super) struct StreamProtocol {
    reader: StreamReader,
    shared: Rc<Shared>,
    /// Runs in `connection_made` (a server's handler, a listener's queue).
    pub(super) on_connect: Option<Box<dyn FnOnce(Transport)>>,
}

/// A new connection's reader (for the user), writer state, and protocol (for the transport).
pub(super) fn make_pair(limit: usize) -> (StreamReader, Rc<Shared>, StreamProtocol) {
    let mut reader = StreamReader::new(limit);
    let shared = Shared::new();
    let proto = StreamProtocol {
        reader: reader.clone(),
        shared: shared.clone(),
        on_connect: None,
    };
    reader.owner = Some(Rc::new(Owner(std::cell::RefCell::new(None))));
    (reader, shared, proto)
}

impl Protocol for StreamProtocol {
    fn connection_made(&mut self, transport: Transport) {
        self.reader.st.borrow_mut().transport = Some(transport.clone());
        if let Some(f) = self.on_connect.take() {
            f(transport);
        }
    }
    fn data_received(&mut self, data: &[u8]) {
        self.reader.feed_data(data);
    }
    fn eof_received(&mut self) -> bool {
        self.reader.feed_eof();
        true // keep the writing side open: the writer closes it
    }
    fn connection_lost(&mut self, exc: Option<Error>) {
        match &exc {
            None => self.reader.feed_eof(),
            Some(e) => self.reader.set_exception(e.clone()),
        }
        self.reader.st.borrow_mut().transport = None;
        self.shared.lost.set(true);
        *self.shared.exc.borrow_mut() = exc;
        self.shared.wake_all();
    }
    fn pause_writing(&mut self) {
        self.shared.paused.set(true);
    }
    fn resume_writing(&mut self) {
        self.shared.paused.set(false);
        self.shared.wake_all();
    }
}
