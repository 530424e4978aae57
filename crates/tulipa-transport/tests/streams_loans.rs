//! `StreamReader`'s `AsyncBufRead` loans: `fill_buf` lends the buffered bytes, `consume` takes
//! back only bytes of that loan, even when a clone read in between or more data arrived; and
//! data arriving while a loan is held (or re-lent packet after packet) is not paid for by
//! copying the whole buffer.

mod common;
mod streams_support;

use futures_lite::io::AsyncBufReadExt;
use tulipa_transport::streams::{StreamReader, DEFAULT_LIMIT};

use common::{pattern, pattern_at, run};
use streams_support::{buffered, loan_copies};

#[test]
fn consume_takes_only_lent_bytes_still_buffered_after_a_clone_read() {
    run(async {
        let mut r = StreamReader::new(DEFAULT_LIMIT);
        let other = r.clone();
        r.feed_data(b"hello world");
        assert_eq!(r.fill_buf().await?, b"hello world");
        // Another handle reads three of the lent bytes; this handle's user then consumes the
        // five it processed ("hello"): only "lo" is still there to take.
        assert_eq!(other.read(3).await?, b"hel");
        r.consume(5);
        assert_eq!(other.read(100).await?, b" world");
        Ok(())
    });
}

#[test]
fn consume_after_a_clone_took_everything_lent_takes_nothing_new() {
    run(async {
        let mut r = StreamReader::new(DEFAULT_LIMIT);
        let other = r.clone();
        r.feed_data(b"abc");
        assert_eq!(r.fill_buf().await?, b"abc");
        assert_eq!(other.read(100).await?, b"abc");
        other.feed_data(b"new bytes");
        // The loan was "abc", all gone: the new bytes were never seen here and stay.
        r.consume(3);
        assert_eq!(buffered(&other), 9);
        assert_eq!(other.read(100).await?, b"new bytes");
        Ok(())
    });
}

#[test]
fn consume_is_clamped_to_the_loan() {
    run(async {
        let mut r = StreamReader::new(DEFAULT_LIMIT);
        let feeder = r.clone();
        r.feed_data(b"abc");
        assert_eq!(r.fill_buf().await?, b"abc");
        feeder.feed_data(b"def");
        // More than was lent: the bytes that arrived after the loan are not taken.
        r.consume(10);
        assert_eq!(buffered(&feeder), 3);
        assert_eq!(r.fill_buf().await?, b"def");
        // Several consumes of one loan take it piece by piece, then nothing more.
        r.consume(1);
        r.consume(1);
        assert_eq!(buffered(&feeder), 1);
        r.consume(5);
        feeder.feed_data(b"g");
        r.consume(1);
        assert_eq!(feeder.read(10).await?, b"g");
        Ok(())
    });
}

#[test]
fn data_fed_while_a_slice_is_lent_does_not_copy_the_buffer() {
    run(async {
        let mut r = StreamReader::new(DEFAULT_LIMIT);
        let feeder = r.clone();
        r.feed_data(&pattern(1000));
        let lent = r.fill_buf().await?;
        // The user holds the slice while the protocol feeds more, packet by packet.
        for i in 0..100 {
            feeder.feed_data(&pattern_at(1000 + i * 500, 500));
        }
        assert!(lent == pattern(1000), "the lent bytes did not change");
        assert_eq!(buffered(&feeder), 1000 + 100 * 500);
        assert_eq!(loan_copies(&feeder), 0, "{feeder:?}");
        r.consume(1000);
        assert!(feeder.read(usize::MAX).await? == pattern_at(1000, 100 * 500));
        assert_eq!(loan_copies(&feeder), 0, "{feeder:?}");
        Ok(())
    });
}

#[test]
fn lending_again_after_each_packet_does_not_copy_the_buffer() {
    run(async {
        // A user that looks at the buffer after every packet (fill_buf) and consumes only once
        // enough is there: each packet must not copy everything buffered so far.
        let mut r = StreamReader::new(DEFAULT_LIMIT);
        let feeder = r.clone();
        for i in 0..200 {
            feeder.feed_data(&pattern_at(i * 100, 100));
            assert_eq!(r.fill_buf().await?.len(), (i + 1) * 100);
        }
        assert_eq!(loan_copies(&feeder), 0, "{feeder:?}");
        assert!(r.fill_buf().await? == pattern(200 * 100));
        r.consume(200 * 100);
        assert_eq!(buffered(&feeder), 0);
        assert_eq!(loan_copies(&feeder), 0, "{feeder:?}");
        Ok(())
    });
}

#[test]
fn a_stale_loan_costs_at_most_one_copy() {
    run(async {
        let mut r = StreamReader::new(DEFAULT_LIMIT);
        let other = r.clone();
        r.feed_data(&pattern(4000));
        assert_eq!(r.fill_buf().await?.len(), 4000);
        // Another handle reads while this handle still holds its loan: the loan goes stale.
        for i in 0..40 {
            assert!(other.read(50).await? == pattern_at(i * 50, 50));
            other.feed_data(&pattern_at(4000 + i * 50, 50));
        }
        assert!(loan_copies(&other) <= 1, "{other:?}");
        // Half the loan was read through the clone; consuming the whole loan takes the other
        // half, still buffered, and none of the bytes that arrived after it.
        r.consume(4000);
        assert_eq!(buffered(&other), 2000);
        assert!(other.read(usize::MAX).await? == pattern_at(4000, 2000));
        Ok(())
    });
}
