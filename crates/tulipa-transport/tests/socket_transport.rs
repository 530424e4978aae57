//! The socket transport and its protocol contract, on real TCP connections over 127.0.0.1.
//!
//! Ports what CPython's `test_asyncio/test_selector_events.py` checks of
//! `_SelectorSocketTransport` (write-through, buffering, flow control, close/abort, write_eof,
//! pause/resume reading, fatal errors) and the protocol-level TCP checks of `test_events.py`
//! (call order, half-close, `eof_received` keeping the connection open). CPython checks most of
//! these with mocked sockets; here the sockets are real and every wait is on a protocol callback.

mod common;

use std::cell::RefCell;
use std::io::ErrorKind;
use std::rc::Rc;

use common::scenarios::{paused_reader, peer_vanishes_mid_write};
use common::{fill, pair, pattern, peek_len, run, settle, small_socket_buffers, until, Ev};
use tulipa_transport::flow::DEFAULT_HIGH_WATER;
use tulipa_transport::Error;

fn lost_count(log: &common::Log) -> usize {
    log.count(|e| matches!(e, Ev::Lost(_)))
}

// ---------------------------------------------------------------------------------------------
// Call order

#[test]
fn protocol_calls_come_in_order_made_data_eof_lost() {
    run(async {
        let p = pair(|r| r, |r| r).await?;
        p.client.write(b"hello ")?;
        p.client.write(b"tulipa")?;
        p.client.write_eof()?;
        // The server's eof_received returns false: its transport closes, so the client sees EOF
        // in turn and closes too.
        p.slog.wait_lost().await?;
        p.clog.wait_lost().await?;
        settle(3).await?;
        assert_eq!(p.slog.kinds(), ["made", "data", "eof", "lost"]);
        assert_eq!(p.slog.received(), b"hello tulipa");
        assert_eq!(p.clog.kinds(), ["made", "eof", "lost"]);
        assert!(p.slog.error().is_none() && p.clog.error().is_none());
        assert!(p.client.is_closing() && p.accepted().is_closing());
        p.server.close();
        Ok(())
    });
}

#[test]
fn close_twice_and_abort_after_close_lose_the_connection_once() {
    run(async {
        let p = pair(|r| r, |r| r).await?;
        p.client.close();
        p.client.close();
        p.client.abort();
        p.clog.wait_lost().await?;
        p.slog.wait_lost().await?;
        p.client.close();
        p.client.abort();
        settle(3).await?;
        assert_eq!(p.clog.kinds(), ["made", "lost"]);
        assert!(p.clog.error().is_none());
        assert_eq!(p.slog.kinds(), ["made", "eof", "lost"]);
        p.server.close();
        Ok(())
    });
}

#[test]
fn extra_info_addresses_match_both_ends() {
    run(async {
        let p = pair(|r| r, |r| r).await?;
        let server_addr = p.server.local_addr().unwrap();
        assert_eq!(p.client.peer_addr(), Some(server_addr));
        assert_eq!(p.accepted().local_addr(), Some(server_addr));
        assert_eq!(p.accepted().peer_addr(), p.client.local_addr());
        assert_eq!(
            p.client.peername().and_then(|a| a.as_socket()),
            Some(server_addr)
        );
        assert_eq!(
            p.client.sockname().and_then(|a| a.as_socket()),
            p.client.local_addr()
        );
        assert!(p.client.fd() >= 0);
        // asyncio sets TCP_NODELAY on every TCP transport.
        assert_eq!(
            p.client.with_socket(|s| s.tcp_nodelay().unwrap()),
            Some(true)
        );
        assert_eq!(
            p.accepted().with_socket(|s| s.tcp_nodelay().unwrap()),
            Some(true)
        );
        assert!(p.client.can_write_eof());
        assert!(format!("{:?}", p.client).contains("Transport"));
        p.client.close();
        p.clog.wait_lost().await?;
        assert!(p.client.with_socket(|_| ()).is_none(), "socket released");
        p.server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Writing

#[test]
fn write_tries_the_socket_at_once() {
    run(async {
        let p = pair(|r| r, |r| r).await?;
        p.client.write(b"small")?;
        assert_eq!(p.client.get_write_buffer_size(), 0);
        p.client.writelines(&[b"one ", b"", b"two ", b"three"])?;
        assert_eq!(p.client.get_write_buffer_size(), 0);
        p.client.write(b"")?;
        p.slog.wait_bytes(18).await?;
        assert_eq!(p.slog.received(), b"smallone two three");
        p.client.close();
        p.slog.wait_lost().await?;
        p.server.close();
        Ok(())
    });
}

#[test]
fn set_write_buffer_limits_follows_asyncio_rules() {
    run(async {
        let p = pair(|r| r, |r| r).await?;
        let t = &p.client;
        assert_eq!(
            t.get_write_buffer_limits(),
            (DEFAULT_HIGH_WATER / 4, DEFAULT_HIGH_WATER)
        );
        t.set_write_buffer_limits(None, Some(100))?;
        assert_eq!(t.get_write_buffer_limits(), (100, 400));
        t.set_write_buffer_limits(Some(1000), None)?;
        assert_eq!(t.get_write_buffer_limits(), (250, 1000));
        t.set_write_buffer_limits(Some(7), Some(7))?;
        assert_eq!(t.get_write_buffer_limits(), (7, 7));
        t.set_write_buffer_limits(Some(0), Some(0))?;
        assert_eq!(t.get_write_buffer_limits(), (0, 0));
        let bad = t.set_write_buffer_limits(Some(10), Some(20));
        assert!(
            matches!(
                bad,
                Err(Error::Futures(tulipa_futures::Error::InvalidArgument(_)))
            ),
            "{bad:?}"
        );
        assert_eq!(
            t.get_write_buffer_limits(),
            (0, 0),
            "unchanged after an error"
        );
        t.set_write_buffer_limits(None, None)?;
        assert_eq!(
            t.get_write_buffer_limits(),
            (DEFAULT_HIGH_WATER / 4, DEFAULT_HIGH_WATER)
        );
        p.client.close();
        p.server.close();
        Ok(())
    });
}

#[test]
fn pause_writing_once_over_high_and_resume_writing_once_at_low() {
    run(async {
        // The peer does not read: what the kernel does not take stays in the transport.
        let p = pair(paused_reader, |r| r).await?;
        small_socket_buffers(&p.client);
        let (low, high) = p.client.get_write_buffer_limits();

        let mut written = fill(&p.client, high, 0);
        // Told at once, from inside `write`, the moment the buffer went over `high`.
        assert_eq!(p.clog.kinds(), ["made", "pause_writing"]);
        assert!(p.clog.flow_sizes()[0] > high, "{:?}", p.clog.flow_sizes());
        // More writes while paused: no second pause_writing.
        written += fill(&p.client, 4 * high, written);
        assert_eq!(p.clog.kinds(), ["made", "pause_writing"]);

        // The peer reads again: the buffer drains, resume_writing comes once, at `low` or under.
        p.accepted().resume_reading();
        p.clog
            .wait_for("resume_writing", |l| l.has(&Ev::ResumeWriting))
            .await?;
        assert!(p.clog.flow_sizes()[1] <= low, "{:?}", p.clog.flow_sizes());
        p.slog.wait_bytes(written).await?;
        assert_eq!(p.client.get_write_buffer_size(), 0);
        assert_eq!(p.slog.received(), pattern(written));
        assert_eq!(p.clog.kinds(), ["made", "pause_writing", "resume_writing"]);
        p.client.close();
        p.clog.wait_lost().await?;
        p.server.close();
        Ok(())
    });
}

#[test]
fn lowering_the_high_watermark_pauses_and_raising_it_resumes() {
    run(async {
        let p = pair(paused_reader, |r| r).await?;
        small_socket_buffers(&p.client);
        // Some bytes buffered, under the default high watermark.
        p.client.set_write_buffer_limits(Some(1 << 30), None)?;
        let written = fill(&p.client, 0, 0);
        let buffered = p.client.get_write_buffer_size();
        assert!(buffered > 0);
        assert_eq!(p.clog.kinds(), ["made"]);
        // Under the new high watermark at once: pause_writing.
        p.client
            .set_write_buffer_limits(Some(buffered - 1), Some(0))?;
        assert_eq!(p.clog.kinds(), ["made", "pause_writing"]);
        // Back over it, with `low` over the buffer: resume_writing.
        p.client
            .set_write_buffer_limits(Some(buffered * 4), Some(buffered * 2))?;
        assert_eq!(p.clog.kinds(), ["made", "pause_writing", "resume_writing"]);
        p.accepted().resume_reading();
        p.slog.wait_bytes(written).await?;
        p.client.close();
        p.clog.wait_lost().await?;
        p.server.close();
        Ok(())
    });
}

#[test]
fn pause_writing_caused_inside_data_received_comes_after_it_once() {
    run(async {
        const BIG: usize = 4 << 20;
        let p = pair(
            |r| {
                r.on_made(small_socket_buffers).on_data(|t, _| {
                    // The protocol is busy in data_received: pause_writing cannot re-enter it
                    // and is delivered on the next iteration instead.
                    t.set_write_buffer_limits(Some(1024), Some(0)).unwrap();
                    t.write(&pattern(BIG)).unwrap();
                    assert!(t.get_write_buffer_size() > 1024);
                })
            },
            |r| r,
        )
        .await?;
        p.client.write(b"go")?;
        p.clog.wait_bytes(BIG).await?;
        assert_eq!(p.clog.received(), pattern(BIG));
        p.slog
            .wait_for("resume_writing", |l| l.has(&Ev::ResumeWriting))
            .await?;
        assert_eq!(
            p.slog.kinds(),
            ["made", "data", "pause_writing", "resume_writing"]
        );
        assert_eq!(p.slog.flow_sizes()[1], 0);
        p.client.close();
        p.slog.wait_lost().await?;
        p.server.close();
        Ok(())
    });
}

#[test]
fn write_after_close_is_closed_and_after_write_eof_is_write_after_eof() {
    run(async {
        let p = pair(|r| r.keep_open(), |r| r).await?;
        p.client.write_eof()?;
        p.client.write_eof()?; // idempotent
        assert!(!p.client.is_closing());
        assert!(matches!(p.client.write(b"x"), Err(Error::WriteAfterEof)));
        assert!(matches!(
            p.client.writelines(&[b"x"]),
            Err(Error::WriteAfterEof)
        ));
        p.slog.wait_eof().await?;

        let t = p.accepted();
        t.close();
        assert!(matches!(t.write(b"x"), Err(Error::Closed)));
        assert!(matches!(t.writelines(&[b"x", b"y"]), Err(Error::Closed)));
        assert!(matches!(t.write_eof(), Err(Error::Closed)));
        p.slog.wait_lost().await?;
        assert!(matches!(t.write(b"x"), Err(Error::Closed)));
        p.clog.wait_lost().await?;
        assert!(matches!(p.client.write(b"x"), Err(Error::WriteAfterEof)));
        p.server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// close, abort, half-close

#[test]
fn close_flushes_buffered_data_then_connection_lost_once() {
    run(async {
        let p = pair(paused_reader, |r| r).await?;
        small_socket_buffers(&p.client);
        let written = fill(&p.client, 256 * 1024, 0);
        p.client.close();
        assert!(p.client.is_closing());
        assert!(!p.client.is_reading());
        assert!(matches!(p.client.write(b"x"), Err(Error::Closed)));
        settle(5).await?;
        assert!(
            !p.clog.lost(),
            "connection_lost waits for the buffer to drain"
        );
        assert!(p.client.get_write_buffer_size() > 0);

        p.accepted().resume_reading();
        p.slog.wait_lost().await?;
        p.clog.wait_lost().await?;
        assert_eq!(p.slog.received_len(), written);
        assert_eq!(p.slog.received(), pattern(written));
        assert_eq!(p.slog.kinds(), ["made", "data", "eof", "lost"]);
        assert_eq!(p.clog.kinds().last(), Some(&"lost"));
        assert_eq!(lost_count(&p.clog), 1);
        assert!(p.clog.error().is_none());
        p.server.close();
        Ok(())
    });
}

#[test]
fn abort_drops_the_buffer_and_loses_the_connection_once() {
    run(async {
        let p = pair(paused_reader, |r| r).await?;
        small_socket_buffers(&p.client);
        let written = fill(&p.client, 256 * 1024, 0);
        let buffered = p.client.get_write_buffer_size();
        p.client.abort();
        assert_eq!(p.client.get_write_buffer_size(), 0);
        assert!(p.client.is_closing());
        assert!(matches!(p.client.write(b"x"), Err(Error::Closed)));
        p.clog.wait_lost().await?;
        assert!(p.clog.error().is_none());

        // The peer gets what the kernel had taken, then EOF; never the dropped bytes.
        p.accepted().resume_reading();
        p.slog.wait_lost().await?;
        let got = p.slog.received_len();
        assert!(got <= written - buffered, "{got} > {written} - {buffered}");
        assert_eq!(p.slog.received(), pattern(got));
        settle(3).await?;
        assert_eq!(lost_count(&p.clog), 1);
        p.server.close();
        Ok(())
    });
}

#[test]
fn write_eof_half_closes_and_the_peer_can_still_answer() {
    run(async {
        let p = pair(
            |r| {
                let got = Rc::new(RefCell::new(Vec::new()));
                let g2 = got.clone();
                r.keep_open()
                    .on_data(move |_, d| g2.borrow_mut().extend_from_slice(d))
                    .on_eof(move |t| {
                        // Half-open: the server can still write, then closes.
                        assert!(!t.is_closing());
                        let mut reply = b"got ".to_vec();
                        reply.extend_from_slice(&got.borrow());
                        t.write(&reply).unwrap();
                        t.close();
                    })
            },
            |r| r,
        )
        .await?;
        p.client.write(b"ping")?;
        p.client.write_eof()?;
        p.clog.wait_lost().await?;
        p.slog.wait_lost().await?;
        assert_eq!(p.clog.received(), b"got ping");
        assert_eq!(p.clog.kinds(), ["made", "data", "eof", "lost"]);
        assert_eq!(p.slog.kinds(), ["made", "data", "eof", "lost"]);
        assert!(p.clog.error().is_none() && p.slog.error().is_none());
        p.server.close();
        Ok(())
    });
}

#[test]
fn eof_received_returning_true_keeps_the_connection_open() {
    run(async {
        let p = pair(|r| r.keep_open(), |r| r).await?;
        p.client.write_eof()?;
        p.slog.wait_eof().await?;
        settle(3).await?;
        let t = p.accepted();
        assert!(!t.is_closing());
        assert!(!p.slog.lost());
        // Later, from outside any callback, the server still writes.
        t.write(b"late reply")?;
        p.clog.wait_bytes(10).await?;
        assert_eq!(p.clog.received(), b"late reply");
        t.close();
        p.clog.wait_lost().await?;
        p.slog.wait_lost().await?;
        assert_eq!(p.clog.kinds(), ["made", "data", "eof", "lost"]);
        assert_eq!(p.slog.kinds(), ["made", "eof", "lost"]);
        p.server.close();
        Ok(())
    });
}

#[test]
fn resume_reading_after_eof_does_not_repeat_eof_received() {
    run(async {
        let p = pair(|r| r, |r| r.keep_open()).await?;
        p.accepted().write_eof()?;
        p.clog.wait_eof().await?;
        p.client.pause_reading();
        p.client.resume_reading();
        settle(5).await?;
        assert_eq!(p.clog.kinds(), ["made", "eof"]);
        // Still half-open: the client can write.
        p.client.write(b"after eof")?;
        p.slog.wait_bytes(9).await?;
        p.client.close();
        p.clog.wait_lost().await?;
        p.slog.wait_lost().await?;
        assert_eq!(p.clog.kinds(), ["made", "eof", "lost"]);
        p.server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Reading

#[test]
fn pause_reading_stops_data_received_until_resume_reading() {
    run(async {
        let p = pair(|r| r, |r| r).await?;
        assert!(p.client.is_reading());
        p.client.pause_reading();
        p.client.pause_reading(); // idempotent
        assert!(!p.client.is_reading());
        p.accepted().write(b"abc")?;
        // The bytes are in the client's socket, and nobody takes them.
        until(|| peek_len(&p.client) == 3).await?;
        settle(5).await?;
        assert_eq!(p.clog.kinds(), ["made"]);
        p.client.resume_reading();
        p.client.resume_reading(); // idempotent
        assert!(p.client.is_reading());
        p.clog.wait_bytes(3).await?;
        assert_eq!(p.clog.received(), b"abc");
        p.client.close();
        assert!(!p.client.is_reading());
        p.client.resume_reading(); // no effect once closing
        assert!(!p.client.is_reading());
        p.clog.wait_lost().await?;
        p.server.close();
        Ok(())
    });
}

#[test]
fn pause_reading_in_connection_made_reads_nothing_until_resumed() {
    run(async {
        let p = pair(|r| r, |r| r.on_made(|t| t.pause_reading())).await?;
        assert!(!p.client.is_reading());
        p.accepted().write(b"queued")?;
        p.accepted().close();
        p.slog.wait_lost().await?;
        until(|| peek_len(&p.client) == 6).await?;
        settle(3).await?;
        assert_eq!(p.clog.kinds(), ["made"]);
        p.client.resume_reading();
        p.clog.wait_lost().await?;
        assert_eq!(p.clog.received(), b"queued");
        assert_eq!(p.clog.kinds(), ["made", "data", "eof", "lost"]);
        p.server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Re-entrancy: a protocol calls its transport from inside its callbacks

#[test]
fn a_protocol_may_write_pause_and_close_from_its_callbacks() {
    run(async {
        let p = pair(
            |r| {
                r.on_made(|t| t.write(b"welcome\n").unwrap())
                    .on_data(|t, d| {
                        t.pause_reading();
                        assert!(!t.is_reading());
                        t.resume_reading();
                        assert!(t.is_reading());
                        t.set_write_buffer_limits(Some(1 << 20), None).unwrap();
                        assert_eq!(t.get_write_buffer_size(), 0);
                        t.writelines(&[b"echo:", d, b"\n"]).unwrap();
                        if d.ends_with(b"bye") {
                            t.close();
                            t.close();
                            assert!(matches!(t.write(b"x"), Err(Error::Closed)));
                        }
                    })
            },
            |r| r,
        )
        .await?;
        p.clog.wait_bytes(8).await?;
        p.client.write(b"hi")?;
        p.clog.wait_bytes(8 + 8).await?;
        p.client.write(b"bye")?;
        p.clog.wait_lost().await?;
        p.slog.wait_lost().await?;
        assert_eq!(p.clog.received(), b"welcome\necho:hi\necho:bye\n");
        assert_eq!(p.clog.kinds(), ["made", "data", "eof", "lost"]);
        assert_eq!(p.slog.kinds(), ["made", "data", "lost"]);
        p.server.close();
        Ok(())
    });
}

#[test]
fn abort_from_data_received_and_close_from_connection_made() {
    run(async {
        // Server side aborts while its protocol is in data_received.
        let p = pair(|r| r.on_data(|t, _| t.abort()), |r| r).await?;
        p.client.write(b"x")?;
        p.slog.wait_lost().await?;
        p.clog.wait_lost().await?;
        assert_eq!(p.slog.kinds(), ["made", "data", "lost"]);
        assert_eq!(p.clog.kinds(), ["made", "eof", "lost"]);
        p.server.close();

        // Client side closes while its protocol is in connection_made.
        let p = pair(|r| r, |r| r.on_made(|t| t.close())).await?;
        assert!(p.client.is_closing());
        p.clog.wait_lost().await?;
        p.slog.wait_lost().await?;
        assert_eq!(p.clog.kinds(), ["made", "lost"]);
        assert_eq!(p.slog.kinds(), ["made", "eof", "lost"]);
        p.server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Errors

#[test]
fn a_panicking_protocol_loses_its_connection_with_an_error() {
    run(async {
        let p = pair(|r| r.on_data(|_, _| panic!("boom in data_received")), |r| r).await?;
        p.client.write(b"trigger")?;
        p.slog.wait_lost().await?;
        p.clog.wait_lost().await?;
        assert_eq!(p.slog.kinds(), ["made", "data", "lost(error)"]);
        let err = p.slog.error().unwrap();
        assert!(
            matches!(&err, Error::Futures(tulipa_futures::Error::Panicked(m)) if m.contains("boom")),
            "{err:?}"
        );
        // The peer sees a connection that ends.
        assert_eq!(p.clog.kinds(), ["made", "eof", "lost"]);
        p.server.close();

        let p = pair(|r| r.on_made(|_| panic!("boom in connection_made")), |r| r).await?;
        p.slog.wait_lost().await?;
        p.clog.wait_lost().await?;
        assert_eq!(p.slog.kinds(), ["made", "lost(error)"]);
        p.server.close();
        Ok(())
    });
}

#[test]
fn peer_vanishing_mid_write_loses_the_connection_with_an_error() {
    run(async {
        // The peer goes away with unread bytes in its receive queue: its kernel answers RST.
        let p = peer_vanishes_mid_write().await?;
        let err = p.clog.error().unwrap();
        assert!(
            matches!(
                err.io_kind(),
                Some(ErrorKind::ConnectionReset | ErrorKind::BrokenPipe)
            ),
            "{err:?}"
        );
        assert_eq!(p.client.get_write_buffer_size(), 0);
        assert!(matches!(p.client.write(b"x"), Err(Error::Closed)));
        p.server.close();
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Volume

#[test]
fn sixteen_mib_each_way_through_an_echo_protocol_with_flow_control() {
    run(async {
        const N: usize = 16 << 20;
        // The echo server stops reading while its own write buffer is over the watermark.
        let p = pair(
            |r| {
                r.keep_open()
                    .on_data(|t, d| t.write(d).unwrap())
                    .on_pause(|t| t.pause_reading())
                    .on_resume(|t| t.resume_reading())
                    .on_eof(|t| t.close())
            },
            |r| r,
        )
        .await?;
        let data = pattern(N);
        p.client.write(&data)?;
        p.client.write_eof()?;
        p.clog.wait_lost().await?;
        p.slog.wait_lost().await?;
        assert_eq!(p.clog.received_len(), N);
        assert!(
            p.clog.received() == data,
            "the echo differs from what was sent"
        );
        assert!(p.clog.error().is_none() && p.slog.error().is_none());
        // Flow control came in pairs on both sides.
        for log in [&p.clog, &p.slog] {
            let pauses = log.count(|e| *e == Ev::PauseWriting);
            let resumes = log.count(|e| *e == Ev::ResumeWriting);
            assert_eq!(pauses, resumes, "{:?}", log.kinds());
        }
        assert!(p.clog.count(|e| *e == Ev::PauseWriting) >= 1);
        p.server.close();
        Ok(())
    });
}

#[test]
fn bytes_queued_beyond_one_read_buffer_all_arrive_without_a_new_arrival() {
    // Edge-triggered reading: one edge for everything already queued, more than one 64 KiB
    // read takes. A full read must be followed by another, or the rest waits for data that
    // never comes.
    let n = 3 * tulipa_transport::READ_SIZE / 2;
    run(async move {
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let (_peer, sock) = common::queued_tcp_pair(&pattern(n));
        let log = common::Log::new();
        let (t, made) =
            tulipa_transport::Transport::from_socket(&lp, sock, Box::new(common::Rec::new(&log)))?;
        made.await?;
        log.wait_bytes(n).await?;
        assert_eq!(log.received(), pattern(n));
        assert_eq!(log.kinds(), ["made", "data"]);
        t.close();
        log.wait_lost().await?;
        Ok(())
    });
}

#[test]
fn a_close_between_a_full_read_and_the_next_reads_nothing_more() {
    // A read that fills the buffer is followed by another on the next iteration; a close that
    // comes first (here from a callback the protocol scheduled) must stop it: a closing
    // transport calls `data_received` no more. Output stays buffered (the peer does not read),
    // so the transport is closing, not lost, when that next read would run.
    let n = 3 * tulipa_transport::READ_SIZE / 2;
    run(async move {
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let (_peer, sock) = common::queued_tcp_pair(&pattern(n));
        let log = common::Log::new();
        let lp2 = lp.clone();
        let rec = common::Rec::new(&log).on_data(move |t, _| {
            if t.is_closing() {
                return;
            }
            let t = t.clone();
            lp2.call_soon(move || {
                t.write(&vec![0; 16 << 20]).unwrap();
                t.close();
            })
            .unwrap();
        });
        let (t, made) = tulipa_transport::Transport::from_socket(&lp, sock, Box::new(rec))?;
        made.await?;
        log.wait_bytes(1).await?;
        until(|| t.is_closing()).await?;
        settle(5).await?;
        assert_eq!(
            log.received_len(),
            tulipa_transport::READ_SIZE,
            "one read, then none"
        );
        assert!(t.get_write_buffer_size() > 0, "still flushing, not lost");
        t.abort();
        log.wait_lost().await?;
        Ok(())
    });
}

#[test]
fn urgent_data_in_the_middle_does_not_stall_the_rest() {
    // A TCP read stops at the urgent mark, short, with more queued behind it; the kernel raises
    // `EPOLLPRI`, and the loop watches the fd level-triggered from then on, so the rest is read.
    run(async move {
        let lp = tulipa_futures::rt::EventLoop::running()?;
        let (peer, sock) = common::queued_tcp_pair(b"ab");
        let peer = socket2::Socket::from(peer);
        peer.send_out_of_band(b"!").unwrap();
        peer.send(b"cdef").unwrap();
        let log = common::Log::new();
        let (t, made) =
            tulipa_transport::Transport::from_socket(&lp, sock, Box::new(common::Rec::new(&log)))?;
        made.await?;
        log.wait_bytes(6).await?;
        // The urgent byte itself is out of band (no SO_OOBINLINE): not part of the stream.
        assert_eq!(log.received(), b"abcdef");
        t.close();
        log.wait_lost().await?;
        Ok(())
    });
}
