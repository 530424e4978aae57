//! Runnable Tulipa programs; see the `[[example]]` entries and `cargo run --release --example NAME`.
#![forbid(unsafe_code)]
