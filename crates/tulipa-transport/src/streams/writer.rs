//! [`StreamWriter`]: the writing half of a stream connection (asyncio's `StreamWriter`).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tulipa_futures::rt::take_cancellation;

use super::reader::StreamReader;
use super::to_io;
use crate::error::{Error, Result};
use crate::transport::Transport;

/// What the stream protocol tells the writers: flow control and the end of the connection.
pub(super) struct Shared {
    pub(super) paused: Cell<bool>,
    pub(super) lost: Cell<bool>,
    pub(super) exc: RefCell<Option<Error>>,
    /// Tasks in `drain`, `wait_closed`, `poll_flush` or `poll_close`: one waker per task (a
    /// task that polls again replaces its own), so spurious polls do not grow the list.
    waiters: RefCell<Vec<Waker>>,
}

impl Shared {
    pub(super) fn new() -> Rc<Self> {
        Rc::new(Shared {
            paused: Cell::new(false),
            lost: Cell::new(false),
            exc: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
        })
    }

    pub(super) fn wake_all(&self) {
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in waiters {
            w.wake();
        }
    }

    fn register(&self, waker: &Waker) {
        let mut waiters = self.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(waker)) {
            waiters.push(waker.clone());
        }
    }

    /// The connection's end as a result: its error, or `Ok` for a clean close.
    fn lost_result(&self) -> Result<()> {
        match self.exc.borrow().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Closes the connection once every clone of its reader and writer is dropped (asyncio closes a
/// `StreamWriter`'s transport when it is garbage-collected), so a handler that returns without
/// `close` does not leave the connection open forever.
pub(super) struct Owner(pub(super) RefCell<Option<Transport>>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(t) = self.0.borrow().as_ref() {
            t.close();
        }
    }
}

/// The writing half of a stream connection (asyncio's `StreamWriter`); a cheap handle.
///
/// It also implements [`futures_io::AsyncWrite`]: `poll_write` waits as
/// [`drain`](StreamWriter::drain) does, then buffers the whole slice; `poll_flush` waits until
/// the write buffer is empty (every byte handed to the kernel); `poll_close` closes the
/// connection and waits until it is closed, as [`close`](StreamWriter::close) then
/// [`wait_closed`](StreamWriter::wait_closed). Both fail with the connection's error, and with an
/// I/O error of kind [`ConnectionAborted`](io::ErrorKind::ConnectionAborted) when the connection
/// was closed at once ([`Transport::abort`], `Server::abort_clients`) with bytes still buffered:
/// those bytes were dropped, never sent.
#[derive(Clone)]
pub struct StreamWriter {
    transport: Transport,
    shared: Rc<Shared>,
    /// Held for its `Drop` (closing the connection with the last handle); read by `start_tls`.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    owner: Rc<Owner>,
}

impl StreamWriter {
    /// The writer that goes with `reader`: both share the connection's [`Owner`].
    pub(super) fn paired(reader: &StreamReader, transport: Transport, shared: Rc<Shared>) -> Self {
        let owner = reader
            .owner
            .clone()
            .unwrap_or_else(|| Rc::new(Owner(RefCell::new(None))));
        *owner.0.borrow_mut() = Some(transport.clone());
        StreamWriter {
            owner,
            transport,
            shared,
        }
    }

    /// Writes `data` (buffered by the transport; follow with [`drain`](StreamWriter::drain)).
    ///
    /// # Errors
    ///
    /// As [`Transport::write`].
    pub fn write(&self, data: &[u8]) -> Result<()> {
        self.transport.write(data)
    }

    /// Writes several buffers.
    ///
    /// # Errors
    ///
    /// As [`Transport::writelines`].
    pub fn writelines(&self, parts: &[&[u8]]) -> Result<()> {
        self.transport.writelines(parts)
    }

    /// `drain`, as a poll.
    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(e) = take_cancellation() {
            return Poll::Ready(Err(e.into()));
        }
        if self.shared.lost.get() {
            return Poll::Ready(Err(self
                .shared
                .exc
                .borrow()
                .clone()
                .unwrap_or(Error::Closed)));
        }
        if !self.shared.paused.get() {
            return Poll::Ready(Ok(()));
        }
        self.shared.register(cx.waker());
        Poll::Pending
    }

    /// Waits until the write buffer is under its high watermark (asyncio's `drain`).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    ///
    /// # Errors
    ///
    /// The connection's error, or [`Error::Closed`], once the connection is lost.
    pub async fn drain(&self) -> Result<()> {
        poll_fn(|cx| self.poll_drain(cx)).await
    }

    /// Half-closes the connection after buffered data is sent.
    ///
    /// # Errors
    ///
    /// As [`Transport::write_eof`].
    pub fn write_eof(&self) -> Result<()> {
        self.transport.write_eof()
    }

    /// True: TCP and Unix streams can half-close.
    pub fn can_write_eof(&self) -> bool {
        self.transport.can_write_eof()
    }

    /// Closes the connection (buffered data is still sent).
    pub fn close(&self) {
        self.transport.close();
    }

    /// True once closing.
    pub fn is_closing(&self) -> bool {
        self.transport.is_closing()
    }

    /// `wait_closed`, as a poll: the connection's end once it is lost.
    fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(e) = take_cancellation() {
            return Poll::Ready(Err(e.into()));
        }
        if self.shared.lost.get() {
            return Poll::Ready(self.end_result());
        }
        self.shared.register(cx.waker());
        Poll::Pending
    }

    /// How the connection ended, once it is lost: its error; else, when it was closed at once
    /// with bytes still buffered (an abort), an I/O error of kind
    /// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted), as those bytes were dropped,
    /// never sent; else `Ok`.
    fn end_result(&self) -> Result<()> {
        self.shared.lost_result()?;
        match self.transport.discarded() {
            0 => Ok(()),
            n => Err(Error::io(
                "flush",
                io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    format!("the connection was aborted with {n} bytes unsent; they were dropped"),
                ),
            )),
        }
    }

    /// Waits until the connection is fully closed.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: it only waits.
    ///
    /// # Errors
    ///
    /// Cancellation only; the connection's own error is not repeated here.
    pub async fn wait_closed(&self) -> Result<()> {
        poll_fn(|cx| match self.poll_closed(cx) {
            Poll::Ready(Err(e)) if !e.is_cancelled() => Poll::Ready(Ok(())),
            other => other,
        })
        .await
    }

    /// The transport underneath (extra info: addresses, socket).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// Upgrades the connection to TLS (asyncio's `StreamWriter.start_tls`): the reader goes on
    /// receiving, now decrypted; use the returned writer from now on.
    ///
    /// # Errors
    ///
    /// As [`crate::tls::start_tls`].
    #[cfg(feature = "tls")]
    pub async fn start_tls(&self, side: crate::tls::TlsSide) -> Result<StreamWriter> {
        let transport = crate::tls::start_tls(&self.transport, side).await?;
        // From now on, dropping the last writer closes the TLS session (close_notify first).
        *self.owner.0.borrow_mut() = Some(transport.clone());
        Ok(StreamWriter {
            transport,
            shared: self.shared.clone(),
            owner: self.owner.clone(),
        })
    }
}

impl fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamWriter")
            .field("transport", &self.transport)
            .field("paused", &self.shared.paused.get())
            .finish()
    }
}

impl futures_io::AsyncWrite for StreamWriter {
    /// Waits while the write buffer is over its high watermark (as `drain`), then buffers all
    /// of `buf`.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(to_io(e))),
            Poll::Pending => return Poll::Pending,
        }
        self.transport.write(buf).map_err(to_io)?;
        Poll::Ready(Ok(buf.len()))
    }

    /// Waits until the write buffer is empty: every byte written is in the kernel's hands. On a
    /// lost connection: its error; a `ConnectionAborted` error if it was closed at once
    /// (`abort`) with bytes still buffered, which were dropped; `Ok` if it was closed cleanly.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = take_cancellation() {
            return Poll::Ready(Err(to_io(e.into())));
        }
        if self.shared.lost.get() {
            return Poll::Ready(self.end_result().map_err(to_io));
        }
        if self.transport.is_lost() {
            // Lost, and the protocol not told yet: wait for its `connection_lost`, which says
            // whether the buffer went out or was dropped on an error.
            self.shared.register(cx.waker());
            return Poll::Pending;
        }
        self.transport.poll_write_buffer_empty(cx).map(Ok)
    }

    /// Closes the connection (buffered bytes are still sent) and waits until it is closed
    /// (`connection_lost`). Returns the connection's error if it ended with one, and a
    /// `ConnectionAborted` error if it was aborted with bytes still buffered (they were
    /// dropped).
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.transport.close();
        self.poll_closed(cx).map_err(to_io)
    }
}
