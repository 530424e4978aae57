//! Unix backend: raw fds with `polling`, signals with `signal-hook`.

#[allow(unsafe_code)]
pub(crate) mod fd;
pub(crate) mod signal;
