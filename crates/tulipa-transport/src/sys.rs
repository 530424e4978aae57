//! Platform constants, chosen here and nowhere else.

/// Flags for `send`: never raise SIGPIPE on a connection the peer closed; the error comes back
/// as `EPIPE` instead.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SEND_FLAGS: i32 = 0x4000; // MSG_NOSIGNAL

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const SEND_FLAGS: i32 = 0;

/// `EINPROGRESS`: a non-blocking connect is under way.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const EINPROGRESS: i32 = 115;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const EINPROGRESS: i32 = 36;
