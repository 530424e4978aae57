//! `StreamReader`'s `futures-io` side: [`AsyncRead`](futures_io::AsyncRead) and
//! [`AsyncBufRead`](futures_io::AsyncBufRead), whose `poll_fill_buf` lends the buffered bytes
//! (a `Loan`) and `consume` takes back bytes of that loan only.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::reader::{Step, StreamReader};
use super::to_io;

/// What `poll_fill_buf` lent and `consume` has not given back: where it starts in the stream
/// and how long it is.
#[derive(Clone, Copy)]
pub(super) struct Loan {
    pub(super) pos: u64,
    pub(super) len: usize,
}

/// Reads what is buffered, up to `out.len()` bytes; waits when nothing is.
///
/// A read left waiting (its future dropped) keeps this handle registered until the handle reads
/// again or is dropped; meanwhile a read through another clone fails with an invalid-state
/// error.
impl futures_io::AsyncRead for StreamReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = out.len();
        match this.poll_take(this.id, cx, &mut |buf, eof| {
            if n == 0 || !buf.is_empty() {
                Step::Take(buf.len().min(n))
            } else if eof {
                Step::Take(0)
            } else {
                Step::Wait
            }
        }) {
            Poll::Ready(Ok(v)) => {
                out[..v.len()].copy_from_slice(&v);
                Poll::Ready(Ok(v.len()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(to_io(e))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `poll_fill_buf` lends every buffered byte (an empty slice at EOF) without copying, and
/// waits when nothing is buffered. Until consumed, the bytes stay in the shared buffer (visible
/// to clones and to this handle's own methods); bytes arriving meanwhile are kept beside the
/// lent ones, not copied into them.
///
/// `consume(amt)` takes bytes of that loan, and only of it: at most as many as were lent (bytes
/// that arrived since are not taken), and none that left the buffer meanwhile, read through a
/// clone or this handle's own methods (they count as consumed already: the next bytes are the
/// first the loan's user did not see). Several `consume` calls may share one loan; without a
/// loan (no `poll_fill_buf` before), `consume` takes nothing.
impl futures_io::AsyncBufRead for StreamReader {
    fn poll_fill_buf(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<&[u8]>> {
        let this = self.get_mut();
        let ready = this.poll_take(this.id, cx, &mut |buf, eof| {
            if !buf.is_empty() || eof {
                Step::Take(0)
            } else {
                Step::Wait
            }
        });
        match ready {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(to_io(e))),
            Poll::Pending => return Poll::Pending,
        }
        // `poll_take` made the buffer contiguous: `buf` holds every buffered byte.
        let (buf, pos) = {
            let st = this.st.borrow();
            (st.buf.clone(), st.pos)
        };
        this.loan.set(Some(Loan {
            pos,
            len: buf.len(),
        }));
        let lent = this.lent.get_mut().insert(buf);
        Poll::Ready(Ok(&lent[..]))
    }

    fn consume(self: Pin<&mut Self>, amt: usize) {
        let this = self.get_mut();
        // Give the buffer back first, so that taking the bytes does not copy it.
        drop(this.lent.take());
        let Some(loan) = this.loan.get() else {
            return;
        };
        let amt = amt.min(loan.len);
        let end = loan.pos + amt as u64;
        this.loan.set(Some(Loan {
            pos: end,
            len: loan.len - amt,
        }));
        let mut st = this.st.borrow_mut();
        // The loan's bytes before `st.pos` are gone already; those after it are still buffered
        // (bytes leave from the front only), so this takes at most `amt`.
        let n = end.saturating_sub(st.pos).min(amt as u64) as usize;
        if n > 0 {
            st.take(n);
        }
        let resume = Self::maybe_resume(&mut st);
        drop(st);
        if let Some(t) = resume {
            t.resume_reading();
        }
    }
}
