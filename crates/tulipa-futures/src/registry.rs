//! The pending tasks of each loop on this thread (asyncio's `_scheduled_tasks` weak set), for
//! `all_tasks`. A slab: insert and remove are O(1); a task leaves it when it finishes.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::task::TaskOps;

#[derive(Default)]
struct Slab {
    slots: Vec<Option<Weak<dyn TaskOps>>>,
    free: Vec<u32>,
}

thread_local! {
    static TASKS: RefCell<Slab> = RefCell::new(Slab::default());
    /// Loops that already have the close hook below.
    static HOOKED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Makes sure that closing `lp` aborts the tasks it still has pending: a task waiting for
/// something that will never come would otherwise keep itself (and whatever its future owns:
/// sockets, buffers) alive forever through its own waker.
pub(crate) fn hook_loop(lp: &tulipa_loop::EventLoop) {
    let id = lp.id();
    let new = HOOKED.with(|h| {
        let mut h = h.borrow_mut();
        if h.contains(&id) {
            false
        } else {
            h.push(id);
            true
        }
    });
    if new {
        let _ = lp.add_close_hook(move |lp| {
            HOOKED.with(|h| h.borrow_mut().retain(|x| *x != id));
            for t in pending(lp.id()) {
                let handle = t.data().take_handle();
                drop(handle);
            }
        });
    }
}

pub(crate) fn insert(task: Weak<dyn TaskOps>) -> u32 {
    TASKS.with(|t| {
        let mut t = t.borrow_mut();
        match t.free.pop() {
            Some(i) => {
                t.slots[i as usize] = Some(task);
                i
            }
            None => {
                t.slots.push(Some(task));
                u32::try_from(t.slots.len() - 1).unwrap_or(u32::MAX)
            }
        }
    })
}

pub(crate) fn remove(index: u32) {
    let old = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let old = t.slots.get_mut(index as usize).and_then(Option::take);
        if old.is_some() {
            t.free.push(index);
        }
        old
    });
    drop(old);
}

pub(crate) fn pending(loop_id: u64) -> Vec<Rc<dyn TaskOps>> {
    TASKS.with(|t| {
        t.borrow()
            .slots
            .iter()
            .flatten()
            .filter_map(Weak::upgrade)
            .filter(|t| t.loop_of().id() == loop_id && !t.is_done())
            .collect()
    })
}
