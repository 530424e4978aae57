//! `StreamReader` against asyncio's `streams.py`: `readline` and `readuntil` at and over the
//! limit (`test_readline_limit`, `test_readuntil_limit_found_sep`), the empty separator
//! (`test_readuntil_separator`), one waiting read at a time (`_wait_for_data`'s
//! `RuntimeError`), cancellation of a read blocked on part of a line, and the writer's waker
//! list under repeated polls.

mod common;
mod streams_support;

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use tulipa_futures::{spawn, Task};
use tulipa_transport::streams::{StreamReader, DEFAULT_LIMIT};
use tulipa_transport::Error;

use common::{pattern, pattern_at, run, settle, small_socket_buffers, until};
use streams_support::{buffered, stream_pair, waiting};

/// A waker that counts its wakes.
#[derive(Default)]
struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<Counter>, Waker) {
    let c = Arc::new(Counter::default());
    (c.clone(), Waker::from(c))
}

fn is_limit_overrun(r: &tulipa_transport::Result<Vec<u8>>, want: usize) -> bool {
    matches!(r, Err(Error::LimitOverrun { consumed }) if *consumed == want)
}

// ---------------------------------------------------------------------------------------------
// readline / readuntil and the limit

#[test]
fn readline_over_the_limit_drops_the_line_through_its_newline_then_goes_on() {
    run(async {
        let r = StreamReader::new(8);
        r.feed_data(b"a line that is far too long\nshort\n");
        let err = r.readline().await;
        assert!(is_limit_overrun(&err, 27), "{err:?}");
        // The overlong line is gone, newline included; the next one is intact.
        assert_eq!(buffered(&r), 6);
        assert_eq!(r.readline().await?, b"short\n");
        Ok(())
    });
}

#[test]
fn readline_over_the_limit_without_a_newline_clears_the_buffer() {
    run(async {
        let r = StreamReader::new(8);
        r.feed_data(b"0123456789abcdef");
        let err = r.readline().await;
        assert!(is_limit_overrun(&err, 16), "{err:?}");
        assert_eq!(buffered(&r), 0);
        // As in asyncio, the rest of that line, when it comes, reads as a line of its own.
        r.feed_data(b"ghi\nnext\n");
        assert_eq!(r.readline().await?, b"ghi\n");
        assert_eq!(r.readline().await?, b"next\n");
        Ok(())
    });
}

#[test]
fn readline_that_overruns_while_waiting_drops_what_it_had() {
    run(async {
        let r = StreamReader::new(8);
        let r2 = r.clone();
        let reading: Task<Vec<u8>> = spawn(async move { Ok(r2.readline().await?) })?;
        r.feed_data(b"0123");
        settle(2).await?;
        assert!(!reading.done());
        r.feed_data(b"456789");
        let err = Error::from(reading.await.unwrap_err());
        assert!(
            matches!(err, Error::LimitOverrun { consumed: 10 }),
            "{err:?}"
        );
        assert_eq!(buffered(&r), 0);
        Ok(())
    });
}

#[test]
fn exactly_limit_bytes_before_the_separator_are_accepted() {
    run(async {
        let r = StreamReader::new(8);
        r.feed_data(b"12345678\n");
        assert_eq!(r.readline().await?, b"12345678\n");
        r.feed_data(b"abcdefgh||");
        assert_eq!(r.readuntil(b"||").await?, b"abcdefgh||");
        // One more is over.
        r.feed_data(b"123456789\n");
        let err = r.readuntil(b"\n").await;
        assert!(is_limit_overrun(&err, 9), "{err:?}");
        // readuntil keeps the data after an overrun.
        assert_eq!(buffered(&r), 10);
        Ok(())
    });
}

#[test]
fn a_separator_that_may_still_complete_at_the_limit_is_waited_for() {
    run(async {
        // Nine bytes with a limit of 8 and a two-byte separator: the last byte may start the
        // separator, so the read waits (asyncio's offset rule) instead of failing.
        let r = StreamReader::new(8);
        let r2 = r.clone();
        let reading: Task<Vec<u8>> = spawn(async move { Ok(r2.readuntil(b"||").await?) })?;
        r.feed_data(b"12345678|");
        settle(2).await?;
        assert!(!reading.done(), "waits for the rest of the separator");
        r.feed_data(b"|tail");
        assert_eq!(reading.await?, b"12345678||");
        // Ten bytes with no separator can no longer fit one within the limit.
        r.feed_data(b"xxxxxxxx");
        let err = r.readuntil(b"||").await;
        assert!(is_limit_overrun(&err, 11), "{err:?}");
        Ok(())
    });
}

#[test]
fn an_empty_separator_is_an_invalid_argument() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        r.feed_data(b"data");
        for res in [r.readuntil(b"").await, r.recv_partition(b"").await] {
            match res {
                Err(Error::Futures(e)) => {
                    assert!(e.to_string().contains("separator"), "{e}");
                }
                other => panic!("expected an invalid-argument error, got {other:?}"),
            }
        }
        assert_eq!(buffered(&r), 4, "nothing taken");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// One waiting read at a time

#[test]
fn a_second_waiting_read_through_a_clone_fails_clearly() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let r2 = r.clone();
        let first: Task<Vec<u8>> = spawn(async move { Ok(r2.readline().await?) })?;
        until(|| waiting(&r)).await?;
        // Bounded, so that a read that takes the first one's place fails here instead of
        // hanging the test.
        let second =
            tulipa_futures::timeout(Duration::from_secs(10), async { Ok(r.read(10).await) }).await;
        match second {
            Ok(Err(Error::Futures(e))) => {
                assert!(e.is_invalid_state(), "{e}");
                assert!(e.to_string().contains("already waiting"), "{e}");
            }
            other => panic!("expected an invalid-state error, got {other:?}"),
        }
        // The first read is still the one waiting, and gets the line.
        assert!(waiting(&r));
        r.feed_data(b"line\n");
        assert_eq!(first.await?, b"line\n");
        // A read that need not wait is fine alongside; and once nobody waits, anyone may.
        r.feed_data(b"more");
        assert_eq!(r.read(10).await?, b"more");
        assert!(!waiting(&r));
        Ok(())
    });
}

#[test]
fn a_cancelled_waiting_read_frees_the_slot() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let r2 = r.clone();
        let first: Task<Vec<u8>> = spawn(async move { Ok(r2.readexactly(4).await?) })?;
        until(|| waiting(&r)).await?;
        first.cancel(None);
        assert!(first.await.is_err());
        assert!(!waiting(&r), "the cancelled read unregistered");
        let r3 = r.clone();
        let second: Task<Vec<u8>> = spawn(async move { Ok(r3.readexactly(4).await?) })?;
        until(|| waiting(&r)).await?;
        r.feed_data(b"abcd");
        assert_eq!(second.await?, b"abcd");
        Ok(())
    });
}

#[test]
fn the_same_read_polled_again_is_not_a_second_reader() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut line = pin!(r.readline());
        for _ in 0..5 {
            assert!(line.as_mut().poll(&mut cx).is_pending());
        }
        r.feed_data(b"ok\n");
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake");
        match line.as_mut().poll(&mut cx) {
            Poll::Ready(Ok(l)) => assert_eq!(l, b"ok\n"),
            other => panic!("{other:?}"),
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Cancellation while part of a line is buffered

#[test]
fn cancelling_recv_partition_after_part_of_a_line_loses_and_repeats_nothing() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let r2 = r.clone();
        let reading: Task<Vec<u8>> = spawn(async move { Ok(r2.recv_partition(b"\r\n").await?) })?;
        r.feed_data(b"GET / HTTP/1.1\r");
        until(|| waiting(&r)).await?;
        reading.cancel(None);
        assert!(reading.await.is_err());
        assert_eq!(buffered(&r), 15, "the partial line stays buffered");
        r.feed_data(b"\nHost: x\r\n");
        assert_eq!(r.recv_partition(b"\r\n").await?, b"GET / HTTP/1.1");
        assert_eq!(r.readline().await?, b"Host: x\r\n");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// The writer's waiters: one per task, however often it polls

#[test]
fn drain_and_wait_closed_polled_many_times_wake_their_task_once() {
    run(async {
        let (server, _cr, cw, sr, sw) = stream_pair(DEFAULT_LIMIT, 1024).await?;
        small_socket_buffers(cw.transport());
        small_socket_buffers(sw.transport());
        let (_, high) = cw.transport().get_write_buffer_limits();
        let mut sent = 0;
        while cw.transport().get_write_buffer_size() <= 4 * high {
            cw.write(&pattern_at(sent, 64 * 1024))?;
            sent += 64 * 1024;
        }
        settle(2).await?; // pause_writing reaches the writer
        let (drains, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut draining = pin!(cw.drain());
        for _ in 0..100 {
            assert!(draining.as_mut().poll(&mut cx).is_pending());
        }
        assert!(sr.readexactly(sent).await? == pattern(sent));
        cw.drain().await?;
        assert_eq!(drains.0.load(Ordering::SeqCst), 1, "one wake for one task");

        let (closes, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut closing = pin!(cw.wait_closed());
        for _ in 0..100 {
            assert!(closing.as_mut().poll(&mut cx).is_pending());
        }
        cw.close();
        cw.wait_closed().await?;
        assert_eq!(closes.0.load(Ordering::SeqCst), 1, "one wake for one task");
        sw.close();
        server.close();
        Ok(())
    });
}
