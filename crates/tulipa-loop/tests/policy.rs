//! The event loop policy (`get_event_loop`, `set_event_loop`, `new_event_loop`,
//! `set_event_loop_policy`).
//!
//! Ports the policy checks of CPython's `test_asyncio/test_events.py` (`PolicyTests`). The policy
//! is process-wide, so this binary holds ONE test function that walks through every step in order
//! and restores the default policy at the end; parallel tests would race on the global.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use tulipa_loop::policy::{
    self, get_event_loop_policy, set_event_loop_policy, DefaultEventLoopPolicy, EventLoopPolicy,
    VirtualTimePolicy,
};
use tulipa_loop::{get_event_loop, new_event_loop, set_event_loop, EventLoop};

#[test]
fn policy_walkthrough() {
    // 1. The default policy: one real-time loop per thread, created on first use.
    let a = get_event_loop().unwrap();
    let b = get_event_loop().unwrap();
    assert_eq!(a.id(), b.id(), "the same loop twice on one thread");
    assert!(!a.is_virtual_time());
    let other = thread::spawn(|| {
        let lp = get_event_loop().unwrap();
        let again = get_event_loop().unwrap();
        assert_eq!(lp.id(), again.id());
        lp.id()
    })
    .join()
    .unwrap();
    assert_ne!(other, a.id(), "another thread gets another loop");

    // 2. While a loop runs, get_event_loop returns the running loop.
    let runner = EventLoop::new().unwrap();
    let seen = Rc::new(RefCell::new(None));
    let (s, r2) = (seen.clone(), runner.clone());
    runner
        .call_soon(move || {
            *s.borrow_mut() = Some(get_event_loop().unwrap().id());
            r2.stop();
        })
        .unwrap();
    runner.run_forever().unwrap();
    assert_eq!(*seen.borrow(), Some(runner.id()));
    assert_eq!(
        get_event_loop().unwrap().id(),
        a.id(),
        "back to the thread's loop after the run"
    );

    // 3. set_event_loop replaces this thread's loop; new_event_loop makes a fresh one.
    let mine = new_event_loop().unwrap();
    assert_ne!(mine.id(), a.id());
    set_event_loop(Some(mine.clone()));
    assert_eq!(get_event_loop().unwrap().id(), mine.id());
    set_event_loop(None);
    let fresh = get_event_loop().unwrap();
    assert_ne!(
        fresh.id(),
        mine.id(),
        "after clearing, a new loop is created on demand"
    );

    // 4. The virtual-time policy makes every new loop virtual.
    set_event_loop_policy(Some(Arc::new(VirtualTimePolicy::new())));
    let v = new_event_loop().unwrap();
    assert!(v.is_virtual_time());
    let start = v.time();
    let v2 = v.clone();
    v.call_later(Duration::from_secs(86_400), move || v2.stop())
        .unwrap();
    v.run_forever().unwrap();
    assert_eq!(v.time() - start, Duration::from_secs(86_400));
    v.close().unwrap();
    let thread_loop = get_event_loop().unwrap();
    assert!(
        thread_loop.is_virtual_time(),
        "the policy's per-thread loop is virtual too"
    );
    assert_ne!(
        thread_loop.id(),
        fresh.id(),
        "each policy keeps its own per-thread loops"
    );
    let on_thread = thread::spawn(|| new_event_loop().unwrap().is_virtual_time())
        .join()
        .unwrap();
    assert!(on_thread, "the policy is process-wide");

    // 5. A custom policy can be built from ThreadLoops; here the default's behaviour, explicitly.
    set_event_loop_policy(Some(Arc::new(DefaultEventLoopPolicy::new())));
    assert!(!new_event_loop().unwrap().is_virtual_time());
    let p = get_event_loop_policy();
    assert_eq!(
        p.get_event_loop().unwrap().id(),
        get_event_loop().unwrap().id()
    );

    // 6. None restores a fresh default policy.
    set_event_loop_policy(None);
    let restored = policy::get_event_loop_policy();
    let lp = restored.get_event_loop().unwrap();
    assert!(!lp.is_virtual_time());
    assert_ne!(
        lp.id(),
        a.id(),
        "a fresh default policy starts with no loops"
    );
    assert!(!new_event_loop().unwrap().is_virtual_time());

    for lp in [a, mine, fresh, thread_loop, runner, lp] {
        lp.close().unwrap();
    }

    // 7. Dropping a policy releases the loop it kept for this thread, and its poller's fds.
    let open_fds = || std::fs::read_dir("/proc/self/fd").map(Iterator::count).ok();
    let before = open_fds();
    let dropped: Arc<dyn EventLoopPolicy> = Arc::new(DefaultEventLoopPolicy::new());
    let made = dropped.get_event_loop().unwrap();
    assert!(!made.is_closed());
    drop(made);
    if before.is_some() {
        assert!(
            open_fds() > before,
            "the policy keeps its loop while it lives"
        );
    }
    drop(dropped);
    assert_eq!(
        open_fds(),
        before,
        "the dropped policy's loop is gone, fds and all"
    );
}
