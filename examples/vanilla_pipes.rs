//! vanilla's message passing on Tulipa: pipes between tasks, a child thread with its own loop,
//! a thread pool gathered with a router, and an observable `State`.
//!
//! Run: `cargo run --release --example vanilla_pipes`

use std::time::Duration;

use tulipa_futures::message::{pipe, router, Pair, State};
use tulipa_futures::{run, sleep, spawn, threads, Error};

fn main() -> Result<(), Error> {
    run(async {
        // 1. A rendezvous pipe: `send` completes only when a receiver has taken the item.
        let (tx, rx) = pipe::<&'static str>();
        let consumer = spawn(async move {
            let mut got = Vec::new();
            while let Ok(word) = rx.recv().await {
                got.push(word);
            }
            Ok(got) // the loop ends when the last sender is gone (the pipe closes)
        })?;
        for w in ["tulip", "loop", "pipe"] {
            tx.send(w).await?;
        }
        drop(tx);
        println!("rendezvous pipe delivered: {:?}", consumer.await?);

        // 2. A child thread with its own loop, talking to us over a pair of pipes (vanilla's
        //    `h.thread.spawn`): it sends a tick count until we stop listening.
        let child = threads::spawn(|parent: Pair<u32, ()>| async move {
            for n in 1u32.. {
                if parent.send(n).await.is_err() {
                    return Ok(()); // the parent dropped its end
                }
                sleep(Duration::from_millis(1)).await?;
            }
            Ok(())
        })?;
        let first: Vec<u32> = vec![
            child.recv().await?,
            child.recv().await?,
            child.recv().await?,
        ];
        println!("child thread ticked: {first:?}");
        child.join().await?;

        // 3. A one-off thread for blocking work (vanilla's `h.thread.call(add, 2, 3)`).
        let sum = threads::call(|| 2 + 3)?.recv().await?;
        println!("thread call gave: {sum}");

        // 4. A pool of two threads; results gathered on one router in completion order.
        let pool = threads::pool(2);
        let (gather, results) = router::<u64>();
        // The seed's sleeper example (0.2 s, 0.1 s, 0.05 s), scaled down: 60, 20, 10 ms.
        for ms in [60u64, 20, 10] {
            // The forwarding task runs on its own; dropping its handle does not stop it.
            let _forwarding = pool
                .call(move || {
                    std::thread::sleep(Duration::from_millis(ms));
                    ms
                })?
                .pipe(gather.clone())?;
        }
        drop(gather);
        let mut order = Vec::new();
        for _ in 0..3 {
            order.push(results.recv().await?);
        }
        println!("pool results as they completed: {order:?}");

        // 5. An observable value: `recv` waits until it is set.
        let state = State::new();
        let s2 = state.clone();
        let waiter = spawn(async move { s2.recv().await })?;
        state.set("ready");
        println!("state observed: {}", waiter.await?);
        Ok(())
    })
}
