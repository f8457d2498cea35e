//! Per-core counters. Plain `Cell`s: each core counts its own, with no shared atomic on the
//! hot path; a scrape asks every core for a [`Snapshot`] over the mesh and sums them.

use std::cell::Cell;

/// Statuses counted one by one (anything else goes to the last slot).
pub const COUNTED_STATUSES: [u16; 12] =
    [400, 401, 403, 404, 405, 411, 413, 414, 415, 431, 503, 505];

/// One core's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: Cell<u64>,
    /// Connections open now.
    pub conns_open: Cell<u64>,
    /// Connections closed.
    pub closed: Cell<u64>,
    /// Connections refused with 503 because of `max_connections`.
    pub over_capacity: Cell<u64>,
    /// Refusals by status, in the order of [`COUNTED_STATUSES`], then "other".
    pub errors_by_status: [Cell<u64>; COUNTED_STATUSES.len() + 1],
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
    /// TLS handshakes completed.
    pub tls_handshakes: Cell<u64>,
    /// TLS handshakes failed (or timed out).
    pub tls_failures: Cell<u64>,
}

impl Stats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }

    /// Counts a refusal with `status`.
    pub fn refused(&self, status: u16) {
        let slot = COUNTED_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(COUNTED_STATUSES.len());
        Stats::add(&self.errors_by_status[slot], 1);
    }

    /// A copy of the counters, with this core's gauges, to send to the scraping core.
    pub fn snapshot(
        &self,
        core: usize,
        subscribers: u64,
        queued_bytes: u64,
        history: u64,
    ) -> Snapshot {
        Snapshot {
            core,
            accepted: self.accepted.get(),
            conns_open: self.conns_open.get(),
            closed: self.closed.get(),
            over_capacity: self.over_capacity.get(),
            errors_by_status: self.errors_by_status.iter().map(Cell::get).collect(),
            header_timeouts: self.header_timeouts.get(),
            subscribed: self.subscribed.get(),
            subscribers,
            published: self.published.get(),
            delivered: self.delivered.get(),
            replayed: self.replayed.get(),
            slow_consumers: self.slow_consumers.get(),
            write_timeouts: self.write_timeouts.get(),
            tokens_expired: self.tokens_expired.get(),
            lifetimes_ended: self.lifetimes_ended.get(),
            heartbeats: self.heartbeats.get(),
            bytes_written: self.bytes_written.get(),
            tls_handshakes: self.tls_handshakes.get(),
            tls_failures: self.tls_failures.get(),
            queued_bytes,
            history,
        }
    }
}

/// One core's counters and gauges at one moment (crosses cores for a scrape).
#[derive(Debug, Clone, Default)]
#[allow(missing_docs)]
pub struct Snapshot {
    pub core: usize,
    pub accepted: u64,
    pub conns_open: u64,
    pub closed: u64,
    pub over_capacity: u64,
    pub errors_by_status: Vec<u64>,
    pub header_timeouts: u64,
    pub subscribed: u64,
    pub subscribers: u64,
    pub published: u64,
    pub delivered: u64,
    pub replayed: u64,
    pub slow_consumers: u64,
    pub write_timeouts: u64,
    pub tokens_expired: u64,
    pub lifetimes_ended: u64,
    pub heartbeats: u64,
    pub bytes_written: u64,
    pub tls_handshakes: u64,
    pub tls_failures: u64,
    pub queued_bytes: u64,
    pub history: u64,
}
