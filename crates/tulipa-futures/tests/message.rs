//! vanilla's message passing (`tulipa_futures::message`): the examples of vanilla's docs, then
//! the contract: rendezvous and back-pressure, closing, cancel safety, select, streams, chaining,
//! router/dealer, state, pulse, and pipes between loops on different threads.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_core::Stream;
use tulipa_futures::message::{self, Recver, State};
use tulipa_futures::rt::EventLoop;
use tulipa_futures::{run, run_until_complete, sleep, spawn, Error, Result};

/// Lets every other ready task run a step (a few times, to let chains of wake-ups settle).
async fn settle() -> Result<()> {
    for _ in 0..8 {
        sleep(Duration::ZERO).await?;
    }
    Ok(())
}

/// `StreamExt::next` without the dependency.
async fn next<T>(rx: &mut Recver<T>) -> Option<T> {
    poll_fn(|cx| Pin::new(&mut *rx).poll_next(cx)).await
}

fn closed<T: std::fmt::Debug>(r: Result<T>) -> bool {
    matches!(r, Err(Error::Closed))
}

// ---- vanilla's examples ---------------------------------------------------------------------

#[test]
fn vanilla_pipe_spawned_send_then_recv() {
    run(async {
        let (tx, rx) = message::pipe();
        let _task = spawn(async move { tx.send("hi").await })?;
        assert_eq!(rx.recv().await?, "hi");
        Ok(())
    })
    .unwrap();
}

#[test]
fn vanilla_queue_of_one_does_not_deadlock() {
    run(async {
        let (tx, rx) = message::buffered(1);
        tx.send(1).await?; // safe from deadlock
        assert!(tx.try_send(1).is_err()); // a second send would wait
        assert_eq!(rx.recv().await?, 1);
        Ok(())
    })
    .unwrap();
}

#[test]
fn vanilla_router_serves_senders_first_come_first_served() {
    run(async {
        let (tx, rx) = message::router();
        for i in [3, 2, 1] {
            let tx = tx.clone();
            let _task = spawn(async move { tx.send(i).await })?;
        }
        assert_eq!(rx.recv().await?, 3);
        assert_eq!(rx.recv().await?, 2);
        assert_eq!(rx.recv().await?, 1);
        Ok(())
    })
    .unwrap();
}

#[test]
fn vanilla_dealer_round_robins_waiting_recvers() {
    run(async {
        let (tx, rx) = message::dealer();
        let r1 = {
            let rx = rx.clone();
            spawn(async move { Ok(format!("recv 1: {}", rx.recv().await?)) })?
        };
        let r2 = spawn(async move { Ok(format!("recv 2: {}", rx.recv().await?)) })?;
        settle().await?;
        tx.send(1).await?;
        tx.send(2).await?;
        assert_eq!(r1.await?, "recv 1: 1");
        assert_eq!(r2.await?, "recv 2: 2");
        Ok(())
    })
    .unwrap();
}

#[test]
fn vanilla_map_doubles() {
    run(async {
        let (tx, rx) = message::pipe();
        let rx = rx.map(|i: i32| i * 2)?;
        let _task = spawn(async move { tx.send(2).await })?;
        assert_eq!(rx.recv().await?, 4);
        Ok(())
    })
    .unwrap();
}

#[test]
fn vanilla_consume_sees_every_item() {
    run(async {
        let (tx, rx) = message::pipe();
        let log = Rc::new(RefCell::new(Vec::new()));
        let sink = {
            let log = log.clone();
            rx.consume(move |data: &str| log.borrow_mut().push(data))?
        };
        tx.send("Hello").await?;
        drop(tx);
        sink.await?;
        assert_eq!(*log.borrow(), ["Hello"]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn vanilla_pipeline_filters_and_maps() {
    // vanilla's `recver.pipe(pipeline)` with a filtering stage, as a task between two pipes.
    run(async {
        let (tx, rx) = message::pipe::<u32>();
        let (down_tx, down_rx) = message::pipe();
        let _task = spawn(async move {
            while let Ok(i) = rx.recv().await {
                if i % 2 == 1 {
                    down_tx.send(i * 2).await?;
                }
            }
            Ok(())
        })?;
        let _task = spawn(async move {
            for i in 0..10 {
                tx.send(i).await?;
            }
            Ok(())
        })?;
        assert_eq!(down_rx.recv().await?, 2);
        assert_eq!(down_rx.recv().await?, 6);
        Ok(())
    })
    .unwrap();
}

// ---- rendezvous and back-pressure -----------------------------------------------------------

#[test]
fn rendezvous_send_does_not_complete_before_a_recv() {
    run(async {
        let (tx, rx) = message::pipe();
        let send = spawn(async move { tx.send(1).await })?;
        settle().await?;
        assert!(!send.done(), "nobody received yet");
        assert_eq!(rx.len(), 1, "the blocked sender's item is offered");
        assert_eq!(rx.recv().await?, 1);
        settle().await?;
        assert!(send.done());
        send.await?;
        Ok(())
    })
    .unwrap();
}

#[test]
fn rendezvous_recv_waits_for_a_send() {
    run(async {
        let (tx, rx) = message::pipe();
        let recv = spawn(async move { rx.recv().await })?;
        settle().await?;
        assert!(!recv.done());
        assert!(
            matches!(tx.try_send(7), Ok(())),
            "a waiting recver takes a try_send"
        );
        assert_eq!(recv.await?, 7);
        assert!(tx.try_send(8).is_err(), "nobody waits any more");
        Ok(())
    })
    .unwrap();
}

#[test]
fn buffered_send_waits_only_when_full() {
    run(async {
        let (tx, rx) = message::buffered(2);
        tx.send(1).await?;
        tx.send(2).await?;
        let third = {
            let tx = tx.clone();
            spawn(async move { tx.send(3).await })?
        };
        settle().await?;
        assert!(!third.done(), "the buffer is full");
        assert!(matches!(
            tx.try_send(4).map_err(Error::from),
            Err(Error::WouldBlock)
        ));
        assert_eq!(rx.recv().await?, 1);
        settle().await?;
        assert!(
            third.done(),
            "room again: the blocked item moved into the buffer"
        );
        assert_eq!(rx.recv().await?, 2);
        assert_eq!(rx.recv().await?, 3);
        assert!(matches!(rx.try_recv(), Err(Error::WouldBlock)));
        Ok(())
    })
    .unwrap();
}

#[test]
fn blocked_senders_are_served_in_order() {
    run(async {
        let (tx, rx) = message::buffered(1);
        tx.send(0).await?;
        for i in 1..=3 {
            let tx = tx.clone();
            let _task = spawn(async move { tx.send(i).await })?;
            settle().await?;
        }
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(rx.recv().await?);
        }
        assert_eq!(got, [0, 1, 2, 3]);
        Ok(())
    })
    .unwrap();
}

// ---- closing --------------------------------------------------------------------------------

#[test]
fn close_from_sender_delivers_buffered_items_then_closed() {
    run(async {
        let (tx, rx) = message::buffered(3);
        tx.send(1).await?;
        tx.send(2).await?;
        tx.close();
        assert!(tx.is_closed() && rx.is_closed());
        assert!(closed(tx.send(3).await), "a send to a closed pipe fails");
        assert_eq!(rx.recv().await?, 1);
        assert_eq!(rx.recv().await?, 2);
        assert!(closed(rx.recv().await));
        assert!(closed(rx.try_recv()));
        Ok(())
    })
    .unwrap();
}

#[test]
fn close_from_recver_fails_senders_and_keeps_buffered_items() {
    run(async {
        let (tx, rx) = message::buffered(1);
        tx.send(1).await?;
        let blocked = {
            let tx = tx.clone();
            spawn(async move { tx.send(2).await })?
        };
        settle().await?;
        rx.close();
        assert!(
            closed(blocked.await),
            "the blocked sender learns its item was not sent"
        );
        let e = tx.try_send(3).unwrap_err();
        assert!(e.is_closed());
        assert_eq!(e.into_inner(), 3, "try_send gives the item back");
        assert_eq!(
            rx.recv().await?,
            1,
            "buffered before the close: still delivered"
        );
        assert!(closed(rx.recv().await));
        Ok(())
    })
    .unwrap();
}

#[test]
fn close_wakes_every_waiting_recver() {
    run(async {
        let (tx, rx) = message::pipe::<u8>();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                spawn(async move { rx.recv().await })
            })
            .collect::<Result<_>>()?;
        settle().await?;
        tx.close();
        for w in waiters {
            assert!(closed(w.await));
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn dropping_the_last_sender_closes_after_draining() {
    run(async {
        let (tx, rx) = message::buffered(2);
        let tx2 = tx.clone();
        tx.send("a").await?;
        drop(tx);
        assert!(!rx.is_closed(), "another sender remains");
        tx2.send("b").await?;
        drop(tx2);
        assert!(rx.is_closed());
        assert_eq!(rx.recv().await?, "a");
        assert_eq!(rx.recv().await?, "b");
        assert!(closed(rx.recv().await));
        Ok(())
    })
    .unwrap();
}

#[test]
fn dropping_the_last_recver_fails_blocked_and_later_sends() {
    run(async {
        let (tx, rx) = message::pipe();
        let blocked = {
            let tx = tx.clone();
            spawn(async move { tx.send(1).await })?
        };
        settle().await?;
        let rx2 = rx.clone();
        drop(rx);
        settle().await?;
        assert!(!blocked.done(), "a recver remains");
        drop(rx2);
        assert!(closed(blocked.await));
        assert!(closed(tx.send(2).await));
        Ok(())
    })
    .unwrap();
}

#[test]
fn close_with_error_reaches_recver_after_the_items() {
    run(async {
        let (tx, rx) = message::buffered(1);
        tx.send(1).await?;
        tx.close_with(Error::InvalidArgument("bad input"));
        assert_eq!(rx.recv().await?, 1);
        assert!(matches!(
            rx.recv().await,
            Err(Error::InvalidArgument("bad input"))
        ));
        Ok(())
    })
    .unwrap();
}

#[test]
fn sender_closed_waits_for_the_close() {
    run(async {
        let (tx, rx) = message::pipe::<u8>();
        let watcher = spawn(async move { tx.closed().await })?;
        settle().await?;
        assert!(!watcher.done());
        drop(rx);
        watcher.await?;
        Ok(())
    })
    .unwrap();
}

// ---- cancel safety --------------------------------------------------------------------------

#[test]
fn cancelled_recv_takes_nothing_and_the_next_recver_gets_the_item() {
    run(async {
        let (tx, rx) = message::pipe();
        let first = {
            let rx = rx.clone();
            spawn(async move { rx.recv().await })?
        };
        let second = {
            let rx = rx.clone();
            spawn(async move { rx.recv().await })?
        };
        settle().await?;
        first.cancel(None);
        settle().await?;
        tx.send(42).await?;
        assert_eq!(second.await?, 42);
        assert!(first.await.unwrap_err().is_cancelled());
        assert!(
            matches!(rx.try_recv(), Err(Error::WouldBlock)),
            "nothing left behind"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn recv_cancelled_after_its_item_was_reserved_passes_it_on() {
    run(async {
        let (tx, rx) = message::pipe();
        let first = {
            let rx = rx.clone();
            spawn(async move { rx.recv().await })?
        };
        let second = {
            let rx = rx.clone();
            spawn(async move { rx.recv().await })?
        };
        settle().await?;
        // Reserved for (and wakes) `first`; `first` is cancelled before it runs.
        tx.try_send(42).map_err(Error::from)?;
        first.cancel(None);
        assert!(first.await.unwrap_err().is_cancelled());
        assert_eq!(
            second.await?,
            42,
            "the reservation went on to the next recver"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn aborted_recv_passes_its_reservation_on() {
    run(async {
        let (tx, rx) = message::pipe();
        let first = {
            let rx = rx.clone();
            spawn(async move { rx.recv().await })?
        };
        let second = spawn(async move { rx.recv().await })?;
        settle().await?;
        tx.try_send(5).map_err(Error::from)?;
        first.abort(); // the future is dropped, not polled
        assert_eq!(second.await?, 5);
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_send_sent_nothing() {
    run(async {
        let (tx, rx) = message::pipe();
        let send = spawn(async move { tx.send(1).await })?;
        settle().await?;
        send.cancel(None);
        assert!(send.await.unwrap_err().is_cancelled());
        assert!(matches!(
            rx.try_recv(),
            Err(Error::WouldBlock) | Err(Error::Closed)
        ));
        assert!(rx.is_empty());
        Ok(())
    })
    .unwrap();
}

#[test]
fn send_whose_item_was_taken_reports_ok_then_the_cancellation() {
    run(async {
        let (tx, rx) = message::pipe();
        let outcome = Rc::new(Cell::new(None));
        let task = {
            let outcome = outcome.clone();
            spawn(async move {
                outcome.set(Some(tx.send(1).await.is_ok()));
                sleep(Duration::ZERO).await // the cancellation arrives here
            })?
        };
        settle().await?;
        assert_eq!(rx.try_recv()?, 1, "taken while the sender waits");
        task.cancel(None);
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(
            outcome.get(),
            Some(true),
            "the delivered item is not reported as failed"
        );
        Ok(())
    })
    .unwrap();
}

#[test]
fn cancelled_select_takes_nothing() {
    run(async {
        let (tx_a, rx_a) = message::pipe::<u32>();
        let (tx_b, rx_b) = message::pipe::<u32>();
        let sel = {
            let (a, b) = (rx_a.clone(), rx_b.clone());
            spawn(async move { message::select(&[&a, &b]).await })?
        };
        let other = spawn(async move { rx_b.recv().await })?;
        settle().await?;
        tx_b.try_send(9).map_err(Error::from)?; // reserved for the select, queued first
        sel.cancel(None);
        assert!(sel.await.unwrap_err().is_cancelled());
        assert_eq!(other.await?, 9);
        assert!(matches!(rx_a.try_recv(), Err(Error::WouldBlock)));
        drop(tx_a);
        Ok(())
    })
    .unwrap();
}

// ---- select ---------------------------------------------------------------------------------

#[test]
fn select_returns_the_recver_with_an_item() {
    run(async {
        let (tx_a, rx_a) = message::pipe::<&str>();
        let (tx_b, rx_b) = message::pipe::<&str>();
        let _task = spawn(async move { tx_b.send("b").await })?;
        assert_eq!(message::select(&[&rx_a, &rx_b]).await?, (1, "b"));
        let _task = spawn(async move { tx_a.send("a").await })?;
        assert_eq!(message::select(&[&rx_a, &rx_b]).await?, (0, "a"));
        Ok(())
    })
    .unwrap();
}

#[test]
fn select_takes_only_from_the_winner() {
    run(async {
        let (tx_a, rx_a) = message::buffered(1);
        let (tx_b, rx_b) = message::buffered(1);
        tx_a.send("a").await?;
        tx_b.send("b").await?;
        let (i, item) = message::select(&[&rx_a, &rx_b]).await?;
        let loser = if i == 0 { &rx_b } else { &rx_a };
        assert_eq!(loser.try_recv()?, if i == 0 { "b" } else { "a" });
        assert_eq!(item, if i == 0 { "a" } else { "b" });
        Ok(())
    })
    .unwrap();
}

#[test]
fn select_is_fair_between_busy_recvers() {
    run(async {
        let (tx_a, rx_a) = message::buffered(100);
        let (tx_b, rx_b) = message::buffered(100);
        for _ in 0..100 {
            tx_a.try_send('a').map_err(Error::from)?;
            tx_b.try_send('b').map_err(Error::from)?;
        }
        let mut wins = [0; 2];
        for _ in 0..100 {
            let (i, _) = message::select(&[&rx_a, &rx_b]).await?;
            wins[i] += 1;
        }
        assert_eq!(wins, [50, 50]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn select_skips_closed_recvers_and_fails_when_all_are() {
    run(async {
        let (tx_a, rx_a) = message::pipe::<u8>();
        let (tx_b, rx_b) = message::pipe::<u8>();
        drop(tx_a);
        let _task = spawn(async move { tx_b.send(2).await })?;
        assert_eq!(message::select(&[&rx_a, &rx_b]).await?, (1, 2));
        assert!(closed(message::select(&[&rx_a, &rx_b]).await));
        assert!(matches!(
            message::select::<u8>(&[]).await,
            Err(Error::InvalidArgument(_))
        ));
        Ok(())
    })
    .unwrap();
}

#[test]
fn select_send_waits_for_room_and_sends_once() {
    run(async {
        let (tx_a, rx_a) = message::pipe::<u32>();
        let (tx_b, rx_b) = message::pipe::<u32>();
        let sel = spawn(async move { message::select_send(&[&tx_a, &tx_b], 7).await })?;
        settle().await?;
        assert!(!sel.done(), "no recver waits yet");
        let got = spawn(async move { rx_b.recv().await })?;
        assert_eq!(sel.await?, 1);
        assert_eq!(got.await?, 7);
        assert!(closed(rx_a.recv().await), "nothing went to the other pipe");
        Ok(())
    })
    .unwrap();
}

// ---- streams --------------------------------------------------------------------------------

#[test]
fn stream_iteration_ends_at_close() {
    run(async {
        let (tx, mut rx) = message::buffered(4);
        for i in 0..4 {
            tx.send(i).await?;
        }
        drop(tx);
        let mut got = Vec::new();
        while let Some(i) = next(&mut rx).await {
            got.push(i);
        }
        assert_eq!(got, [0, 1, 2, 3]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn stream_waits_for_items_and_feeds_a_select() {
    run(async {
        let (tx, rx) = message::pipe();
        let _task = spawn(async move {
            for i in 0..3 {
                tx.send(i).await?;
            }
            Ok(())
        })?;
        let select = tulipa_futures::select::Select::new(false);
        select.add_stream(rx);
        let mut got = Vec::new();
        while let Some(msg) = select.next().await {
            got.push(msg?.1);
        }
        assert_eq!(got, [0, 1, 2]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_pending_stream_poll_is_withdrawn_by_recv() {
    run(async {
        let (tx, mut rx) = message::pipe();
        // Polled once as a stream: `Pending`, and a place in the recvers' queue.
        poll_fn(|cx| {
            assert!(Pin::new(&mut rx).poll_next(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        let second = {
            let rx = rx.clone();
            spawn(async move { rx.recv().await })?
        };
        settle().await?;
        // `recv` on the same recver gives the stream's place up (it would never be polled
        // again) and queues behind `second`.
        let first = spawn(async move { rx.recv().await })?;
        settle().await?;
        tx.send(1).await?;
        tx.send(2).await?;
        assert_eq!(second.await?, 1);
        assert_eq!(first.await?, 2);
        Ok(())
    })
    .unwrap();
}

// ---- chaining -------------------------------------------------------------------------------

#[test]
fn map_chain_then_consume() {
    run(async {
        let (tx, rx) = message::pipe();
        let out = Rc::new(RefCell::new(Vec::new()));
        let sink = rx
            .map(|i: u32| i + 1)?
            .map(|i| format!("<{i}>"))?
            .consume({
                let out = out.clone();
                move |s| out.borrow_mut().push(s)
            })?;
        for i in 0..3 {
            tx.send(i).await?;
        }
        drop(tx);
        sink.await?;
        assert_eq!(*out.borrow(), ["<1>", "<2>", "<3>"]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn map_passes_a_close_error_on() {
    run(async {
        let (tx, rx) = message::buffered(1);
        let mapped = rx.map(|i: i32| -i)?;
        tx.send(1).await?;
        tx.close_with(Error::InvalidState("upstream failed"));
        assert_eq!(mapped.recv().await?, -1);
        assert!(matches!(
            mapped.recv().await,
            Err(Error::InvalidState("upstream failed"))
        ));
        Ok(())
    })
    .unwrap();
}

#[test]
fn dropping_the_mapped_recver_closes_upstream() {
    run(async {
        let (tx, rx) = message::pipe::<u8>();
        let mapped = rx.map(|i| i)?;
        settle().await?;
        drop(mapped);
        tx.closed().await?; // the forwarding task noticed while waiting, and let go
        assert!(closed(tx.send(1).await));
        Ok(())
    })
    .unwrap();
}

#[test]
fn pipe_into_router_keeps_it_open_until_every_source_is_done() {
    run(async {
        let (gather_tx, gather) = message::router();
        let (a_tx, a_rx) = message::buffered(1);
        let (b_tx, b_rx) = message::buffered(1);
        let _forwarder = a_rx.pipe(gather_tx.clone())?;
        let _forwarder = b_rx.pipe(gather_tx)?;
        a_tx.send("a").await?;
        drop(a_tx);
        assert_eq!(gather.recv().await?, "a");
        settle().await?;
        assert!(!gather.is_closed(), "b is still piped in");
        b_tx.send("b").await?;
        drop(b_tx);
        assert_eq!(gather.recv().await?, "b");
        assert!(closed(gather.recv().await));
        Ok(())
    })
    .unwrap();
}

#[test]
fn vanilla_pair_map_pipe_consume() {
    // vanilla's `h.pipe().map(f).pipe(target)` and `pair.consume(f)`, keeping the first sender.
    run(async {
        let p = message::Pair::from(message::pipe())
            .map(|s: &str| s.len())?
            .pipe(message::buffered(2).into())?;
        p.send("four").await?;
        p.send("five!").await?;
        assert_eq!(p.recv().await?, 4);
        assert_eq!(p.recv().await?, 5);

        let seen = Rc::new(RefCell::new(Vec::new()));
        let sender = message::Pair::from(message::pipe()).consume({
            let seen = seen.clone();
            move |x: u8| seen.borrow_mut().push(x)
        })?;
        sender.send(1).await?;
        sender.send(2).await?;
        // The consumer calls `f` in the step in which it took the item.
        assert_eq!(*seen.borrow(), [1, 2]);
        Ok(())
    })
    .unwrap();
}

// ---- router / dealer / channel --------------------------------------------------------------

#[test]
fn router_gathers_from_many_senders() {
    run(async {
        let (tx, rx) = message::router();
        for s in 0..4u32 {
            let tx = tx.clone();
            let _task = spawn(async move {
                for i in 0..5 {
                    tx.send(s * 100 + i).await?;
                }
                Ok(())
            })?;
        }
        drop(tx);
        let mut got = Vec::new();
        while let Ok(v) = rx.recv().await {
            got.push(v);
        }
        assert_eq!(got.len(), 20);
        for s in 0..4u32 {
            let mine: Vec<_> = got.iter().filter(|v| *v / 100 == s).copied().collect();
            assert_eq!(
                mine,
                (0..5).map(|i| s * 100 + i).collect::<Vec<_>>(),
                "per-sender order"
            );
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn dealer_gives_each_item_to_exactly_one_recver() {
    run(async {
        let (tx, rx) = message::dealer();
        let workers: Vec<_> = (0..3)
            .map(|_| {
                let rx = rx.clone();
                spawn(async move {
                    let mut mine = Vec::new();
                    while let Ok(v) = rx.recv().await {
                        mine.push(v);
                    }
                    Ok(mine)
                })
            })
            .collect::<Result<_>>()?;
        drop(rx);
        for i in 0..30 {
            tx.send(i).await?;
        }
        drop(tx);
        let mut all = Vec::new();
        for w in workers {
            let mine = w.await?;
            assert!(!mine.is_empty(), "every waiting recver had turns");
            all.extend(mine);
        }
        all.sort_unstable();
        assert_eq!(all, (0..30).collect::<Vec<_>>());
        Ok(())
    })
    .unwrap();
}

#[test]
fn channel_is_many_to_many_and_buffered() {
    run(async {
        let (tx, rx) = message::channel(4);
        let (tx2, rx2) = (tx.clone(), rx.clone());
        for i in 0..4 {
            if i % 2 == 0 { &tx } else { &tx2 }.send(i).await?;
        }
        drop((tx, tx2));
        let mut got = vec![
            rx.recv().await?,
            rx2.recv().await?,
            rx.recv().await?,
            rx2.recv().await?,
        ];
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3]);
        assert!(closed(rx2.recv().await));
        Ok(())
    })
    .unwrap();
}

// ---- state ----------------------------------------------------------------------------------

#[test]
fn state_recv_waits_until_set_and_then_returns_at_once() {
    run(async {
        let s = State::new();
        let waiter = {
            let s = s.clone();
            spawn(async move { s.recv().await })?
        };
        settle().await?;
        assert!(!waiter.done());
        assert_eq!(s.get(), None);
        s.set(1);
        assert_eq!(waiter.await?, 1);
        assert_eq!(s.recv().await?, 1);
        assert_eq!(s.get(), Some(1));
        s.clear();
        assert!(!s.is_set());
        Ok(())
    })
    .unwrap();
}

#[test]
fn state_waiter_gets_the_value_even_if_cleared_before_it_runs() {
    run(async {
        let s = State::new();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let s = s.clone();
                spawn(async move { s.recv().await })
            })
            .collect::<Result<_>>()?;
        settle().await?;
        s.set("done");
        s.clear();
        for w in waiters {
            assert_eq!(w.await?, "done");
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn state_recv_is_cancel_safe() {
    run(async {
        let s = State::<u8>::new();
        let waiter = {
            let s = s.clone();
            spawn(async move { s.recv().await })?
        };
        settle().await?;
        waiter.cancel(None);
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert!(
            format!("{s:?}").contains("waiters: 0"),
            "no stale waiter: {s:?}"
        );
        Ok(())
    })
    .unwrap();
}

// ---- producer, pulse, spawn_later (virtual time) --------------------------------------------

#[test]
fn producer_closes_its_pipe_when_done() {
    run(async {
        let rx = message::producer(|tx| async move {
            for i in 0..3 {
                tx.send(i).await?;
            }
            Ok(())
        })?;
        let mut got = Vec::new();
        while let Ok(i) = rx.recv().await {
            got.push(i);
        }
        assert_eq!(got, [0, 1, 2]);
        Ok(())
    })
    .unwrap();
}

#[test]
fn producer_error_reaches_the_recver() {
    run(async {
        let rx = message::producer(|tx| async move {
            tx.send(1).await?;
            Err(Error::InvalidState("producer failed"))
        })?;
        assert_eq!(rx.recv().await?, 1);
        assert!(matches!(
            rx.recv().await,
            Err(Error::InvalidState("producer failed"))
        ));
        Ok(())
    })
    .unwrap();
}

#[test]
fn pulse_ticks_on_the_loops_clock() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let lp2 = lp.clone();
    let times = run_until_complete(&lp, async move {
        let ticks = message::pulse(Duration::from_millis(250), true)?;
        let mut times = Vec::new();
        for _ in 0..4 {
            assert!(ticks.recv().await?);
            times.push(lp2.time() - start);
        }
        Ok(times)
    })
    .unwrap();
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [250, 500, 750, 1000]);
}

#[test]
fn dropping_the_pulse_recver_stops_its_timer_task() {
    let lp = EventLoop::new_virtual().unwrap();
    let lp2 = lp.clone();
    run_until_complete(&lp, async move {
        let ticks = message::pulse(Duration::from_secs(3600), ())?;
        settle().await?;
        assert_eq!(
            tulipa_futures::all_tasks(&lp2).len(),
            2,
            "main task and the pulse task"
        );
        drop(ticks);
        settle().await?;
        assert_eq!(
            tulipa_futures::all_tasks(&lp2).len(),
            1,
            "the pulse task ended at once"
        );
        assert_eq!(lp2.stats().timers, 0, "its timer is gone");
        Ok(())
    })
    .unwrap();
}

#[test]
fn slow_pulse_consumer_gets_no_burst() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let lp2 = lp.clone();
    let times = run_until_complete(&lp, async move {
        let ticks = message::pulse(Duration::from_secs(1), 'x')?;
        let mut times = Vec::new();
        ticks.recv().await?;
        times.push(lp2.time() - start);
        sleep(Duration::from_millis(3500)).await?; // misses three ticks
        for _ in 0..2 {
            ticks.recv().await?;
            times.push(lp2.time() - start);
        }
        Ok(times)
    })
    .unwrap();
    let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
    assert_eq!(ms, [1000, 4500, 5500]);
}

#[test]
fn spawn_later_starts_after_the_delay() {
    let lp = EventLoop::new_virtual().unwrap();
    let start = lp.time();
    let lp2 = lp.clone();
    let at = run_until_complete(&lp, async move {
        let lp3 = lp2.clone();
        let t = message::spawn_later(Duration::from_millis(50), async move { Ok(lp3.time()) })?;
        t.await
    })
    .unwrap();
    assert_eq!(at - start, Duration::from_millis(50));
}

// ---- across threads -------------------------------------------------------------------------

const N: u64 = 100_000;

/// Runs `f` on a new thread with its own loop.
fn on_thread<T: Send + 'static, F, Fut>(f: F) -> std::thread::JoinHandle<Result<T>>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>> + 'static,
{
    std::thread::spawn(move || run(async move { f().await }))
}

fn cross_thread_all_items(cap: usize) {
    let (tx, rx) = message::buffered::<u64>(cap);
    let sender = on_thread(move || async move {
        for i in 0..N {
            tx.send(i).await?;
        }
        Ok(())
    });
    let recver = on_thread(move || async move {
        let mut expect = 0;
        loop {
            match rx.recv().await {
                Ok(i) => {
                    assert_eq!(i, expect, "in order, none lost, none twice");
                    expect += 1;
                }
                Err(Error::Closed) => return Ok(expect),
                Err(e) => return Err(e),
            }
        }
    });
    sender.join().unwrap().unwrap();
    assert_eq!(recver.join().unwrap().unwrap(), N);
}

#[test]
fn cross_thread_rendezvous_delivers_every_item_once() {
    cross_thread_all_items(0);
}

#[test]
fn cross_thread_buffered_delivers_every_item_once() {
    cross_thread_all_items(64);
}

/// The recver closes the pipe midway; everything a send reported `Ok` for is received, once.
fn cross_thread_recver_closes(cap: usize) {
    let (tx, rx) = message::buffered::<u64>(cap);
    let sender = on_thread(move || async move {
        let mut sent = 0;
        loop {
            match tx.send(sent).await {
                Ok(()) => sent += 1,
                Err(Error::Closed) => return Ok(sent),
                Err(e) => return Err(e),
            }
        }
    });
    let recver = on_thread(move || async move {
        let mut got = 0;
        loop {
            if got == N / 2 {
                rx.close();
            }
            match rx.recv().await {
                Ok(i) => {
                    assert_eq!(i, got);
                    got += 1;
                }
                Err(Error::Closed) => return Ok(got),
                Err(e) => return Err(e),
            }
        }
    });
    let sent = sender.join().unwrap().unwrap();
    let got = recver.join().unwrap().unwrap();
    assert_eq!(
        sent, got,
        "every item sent Ok was received, and nothing else"
    );
    assert!((N / 2..=N / 2 + cap as u64).contains(&got));
}

#[test]
fn cross_thread_recver_close_loses_nothing() {
    cross_thread_recver_closes(0);
    cross_thread_recver_closes(16);
}

/// Several senders and recvers on four threads; the senders close the pipe when done.
#[test]
fn cross_thread_many_to_many_no_loss_no_duplicates() {
    let (tx, rx) = message::channel::<u64>(8);
    let per = N / 2;
    let senders: Vec<_> = (0..2)
        .map(|s| {
            let tx = tx.clone();
            on_thread(move || async move {
                for i in 0..per {
                    tx.send(s * per + i).await?;
                }
                Ok(Vec::<u64>::new())
            })
        })
        .collect();
    drop(tx);
    let recvers: Vec<_> = (0..2)
        .map(|_| {
            let rx = rx.clone();
            on_thread(move || async move {
                let mut got = Vec::new();
                while let Ok(v) = rx.recv().await {
                    got.push(v);
                }
                Ok(got)
            })
        })
        .collect();
    drop(rx);
    for s in senders {
        s.join().unwrap().unwrap();
    }
    let mut all = Vec::new();
    for r in recvers {
        all.extend(r.join().unwrap().unwrap());
    }
    all.sort_unstable();
    assert_eq!(all.len() as u64, N);
    assert!(all.iter().copied().eq(0..N), "each item exactly once");
}

// ---- random cancellations -------------------------------------------------------------------

/// A small deterministic pseudo-random sequence (no dependency, same run every time).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Cancels the given tasks at random, one every few loop iterations, until all are done.
async fn chaos(tasks: Vec<tulipa_futures::TaskRef>, seed: u64) -> Result<u32> {
    let mut rng = Lcg(seed);
    let mut cancels = 0;
    while tasks.iter().any(|t| !t.done()) {
        let t = &tasks[rng.next(tasks.len())];
        if t.cancel(None) {
            cancels += 1;
        }
        for _ in 0..=rng.next(4) {
            sleep(Duration::ZERO).await?;
        }
    }
    Ok(cancels)
}

/// `tasks` tasks send `per_task` ids each into `tx`, skipping the ids whose send was cancelled,
/// while a chaos task cancels them; returns the ids that were sent `Ok`.
async fn senders_under_chaos(
    tx: message::Sender<u64>,
    base: u64,
    tasks: u64,
    per_task: u64,
    seed: u64,
) -> Result<Vec<u64>> {
    let sent = Rc::new(RefCell::new(Vec::new()));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (tx, sent) = (tx.clone(), sent.clone());
        handles.push(spawn(async move {
            for i in 0..per_task {
                let id = base + t * per_task + i;
                match tx.send(id).await {
                    Ok(()) => sent.borrow_mut().push(id),
                    Err(e) if e.is_cancelled() => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?);
    }
    drop(tx);
    let cancels = chaos(handles.iter().map(|h| h.as_task_ref()).collect(), seed).await?;
    assert!(cancels > 0, "the chaos task did cancel sends");
    for h in handles {
        match h.await {
            // A cancel during a task's last step ends it cancelled (asyncio's rule): for example
            // when its last send was delivered just before the cancellation arrived.
            Err(e) if e.is_cancelled() => {}
            r => r?,
        }
    }
    Ok(sent.take())
}

/// `tasks` tasks receive from `rx` (or, for the first, select over `rx` and `other`) until the
/// pipes are closed, while a chaos task cancels them; returns every id received.
async fn recvers_under_chaos(
    rx: Recver<u64>,
    other: Recver<u64>,
    tasks: usize,
    seed: u64,
) -> Result<Vec<u64>> {
    let got = Rc::new(RefCell::new(Vec::new()));
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (rx, other, got) = (rx.clone(), other.clone(), got.clone());
        handles.push(spawn(async move {
            loop {
                let r = if t == 0 {
                    message::select(&[&rx, &other]).await.map(|(_, v)| v)
                } else if t % 2 == 0 {
                    rx.recv().await
                } else {
                    other.recv().await
                };
                match r {
                    Ok(v) => got.borrow_mut().push(v),
                    Err(e) if e.is_cancelled() => {}
                    Err(Error::Closed) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })?);
    }
    drop((rx, other));
    chaos(handles.iter().map(|h| h.as_task_ref()).collect(), seed).await?;
    for h in handles {
        match h.await {
            // A cancel during a task's last step ends it cancelled (asyncio's rule): for example
            // when its last send was delivered just before the cancellation arrived.
            Err(e) if e.is_cancelled() => {}
            r => r?,
        }
    }
    Ok(got.take())
}

fn assert_same_items(mut sent: Vec<u64>, mut got: Vec<u64>) {
    let n = got.len();
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), n, "no item received twice");
    sent.sort_unstable();
    assert_eq!(
        sent, got,
        "received exactly the items whose send returned Ok"
    );
}

#[test]
fn random_cancellations_lose_and_duplicate_nothing() {
    for (cap, seed) in [(0, 1), (1, 2), (3, 3)] {
        run(async move {
            let (tx_a, rx_a) = message::buffered(cap);
            let (tx_b, rx_b) = message::buffered(cap);
            let recvers = spawn(recvers_under_chaos(rx_a, rx_b, 4, seed))?;
            let a = spawn(senders_under_chaos(tx_a, 0, 3, 300, seed + 10))?;
            let b = spawn(senders_under_chaos(tx_b, 1_000_000, 3, 300, seed + 20))?;
            let mut sent = a.await?;
            sent.extend(b.await?);
            assert!(sent.len() > 900, "most sends got through");
            assert_same_items(sent, recvers.await?);
            Ok(())
        })
        .unwrap();
    }
}

#[test]
fn cross_thread_random_cancellations_lose_and_duplicate_nothing() {
    for cap in [0, 8] {
        let (tx_a, rx_a) = message::buffered(cap);
        let (tx_b, rx_b) = message::buffered(cap);
        let senders = on_thread(move || async move {
            let a = spawn(senders_under_chaos(tx_a, 0, 3, 3_000, 7))?;
            let b = spawn(senders_under_chaos(tx_b, 1_000_000, 3, 3_000, 8))?;
            let mut sent = a.await?;
            sent.extend(b.await?);
            Ok(sent)
        });
        let recvers = on_thread(move || recvers_under_chaos(rx_a, rx_b, 4, 9));
        let sent = senders.join().unwrap().unwrap();
        let got = recvers.join().unwrap().unwrap();
        assert_same_items(sent, got);
    }
}
