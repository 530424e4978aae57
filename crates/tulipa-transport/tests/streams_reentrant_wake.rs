//! `StreamReader` woken by a waker that polls inline: a `Waker` may run arbitrary code in `wake`,
//! including polling the woken read at once (an executor that runs the task right away). The
//! reader must not hold its buffer's borrow while it wakes, or that poll fails with a
//! `BorrowMutError` panic. Covered: `feed_data`, `feed_eof` and `set_exception`, for an `async`
//! read and a `futures-io` read; and a waker whose drop uses the reader, dropped when a read
//! replaces or forgets it.

mod common;

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_lite::io::AsyncReadExt;
use tulipa_transport::streams::{StreamReader, DEFAULT_LIMIT};
use tulipa_transport::Error;

use common::run;

type Read = tulipa_transport::Result<Vec<u8>>;

thread_local! {
    /// What the [`Inline`] waker runs when woken: a poll of the woken read.
    static ON_WAKE: RefCell<Option<Box<dyn FnMut()>>> = const { RefCell::new(None) };
}

/// A waker that polls the woken future inside `wake` (through [`ON_WAKE`]; a `Waker` must be
/// `Send`, the reader is not, hence the thread-local).
struct Inline;

impl Wake for Inline {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let f = ON_WAKE.with(|slot| slot.borrow_mut().take());
        if let Some(mut f) = f {
            f();
            ON_WAKE.with(|slot| *slot.borrow_mut() = Some(f));
        }
    }
}

/// Polls `read` once with the [`Inline`] waker (it must wait), and arranges for the waker to
/// poll it again, inline, when woken. The slot receives its result.
fn wait_inline(read: impl Future<Output = Read> + 'static) -> Rc<RefCell<Option<Read>>> {
    let waker = Waker::from(Arc::new(Inline));
    let mut read: Pin<Box<dyn Future<Output = Read>>> = Box::pin(read);
    let out = Rc::new(RefCell::new(None));
    assert!(read
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    let slot = out.clone();
    let mut read = Some(read);
    ON_WAKE.with(|f| {
        *f.borrow_mut() = Some(Box::new(move || {
            let Some(fut) = read.as_mut() else { return };
            if let Poll::Ready(r) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
                *slot.borrow_mut() = Some(r);
                read = None;
            }
        }));
    });
    out
}

#[test]
fn feed_data_wakes_a_read_that_polls_inline() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let r2 = r.clone();
        let got = wait_inline(async move { r2.read(10).await });
        r.feed_data(b"abc");
        assert_eq!(got.borrow_mut().take().expect("read done in wake")?, b"abc");
        // The same through futures-io's AsyncRead.
        let mut r3 = r.clone();
        let got = wait_inline(async move {
            let mut buf = [0; 8];
            let n = AsyncReadExt::read(&mut r3, &mut buf)
                .await
                .map_err(|e| Error::Futures(tulipa_futures::Error::Other(Arc::new(e))))?;
            Ok(buf[..n].to_vec())
        });
        r.feed_data(b"defg");
        assert_eq!(
            got.borrow_mut().take().expect("read done in wake")?,
            b"defg"
        );
        Ok(())
    });
}

#[test]
fn feed_eof_wakes_a_read_that_polls_inline() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let r2 = r.clone();
        let got = wait_inline(async move { r2.read(10).await });
        r.feed_eof();
        assert_eq!(got.borrow_mut().take().expect("read done in wake")?, b"");
        assert!(r.at_eof());
        Ok(())
    });
}

#[test]
fn set_exception_wakes_a_read_that_polls_inline() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let r2 = r.clone();
        let got = wait_inline(async move { r2.readline().await });
        r.set_exception(Error::Closed);
        let res = got.borrow_mut().take().expect("read done in wake");
        assert!(matches!(res, Err(Error::Closed)), "{res:?}");
        Ok(())
    });
}

thread_local! {
    /// The reader that a [`TouchOnDrop`] waker reads from when it is dropped.
    static TOUCHED: RefCell<Option<StreamReader>> = const { RefCell::new(None) };
}

/// A waker whose drop uses the reader (as a foreign executor's waker may, when its last clone
/// drops a task that owns the reader's other handle).
struct TouchOnDrop;

impl Wake for TouchOnDrop {
    fn wake(self: Arc<Self>) {}
}

impl Drop for TouchOnDrop {
    fn drop(&mut self) {
        TOUCHED.with(|r| {
            if let Some(r) = r.borrow().as_ref() {
                let _ = r.at_eof();
            }
        });
    }
}

#[test]
fn a_displaced_waker_is_dropped_after_the_readers_borrow() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        TOUCHED.with(|t| *t.borrow_mut() = Some(r.clone()));
        let r2 = r.clone();
        let mut read: Pin<Box<dyn Future<Output = Read>>> =
            Box::pin(async move { r2.read(10).await });
        // Registered with a waker this test does not keep: the reader holds its last clone.
        let first = Waker::from(Arc::new(TouchOnDrop));
        assert!(read
            .as_mut()
            .poll(&mut Context::from_waker(&first))
            .is_pending());
        drop(first);
        // Polled again with another waker: the first one is replaced, and dropped.
        let second = Waker::from(Arc::new(Inline));
        assert!(read
            .as_mut()
            .poll(&mut Context::from_waker(&second))
            .is_pending());
        // The same when the read ends and forgets its waker, and when it is dropped waiting.
        let third = Waker::from(Arc::new(TouchOnDrop));
        assert!(read
            .as_mut()
            .poll(&mut Context::from_waker(&third))
            .is_pending());
        drop(third);
        r.feed_data(b"xyz");
        match read.as_mut().poll(&mut Context::from_waker(&second)) {
            Poll::Ready(got) => assert_eq!(got?, b"xyz"),
            Poll::Pending => panic!("data was fed"),
        }
        let r3 = r.clone();
        let mut waiting: Pin<Box<dyn Future<Output = Read>>> =
            Box::pin(async move { r3.read(10).await });
        let fourth = Waker::from(Arc::new(TouchOnDrop));
        assert!(waiting
            .as_mut()
            .poll(&mut Context::from_waker(&fourth))
            .is_pending());
        drop(fourth);
        drop(waiting);
        TOUCHED.with(|t| t.borrow_mut().take());
        Ok(())
    });
}
