//! The local pipe (`message::local_pipe`, `message::local_buffered`): the same contract as the
//! thread-crossing pipe (rendezvous, back-pressure, order, closing, cancel safety, streams),
//! checked on its own ends.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use futures_core::Stream;
use tulipa_futures::message::{self, LocalRecver};
use tulipa_futures::{run, sleep, spawn, Error, Result};

async fn settle() -> Result<()> {
    for _ in 0..8 {
        sleep(Duration::ZERO).await?;
    }
    Ok(())
}

async fn next<T>(rx: &mut LocalRecver<T>) -> Option<T> {
    poll_fn(|cx| Pin::new(&mut *rx).poll_next(cx)).await
}

#[test]
fn rendezvous_send_completes_only_once_received() {
    run(async {
        let (tx, rx) = message::local_pipe();
        let send = spawn(async move { tx.send(7).await })?;
        settle().await?;
        assert!(!send.done(), "nobody received yet");
        assert_eq!(rx.recv().await?, 7);
        send.await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn buffered_waits_only_when_full_and_keeps_order() {
    run(async {
        let (tx, rx) = message::local_buffered(2);
        tx.send(1).await?;
        tx.send(2).await?;
        assert!(matches!(
            tx.try_send(3).map_err(Error::from),
            Err(Error::WouldBlock)
        ));
        let third = {
            let tx = tx.clone();
            spawn(async move { tx.send(3).await })?
        };
        let fourth = {
            let tx = tx.clone();
            spawn(async move { tx.send(4).await })?
        };
        settle().await?;
        assert!(!third.done() && !fourth.done());
        assert_eq!(rx.len(), 4, "two buffered, two offered");
        for want in 1..=4 {
            assert_eq!(rx.recv().await?, want);
        }
        third.await?;
        fourth.await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn dropping_the_last_sender_closes_after_draining() {
    run(async {
        let (tx, rx) = message::local_buffered(4);
        tx.send("a").await?;
        tx.send("b").await?;
        drop(tx);
        assert!(rx.is_closed());
        assert_eq!(rx.recv().await?, "a");
        assert_eq!(rx.recv().await?, "b");
        assert!(matches!(rx.recv().await, Err(Error::Closed)));
        Ok(())
    })
    .unwrap();
}

#[test]
fn dropping_the_last_recver_fails_blocked_senders() {
    run(async {
        let (tx, rx) = message::local_pipe::<u32>();
        let blocked = {
            let tx = tx.clone();
            spawn(async move { tx.send(1).await })?
        };
        settle().await?;
        drop(rx);
        assert!(matches!(blocked.await, Err(Error::Closed)));
        assert!(matches!(tx.send(2).await, Err(Error::Closed)));
        Ok(())
    })
    .unwrap();
}

#[test]
fn close_with_error_reaches_the_recver_after_the_items() {
    run(async {
        let (tx, rx) = message::local_buffered(2);
        tx.send(1).await?;
        tx.close_with(Error::InvalidArgument("upstream failed"));
        assert_eq!(rx.recv().await?, 1);
        assert!(matches!(
            rx.recv().await,
            Err(Error::InvalidArgument("upstream failed"))
        ));
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_recv_takes_nothing_and_the_next_recver_gets_the_item() {
    run(async {
        let (tx, rx) = message::local_pipe();
        let first = {
            let rx = rx.clone();
            spawn(async move { rx.recv().await })?
        };
        let second = {
            let rx = rx.clone();
            spawn(async move { rx.recv().await })?
        };
        settle().await?;
        // The item is reserved for `first`, which is cancelled before it runs.
        tx.try_send(42).map_err(Error::from)?;
        first.cancel(None);
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(second.await?, 42);
        assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_send_sent_nothing() {
    run(async {
        let (tx, rx) = message::local_pipe();
        let send = spawn(async move { tx.send(1).await })?;
        settle().await?;
        send.cancel(None);
        assert!(send.await.unwrap_err().is_cancelled());
        assert!(rx.is_empty());
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_cancellation_is_delivered_once_then_waits_work_again() {
    run(async {
        let (tx, rx) = message::local_buffered::<u32>(1);
        let task = spawn(async move {
            let first = rx.recv().await;
            // Handled: the next wait is an ordinary wait again.
            let second = rx.recv().await;
            Ok((first.unwrap_err().is_cancelled(), second?))
        })?;
        settle().await?;
        task.cancel(None);
        settle().await?;
        tx.send(9).await?;
        assert_eq!(task.await?, (true, 9));
        Ok(())
    })
    .unwrap();
}

#[test]
fn stream_yields_every_item_then_ends() {
    run(async {
        let (tx, mut rx) = message::local_buffered(8);
        let producer = spawn(async move {
            for i in 0..100u32 {
                tx.send(i).await?;
            }
            Ok(())
        })?;
        let mut got = Vec::new();
        while let Some(i) = next(&mut rx).await {
            got.push(i);
        }
        producer.await?;
        assert_eq!(got, (0..100).collect::<Vec<_>>());
        Ok(())
    })
    .unwrap();
}

#[test]
fn many_senders_and_recvers_lose_and_duplicate_nothing() {
    run(async {
        let (tx, rx) = message::local_buffered(3);
        let mut senders = Vec::new();
        for s in 0..4u32 {
            let tx = tx.clone();
            senders.push(spawn(async move {
                for i in 0..250u32 {
                    tx.send(s * 1000 + i).await?;
                }
                Ok(())
            })?);
        }
        drop(tx);
        let mut recvers = Vec::new();
        for _ in 0..3 {
            let rx = rx.clone();
            recvers.push(spawn(async move {
                let mut got = Vec::new();
                while let Ok(i) = rx.recv().await {
                    got.push(i);
                }
                Ok(got)
            })?);
        }
        drop(rx);
        for s in senders {
            s.await?;
        }
        let mut all = Vec::new();
        for r in recvers {
            all.extend(r.await?);
        }
        all.sort_unstable();
        let mut want: Vec<u32> = (0..4)
            .flat_map(|s| (0..250).map(move |i| s * 1000 + i))
            .collect();
        want.sort_unstable();
        assert_eq!(all, want);
        Ok(())
    })
    .unwrap();
}
