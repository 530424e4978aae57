//! Behaviour of `tulipa_futures::select::Select`, ported from mitogen's documented `Select`
//! (`docs/api.rst`: scatter/gather with `oneshot`, the long-running scheduler, nested selects,
//! `get(timeout)`, `__bool__`, `add`/`remove`, iteration).
//!
//! Every test runs on a virtual-time loop: timeouts and sleeps advance the loop's clock, never the
//! wall clock. Streams are the small [`Chan`] below, so each test decides exactly when a message
//! arrives and when a stream ends.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use common::{block_on, running, ticks};
use futures_core::Stream;
use tulipa_futures::select::Select;
use tulipa_futures::{sleep, spawn, Error, Future, Result, Task};

/// A task that sleeps `ms` milliseconds (virtual time) and returns `value`.
fn work(ms: u64, value: u64) -> Result<Task<u64>> {
    spawn(async move {
        sleep(Duration::from_millis(ms)).await?;
        Ok(value)
    })
}

/// A hand-driven stream (mitogen's `Receiver` in the tests): `send` queues a message and wakes
/// the reader, `close` ends the stream once it is drained.
struct Chan<T> {
    items: RefCell<VecDeque<T>>,
    closed: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// The reading end of a [`Chan`], the part a select owns.
struct ChanStream<T>(Rc<Chan<T>>);

fn chan<T>() -> (Rc<Chan<T>>, ChanStream<T>) {
    let c = Rc::new(Chan {
        items: RefCell::new(VecDeque::new()),
        closed: Cell::new(false),
        waker: RefCell::new(None),
    });
    (c.clone(), ChanStream(c))
}

impl<T> Chan<T> {
    fn send(&self, v: T) {
        self.items.borrow_mut().push_back(v);
        self.wake();
    }

    fn close(&self) {
        self.closed.set(true);
        self.wake();
    }

    fn wake(&self) {
        let w = self.waker.borrow_mut().take();
        if let Some(w) = w {
            w.wake();
        }
    }
}

impl<T> Stream for ChanStream<T> {
    type Item = T;
    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(v) = self.0.items.borrow_mut().pop_front() {
            return Poll::Ready(Some(v));
        }
        if self.0.closed.get() {
            return Poll::Ready(None);
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// A stream that always has a message ready: its label and a counter.
struct Always {
    label: &'static str,
    n: u32,
}

impl Stream for Always {
    type Item = (&'static str, u32);
    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.n += 1;
        Poll::Ready(Some((self.label, self.n)))
    }
}

// ---------------------------------------------------------------------------------------------
// Scatter/gather with oneshot (the seed's `total` example)
// ---------------------------------------------------------------------------------------------

#[test]
fn oneshot_gathers_one_result_per_task_in_completion_order() {
    block_on(async {
        // recvs = [c.call_async(long_running_operation) for c in contexts]
        let select = Select::new(true);
        let mut names = HashMap::new();
        for (name, ms, value) in [("slow", 30, 3), ("fast", 10, 1), ("mid", 20, 2)] {
            names.insert(select.add_future(work(ms, value)?), name);
        }
        assert_eq!(select.len(), 3);

        let mut total = 0;
        let mut order = Vec::new();
        // for recv, msg in select: ...  (iteration ends when the last source yields)
        while let Some(msg) = select.next().await {
            let (id, value) = msg?;
            order.push(names[&id]);
            total += value?;
            assert_eq!(select.len(), 3 - order.len(), "oneshot removes each source");
        }
        assert_eq!(order, ["fast", "mid", "slow"]);
        assert_eq!(total, 6);
        assert!(select.is_empty());
        Ok(())
    });
}

#[test]
fn a_failed_task_delivers_its_error_as_its_message() {
    block_on(async {
        let select = Select::new(true);
        let ok = select.add_future(work(10, 7)?);
        let failing = select.add_future(spawn(async {
            sleep(Duration::from_millis(5)).await?;
            Err::<u64, _>(Error::InvalidArgument("kaboom"))
        })?);
        let (id, first) = select.get(None).await?;
        assert_eq!(id, failing);
        assert!(matches!(first, Err(Error::InvalidArgument("kaboom"))));
        let (id, second) = select.get(None).await?;
        assert_eq!(id, ok);
        assert_eq!(second?, 7);
        assert!(select.next().await.is_none());
        Ok(())
    });
}

#[test]
fn a_future_already_done_when_added_is_delivered_at_once() {
    block_on(async {
        let lp = running();
        let f = Future::<u32>::new(&lp);
        f.set_result(5)?;
        let select = Select::new(true);
        let id = select.add_future(f);
        let start = lp.time();
        let (got, v) = select.get(Some(Duration::from_secs(1))).await?;
        assert_eq!((got, v?), (id, 5));
        assert_eq!(lp.time(), start, "no time passed");
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Streams without oneshot
// ---------------------------------------------------------------------------------------------

#[test]
fn without_oneshot_a_stream_delivers_several_messages_until_it_ends() {
    block_on(async {
        let (tx, rx) = chan::<&'static str>();
        let select = Select::new(false);
        let id = select.add_stream(rx);
        let producer = spawn(async move {
            for m in ["one", "two", "three"] {
                sleep(Duration::from_millis(10)).await?;
                tx.send(m);
            }
            sleep(Duration::from_millis(10)).await?;
            tx.close();
            Ok(())
        })?;

        let mut got = Vec::new();
        while let Some(msg) = select.next().await {
            let (from, m) = msg?;
            assert_eq!(from, id);
            got.push(m);
            assert_eq!(select.len(), 1, "the stream stays in the select");
        }
        assert_eq!(got, ["one", "two", "three"]);
        assert!(select.is_empty(), "a closed stream leaves the select");
        producer.await
    });
}

#[test]
fn with_oneshot_a_stream_leaves_after_its_first_message() {
    block_on(async {
        let (tx, rx) = chan::<u32>();
        tx.send(1);
        tx.send(2);
        let select = Select::new(true);
        select.add_stream(rx);
        let (_, first) = select.get(None).await?;
        assert_eq!(first, 1);
        assert!(select.is_empty());
        assert!(select.next().await.is_none());
        // The second message was never taken: it is still in the channel.
        assert_eq!(tx.items.borrow().front(), Some(&2));
        Ok(())
    });
}

#[test]
fn without_oneshot_a_future_leaves_once_it_delivered_its_outcome() {
    block_on(async {
        let select = Select::new(false);
        let id = select.add_future(work(10, 42)?);
        let (got, v) = select.get(None).await?;
        assert_eq!((got, v?), (id, 42));
        // The next poll finds it exhausted, and the iteration ends.
        assert!(select.next().await.is_none());
        assert!(select.is_empty());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// add/remove while iterating (the seed's long-running scheduler)
// ---------------------------------------------------------------------------------------------

#[test]
fn a_long_running_scheduler_adds_work_while_iterating() {
    block_on(async {
        let select = Select::new(true);
        let mut new_work: VecDeque<(u64, u64)> = [(5, 10), (15, 20), (1, 30), (8, 40)].into();
        select.add_future(work(10, 1)?);
        select.add_future(work(20, 2)?);

        let mut results = Vec::new();
        let mut rounds = 0;
        // while running(): for recv, msg in select: process(...); for w in get_new_work(): add(w)
        while !select.is_empty() {
            rounds += 1;
            while let Some(msg) = select.next().await {
                let (_, v) = msg?;
                results.push(v?);
                // New work arrives while results are being processed.
                if let Some((ms, value)) = new_work.pop_front() {
                    select.add_future(work(ms, value)?);
                }
            }
        }
        assert_eq!(rounds, 1, "adding inside the iteration keeps it going");
        results.sort_unstable();
        assert_eq!(results, [1, 2, 10, 20, 30, 40]);
        Ok(())
    });
}

#[test]
fn removing_a_source_while_iterating_ends_its_wait() {
    block_on(async {
        let select = Select::new(true);
        let quick = select.add_future(work(10, 1)?);
        let stuck = select.add_future(work(3_600_000, 2)?);
        let (id, _) = select.get(None).await?;
        assert_eq!(id, quick);
        // Only the hour-long call is left; give up on it.
        assert!(select.remove(stuck));
        assert!(!select.remove(stuck), "a second remove finds nothing");
        assert!(select.is_empty());
        let lp = running();
        let start = lp.time();
        assert!(select.next().await.is_none(), "iteration ends at once");
        assert_eq!(lp.time(), start);
        Ok(())
    });
}

#[test]
fn a_removed_source_never_delivers_even_if_it_had_a_message_ready() {
    // mitogen documents the opposite ("if the receiver has notified prior to remove, then it will
    // still be returned by a subsequent get"); Tulipa takes messages only in `get`, so a removed
    // source has nothing left in the select.
    block_on(async {
        let lp = running();
        let f = Future::<u32>::new(&lp);
        let g = Future::<u32>::new(&lp);
        let select = Select::new(true);
        let fid = select.add_future(f.clone());
        let gid = select.add_future(g.clone());
        f.set_result(1)?;
        assert!(select.remove(fid));
        g.set_result(2)?;
        let (id, v) = select.get(None).await?;
        assert_eq!((id, v?), (gid, 2));
        assert!(select.next().await.is_none());
        // The removed future still holds its result: nothing was lost.
        assert_eq!(f.result()?, 1);
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Nesting (the seed's subselects example)
// ---------------------------------------------------------------------------------------------

#[test]
fn nested_selects_yield_the_inner_source_ids() {
    block_on(async {
        // subselects = [Select(get_some_work()), Select(get_some_work())]
        let first = Select::new(true);
        let a = first.add_future(work(10, 1)?);
        let b = first.add_future(work(30, 2)?);
        let second = Select::new(true);
        let c = second.add_future(work(20, 3)?);

        // with Select(subselects, oneshot=False) as select: while any(subselects): select.get()
        let outer = Select::new(false);
        let o1 = outer.add(first);
        let o2 = outer.add(second);
        assert_eq!(outer.len(), 2);

        let mut seen = Vec::new();
        while let Some(msg) = outer.next().await {
            let (outer_id, (inner_id, value)) = msg?;
            seen.push((outer_id, inner_id, value?));
        }
        assert_eq!(seen, [(o1, a, 1), (o2, c, 3), (o1, b, 2)]);
        assert!(
            outer.is_empty(),
            "each inner select left once it had no source"
        );
        Ok(())
    });
}

#[test]
fn an_inner_select_with_a_stream_keeps_delivering_through_the_outer_one() {
    block_on(async {
        let (tx, rx) = chan::<u32>();
        let inner = Select::new(false);
        let sid = inner.add_stream(rx);
        let outer = Select::new(false);
        let iid = outer.add(inner);
        tx.send(1);
        tx.send(2);
        assert_eq!(outer.get(None).await?, (iid, (sid, 1)));
        assert_eq!(outer.get(None).await?, (iid, (sid, 2)));
        tx.close();
        assert!(outer.next().await.is_none());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// get(timeout), emptiness, length
// ---------------------------------------------------------------------------------------------

#[test]
fn get_with_a_timeout_fails_with_timeout_when_nothing_arrives() {
    block_on(async {
        let lp = running();
        let select = Select::new(true);
        let id = select.add_future(work(3_600_000, 9)?);
        let start = lp.time();
        let err = select.get(Some(Duration::from_secs(5))).await.unwrap_err();
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(lp.time() - start, Duration::from_secs(5));
        // The source is still there, and its message still arrives later.
        assert_eq!(select.len(), 1);
        let (got, v) = select.get(None).await?;
        assert_eq!((got, v?), (id, 9));
        assert_eq!(lp.time() - start, Duration::from_secs(3600));
        Ok(())
    });
}

#[test]
fn get_with_a_timeout_returns_a_message_that_arrives_in_time() {
    block_on(async {
        let lp = running();
        let select = Select::new(true);
        let id = select.add_future(work(300, 1)?);
        let start = lp.time();
        let (got, v) = select.get(Some(Duration::from_secs(1))).await?;
        assert_eq!((got, v?), (id, 1));
        assert_eq!(lp.time() - start, Duration::from_millis(300));
        Ok(())
    });
}

#[test]
fn get_on_an_empty_select_is_an_invalid_state() {
    block_on(async {
        let select: Select<u32> = Select::new(true);
        assert!(select.is_empty());
        assert_eq!(select.len(), 0);
        let err = select.get(None).await.unwrap_err();
        assert!(err.is_invalid_state(), "{err:?}");
        let err = select.get(Some(Duration::from_secs(1))).await.unwrap_err();
        assert!(err.is_invalid_state(), "{err:?}");
        assert!(select.next().await.is_none());
        Ok(())
    });
}

#[test]
fn is_empty_and_len_follow_the_sources() {
    block_on(async {
        let (tx, rx) = chan::<u32>();
        let (_other_tx, other_rx) = chan::<u32>();
        let select = Select::new(false);
        assert!(select.is_empty());
        let s = select.add_stream(rx);
        let other = select.add_stream(other_rx);
        assert_eq!(select.len(), 2);
        assert!(!select.is_empty());
        assert_ne!(s, other, "ids are distinct");
        assert!(select.remove(other));
        assert_eq!(select.len(), 1);
        tx.close();
        // The closed stream is noticed (and removed) by the next poll, not before.
        assert_eq!(select.len(), 1);
        assert!(select.next().await.is_none());
        assert_eq!(select.len(), 0);
        assert!(select.is_empty());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Cancellation and fairness
// ---------------------------------------------------------------------------------------------

#[test]
fn cancelling_a_task_blocked_in_next_loses_no_message() {
    block_on(async {
        let (tx, rx) = chan::<&'static str>();
        let select = Rc::new(Select::new(false));
        let id = select.add_stream(rx);
        let s2 = select.clone();
        let waiter = spawn(async move {
            match s2.next().await {
                Some(r) => r.map(Some),
                None => Ok(None),
            }
        })?;
        ticks(2).await?; // the waiter is now blocked in next()

        // A message arrives and the waiter is cancelled before it runs again.
        tx.send("precious");
        assert!(waiter.cancel(Some("shutting down")));
        let err = waiter.clone().await.unwrap_err();
        assert!(err.is_cancelled(), "{err:?}");

        // The message was not taken by the cancelled waiter.
        assert_eq!(select.get(None).await?, (id, "precious"));
        Ok(())
    });
}

#[test]
fn cancelling_a_task_blocked_in_get_with_a_timeout_loses_no_future_outcome() {
    block_on(async {
        let lp = running();
        let f = Future::<u32>::new(&lp);
        let select = Rc::new(Select::new(true));
        let id = select.add_future(f.clone());
        let s2 = select.clone();
        let waiter = spawn(async move { s2.get(Some(Duration::from_secs(60))).await })?;
        ticks(2).await?;
        f.set_result(11)?;
        waiter.cancel(None);
        assert!(waiter.clone().await.unwrap_err().is_cancelled());
        // The source future was not cancelled along with the waiter, and its outcome is kept.
        assert!(!f.cancelled());
        let (got, v) = select.get(None).await?;
        assert_eq!((got, v?), (id, 11));
        Ok(())
    });
}

#[test]
fn two_always_ready_streams_alternate() {
    block_on(async {
        let select = Select::new(false);
        let a = select.add_stream(Always { label: "a", n: 0 });
        let b = select.add_stream(Always { label: "b", n: 0 });
        let mut ids = Vec::new();
        let mut labels = Vec::new();
        for _ in 0..6 {
            let (id, (label, _)) = select.get(None).await?;
            ids.push(id);
            labels.push(label);
        }
        assert_eq!(ids, [a, b, a, b, a, b]);
        assert_eq!(labels, ["a", "b", "a", "b", "a", "b"]);
        Ok(())
    });
}

#[test]
fn three_always_ready_streams_take_turns() {
    block_on(async {
        let select = Select::new(false);
        for label in ["a", "b", "c"] {
            select.add_stream(Always { label, n: 0 });
        }
        let mut labels = Vec::new();
        for _ in 0..6 {
            labels.push(select.get(None).await?.1 .0);
        }
        assert_eq!(labels, ["a", "b", "c", "a", "b", "c"]);
        Ok(())
    });
}

#[test]
fn a_source_ending_mid_poll_does_not_hide_the_source_after_it() {
    // Sources [a, b, c]. `b` delivers, so the next poll starts at `c`; then `a` ends and `b` has
    // a message. The poll that removes `a` must still look at `b`, or `b`'s message waits for an
    // unrelated wake-up (here: the timeout).
    block_on(async {
        let lp = running();
        let (ta, ra) = chan::<&'static str>();
        let (tb, rb) = chan::<&'static str>();
        let (_tc, rc) = chan::<&'static str>();
        let select = Select::new(false);
        select.add_stream(ra);
        let b = select.add_stream(rb);
        select.add_stream(rc);

        tb.send("first");
        assert_eq!(select.get(None).await?, (b, "first"));

        ta.close();
        tb.send("second");
        ticks(1).await?; // consume the wake-up from closing `a`

        let start = lp.time();
        assert_eq!(
            select.get(Some(Duration::from_secs(1))).await?,
            (b, "second")
        );
        assert_eq!(lp.time(), start, "delivered at once, not after the timeout");
        assert_eq!(select.len(), 2);
        Ok(())
    });
}

#[test]
fn get_with_a_duration_max_limit_waits_without_a_limit() {
    block_on(async {
        let lp = running();
        let select = Select::new(true);
        let id = select.add_future(work(3_600_000, 9)?);
        let start = lp.time();
        // Too large for the clock: no deadline (it used to overflow and panic).
        let (got, v) = select.get(Some(Duration::MAX)).await?;
        assert_eq!((got, v?), (id, 9));
        assert_eq!(lp.time() - start, Duration::from_secs(3600));
        Ok(())
    });
}
