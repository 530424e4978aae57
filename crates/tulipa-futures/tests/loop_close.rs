//! Closing a loop releases the tasks it still has pending.

use std::cell::Cell;
use std::rc::Rc;

use tulipa_futures::{spawn_on, Future};
use tulipa_loop::EventLoop;

struct DropFlag(Rc<Cell<bool>>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn close_drops_the_futures_of_tasks_still_pending_and_they_end_cancelled() {
    let lp = EventLoop::new().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let never: Future<()> = Future::new(&lp);
    let (flag, wait_on) = (DropFlag(dropped.clone()), never.clone());
    let task = spawn_on(&lp, async move {
        let _flag = flag;
        wait_on.await // never completes: the task keeps itself alive through its waker
    })
    .unwrap();
    // Let the task start and block.
    let stop = lp.clone();
    lp.call_soon(move || stop.stop()).unwrap();
    lp.run_forever().unwrap();
    lp.call_soon({
        let stop = lp.clone();
        move || stop.stop()
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(!task.done());
    assert!(!dropped.get());

    lp.close().unwrap();
    assert!(
        dropped.get(),
        "the pending task's future was dropped by close"
    );
    assert!(task.cancelled(), "and the task ended cancelled");
}

#[test]
fn close_hooks_run_once_before_the_loop_releases_anything() {
    let lp = EventLoop::new().unwrap();
    let ran = Rc::new(Cell::new(0));
    let r2 = ran.clone();
    lp.add_close_hook(move |lp| {
        assert!(!lp.is_closed(), "the loop still works inside a close hook");
        r2.set(r2.get() + 1);
    })
    .unwrap();
    lp.close().unwrap();
    lp.close().unwrap();
    assert_eq!(ran.get(), 1);
    assert!(
        lp.add_close_hook(|_| {}).is_err(),
        "a closed loop takes no hooks"
    );
}
