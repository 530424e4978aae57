//! A small set of wakers: no allocation for the common case of one waiter.

use std::task::Waker;

#[derive(Default)]
pub(crate) enum Waiters {
    #[default]
    None,
    One(Waker),
    // Boxed on purpose: it keeps every future's slot 8 bytes smaller; several awaiters are rare.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<Waker>>),
}

impl Waiters {
    pub(crate) fn register(&mut self, w: &Waker) {
        match self {
            Waiters::None => *self = Waiters::One(w.clone()),
            Waiters::One(cur) if cur.will_wake(w) => {}
            Waiters::One(_) => {
                if let Waiters::One(cur) = std::mem::take(self) {
                    *self = Waiters::Many(Box::new(vec![cur, w.clone()]));
                }
            }
            Waiters::Many(v) => {
                if !v.iter().any(|x| x.will_wake(w)) {
                    v.push(w.clone());
                }
            }
        }
    }

    pub(crate) fn wake_all(self) {
        match self {
            Waiters::None => {}
            Waiters::One(w) => w.wake(),
            Waiters::Many(v) => v.into_iter().for_each(Waker::wake),
        }
    }
}
