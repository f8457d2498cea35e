//! ① Network: per-core SO_REUSEPORT listeners and the accept loop (`listener`), and the
//! socket calls glommio does not wrap (`sys`, the only `unsafe` in the crate).
//!
//! Owns: sockets below HTTP. May call: nothing of the crate.

pub mod listener;
pub mod sys;
pub mod tls;
