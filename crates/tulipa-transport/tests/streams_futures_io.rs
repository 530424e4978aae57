//! Streams through the `futures-io` traits, used as a user of `futures-lite` uses them:
//! `AsyncBufRead` (`read_line`, `read_until`, `lines`, `fill_buf` / `consume`) on a
//! `StreamReader`, and `AsyncWrite`'s `flush` and `close` on a `StreamWriter` over a real
//! connection with several MiB in flight.

mod common;
mod streams_support;

use std::io::ErrorKind;

use futures_lite::io::{AsyncBufReadExt, AsyncWriteExt};
use futures_lite::StreamExt;
use tulipa_futures::{spawn, Task};
use tulipa_transport::streams::{StreamReader, DEFAULT_LIMIT};

use common::{pattern, pattern_at, run, settle, small_socket_buffers, until};
use streams_support::{buffered, stream_pair};

// ---------------------------------------------------------------------------------------------
// AsyncBufRead

#[test]
fn read_line_and_read_until_through_async_buf_read() {
    run(async {
        let mut r = StreamReader::new(DEFAULT_LIMIT);
        let feeder = r.clone();
        // The lines arrive in pieces, from another task, while read_line waits.
        let feeding: Task<()> = spawn(async move {
            for piece in [&b"first li"[..], b"ne\nsecond", b";third;", b"\nlast"] {
                feeder.feed_data(piece);
                settle(1).await?;
            }
            feeder.feed_eof();
            Ok(())
        })?;
        let mut line = String::new();
        assert_eq!(r.read_line(&mut line).await?, 11);
        assert_eq!(line, "first line\n");
        let mut part = Vec::new();
        r.read_until(b';', &mut part).await?;
        assert_eq!(part, b"second;");
        part.clear();
        r.read_until(b';', &mut part).await?;
        assert_eq!(part, b"third;");
        line.clear();
        r.read_line(&mut line).await?;
        assert_eq!(line, "\n");
        // At EOF: the rest without a newline, then nothing.
        line.clear();
        r.read_line(&mut line).await?;
        assert_eq!(line, "last");
        line.clear();
        assert_eq!(r.read_line(&mut line).await?, 0);
        assert!(r.at_eof());
        feeding.await?;
        Ok(())
    });
}

#[test]
fn fill_buf_lends_without_taking_and_consume_takes() {
    run(async {
        let mut r = StreamReader::new(DEFAULT_LIMIT);
        let other = r.clone();
        r.feed_data(b"hello\nworld");
        assert_eq!(r.fill_buf().await?, b"hello\nworld");
        // Lent, not taken: the buffer still holds it, for this handle and its clones.
        assert_eq!(buffered(&other), 11);
        assert_eq!(r.fill_buf().await?, b"hello\nworld");
        r.consume(3);
        assert_eq!(buffered(&other), 8);
        // Data that arrives while a slice is lent does not disturb the loan's bytes.
        assert_eq!(r.fill_buf().await?, b"lo\nworld");
        r.feed_data(b"!\n");
        r.consume(3);
        assert_eq!(other.readline().await?, b"world!\n");
        // Consuming more than is buffered takes what there is.
        r.feed_data(b"xy");
        assert_eq!(r.fill_buf().await?, b"xy");
        r.consume(10);
        assert_eq!(buffered(&r), 0);
        // An empty slice only at EOF.
        r.feed_eof();
        assert_eq!(r.fill_buf().await?, b"");
        Ok(())
    });
}

#[test]
fn lines_over_a_connection_through_a_small_limit_keep_flowing() {
    run(async {
        // Far more than twice the limit: the reader pauses its transport, and consume (not
        // only the reader's own methods) must resume it, or the lines stop coming.
        const LIMIT: usize = 1024;
        const LINES: usize = 2000;
        let (server, cr, cw, _sr, sw) = stream_pair(LIMIT, DEFAULT_LIMIT).await?;
        let mut text = String::new();
        for i in 0..LINES {
            text.push_str(&format!("line number {i}\n"));
        }
        sw.write(text.as_bytes())?;
        sw.write_eof()?;
        until(|| !cw.transport().is_reading()).await?;
        let mut lines = cr.lines();
        let mut n = 0;
        while let Some(line) = lines.next().await {
            assert_eq!(line?, format!("line number {n}"));
            n += 1;
        }
        assert_eq!(n, LINES);
        cw.close();
        server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// AsyncWrite: flush and close

#[test]
fn flush_returns_once_every_byte_is_in_the_kernel() {
    run(async {
        const N: usize = 8 << 20;
        let (server, _cr, mut cw, sr, sw) = stream_pair(DEFAULT_LIMIT, 16 * 1024).await?;
        small_socket_buffers(cw.transport());
        small_socket_buffers(sw.transport());
        // drain would return with up to 512 KiB still buffered; flush must not.
        cw.transport()
            .set_write_buffer_limits(Some(1 << 20), Some(512 << 10))?;
        // The peer reads slowly but surely: a chunk at a time, as the loop delivers them.
        let reading: Task<Vec<u8>> = spawn(async move {
            let mut got = Vec::with_capacity(N);
            while got.len() < N {
                got.extend_from_slice(&sr.read(16 * 1024).await?);
            }
            Ok(got)
        })?;
        cw.write_all(&pattern(N)).await?;
        assert!(cw.transport().get_write_buffer_size() > 0, "{cw:?}");
        cw.flush().await?;
        assert_eq!(
            cw.transport().get_write_buffer_size(),
            0,
            "flush returned with bytes still buffered"
        );
        assert!(reading.await? == pattern(N));
        AsyncWriteExt::close(&mut cw).await?;
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn close_sends_everything_then_returns_once_the_connection_is_closed() {
    run(async {
        const N: usize = 6 << 20;
        let (server, _cr, mut cw, sr, sw) = stream_pair(DEFAULT_LIMIT, 16 * 1024).await?;
        small_socket_buffers(cw.transport());
        small_socket_buffers(sw.transport());
        let reading: Task<Vec<u8>> = spawn(async move { Ok(sr.read_to_end().await?) })?;
        // Written in pieces, without a flush: close must send them all first.
        for start in (0..N).step_by(1 << 20) {
            cw.write_all(&pattern_at(start, 1 << 20)).await?;
        }
        assert!(cw.transport().get_write_buffer_size() > 0);
        AsyncWriteExt::close(&mut cw).await?;
        // Closed for good, not merely closing: the socket is gone, the buffer went out.
        assert!(cw.is_closing());
        assert!(
            cw.transport().with_socket(|_| ()).is_none(),
            "close returned before the connection was closed: {cw:?}"
        );
        assert_eq!(cw.transport().get_write_buffer_size(), 0);
        let got = reading.await?;
        assert_eq!(got.len(), N);
        assert!(got == pattern(N));
        // Flush and close again: nothing left to do.
        cw.flush().await?;
        AsyncWriteExt::close(&mut cw).await?;
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn flush_and_close_report_a_reset() {
    run(async {
        let (server, _cr, mut cw, _sr, sw) = stream_pair(DEFAULT_LIMIT, 1024).await?;
        small_socket_buffers(cw.transport());
        small_socket_buffers(sw.transport());
        cw.write_all(&pattern(4 << 20)).await?;
        // The server closes with bytes unread in its socket: the kernel answers RST, and the
        // bytes still buffered on our side can never be delivered.
        until(|| !sw.transport().is_reading()).await?;
        until(|| common::peek_len(sw.transport()) > 0).await?;
        sw.close();
        let reset = [ErrorKind::ConnectionReset, ErrorKind::BrokenPipe];
        let err = cw.flush().await.unwrap_err();
        assert!(reset.contains(&err.kind()), "{err:?}");
        let err = AsyncWriteExt::close(&mut cw).await.unwrap_err();
        assert!(reset.contains(&err.kind()), "{err:?}");
        server.close();
        Ok(())
    });
}

#[test]
fn flush_and_close_report_bytes_an_abort_dropped() {
    run(async {
        let (server, _cr, mut cw, _sr, sw) = stream_pair(DEFAULT_LIMIT, 1024).await?;
        small_socket_buffers(cw.transport());
        small_socket_buffers(sw.transport());
        // The server reads 2 KiB and pauses: most of this stays in our write buffer.
        cw.write(&pattern(4 << 20))?;
        assert!(cw.transport().get_write_buffer_size() > 0, "{cw:?}");
        // A flush already waiting when the abort comes, and flushes and a close after it.
        let mut waiting_writer = cw.clone();
        let waiting: Task<Result<(), ErrorKind>> =
            spawn(async move { Ok(waiting_writer.flush().await.map_err(|e| e.kind())) })?;
        settle(2).await?;
        assert!(!waiting.done(), "flush returned with bytes buffered");
        cw.transport().abort();
        assert_eq!(waiting.await?, Err(ErrorKind::ConnectionAborted));
        let err = cw.flush().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionAborted, "{err:?}");
        let err = AsyncWriteExt::close(&mut cw).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ConnectionAborted, "{err:?}");
        // wait_closed reports the end, not the error (its documented contract).
        cw.wait_closed().await?;
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn flush_after_an_abort_with_nothing_buffered_is_ok() {
    run(async {
        let (server, _cr, mut cw, sr, sw) = stream_pair(DEFAULT_LIMIT, DEFAULT_LIMIT).await?;
        cw.write(b"hello")?;
        cw.flush().await?;
        assert_eq!(sr.readexactly(5).await?, b"hello");
        // Nothing was dropped: an abort of an empty buffer loses no byte.
        cw.transport().abort();
        cw.flush().await?;
        AsyncWriteExt::close(&mut cw).await?;
        sw.close();
        server.close();
        Ok(())
    });
}
