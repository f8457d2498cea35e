//! Per-core counters. Plain `Cell`s: each core counts its own, with no shared atomic on the
//! hot path; they are summed (and, later, exported) when read.

use std::cell::Cell;

/// One core's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: Cell<u64>,
    /// Connections refused with 503 because of `max_connections`.
    pub over_capacity: Cell<u64>,
    /// Requests answered with a 4xx or 5xx.
    pub client_errors: Cell<u64>,
    /// Heads not received within `header_timeout`.
    pub header_timeouts: Cell<u64>,
    /// Subscribers accepted.
    pub subscribed: Cell<u64>,
    /// Events accepted from publishers on this core.
    pub published: Cell<u64>,
    /// Events queued to local subscribers.
    pub delivered: Cell<u64>,
    /// Events replayed from history.
    pub replayed: Cell<u64>,
    /// Subscribers dropped for passing `max_queued_bytes`.
    pub slow_consumers: Cell<u64>,
    /// Subscribers dropped because a write stalled for `write_timeout`.
    pub write_timeouts: Cell<u64>,
    /// Subscribers closed because their token's `exp` passed.
    pub tokens_expired: Cell<u64>,
    /// Subscriber streams ended by `max_stream_duration`.
    pub lifetimes_ended: Cell<u64>,
    /// Heartbeat comments queued.
    pub heartbeats: Cell<u64>,
    /// Bytes handed to the kernel for subscribers.
    pub bytes_written: Cell<u64>,
}

impl Stats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }
}
