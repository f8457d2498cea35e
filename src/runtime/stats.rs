//! Per-core counters. Plain `Cell`s: each core counts its own, with no shared atomic on the
//! hot path; a scrape asks every core for a [`Snapshot`] over the mesh and sums them.

use std::cell::Cell;
use std::time::Instant;

/// Statuses counted one by one (anything else goes to the last slot).
pub const COUNTED_STATUSES: [u16; 13] = [
    400, 401, 403, 404, 405, 411, 413, 414, 415, 417, 431, 503, 505,
];

/// Upper bounds (seconds) of the publish→write latency histogram's buckets (`+Inf` follows).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Why a connection ended, for `ssegate_connections_closed_total{reason}`. One reason per
/// connection, decided where the connection's task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed or reset the connection.
    ClientClosed,
    /// An idle keep-alive connection passed `keepalive_timeout`.
    IdleTimeout,
    /// The request head did not arrive within `header_timeout`.
    HeaderTimeout,
    /// The TLS handshake failed or timed out.
    TlsFailed,
    /// The gateway closed it after a response (`Connection: close`, an error that ends the
    /// connection, a refusal for capacity).
    Answered,
    /// Closed at shutdown (an idle keep-alive connection, or a drained subscriber).
    Shutdown,
    /// A subscriber stream ended by `max_stream_duration`.
    Lifetime,
    /// A subscriber dropped for passing `max_queued_bytes`.
    SlowConsumer,
    /// A subscriber closed at its token's `exp`.
    TokenExpired,
    /// A subscriber whose writes stalled for `write_timeout`.
    WriteTimeout,
}

impl CloseReason {
    /// Every reason, in the order of [`Stats::closed_by_reason`].
    pub const ALL: [CloseReason; 10] = [
        CloseReason::ClientClosed,
        CloseReason::IdleTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::TlsFailed,
        CloseReason::Answered,
        CloseReason::Shutdown,
        CloseReason::Lifetime,
        CloseReason::SlowConsumer,
        CloseReason::TokenExpired,
        CloseReason::WriteTimeout,
    ];

    /// The label value (also used in log lines and the access log).
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "client_closed",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::TlsFailed => "tls_failed",
            CloseReason::Answered => "answered",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Lifetime => "lifetime",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::WriteTimeout => "write_timeout",
        }
    }
}

/// One core's counters.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted.
    pub accepted: Cell<u64>,
    /// Connections open now.
    pub conns_open: Cell<u64>,
    /// Connections closed, by reason, in the order of [`CloseReason::ALL`].
    pub closed_by_reason: [Cell<u64>; CloseReason::ALL.len()],
    /// Connections refused with 503 because of `max_connections`.
    pub over_capacity: Cell<u64>,
    /// Refusals by status, in the order of [`COUNTED_STATUSES`], then "other".
    pub errors_by_status: [Cell<u64>; COUNTED_STATUSES.len() + 1],
    /// Publish requests refused, by status, in the order of [`COUNTED_STATUSES`], then
    /// "other" (also counted in `errors_by_status`).
    pub publish_errors: [Cell<u64>; COUNTED_STATUSES.len() + 1],
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
    /// Subscriptions refused because their new templates would pass `max_template_bytes`.
    pub template_budget_refusals: Cell<u64>,
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
    /// Publish→write latency: counts per bucket of [`LATENCY_BUCKETS`] (not cumulative), then
    /// the `+Inf` slot.
    pub latency_buckets: [Cell<u64>; LATENCY_BUCKETS.len() + 1],
    /// Sum of the observed latencies, in nanoseconds.
    pub latency_sum_ns: Cell<u64>,
    /// Access log lines dropped because the writer thread fell behind.
    pub access_log_dropped: Cell<u64>,
}

impl Stats {
    /// Adds `n` to a counter.
    #[inline]
    pub fn add(c: &Cell<u64>, n: u64) {
        c.set(c.get() + n);
    }

    /// Counts a refusal with `status`.
    pub fn refused(&self, status: u16) {
        Stats::add(&self.errors_by_status[status_slot(status)], 1);
    }

    /// Counts a refused publish with `status` (on top of [`Stats::refused`]).
    pub fn publish_refused(&self, status: u16) {
        Stats::add(&self.publish_errors[status_slot(status)], 1);
    }

    /// Counts a connection's end.
    pub fn closed(&self, reason: CloseReason) {
        Stats::add(&self.closed_by_reason[reason as usize], 1);
    }

    /// Records the time from `accepted_at` (when the sequencer accepted an event) to now
    /// (its bytes were just handed to the kernel for one subscriber: by the flusher or by the
    /// subscriber's task).
    pub fn observe_delivery(&self, accepted_at: Instant, now: Instant) {
        let d = now.saturating_duration_since(accepted_at);
        let secs = d.as_secs_f64();
        let slot = LATENCY_BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        Stats::add(&self.latency_buckets[slot], 1);
        Stats::add(&self.latency_sum_ns, d.as_nanos() as u64);
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
            closed_by_reason: self.closed_by_reason.iter().map(Cell::get).collect(),
            over_capacity: self.over_capacity.get(),
            errors_by_status: self.errors_by_status.iter().map(Cell::get).collect(),
            publish_errors: self.publish_errors.iter().map(Cell::get).collect(),
            header_timeouts: self.header_timeouts.get(),
            subscribed: self.subscribed.get(),
            subscribers,
            published: self.published.get(),
            delivered: self.delivered.get(),
            replayed: self.replayed.get(),
            slow_consumers: self.slow_consumers.get(),
            write_timeouts: self.write_timeouts.get(),
            template_budget_refusals: self.template_budget_refusals.get(),
            tokens_expired: self.tokens_expired.get(),
            lifetimes_ended: self.lifetimes_ended.get(),
            heartbeats: self.heartbeats.get(),
            bytes_written: self.bytes_written.get(),
            tls_handshakes: self.tls_handshakes.get(),
            tls_failures: self.tls_failures.get(),
            latency_buckets: self.latency_buckets.iter().map(Cell::get).collect(),
            latency_sum_ns: self.latency_sum_ns.get(),
            access_log_dropped: self.access_log_dropped.get(),
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
    pub closed_by_reason: Vec<u64>,
    pub over_capacity: u64,
    pub errors_by_status: Vec<u64>,
    pub publish_errors: Vec<u64>,
    pub header_timeouts: u64,
    pub subscribed: u64,
    pub subscribers: u64,
    pub published: u64,
    pub delivered: u64,
    pub replayed: u64,
    pub slow_consumers: u64,
    pub write_timeouts: u64,
    pub template_budget_refusals: u64,
    pub tokens_expired: u64,
    pub lifetimes_ended: u64,
    pub heartbeats: u64,
    pub bytes_written: u64,
    pub tls_handshakes: u64,
    pub tls_failures: u64,
    pub latency_buckets: Vec<u64>,
    pub latency_sum_ns: u64,
    pub access_log_dropped: u64,
    pub queued_bytes: u64,
    pub history: u64,
}

/// The slot of `status` in [`COUNTED_STATUSES`], or the last ("other").
fn status_slot(status: u16) -> usize {
    COUNTED_STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(COUNTED_STATUSES.len())
}
