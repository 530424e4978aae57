//! The loop's clock: real monotonic time, or virtual time for tests.
//!
//! Internally deadlines are nanoseconds since the loop's epoch (its creation), which keeps timer
//! heap entries small; the public API speaks `Instant` and `Duration`.

use std::cell::Cell;
use std::time::{Duration, Instant};

pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[derive(Debug)]
pub(crate) struct Clock {
    epoch: Instant,
    /// `Some(offset)` for a virtual clock: time stands still until the loop jumps it forward.
    virtual_ns: Option<Cell<u64>>,
}

impl Clock {
    pub(crate) fn real() -> Self {
        Clock {
            epoch: Instant::now(),
            virtual_ns: None,
        }
    }

    pub(crate) fn virtual_time() -> Self {
        Clock {
            epoch: Instant::now(),
            virtual_ns: Some(Cell::new(0)),
        }
    }

    pub(crate) fn is_virtual(&self) -> bool {
        self.virtual_ns.is_some()
    }

    pub(crate) fn now_ns(&self) -> u64 {
        match &self.virtual_ns {
            Some(v) => v.get(),
            None => nanos(self.epoch.elapsed()),
        }
    }

    pub(crate) fn now(&self) -> Instant {
        self.instant(self.now_ns())
    }

    pub(crate) fn instant(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }

    /// Nanoseconds since the epoch for `when`; instants before the epoch count as the epoch.
    pub(crate) fn ns_of(&self, when: Instant) -> u64 {
        nanos(when.saturating_duration_since(self.epoch))
    }

    /// Moves a virtual clock forward to `ns` (never backwards). No-op on a real clock.
    pub(crate) fn advance_to(&self, ns: u64) {
        if let Some(v) = &self.virtual_ns {
            if ns > v.get() {
                v.set(ns);
            }
        }
    }
}
