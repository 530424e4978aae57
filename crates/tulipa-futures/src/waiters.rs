//! Who waits for something to finish: a small set of wakers, plus whatever else the owner keeps
//! for that moment (a future's done callbacks).
//!
//! One awaiter is the common case and costs no allocation: the first waker is kept inline. A
//! second awaiter, or the owner's extra, allocates one box that holds both; it is rare, so the
//! inline part stays 24 bytes (16 for the waker, 8 for the box pointer).

use std::task::Waker;

pub(crate) struct Waiters<X = ()> {
    /// The first awaiter (no allocation).
    first: Option<Waker>,
    /// Further awaiters and the owner's extra, allocated on first use.
    rest: Option<Box<Rest<X>>>,
}

struct Rest<X> {
    more: Vec<Waker>,
    extra: X,
}

impl<X> Default for Waiters<X> {
    fn default() -> Self {
        Waiters {
            first: None,
            rest: None,
        }
    }
}

impl<X: Default> Waiters<X> {
    /// Adds `w` unless it would wake the same task as a waker already registered.
    pub(crate) fn register(&mut self, w: &Waker) {
        match &self.first {
            // `first` is set before `more` is used and wakers are only removed all at once, so an
            // empty `first` means there is nobody to compare with.
            None => self.first = Some(w.clone()),
            Some(cur) if cur.will_wake(w) => {}
            Some(_) => {
                let more = &mut self.rest_mut().more;
                if !more.iter().any(|x| x.will_wake(w)) {
                    more.push(w.clone());
                }
            }
        }
    }

    /// The owner's extra, allocated on first use.
    pub(crate) fn extra_mut(&mut self) -> &mut X {
        &mut self.rest_mut().extra
    }

    fn rest_mut(&mut self) -> &mut Rest<X> {
        self.rest.get_or_insert_with(|| {
            Box::new(Rest {
                more: Vec::new(),
                extra: X::default(),
            })
        })
    }
}

impl<X> Waiters<X> {
    /// The owner's extra, if it was ever asked for.
    #[cfg(test)]
    pub(crate) fn existing_extra(&self) -> Option<&X> {
        self.rest.as_ref().map(|r| &r.extra)
    }

    /// The owner's extra, if it was ever asked for.
    pub(crate) fn existing_extra_mut(&mut self) -> Option<&mut X> {
        self.rest.as_mut().map(|r| &mut r.extra)
    }

    /// Wakes every waiter, in the order they registered; returns the extra if it was allocated.
    pub(crate) fn wake_all(self) -> Option<X> {
        if let Some(w) = self.first {
            w.wake();
        }
        self.rest.map(|rest| {
            let Rest { more, extra } = *rest;
            more.into_iter().for_each(Waker::wake);
            extra
        })
    }
}
