//! Unix backend: the poller (epoll on Linux, `polling` elsewhere), signals with `signal-hook`.

// Linux: epoll directly (see `epoll.rs` for why). `--cfg tulipa_polling` selects the portable
// backend on Linux too, so that CI can build and test the code other Unixes run.
#[cfg(all(target_os = "linux", not(tulipa_polling)))]
#[allow(unsafe_code)]
#[path = "epoll.rs"]
pub(crate) mod poller;
#[cfg(not(all(target_os = "linux", not(tulipa_polling))))]
#[allow(unsafe_code)]
#[path = "polling_backend.rs"]
pub(crate) mod poller;
pub(crate) mod signal;
