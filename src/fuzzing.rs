//! Internals the fuzz targets under `tests/fuzz` drive. Empty unless cargo-fuzz builds the
//! crate: it passes `--cfg fuzzing` to every crate, a name rustc does not know (hence the
//! `allow`). Nothing here is part of the gateway.
#![allow(unexpected_cfgs)]

/// The TLS adapter (`conn::tls`, private to `conn`), compiled a second time from the same
/// file so that a target can drive it over an in-memory transport (deliberately, hence the
/// `allow`: the gateway keeps using its own copy).
#[cfg(fuzzing)]
#[allow(clippy::duplicate_mod)]
#[path = "conn/tls.rs"]
pub mod tls;
