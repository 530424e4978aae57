//! [`StreamReader`]: the buffer a stream connection reads into (asyncio's `StreamReader`).
//!
//! One read waits at a time. Reads through clones of a reader share one buffer and one waiter
//! slot; a second read that has to wait while another one waits fails with an invalid-state
//! error (asyncio raises `RuntimeError` "... already waiting for incoming data") instead of
//! silently taking the first one's place and leaving it hanging.
//!
//! A waiting read's waker is woken only once the reader's state is released, so a waker that
//! polls the read at once, inside `wake`, works.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tulipa_futures::rt::take_cancellation;

use super::buf_read::Loan;
use super::writer::Owner;
use crate::error::{Error, Result};
use crate::transport::Transport;

/// What a read does with the buffer as it is now.
pub(super) enum Step {
    /// Not enough yet: wait for more data (or EOF, or an error).
    Wait,
    /// Take the first `n` bytes and return them.
    Take(usize),
    /// Fail, taking nothing.
    Fail(Error),
    /// Drop the first `n` bytes, then fail (readline's overlong line).
    Discard(usize, Error),
}

/// Decides, from the buffer and the EOF flag, what a read does now.
pub(super) type Readiness<'a> = dyn FnMut(&[u8], bool) -> Step + 'a;

pub(super) struct ReaderState {
    /// The bytes received and not read yet, or their first part (see `tail`). Behind an `Rc`
    /// so that `poll_fill_buf` can lend a slice of it from its handle while the bytes stay here
    /// for everyone else. A handle gives its loan back whenever it is used again, so a loan is
    /// rarely in the way; when it is, a take copies what stays (see `take`).
    pub(super) buf: Rc<Vec<u8>>,
    /// The bytes that arrived while `buf` was lent, after `buf`'s: kept apart so that data
    /// arriving during a loan does not copy the lent buffer (packet after packet, that would be
    /// quadratic), and moved into `buf` once it is no longer lent or a read needs it.
    tail: Vec<u8>,
    /// How many bytes were ever taken: the stream position of the first buffered byte. A loan
    /// records it, so that `consume` knows which of the lent bytes are still buffered.
    pub(super) pos: u64,
    eof: bool,
    exc: Option<Error>,
    /// The read waiting for data: its registration id and its task's waker.
    waiter: Option<(u64, Waker)>,
    /// The next registration id (a handle's futures-io reads use the handle's own; each call of
    /// an `async` read gets a fresh one).
    next_id: u64,
    pub(super) transport: Option<Transport>,
    paused: bool,
    limit: usize,
    /// How many times a buffer was copied because a loan still held it (shown by `Debug`, for
    /// diagnosis and for the tests that prove loans cost no copies).
    loan_copies: u64,
}

impl ReaderState {
    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Records `id`'s waker, replacing an earlier one of the same read, which it returns: drop
    /// it after the state's borrow (dropping a waker may run a foreign executor's code).
    #[must_use = "drop the replaced waker once the state is released"]
    fn register(&mut self, id: u64, waker: &Waker) -> Result<Option<Waker>> {
        match &mut self.waiter {
            Some((other, _)) if *other != id => {
                Err(Error::Futures(tulipa_futures::Error::InvalidState(
                    "StreamReader: another read is already waiting for incoming data",
                )))
            }
            Some((_, w)) if w.will_wake(waker) => Ok(None),
            slot => Ok(slot.replace((id, waker.clone())).map(|(_, w)| w)),
        }
    }

    /// Forgets `id`'s waker, if it is the one registered, and returns it (to drop after the
    /// state's borrow, as for [`register`](ReaderState::register)).
    #[must_use = "drop the waker once the state is released"]
    fn unregister(&mut self, id: u64) -> Option<Waker> {
        if matches!(self.waiter, Some((i, _)) if i == id) {
            self.waiter.take().map(|(_, w)| w)
        } else {
            None
        }
    }

    /// How many bytes are buffered.
    pub(super) fn len(&self) -> usize {
        self.buf.len() + self.tail.len()
    }

    /// Appends received bytes: to `buf`, unless it is lent (then to `tail`, copying nothing).
    fn append(&mut self, data: &[u8]) {
        match Rc::get_mut(&mut self.buf) {
            Some(buf) => {
                if !self.tail.is_empty() {
                    buf.extend_from_slice(&std::mem::take(&mut self.tail));
                }
                buf.extend_from_slice(data);
            }
            None => self.tail.extend_from_slice(data),
        }
    }

    /// Every buffered byte, in one slice: `tail` moves into `buf` (which is copied first only
    /// if a handle's loan still holds it).
    fn contiguous(&mut self) -> &[u8] {
        if !self.tail.is_empty() {
            let tail = std::mem::take(&mut self.tail);
            if Rc::strong_count(&self.buf) > 1 {
                self.loan_copies += 1;
            }
            Rc::make_mut(&mut self.buf).extend_from_slice(&tail);
        }
        &self.buf
    }

    /// Removes the first `n` bytes (at most [`len`](Self::len)).
    pub(super) fn take(&mut self, n: usize) -> Vec<u8> {
        if n == 0 {
            return Vec::new();
        }
        self.contiguous();
        self.pos += n as u64;
        if let Some(buf) = Rc::get_mut(&mut self.buf) {
            return buf.drain(..n).collect();
        }
        // Still lent to a handle that has not been used since: the loan keeps the old buffer,
        // the bytes that stay move to one of their own (a copy of those only, once per loan).
        self.loan_copies += 1;
        let out = self.buf[..n].to_vec();
        self.buf = Rc::new(self.buf[n..].to_vec());
        out
    }
}

/// The reading half of a stream connection (asyncio's `StreamReader`); a cheap handle.
///
/// Besides its own methods it implements the `futures-io` traits
/// [`AsyncRead`](futures_io::AsyncRead) and [`AsyncBufRead`](futures_io::AsyncBufRead)
/// (`poll_fill_buf` lends the buffered bytes without copying them; `consume` takes bytes of
/// that loan only: never more than were lent, never bytes a clone read meanwhile).
///
/// # Limit
///
/// The reader buffers what arrives up to twice its limit, then pauses reading on the
/// transport until the buffer is back to the limit (flow control towards the peer). The limit
/// also bounds a line: [`readline`](StreamReader::readline) and
/// [`readuntil`](StreamReader::readuntil) fail with [`Error::LimitOverrun`] rather than buffer
/// a line without end.
pub struct StreamReader {
    pub(super) st: Rc<RefCell<ReaderState>>,
    /// Shared with the writer; `None` for the protocol's own view of the reader.
    pub(super) owner: Option<Rc<Owner>>,
    /// This handle's registration id, for its futures-io reads.
    pub(super) id: u64,
    /// The buffer behind the slice `poll_fill_buf` returned: kept until this handle is used
    /// again (the slice borrows the handle, so it is gone by then), then dropped, so that the
    /// shared buffer is not held by a loan nobody can see any more.
    pub(super) lent: Cell<Option<Rc<Vec<u8>>>>,
    /// The bytes `poll_fill_buf` lent, for `consume`.
    pub(super) loan: Cell<Option<Loan>>,
}

impl Clone for StreamReader {
    fn clone(&self) -> Self {
        StreamReader {
            id: self.st.borrow_mut().new_id(),
            st: self.st.clone(),
            owner: self.owner.clone(),
            lent: Cell::new(None),
            loan: Cell::new(None),
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        // A futures-io read abandoned while waiting must not block the other handles' reads.
        forget(&self.st, self.id);
    }
}

/// Forgets read `id`'s waker, if registered; the waker is dropped after the state's borrow.
fn forget(st: &RefCell<ReaderState>, id: u64) {
    let stale = st
        .try_borrow_mut()
        .ok()
        .and_then(|mut st| st.unregister(id));
    drop(stale);
}

/// An `async` read's registration: forgotten when the read ends or is dropped (cancelled), so
/// that the next read may wait.
struct Registration<'a> {
    st: &'a RefCell<ReaderState>,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        forget(self.st, self.id);
    }
}

impl StreamReader {
    /// An empty reader with the given buffer limit (see [Limit](StreamReader#limit); at
    /// least 1).
    pub fn new(limit: usize) -> Self {
        StreamReader {
            owner: None,
            id: 0,
            lent: Cell::new(None),
            loan: Cell::new(None),
            st: Rc::new(RefCell::new(ReaderState {
                buf: Rc::new(Vec::new()),
                tail: Vec::new(),
                pos: 0,
                eof: false,
                exc: None,
                waiter: None,
                next_id: 0,
                transport: None,
                paused: false,
                limit: limit.max(1),
                loan_copies: 0,
            })),
        }
    }

    /// The buffer limit.
    pub fn limit(&self) -> usize {
        self.st.borrow().limit
    }

    /// Takes the waiting read's waker out, to be woken once the borrow of the state is dropped:
    /// a waker may poll the read at once (inline), which borrows the state again.
    fn take_waker(st: &mut ReaderState) -> Option<Waker> {
        st.waiter.take().map(|(_, w)| w)
    }

    /// Appends received bytes (called by the protocol).
    pub fn feed_data(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let mut st = self.st.borrow_mut();
        st.append(data);
        let waker = Self::take_waker(&mut st);
        let mut pause = None;
        if !st.paused && st.len() > 2 * st.limit {
            pause = st.transport.clone();
            st.paused = pause.is_some();
        }
        drop(st);
        if let Some(t) = pause {
            t.pause_reading();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Marks the end of the stream.
    pub fn feed_eof(&self) {
        let waker = {
            let mut st = self.st.borrow_mut();
            st.eof = true;
            Self::take_waker(&mut st)
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Makes every further read fail with `exc` once the buffer is empty.
    pub fn set_exception(&self, exc: Error) {
        let waker = {
            let mut st = self.st.borrow_mut();
            st.exc = Some(exc);
            Self::take_waker(&mut st)
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// True when the buffer is empty and the peer sent EOF.
    pub fn at_eof(&self) -> bool {
        let st = self.st.borrow();
        st.eof && st.len() == 0
    }

    pub(super) fn maybe_resume(st: &mut ReaderState) -> Option<Transport> {
        if st.paused && st.len() <= st.limit {
            st.paused = false;
            return st.transport.clone();
        }
        None
    }

    /// Does what `ready(buffer, eof)` says; read `id` waits when it says so. Nothing is taken
    /// before `ready` decides, so a read dropped while waiting has taken nothing.
    pub(super) fn poll_take(
        &self,
        id: u64,
        cx: &mut Context<'_>,
        ready: &mut Readiness<'_>,
    ) -> Poll<Result<Vec<u8>>> {
        if let Some(e) = take_cancellation() {
            return Poll::Ready(Err(e.into()));
        }
        // This handle is in use again: the slice of an earlier `poll_fill_buf` is gone, and
        // its buffer need not be kept (the loan's extent stays, for `consume`).
        drop(self.lent.take());
        // A waker this poll displaces: declared before `st`, so dropped after its borrow.
        let stale: Option<Waker>;
        let mut st = self.st.borrow_mut();
        let eof = st.eof;
        let out = match ready(st.contiguous(), eof) {
            Step::Take(n) => Ok(st.take(n)),
            Step::Fail(e) => Err(e),
            Step::Discard(n, e) => {
                st.take(n);
                Err(e)
            }
            Step::Wait => {
                if let Some(e) = st.exc.clone() {
                    stale = st.unregister(id);
                    drop(st);
                    drop(stale);
                    return Poll::Ready(Err(e));
                }
                stale = match st.register(id, cx.waker()) {
                    Ok(old) => old,
                    Err(e) => return Poll::Ready(Err(e)),
                };
                // This read needs more than the buffer holds: a paused transport must read
                // again, even over the limit, or the wait never ends (`readexactly(n)` with `n`
                // over twice the limit, `read_to_end`). asyncio's `_wait_for_data` does the same.
                if st.paused {
                    st.paused = false;
                    let t = st.transport.clone();
                    drop(st);
                    drop(stale);
                    if let Some(t) = t {
                        t.resume_reading();
                    }
                }
                return Poll::Pending;
            }
        };
        stale = st.unregister(id);
        let resume = Self::maybe_resume(&mut st);
        drop(st);
        drop(stale);
        if let Some(t) = resume {
            t.resume_reading();
        }
        Poll::Ready(out)
    }

    /// Runs one `async` read: polls `ready` under a registration of its own.
    async fn take_when(&self, mut ready: impl FnMut(&[u8], bool) -> Step) -> Result<Vec<u8>> {
        let reg = Registration {
            st: &self.st,
            id: self.st.borrow_mut().new_id(),
        };
        poll_fn(|cx| self.poll_take(reg.id, cx, &mut ready)).await
    }

    /// Reads up to `n` bytes (at least one, unless at EOF: then an empty vector).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: no byte is taken unless returned.
    ///
    /// # Errors
    ///
    /// The connection's error; cancellation; an invalid-state error when another read of this
    /// reader is already waiting.
    pub async fn read(&self, n: usize) -> Result<Vec<u8>> {
        self.take_when(|buf, eof| {
            if n == 0 {
                Step::Take(0)
            } else if !buf.is_empty() {
                Step::Take(buf.len().min(n))
            } else if eof {
                Step::Take(0)
            } else {
                Step::Wait
            }
        })
        .await
    }

    /// Reads until EOF.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: the bytes stay buffered until EOF.
    ///
    /// # Errors
    ///
    /// As [`read`](StreamReader::read).
    pub async fn read_to_end(&self) -> Result<Vec<u8>> {
        // One take at EOF, not a loop of reads: a loop would hold what it read so far in a local
        // that a cancellation drops.
        self.take_when(|buf, eof| {
            if eof {
                Step::Take(buf.len())
            } else {
                Step::Wait
            }
        })
        .await
    }

    /// Reads exactly `n` bytes.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing is taken until all `n` bytes are there.
    ///
    /// # Errors
    ///
    /// [`Error::IncompleteRead`] with the partial bytes when EOF comes first; as in asyncio
    /// they move from the buffer into the error, so a later read returns EOF, not them again.
    /// Otherwise as [`read`](StreamReader::read).
    pub async fn readexactly(&self, n: usize) -> Result<Vec<u8>> {
        self.take_when(|buf, eof| {
            if buf.len() >= n {
                Step::Take(n)
            } else if eof {
                // As asyncio: the partial bytes leave the buffer inside the error.
                Step::Discard(
                    buf.len(),
                    Error::IncompleteRead {
                        partial: buf.to_vec(),
                        expected: n,
                    },
                )
            } else {
                Step::Wait
            }
        })
        .await
    }

    /// Reads up to and including `sep` (asyncio's `readuntil`).
    ///
    /// The part before the separator may be up to the [limit](StreamReader#limit) long (a
    /// chunk of exactly `limit` bytes plus the separator is accepted, as in asyncio).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing is taken until the separator is there.
    ///
    /// # Errors
    ///
    /// An invalid-argument error for an empty `sep`; [`Error::LimitOverrun`] when the separator
    /// is not within the limit (the data stays buffered); [`Error::IncompleteRead`] when EOF
    /// comes first (as in asyncio the buffered bytes move into the error); otherwise as [`read`](StreamReader::read).
    pub async fn readuntil(&self, sep: &[u8]) -> Result<Vec<u8>> {
        check_separator(sep)?;
        let limit = self.limit();
        self.take_when(|buf, eof| until_separator(buf, eof, sep, limit))
            .await
    }

    /// Reads a line ending in `\n`; at EOF, whatever is left (possibly nothing).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: nothing is taken until the whole line is there, so a `readline` cancelled
    /// after part of a line arrived leaves that part buffered, and the next read returns the
    /// complete line (no byte lost, none returned twice).
    ///
    /// # Errors
    ///
    /// [`Error::LimitOverrun`] when the line is longer than the limit. As in asyncio, the
    /// overlong line is then dropped from the buffer, so that the next `readline` can go on:
    /// up to and including its `\n` if that was buffered, else everything buffered (the rest of
    /// that line, arriving later, is read as a line of its own). Otherwise as
    /// [`read`](StreamReader::read).
    pub async fn readline(&self) -> Result<Vec<u8>> {
        let limit = self.limit();
        self.take_when(|buf, eof| match until_separator(buf, eof, b"\n", limit) {
            Step::Discard(_, Error::IncompleteRead { .. }) => Step::Take(buf.len()),
            Step::Fail(Error::LimitOverrun { consumed }) => {
                let n = if buf[consumed..].starts_with(b"\n") {
                    consumed + 1
                } else {
                    buf.len()
                };
                Step::Discard(n, Error::LimitOverrun { consumed })
            }
            step => step,
        })
        .await
    }

    /// vanilla's `recv_partition(sep)`: the bytes before `sep` (the separator is consumed and not
    /// returned).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`readuntil`](StreamReader::readuntil): nothing is taken until the
    /// separator is there.
    ///
    /// # Errors
    ///
    /// As [`readuntil`](StreamReader::readuntil) (an empty `sep` is an invalid-argument error).
    pub async fn recv_partition(&self, sep: &[u8]) -> Result<Vec<u8>> {
        let mut v = self.readuntil(sep).await?;
        v.truncate(v.len() - sep.len());
        Ok(v)
    }
}

fn check_separator(sep: &[u8]) -> Result<()> {
    if sep.is_empty() {
        return Err(Error::Futures(tulipa_futures::Error::InvalidArgument(
            "the separator should be at least one byte",
        )));
    }
    Ok(())
}

/// `readuntil`'s decision (asyncio's rules): the separator found with at most `limit` bytes
/// before it is taken with them; found further on, or not found in more than `limit` bytes that
/// could start it, is a [`Error::LimitOverrun`]; EOF first is an [`Error::IncompleteRead`] that
/// takes the buffered bytes with it.
fn until_separator(buf: &[u8], eof: bool, sep: &[u8], limit: usize) -> Step {
    let found = match sep {
        [b] => buf.iter().position(|x| x == b),
        _ => buf.windows(sep.len()).position(|w| w == sep),
    };
    if let Some(isep) = found {
        if isep > limit {
            return Step::Fail(Error::LimitOverrun { consumed: isep });
        }
        return Step::Take(isep + sep.len());
    }
    // The bytes that cannot start a separator (all but its length minus one at the end).
    if buf.len() >= sep.len() {
        let offset = buf.len() + 1 - sep.len();
        if offset > limit {
            return Step::Fail(Error::LimitOverrun { consumed: offset });
        }
    }
    if eof {
        return Step::Discard(
            buf.len(),
            Error::IncompleteRead {
                partial: buf.to_vec(),
                expected: buf.len() + sep.len(),
            },
        );
    }
    Step::Wait
}

impl fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.st.borrow();
        f.debug_struct("StreamReader")
            .field("buffered", &st.len())
            .field("eof", &st.eof)
            .field("limit", &st.limit)
            .field("paused", &st.paused)
            .field("waiting", &st.waiter.is_some())
            .field("loan_copies", &st.loan_copies)
            .finish()
    }
}
