//! vanilla's message passing: pipes, select, router, dealer, channels, observable state.
//!
//! vanilla (a greenlet library) connects its green threads with *pipes*: a [`Sender`] and a
//! [`Recver`]. Here the green threads are tasks, and vanilla's `Hub` methods are free functions:
//!
//! | vanilla | Tulipa | what it is |
//! |---|---|---|
//! | `h.pipe()` | [`pipe`] | rendezvous: `send` waits until a receiver took the item |
//! | `h.queue(size)` | [`buffered`] | `send` waits only while `size` items are waiting |
//! | `h.router()` | [`router`] | many senders, one recver |
//! | `h.dealer()` | [`dealer`] | one sender, many recvers; each item to exactly one |
//! | `h.channel(size)` | [`channel`] | many to many, buffered |
//! | `h.select(ends)` | [`select`], [`select_send`] | wait on several pipes |
//! | `h.state()` | [`State`] | an observable value |
//! | `h.producer(f)` | [`producer`] | a task feeding a new pipe |
//! | `h.pulse(ms, item)` | [`pulse`] | a pipe that ticks |
//! | `h.spawn_later(ms, f)` | [`spawn_later`] | a task started after a delay |
//! | `recver.map/consume/pipe` | [`Recver::map`], [`Recver::consume`], [`Recver::pipe`] | chaining |
//! | `pair.map/consume/pipe` | [`Pair::map`], [`Pair::consume`], [`Pair::pipe`] | chaining, keeping the sender |
//! | `h.thread.*` | [`threads`](crate::threads) | loops on other threads, thread pools |
//!
//! One pipe type serves them all: both ends are `Clone`, several tasks may send and receive, and
//! waiting senders and waiting receivers are each served first come, first served. `router`,
//! `dealer` and `channel` are that pipe under the name that says how it is meant to be used.
//!
//! Pipes cross threads (their state is behind a lock). When both ends stay on one loop,
//! [`local_pipe`] and [`local_buffered`] give the same pipe without the lock ([`LocalSender`],
//! [`LocalRecver`], both `!Send`), as `Rc` is to `Arc`: about a third more items per second (see
//! `docs/benchmarks.md`), at the price of `select` and `Pair`, which take the thread-crossing
//! ends.
//!
//! ## Guarantees
//!
//! - **Order.** Items are received in the order their sends completed; among waiting tasks,
//!   the first to wait is served first.
//! - **Closing.** [`Sender::close`] and [`Recver::close`] close the same pipe; so does dropping
//!   the last `Sender` or the last `Recver`. Then every send fails with [`Error::Closed`] (the
//!   item is dropped: vanilla raises `Closed`), blocked senders fail likewise, and receivers get
//!   the items still buffered, then `Closed`. When the last `Recver` goes, nobody can receive
//!   any more, and the buffered items are dropped.
//! - **Nothing lost or duplicated.** Each item is received at most once; a send that returned
//!   `Ok` has its item received unless the last `Recver` is dropped first.
//! - **Cancellation.** Every wait here starts with the task's pending cancellation (see
//!   [`rt::take_cancellation`](crate::rt::take_cancellation)) and is cancel-safe: a cancelled
//!   `recv` or `select` took nothing, and an item reserved for it goes to the next receiver; a
//!   cancelled `send` sent nothing. The one ordering rule: a blocked `send` whose item a receiver
//!   has already taken returns `Ok`, and the cancellation arrives at the task's next await.
//! - **Threads.** A pipe is `Send + Sync` when its items are `Send`: its state sits behind an
//!   `Arc<Mutex<_>>` and waits store [`std::task::Waker`]s, which wake a task on another
//!   thread's loop through that loop's thread-safe door. So the same pipe connects tasks of one
//!   loop, or loops on different threads ([`threads`](crate::threads)). No user code runs while
//!   the lock is held.
//!
//! ## Chaining
//!
//! [`Recver::map`], [`Recver::consume`] and [`Recver::pipe`] each spawn one task on the running
//! loop that moves items along. Closing travels both ways:
//!
//! - upstream closed and drained: the task drops its downstream [`Sender`], which closes the
//!   downstream pipe if that was its last sender (`map`, whose downstream pipe is its own, also
//!   passes on an error given to [`Sender::close_with`] upstream);
//! - downstream closed: the task drops its upstream [`Recver`], which closes the upstream pipe if
//!   that was its last recver. It notices at once, even while it waits for an upstream item; an
//!   item it had already taken from upstream is dropped.
//!
//! ## Example
//!
//! ```
//! use tulipa_futures::{message, run, spawn, Error};
//!
//! run(async {
//!     let (tx, rx) = message::pipe();
//!     let producer = spawn(async move {
//!         for word in ["tulip", "vanilla"] {
//!             tx.send(word).await?; // waits until the consumer took it
//!         }
//!         Ok(()) // `tx` dropped: the pipe closes
//!     })?;
//!     assert_eq!(rx.recv().await?, "tulip");
//!     assert_eq!(rx.recv().await?, "vanilla");
//!     assert!(matches!(rx.recv().await, Err(Error::Closed)));
//!     producer.await
//! })?;
//! # Ok::<(), Error>(())
//! ```
//!
//! [`Error::Closed`]: crate::Error::Closed

mod chain;
mod chan;
mod conveniences;
mod local;
mod pipe;
mod select;
mod state;

pub use conveniences::{producer, pulse, spawn_later};
pub use local::{local_buffered, local_pipe, LocalRecver, LocalSender};
pub use pipe::{Pair, Recver, Sender, TrySendError};
pub use select::{select, select_send};
pub use state::State;

/// A rendezvous pipe (vanilla's `h.pipe()`): [`Sender::send`] waits until a receiver has taken
/// the item, [`Recver::recv`] waits until an item is sent.
///
/// Both ends may be cloned; see the [module docs](self) for the guarantees.
///
/// # Examples
///
/// A send does not complete before a receive:
///
/// ```
/// use tulipa_futures::{message, run, sleep, spawn};
/// use std::time::Duration;
///
/// run(async {
///     let (tx, rx) = message::pipe();
///     let send = spawn(async move { tx.send(1).await })?;
///     sleep(Duration::from_millis(1)).await?;
///     assert!(!send.done()); // nobody received yet
///     assert_eq!(rx.recv().await?, 1);
///     send.await?;
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn pipe<T>() -> (Sender<T>, Recver<T>) {
    pipe::new_pipe(0)
}

/// A pipe with a buffer of `size` items (vanilla's `h.queue(size)`): [`Sender::send`] waits
/// only while `size` items are waiting to be received. `buffered(0)` is [`pipe`].
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run};
///
/// run(async {
///     let (tx, rx) = message::buffered(2);
///     tx.send('a').await?; // no receiver needed while there is room
///     tx.send('b').await?;
///     assert!(tx.try_send('c').is_err()); // full
///     assert_eq!(rx.recv().await?, 'a');
///     tx.try_send('c').map_err(tulipa_futures::Error::from)?;
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
#[doc(alias = "queue")]
pub fn buffered<T>(size: usize) -> (Sender<T>, Recver<T>) {
    pipe::new_pipe(size)
}

/// Many senders, one recver (vanilla's `h.router()`): a rendezvous [`pipe`] whose [`Sender`] is
/// meant to be cloned. Blocked senders are served in the order they started to wait.
///
/// The router closes when its last sender is dropped (or on an explicit `close`, which closes it
/// for every sender), so piping several recvers into one with [`Recver::pipe`] keeps it open
/// until all of them are done.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run, spawn};
///
/// run(async {
///     let (tx, rx) = message::router();
///     for i in [3, 2, 1] {
///         let tx = tx.clone();
///         spawn(async move { tx.send(i).await })?;
///     }
///     drop(tx);
///     let mut got = Vec::new();
///     while let Ok(i) = rx.recv().await { got.push(i); }
///     assert_eq!(got, [3, 2, 1]); // first come, first served
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn router<T>() -> (Sender<T>, Recver<T>) {
    pipe()
}

/// One sender, many recvers (vanilla's `h.dealer()`): a rendezvous [`pipe`] whose [`Recver`] is
/// meant to be cloned. Each item goes to exactly one recver; waiting recvers are served in the
/// order they started to wait.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run, spawn};
///
/// run(async {
///     let (tx, rx) = message::dealer();
///     let workers: Vec<_> = (0..2)
///         .map(|_| { let rx = rx.clone(); spawn(async move { rx.recv().await }) })
///         .collect::<Result<_, _>>()?;
///     tx.send("job 1").await?;
///     tx.send("job 2").await?;
///     let mut got = Vec::new();
///     for w in workers { got.push(w.await?); }
///     assert_eq!(got, ["job 1", "job 2"]);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn dealer<T>() -> (Sender<T>, Recver<T>) {
    pipe()
}

/// Many senders, many recvers, with a buffer of `size` items (vanilla's `h.channel(size)`, Go's
/// channels): a [`buffered`] pipe whose ends are both meant to be cloned. `channel(0)` is
/// unbuffered.
///
/// # Examples
///
/// ```
/// use tulipa_futures::{message, run};
///
/// run(async {
///     let (tx, rx) = message::channel(8);
///     let (tx2, rx2) = (tx.clone(), rx.clone());
///     tx.send(1).await?;
///     tx2.send(2).await?;
///     assert_eq!(rx2.recv().await?, 1);
///     assert_eq!(rx.recv().await?, 2);
///     Ok(())
/// })?;
/// # Ok::<(), tulipa_futures::Error>(())
/// ```
pub fn channel<T>(size: usize) -> (Sender<T>, Recver<T>) {
    buffered(size)
}

#[allow(dead_code)]
fn assert_thread_contract() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Sender<String>>();
    send_sync::<Recver<String>>();
    send_sync::<State<String>>();
    send_sync::<Pair<String, u8>>();
}
