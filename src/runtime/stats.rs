//! The per-core counters now live in [`crate::metrics::counters`], below the runtime; this
//! re-export keeps the `runtime::stats` paths working.

pub use crate::metrics::counters::*;
