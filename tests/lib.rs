//! Cross-crate tests of Tulipa live in this package's `tests/` folder; this library holds helpers
//! shared by them.
#![forbid(unsafe_code)]
