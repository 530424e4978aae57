//! Write-buffer flow control (asyncio's `_FlowControlMixin`).
//!
//! A transport buffers what the socket does not take at once. When the buffer grows over the high
//! watermark the protocol is told `pause_writing` (once); when it drains to the low watermark or
//! under, `resume_writing` (once). Defaults as asyncio: 64 KiB high, a quarter of that low.

use std::cell::Cell;

use crate::error::{Error, Result};

/// The default high watermark (64 KiB).
pub const DEFAULT_HIGH_WATER: usize = 64 * 1024;

#[derive(Debug)]
pub(crate) struct Flow {
    high: Cell<usize>,
    low: Cell<usize>,
    /// What the protocol should believe (paused or not).
    paused: Cell<bool>,
    /// What the protocol was last told; differs from `paused` while a notification is pending.
    told: Cell<bool>,
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            high: Cell::new(DEFAULT_HIGH_WATER),
            low: Cell::new(DEFAULT_HIGH_WATER / 4),
            paused: Cell::new(false),
            told: Cell::new(false),
        }
    }
}

impl Flow {
    pub(crate) fn set_limits(&self, high: Option<usize>, low: Option<usize>) -> Result<()> {
        let high = high.unwrap_or(match low {
            Some(l) => 4 * l,
            None => DEFAULT_HIGH_WATER,
        });
        let low = low.unwrap_or(high / 4);
        if low > high {
            return Err(Error::Futures(tulipa_futures::Error::InvalidArgument(
                "the low watermark must not exceed the high watermark",
            )));
        }
        self.high.set(high);
        self.low.set(low);
        Ok(())
    }

    pub(crate) fn limits(&self) -> (usize, usize) {
        (self.low.get(), self.high.get())
    }

    /// Updates the state for a buffer of `size` bytes; true when the protocol must be told.
    pub(crate) fn update(&self, size: usize) -> bool {
        if !self.paused.get() && size > self.high.get() {
            self.paused.set(true);
        } else if self.paused.get() && size <= self.low.get() {
            self.paused.set(false);
        }
        self.paused.get() != self.told.get()
    }

    /// The notification due now, if any, marked as delivered: `Some(true)` = pause.
    pub(crate) fn take_due(&self) -> Option<bool> {
        let p = self.paused.get();
        if p == self.told.get() {
            None
        } else {
            self.told.set(p);
            Some(p)
        }
    }
}
