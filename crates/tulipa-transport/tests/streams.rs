//! Streams: `StreamReader`, `StreamWriter`, `open_connection`, `start_server`, `futures-io`.
//!
//! Ports CPython's `test_asyncio/test_streams.py`: the reader's methods on a fed reader
//! (`test_read*`, `test_readline*`, `test_readuntil*`, `test_readexactly*`, `test_at_eof`,
//! `test_exception`), and over real connections the flow control both ways
//! (`test_readline_limit_with_existing_data`-style pausing, `drain`), cancellation while
//! blocked (`test_read_cancellation`-style: no byte is lost), and large transfers.

mod common;
mod streams_support;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;

use common::{pattern, run, settle, until};
use futures_io::{AsyncRead, AsyncWrite};
use streams_support::{buffered, stream_pair};
use tulipa_futures::sync::Event;
use tulipa_futures::{spawn, Task};
use tulipa_transport::streams::{open_connection, start_server, StreamReader, DEFAULT_LIMIT};
use tulipa_transport::{Error, ServerOptions};

// ---------------------------------------------------------------------------------------------
// A reader fed by hand (no socket), as most of test_streams.py does

#[test]
fn read_n_returns_what_is_there_up_to_n_then_empty_at_eof() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        r.feed_data(b"hello world");
        assert_eq!(r.read(0).await?, b"");
        assert_eq!(r.read(5).await?, b"hello");
        assert_eq!(r.read(100).await?, b" world");
        assert!(!r.at_eof());
        r.feed_eof();
        assert!(r.at_eof());
        assert_eq!(r.read(100).await?, b"");
        Ok(())
    });
}

#[test]
fn read_waits_for_data_fed_later() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let r2 = r.clone();
        let reading: Task<Vec<u8>> = spawn(async move { Ok(r2.read(30).await?) })?;
        settle(2).await?;
        assert!(!reading.done());
        r.feed_data(b"chunk1\n");
        r.feed_data(b"chunk2");
        assert_eq!(reading.await?, b"chunk1\nchunk2");
        Ok(())
    });
}

#[test]
fn read_to_end_reads_until_eof() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        let r2 = r.clone();
        let reading: Task<Vec<u8>> = spawn(async move { Ok(r2.read_to_end().await?) })?;
        r.feed_data(b"one ");
        settle(2).await?;
        r.feed_data(b"two");
        settle(2).await?;
        assert!(!reading.done());
        r.feed_eof();
        assert_eq!(reading.await?, b"one two");
        assert!(r.at_eof());
        Ok(())
    });
}

#[test]
fn readline_returns_lines_then_the_rest_at_eof() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        r.feed_data(b"line1\nline2\nrest");
        r.feed_eof();
        assert_eq!(r.readline().await?, b"line1\n");
        assert_eq!(r.readline().await?, b"line2\n");
        assert_eq!(r.readline().await?, b"rest");
        assert_eq!(r.readline().await?, b"");
        assert!(r.at_eof());
        Ok(())
    });
}

#[test]
fn readline_over_the_limit_is_limit_overrun() {
    run(async {
        let r = StreamReader::new(8);
        r.feed_data(b"a line that is far too long\nshort\n");
        let err = r.readline().await.unwrap_err();
        assert!(matches!(err, Error::LimitOverrun { .. }), "{err:?}");
        // The overlong line was dropped (as asyncio does): the next readline goes on.
        assert_eq!(r.readline().await?, b"short\n");
        assert_eq!(buffered(&r), 0);
        Ok(())
    });
}

#[test]
fn readexactly_waits_for_n_and_reports_incomplete_reads_with_the_partial_bytes() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        assert_eq!(r.readexactly(0).await?, b"");
        r.feed_data(b"0123456789abc");
        assert_eq!(r.readexactly(10).await?, b"0123456789");
        r.feed_data(b"de");
        r.feed_eof();
        let err = r.readexactly(10).await.unwrap_err();
        match err {
            Error::IncompleteRead { partial, expected } => {
                assert_eq!(partial, b"abcde");
                assert_eq!(expected, 10);
            }
            other => panic!("expected IncompleteRead, got {other:?}"),
        }
        // As asyncio: the partial bytes went with the error, none is returned twice.
        assert_eq!(buffered(&r), 0);
        assert_eq!(r.read(100).await?, b"");
        Ok(())
    });
}

#[test]
fn readuntil_finds_multibyte_separators_and_overrun_keeps_the_data() {
    run(async {
        let r = StreamReader::new(16);
        r.feed_data(b"ab||cd||");
        assert_eq!(r.readuntil(b"||").await?, b"ab||");
        assert_eq!(r.recv_partition(b"||").await?, b"cd");
        // No separator within the limit: LimitOverrun, and nothing is taken.
        let long = pattern(40);
        r.feed_data(&long);
        let err = r.readuntil(b"!").await.unwrap_err();
        assert!(
            matches!(err, Error::LimitOverrun { consumed } if consumed == 40),
            "{err:?}"
        );
        assert_eq!(buffered(&r), 40);
        assert_eq!(r.readexactly(40).await?, long);
        // EOF before the separator: IncompleteRead with what there was.
        r.feed_data(b"tail");
        r.feed_eof();
        match r.readuntil(b"\n").await.unwrap_err() {
            Error::IncompleteRead { partial, .. } => assert_eq!(partial, b"tail"),
            other => panic!("expected IncompleteRead, got {other:?}"),
        }
        assert_eq!(buffered(&r), 0, "the partial bytes went with the error");
        assert!(r.at_eof());
        Ok(())
    });
}

#[test]
fn an_exception_is_raised_once_the_buffer_is_empty() {
    run(async {
        let r = StreamReader::new(DEFAULT_LIMIT);
        r.feed_data(b"before");
        r.set_exception(Error::Closed);
        assert_eq!(r.read(100).await?, b"before");
        assert!(matches!(r.read(100).await, Err(Error::Closed)));
        assert!(matches!(r.readline().await, Err(Error::Closed)));
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Over real connections

#[test]
fn echo_through_open_connection_and_start_server() {
    run(async {
        let server = start_server(
            |reader, writer| async move {
                loop {
                    let line = reader.readline().await?;
                    if line.is_empty() {
                        break;
                    }
                    writer.write(&line)?;
                    writer.drain().await?;
                }
                writer.close();
                writer.wait_closed().await
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (reader, writer) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
        assert_eq!(
            writer.transport().peer_addr(),
            server.local_addr(),
            "{writer:?}"
        );
        for line in [&b"first\n"[..], b"second\n", b"\n"] {
            writer.write(line)?;
            writer.drain().await?;
            assert_eq!(reader.readline().await?, line);
        }
        writer.writelines(&[b"a", b"b", b"c\n"])?;
        assert_eq!(reader.readline().await?, b"abc\n");
        assert!(writer.can_write_eof());
        writer.write_eof()?;
        assert_eq!(reader.read_to_end().await?, b"");
        assert!(reader.at_eof());
        // EOF both ways does not close a stream transport by itself: the writer does.
        assert!(!writer.is_closing());
        writer.close();
        writer.wait_closed().await?;
        assert!(writer.is_closing());
        server.close();
        server.wait_closed().await?;
        Ok(())
    });
}

#[test]
fn the_reader_limit_pauses_the_transport_and_consumption_resumes_it() {
    run(async {
        const LIMIT: usize = 1024;
        let (server, cr, cw, _sr, sw) = stream_pair(LIMIT, DEFAULT_LIMIT).await?;
        sw.write(&pattern(16 * LIMIT))?;
        // Over twice the limit buffered: the client's transport stops reading.
        until(|| !cw.transport().is_reading()).await?;
        assert!(buffered(&cr) > 2 * LIMIT);
        let first = cr.readexactly(buffered(&cr) - LIMIT).await?;
        // Down to the limit: reading again.
        assert!(cw.transport().is_reading());
        let rest = cr.readexactly(16 * LIMIT - first.len()).await?;
        let mut all = first;
        all.extend_from_slice(&rest);
        assert_eq!(all, pattern(16 * LIMIT));
        cw.close();
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn readexactly_and_read_to_end_over_twice_the_limit_do_not_stall() {
    run(async {
        // The transport pauses at twice the limit; a read that needs more than that must make
        // it read again, or it would wait forever.
        const LIMIT: usize = 1024;
        let (server, cr, cw, _sr, sw) = stream_pair(LIMIT, DEFAULT_LIMIT).await?;
        let data = pattern(64 * LIMIT);
        // In pieces, so that the client pauses after the first ones with the rest still to come.
        for piece in data.chunks(4 * LIMIT) {
            sw.write(piece)?;
            settle(1).await?;
        }
        assert!(!cw.transport().is_reading(), "paused over twice the limit");
        assert_eq!(cr.readexactly(data.len()).await?, data);
        for piece in data.chunks(4 * LIMIT) {
            sw.write(piece)?;
            settle(1).await?;
        }
        sw.write_eof()?;
        assert_eq!(cr.read_to_end().await?, data);
        cw.close();
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn drain_waits_while_the_peer_does_not_read() {
    run(async {
        // The server-side reader pauses its transport at 2 KiB: then the kernel buffers fill
        // and the client's transport buffers over its high watermark.
        let (server, _cr, cw, sr, sw) = stream_pair(DEFAULT_LIMIT, 1024).await?;
        common::small_socket_buffers(cw.transport());
        common::small_socket_buffers(sw.transport());
        let (_, high) = cw.transport().get_write_buffer_limits();
        let mut sent = 0;
        while cw.transport().get_write_buffer_size() <= 4 * high {
            cw.write(&common::pattern_at(sent, 64 * 1024))?;
            sent += 64 * 1024;
        }
        let w2 = cw.clone();
        let draining: Task<()> = spawn(async move { Ok(w2.drain().await?) })?;
        settle(5).await?;
        assert!(
            !draining.done(),
            "drain waits while over the high watermark"
        );

        let got = sr.readexactly(sent).await?;
        assert_eq!(got, pattern(sent));
        draining.await?;
        let (low, _) = cw.transport().get_write_buffer_limits();
        assert!(cw.transport().get_write_buffer_size() <= low);
        cw.drain().await?; // at once now
        cw.close();
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn drain_after_the_connection_is_lost_reports_it() {
    run(async {
        let (server, cr, cw, _sr, sw) = stream_pair(DEFAULT_LIMIT, DEFAULT_LIMIT).await?;
        sw.close();
        assert_eq!(cr.read_to_end().await?, b"");
        cw.close();
        cw.wait_closed().await?;
        let r = cw.drain().await;
        assert!(r.is_err(), "{r:?}");
        assert!(matches!(cw.write(b"x"), Err(Error::Closed)));
        server.close();
        Ok(())
    });
}

#[test]
fn a_reset_reaches_the_reader_as_an_io_error() {
    run(async {
        let (server, cr, cw, _sr, sw) = stream_pair(DEFAULT_LIMIT, 1024).await?;
        // The server-side reader pauses its transport at 2 KiB; more bytes then wait in the
        // server's socket, unread, when its transport closes: the kernel answers RST.
        cw.write(&pattern(8 * 1024))?;
        until(|| !sw.transport().is_reading()).await?;
        cw.write(&pattern(8 * 1024))?;
        until(|| common::peek_len(sw.transport()) > 0).await?;
        sw.close();
        let err = cr.read(10).await.unwrap_err();
        assert_eq!(
            err.io_kind(),
            Some(io::ErrorKind::ConnectionReset),
            "{err:?}"
        );
        let _ = cw.drain().await.unwrap_err();
        server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Cancellation: a task blocked in a read or in drain is cancelled; no byte is lost

#[test]
fn cancelling_readline_loses_no_byte() {
    run(async {
        let (server, cr, cw, _sr, sw) = stream_pair(DEFAULT_LIMIT, DEFAULT_LIMIT).await?;
        let r2 = cr.clone();
        let reading: Task<Vec<u8>> = spawn(async move { Ok(r2.readline().await?) })?;
        sw.write(b"partial")?;
        until(|| buffered(&cr) == 7).await?;
        settle(2).await?;
        assert!(!reading.done(), "no newline yet");
        assert!(reading.cancel(None));
        let r = reading.clone().await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert!(reading.cancelled());
        sw.write(b" line\n")?;
        assert_eq!(cr.readline().await?, b"partial line\n");
        cw.close();
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn cancelling_readexactly_loses_no_byte() {
    run(async {
        let (server, cr, cw, _sr, sw) = stream_pair(DEFAULT_LIMIT, DEFAULT_LIMIT).await?;
        let r2 = cr.clone();
        let reading: Task<Vec<u8>> = spawn(async move { Ok(r2.readexactly(10).await?) })?;
        sw.write(b"12345")?;
        until(|| buffered(&cr) == 5).await?;
        settle(2).await?;
        assert!(!reading.done());
        reading.cancel(Some("stop"));
        let r = reading.await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert_eq!(cr.readexactly(5).await?, b"12345");
        // A cancelled read_to_end keeps its bytes buffered too.
        let r3 = cr.clone();
        let to_end: Task<Vec<u8>> = spawn(async move { Ok(r3.read_to_end().await?) })?;
        sw.write(b"more")?;
        until(|| buffered(&cr) == 4).await?;
        settle(2).await?;
        to_end.cancel(None);
        assert!(to_end.await.is_err());
        sw.write_eof()?;
        let rest = cr.read_to_end().await?;
        assert_eq!(rest, b"more", "the cancelled read_to_end lost bytes");
        cw.close();
        sw.close();
        server.close();
        Ok(())
    });
}

#[test]
fn cancelling_drain_loses_no_byte() {
    run(async {
        let (server, _cr, cw, sr, sw) = stream_pair(DEFAULT_LIMIT, 1024).await?;
        common::small_socket_buffers(cw.transport());
        common::small_socket_buffers(sw.transport());
        let (_, high) = cw.transport().get_write_buffer_limits();
        let mut sent = 0;
        while cw.transport().get_write_buffer_size() <= 4 * high {
            cw.write(&common::pattern_at(sent, 64 * 1024))?;
            sent += 64 * 1024;
        }
        let w2 = cw.clone();
        let draining: Task<()> = spawn(async move { Ok(w2.drain().await?) })?;
        settle(3).await?;
        assert!(!draining.done());
        draining.cancel(None);
        let r = draining.await;
        assert!(matches!(&r, Err(e) if e.is_cancelled()), "{r:?}");
        assert!(cw.transport().get_write_buffer_size() > 0, "still buffered");
        // Everything written still arrives.
        cw.write_eof()?;
        let got = sr.read_to_end().await?;
        assert_eq!(got.len(), sent);
        assert!(got == pattern(sent));
        cw.drain().await?;
        sw.close();
        server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// futures-io

/// `AsyncReadExt::read_exact`, written with `poll_fn`.
async fn read_exact(r: &mut (impl AsyncRead + Unpin), buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = poll_fn(|cx| Pin::new(&mut *r).poll_read(cx, &mut buf[done..])).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        done += n;
    }
    Ok(())
}

/// `AsyncWriteExt::write_all` then `flush`, written with `poll_fn`.
async fn write_all(w: &mut (impl AsyncWrite + Unpin), mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *w).poll_write(cx, buf)).await?;
        buf = &buf[n..];
    }
    poll_fn(|cx| Pin::new(&mut *w).poll_flush(cx)).await
}

#[test]
fn futures_io_async_read_and_async_write_work_end_to_end() {
    run(async {
        let (server, mut cr, mut cw, mut sr, mut sw) =
            stream_pair(DEFAULT_LIMIT, DEFAULT_LIMIT).await?;
        const N: usize = 1 << 20;
        let data = pattern(N);
        let reading: Task<Vec<u8>> = spawn(async move {
            let mut got = vec![0; N];
            read_exact(&mut sr, &mut got).await?;
            // At EOF poll_read gives 0.
            let mut one = [0u8; 1];
            let n = poll_fn(|cx| Pin::new(&mut sr).poll_read(cx, &mut one)).await?;
            assert_eq!(n, 0);
            Ok(got)
        })?;
        write_all(&mut cw, &data).await?;
        cw.write_eof()?;
        assert!(reading.await? == data);

        // And the other way, with an empty read buffer in between (returns 0 at once).
        write_all(&mut sw, b"reply").await?;
        let mut empty = [0u8; 0];
        let n = poll_fn(|cx| Pin::new(&mut cr).poll_read(cx, &mut empty)).await?;
        assert_eq!(n, 0);
        let mut reply = [0u8; 5];
        read_exact(&mut cr, &mut reply).await?;
        assert_eq!(&reply, b"reply");
        poll_fn(|cx| Pin::new(&mut sw).poll_close(cx)).await?;
        let mut more = [0u8; 1];
        let err = read_exact(&mut cr, &mut more).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        poll_fn(|cx| Pin::new(&mut cw).poll_close(cx)).await?;
        cw.wait_closed().await?;
        server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Volume

#[test]
fn sixteen_mib_each_way_byte_for_byte() {
    run(async {
        const N: usize = 16 << 20;
        let server = start_server(
            |reader, writer| async move {
                loop {
                    let chunk = reader.read(64 * 1024).await?;
                    if chunk.is_empty() {
                        break;
                    }
                    writer.write(&chunk)?;
                    writer.drain().await?;
                }
                writer.close();
                writer.wait_closed().await
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        let (reader, writer) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
        let done = Event::new();
        let d2 = done.clone();
        let sending: Task<()> = spawn(async move {
            let mut sent = 0;
            while sent < N {
                let n = (N - sent).min(256 * 1024);
                writer.write(&common::pattern_at(sent, n))?;
                writer.drain().await?;
                sent += n;
            }
            writer.write_eof()?;
            d2.set();
            Ok(())
        })?;
        let mut got = Vec::with_capacity(N);
        loop {
            let chunk = reader.read(1 << 20).await?;
            if chunk.is_empty() {
                break;
            }
            got.extend_from_slice(&chunk);
        }
        sending.await?;
        assert!(done.is_set());
        assert_eq!(got.len(), N);
        assert!(got == pattern(N), "the echo differs from what was sent");
        server.close();
        server.wait_closed().await?;
        Ok(())
    });
}

/// `Fut` in start_server may be any future: a handler that fails is logged and its connection
/// left to the handler's own writer (asyncio logs it too).
#[test]
fn a_failing_handler_does_not_stop_the_server() {
    run(async {
        let server = start_server(
            |reader, writer| async move {
                let line = reader.readline().await?;
                if line == b"fail\n" {
                    writer.close();
                    return Err(Error::Closed);
                }
                writer.write(b"ok\n")?;
                writer.close();
                Ok(())
            },
            "127.0.0.1",
            0,
            DEFAULT_LIMIT,
            ServerOptions::default(),
        )
        .await?;
        let port = server.local_addr().unwrap().port();
        for (send, want) in [(&b"fail\n"[..], &b""[..]), (b"fine\n", b"ok\n")] {
            let (r, w) = open_connection("127.0.0.1", port, DEFAULT_LIMIT).await?;
            w.write(send)?;
            assert_eq!(r.read_to_end().await?, want);
            w.close();
        }
        server.close();
        Ok(())
    });
}
