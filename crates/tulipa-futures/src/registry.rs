//! The pending tasks of each loop on this thread (asyncio's `_scheduled_tasks` weak set), for
//! `all_tasks`. A slab: insert and remove are O(1); a task leaves it when it finishes.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::task::TaskOps;

#[derive(Default)]
struct Slab {
    slots: Vec<Option<(u64, Weak<dyn TaskOps>)>>,
    free: Vec<usize>,
}

thread_local! {
    static TASKS: RefCell<Slab> = RefCell::new(Slab::default());
}

pub(crate) fn insert(loop_id: u64, task: Weak<dyn TaskOps>) -> usize {
    TASKS.with(|t| {
        let mut t = t.borrow_mut();
        match t.free.pop() {
            Some(i) => {
                t.slots[i] = Some((loop_id, task));
                i
            }
            None => {
                t.slots.push(Some((loop_id, task)));
                t.slots.len() - 1
            }
        }
    })
}

pub(crate) fn remove(index: usize) {
    let old = TASKS.with(|t| {
        let mut t = t.borrow_mut();
        let old = t.slots.get_mut(index).and_then(Option::take);
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
            .filter(|(id, _)| *id == loop_id)
            .filter_map(|(_, w)| w.upgrade())
            .filter(|t| !t.is_done())
            .collect()
    })
}
