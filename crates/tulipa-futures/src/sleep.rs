//! `sleep` (PEP 3156 "Sleeping").

use std::cell::{Cell, RefCell};
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use tulipa_loop::{EventLoop, TimerHandle};

use crate::cancel;
use crate::error::Result;

#[derive(Default)]
struct Shared {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

/// Waits until `delay` has passed on the running loop's clock. `sleep(Duration::ZERO)` yields
/// once: the task lets every other ready callback run, then continues.
///
/// # Precision
///
/// As the loop's timers: never early, late by at most the poller's resolution plus the time
/// other callbacks take. Under a virtual-time loop the sleep takes no real time.
///
/// # Cancel safety
///
/// Cancel-safe: a cancellation of the task is returned as `Err(Cancelled)` and the timer is
/// cancelled; dropping the `Sleep` cancels its timer too.
///
/// # Errors
///
/// [`Error::Cancelled`](crate::Error::Cancelled) when the task is cancelled meanwhile;
/// [`Error::Loop`](crate::Error::Loop) when awaited outside a running loop.
pub fn sleep(delay: Duration) -> Sleep {
    Sleep {
        until: Until::Delay(delay),
        timer: None,
        shared: None,
        yielded: false,
    }
}

/// Waits until `deadline` on the running loop's clock; see [`sleep`].
pub fn sleep_until(deadline: Instant) -> Sleep {
    Sleep {
        until: Until::Deadline(deadline),
        timer: None,
        shared: None,
        yielded: false,
    }
}

enum Until {
    Delay(Duration),
    Deadline(Instant),
}

/// The future returned by [`sleep`] and [`sleep_until`].
#[must_use = "a Sleep does nothing unless awaited"]
pub struct Sleep {
    until: Until,
    timer: Option<TimerHandle>,
    shared: Option<Rc<Shared>>,
    yielded: bool,
}

impl std::future::Future for Sleep {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        if let Some(e) = cancel::take_cancellation() {
            if let Some(t) = self.timer.take() {
                t.cancel();
            }
            return Poll::Ready(Err(e));
        }
        if let Some(shared) = &self.shared {
            if shared.fired.get() {
                return Poll::Ready(Ok(()));
            }
            *shared.waker.borrow_mut() = Some(cx.waker().clone());
            return Poll::Pending;
        }
        if matches!(self.until, Until::Delay(d) if d.is_zero()) {
            if self.yielded {
                return Poll::Ready(Ok(()));
            }
            self.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let lp = EventLoop::running()?;
        let shared = Rc::new(Shared::default());
        *shared.waker.borrow_mut() = Some(cx.waker().clone());
        let s2 = shared.clone();
        let fire = move || {
            s2.fired.set(true);
            let w = s2.waker.borrow_mut().take();
            if let Some(w) = w {
                w.wake();
            }
        };
        let timer = match self.until {
            Until::Delay(d) => lp.call_later(d, fire)?,
            Until::Deadline(t) => lp.call_at(t, fire)?,
        };
        self.timer = Some(timer);
        self.shared = Some(shared);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.cancel();
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Sleep");
        match self.until {
            Until::Delay(x) => d.field("delay", &x),
            Until::Deadline(x) => d.field("deadline", &x),
        };
        d.field(
            "fired",
            &self.shared.as_ref().is_some_and(|s| s.fired.get()),
        )
        .finish()
    }
}
