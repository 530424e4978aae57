//! Queues for tasks on one loop (asyncio's `queues.py`, with Python 3.13's `shutdown`).
//!
//! [`Queue`] is FIFO, [`Queue::lifo`] LIFO, [`Queue::priority`] pops the smallest item first. A
//! `maxsize` of 0 means unbounded; otherwise `put` waits while the queue is full (back-pressure).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use crate::cancel;
use crate::error::{Error, Result};
use crate::sync::waitq::{WaitQueue, Waiting};
use crate::sync::Event;

trait Store<T> {
    fn push(&mut self, item: T);
    fn pop(&mut self) -> Option<T>;
    fn len(&self) -> usize;
}

impl<T> Store<T> for VecDeque<T> {
    fn push(&mut self, item: T) {
        self.push_back(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.pop_front()
    }
    fn len(&self) -> usize {
        VecDeque::len(self)
    }
}

struct Lifo<T>(Vec<T>);

impl<T> Store<T> for Lifo<T> {
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> Store<T> for BinaryHeap<Reverse<T>> {
    fn push(&mut self, item: T) {
        BinaryHeap::push(self, Reverse(item));
    }
    fn pop(&mut self) -> Option<T> {
        BinaryHeap::pop(self).map(|Reverse(x)| x)
    }
    fn len(&self) -> usize {
        BinaryHeap::len(self)
    }
}

struct State<T> {
    items: RefCell<Box<dyn Store<T>>>,
    maxsize: usize,
    getters: WaitQueue,
    putters: WaitQueue,
    unfinished: Cell<usize>,
    finished: Event,
    shutdown: Cell<bool>,
}

impl<T> State<T> {
    fn len(&self) -> usize {
        self.items.borrow().len()
    }
    fn full(&self) -> bool {
        self.maxsize > 0 && self.len() >= self.maxsize
    }
}

/// A queue of items between tasks of one loop (asyncio's `Queue`, `LifoQueue`, `PriorityQueue`).
/// A cheap handle (`Clone`).
///
/// # Examples
///
/// ```
/// use tulipa_futures::{run, spawn, queue::Queue};
///
/// run(async {
///     let q = Queue::new(1); // at most one item: put waits for get
///     let producer = { let q = q.clone(); spawn(async move {
///         for i in 0..3 { q.put(i).await?; }
///         Ok(())
///     })? };
///     let mut got = Vec::new();
///     for _ in 0..3 { got.push(q.get().await?); q.task_done()?; }
///     producer.await?;
///     q.join().await?;
///     assert_eq!(got, [0, 1, 2]);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub struct Queue<T: 'static> {
    state: Rc<State<T>>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            state: self.state.clone(),
        }
    }
}

impl<T: 'static> Queue<T> {
    fn with_store(maxsize: usize, store: Box<dyn Store<T>>) -> Self {
        let finished = Event::new();
        finished.set();
        Queue {
            state: Rc::new(State {
                items: RefCell::new(store),
                maxsize,
                getters: WaitQueue::default(),
                putters: WaitQueue::default(),
                unfinished: Cell::new(0),
                finished,
                shutdown: Cell::new(false),
            }),
        }
    }

    /// A FIFO queue holding at most `maxsize` items (0: unbounded).
    pub fn new(maxsize: usize) -> Self {
        Self::with_store(maxsize, Box::new(VecDeque::new()))
    }

    /// A LIFO queue (asyncio's `LifoQueue`).
    pub fn lifo(maxsize: usize) -> Self {
        Self::with_store(maxsize, Box::new(Lifo(Vec::new())))
    }

    /// A priority queue: `get` returns the smallest item (asyncio's `PriorityQueue`).
    pub fn priority(maxsize: usize) -> Self
    where
        T: Ord,
    {
        Self::with_store(maxsize, Box::new(BinaryHeap::new()))
    }

    /// Items in the queue.
    pub fn qsize(&self) -> usize {
        self.state.len()
    }

    /// The size limit (0: unbounded).
    pub fn maxsize(&self) -> usize {
        self.state.maxsize
    }

    /// True when empty.
    pub fn empty(&self) -> bool {
        self.state.len() == 0
    }

    /// True when `maxsize` items are queued.
    pub fn full(&self) -> bool {
        self.state.full()
    }

    /// True after [`shutdown`](Queue::shutdown).
    pub fn is_shutdown(&self) -> bool {
        self.state.shutdown.get()
    }

    /// Puts `item` without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`] when full; [`Error::QueueShutDown`] after shutdown.
    pub fn put_nowait(&self, item: T) -> Result<()> {
        let st = &*self.state;
        if st.shutdown.get() {
            return Err(Error::QueueShutDown);
        }
        if st.full() {
            return Err(Error::QueueFull);
        }
        st.items.borrow_mut().push(item);
        st.unfinished.set(st.unfinished.get() + 1);
        st.finished.clear();
        st.getters.grant_first();
        Ok(())
    }

    /// Takes an item without waiting.
    ///
    /// # Errors
    ///
    /// [`Error::QueueEmpty`] when empty; [`Error::QueueShutDown`] when empty and shut down.
    pub fn get_nowait(&self) -> Result<T> {
        let st = &*self.state;
        let item = st.items.borrow_mut().pop();
        match item {
            Some(item) => {
                st.putters.grant_first();
                Ok(item)
            }
            None if st.shutdown.get() => Err(Error::QueueShutDown),
            None => Err(Error::QueueEmpty),
        }
    }

    /// Puts `item`, waiting while the queue is full.
    ///
    /// # Cancel safety
    ///
    /// A cancelled put has not queued the item (it is dropped), and a free slot it had been told
    /// about is passed on to the next waiting putter.
    ///
    /// # Errors
    ///
    /// [`Error::QueueShutDown`] after shutdown; [`Error::Cancelled`] when cancelled.
    pub async fn put(&self, item: T) -> Result<()> {
        let st = &*self.state;
        let mut waiting = Abandon {
            queue: &st.putters,
            waiting: Waiting::new(&st.putters),
            still: || !st.full(),
        };
        let mut item = Some(item);
        poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                waiting.abandon();
                return Poll::Ready(Err(e));
            }
            if st.shutdown.get() {
                waiting.waiting.leave();
                return Poll::Ready(Err(Error::QueueShutDown));
            }
            // Waiters ahead of us go first: a newcomer takes a free slot only when nobody is
            // queued; a queued putter only once granted.
            let go = if waiting.waiting.is_queued() {
                waiting.waiting.poll(cx.waker())
            } else {
                st.putters.is_empty()
            };
            if go && !st.full() {
                waiting.waiting.leave();
                let Some(it) = item.take() else {
                    return Poll::Ready(Ok(()));
                };
                let put = self.put_nowait(it);
                // Slots freed while we were being woken found no un-woken putter, and a putter
                // that queued behind us since then would wait with room left: pass the turn on
                // if a free slot is still unclaimed by a woken putter (each one chains on).
                if st.maxsize.saturating_sub(st.len()) > st.putters.granted_count() {
                    st.putters.grant_first();
                }
                return Poll::Ready(put);
            }
            if go {
                // Granted, but a `put_nowait` filled the slot meanwhile: queue up again.
                waiting.waiting.leave();
            }
            waiting.waiting.poll(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Takes an item, waiting while the queue is empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a cancelled get has taken nothing, and an item it had been told about is
    /// left for the next waiting getter.
    ///
    /// # Errors
    ///
    /// [`Error::QueueShutDown`] when the queue is shut down and empty; [`Error::Cancelled`] when
    /// cancelled.
    pub async fn get(&self) -> Result<T> {
        let st = &*self.state;
        let mut waiting = Abandon {
            queue: &st.getters,
            waiting: Waiting::new(&st.getters),
            still: || st.len() > 0,
        };
        poll_fn(|cx| {
            if let Some(e) = cancel::take_cancellation() {
                waiting.abandon();
                return Poll::Ready(Err(e));
            }
            let go = if waiting.waiting.is_queued() {
                waiting.waiting.poll(cx.waker())
            } else {
                st.getters.is_empty()
            };
            if go && st.len() > 0 {
                waiting.waiting.leave();
                let got = self.get_nowait();
                // As in `put`: items put while we were being woken found no un-woken getter; pass
                // the turn on if an item is still unclaimed by a woken getter.
                if st.len() > st.getters.granted_count() {
                    st.getters.grant_first();
                }
                return Poll::Ready(got);
            }
            if st.shutdown.get() && st.len() == 0 {
                waiting.waiting.leave();
                return Poll::Ready(Err(Error::QueueShutDown));
            }
            if go {
                // Granted, but a `get_nowait` took the item meanwhile: queue up again.
                waiting.waiting.leave();
            }
            waiting.waiting.poll(cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Marks one item taken with `get` as processed (for [`join`](Queue::join)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when called more times than items were put.
    pub fn task_done(&self) -> Result<()> {
        let st = &*self.state;
        if st.unfinished.get() == 0 {
            return Err(Error::InvalidArgument("task_done() called too many times"));
        }
        st.unfinished.set(st.unfinished.get() - 1);
        if st.unfinished.get() == 0 {
            st.finished.set();
        }
        Ok(())
    }

    /// Waits until every item put has been marked done with [`task_done`](Queue::task_done).
    ///
    /// # Errors
    ///
    /// [`Error::Cancelled`] when cancelled.
    pub async fn join(&self) -> Result<()> {
        if self.state.unfinished.get() > 0 {
            self.state.finished.wait().await?;
        }
        Ok(())
    }

    /// Shuts the queue down (Python 3.13): `put` fails from now on; `get` fails once the queue is
    /// empty. With `immediate`, the queued items are dropped (and counted done) at once. Every
    /// waiter wakes up.
    pub fn shutdown(&self, immediate: bool) {
        let st = &*self.state;
        st.shutdown.set(true);
        if immediate {
            let mut dropped = Vec::new();
            while let Some(item) = st.items.borrow_mut().pop() {
                dropped.push(item);
                if st.unfinished.get() > 0 {
                    st.unfinished.set(st.unfinished.get() - 1);
                }
            }
            if st.unfinished.get() == 0 {
                st.finished.set();
            }
            drop(dropped);
        }
        st.getters.grant_all();
        st.putters.grant_all();
    }
}

/// Leaves a waiter queue; a grant received just before is passed on if it is still good.
struct Abandon<'a, F: Fn() -> bool> {
    queue: &'a WaitQueue,
    waiting: Waiting<'a>,
    still: F,
}

impl<F: Fn() -> bool> Abandon<'_, F> {
    fn abandon(&mut self) {
        if self.waiting.leave() && (self.still)() {
            self.queue.grant_first();
        }
    }
}

impl<F: Fn() -> bool> Drop for Abandon<'_, F> {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl<T> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("qsize", &self.state.len())
            .field("maxsize", &self.state.maxsize)
            .field("getters", &self.state.getters.len())
            .field("putters", &self.state.putters.len())
            .field("unfinished", &self.state.unfinished.get())
            .field("shutdown", &self.state.shutdown.get())
            .finish()
    }
}
