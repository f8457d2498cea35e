//! Per-core counters, each declared once in the `counters!` table below: it makes the
//! [`Stats`] cell, the [`Snapshot`] field, its copy in [`Stats::snapshot`] and the line the
//! exposition writes for it. Plain `Cell`s: each core counts its own, with no shared atomic on
//! the hot path; a scrape asks every core for a [`Snapshot`] over the mesh and sums them.

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
    /// An HTTP/2 connection that did not answer a keep-alive PING.
    PingTimeout,
    /// An HTTP/2 connection closed for a protocol error or a flood (`GOAWAY`).
    Http2Error,
}

impl CloseReason {
    /// Every reason, in the order of [`Stats::closed_by_reason`].
    pub const ALL: [CloseReason; 12] = [
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
        CloseReason::PingTimeout,
        CloseReason::Http2Error,
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
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::Http2Error => "http2_error",
        }
    }
}

/// The Prometheus type of a scalar metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    /// The word on the `# TYPE` line.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// One line per core: name, type, help, and where it is read in a snapshot.
pub(crate) struct Scalar {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub value: fn(&Snapshot) -> u64,
}

/// How a slotted counter is labelled, which also says how many slots it has.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    /// A counter per status of [`COUNTED_STATUSES`], then `status="other"`.
    ByStatus,
    /// A counter per reason of [`CloseReason::ALL`].
    ByReason,
    /// A histogram over [`LATENCY_BUCKETS`] then `+Inf`, with its sum in nanoseconds read
    /// by the function.
    Histogram(fn(&Snapshot) -> u64),
}

/// A counter with one slot per label value.
pub(crate) struct Series {
    pub name: &'static str,
    pub help: &'static str,
    pub shape: Shape,
    pub slots: fn(&Snapshot) -> &[u64],
}

/// Declares the counters: `scalars { … } series { … }`. Scalars are written first, in the
/// order of the exposition:
///
/// - `field: Kind "name" "help";` a [`Stats`] cell, exported under `name`;
/// - `arg field: Kind "name" "help";` a gauge the core passes to [`Stats::snapshot`] (it
///   lives elsewhere, in the shard or the history);
/// - `field;` a [`Stats`] cell with no line of its own (a histogram's sum).
///
/// Then the series, `field[slots]: Shape "name" "help";`, written after the scalars in their
/// order. Each entry's doc comment goes on its `Stats` and its `Snapshot` field.
macro_rules! counters {
    // Sorts the scalars into cells, arguments and exposition lines, keeping their order.
    (@sort [$($cell:tt)*] [$($arg:tt)*] [$($line:tt)*] [$($series:tt)*]
        $(#[$doc:meta])* arg $field:ident: $kind:ident $name:literal $help:literal; $($rest:tt)*) => {
        counters!(@sort [$($cell)*] [$($arg)* {$(#[$doc])*} $field]
            [$($line)* ($field $kind $name $help)] [$($series)*] $($rest)*);
    };
    (@sort [$($cell:tt)*] [$($arg:tt)*] [$($line:tt)*] [$($series:tt)*]
        $(#[$doc:meta])* $field:ident: $kind:ident $name:literal $help:literal; $($rest:tt)*) => {
        counters!(@sort [$($cell)* {$(#[$doc])*} $field] [$($arg)*]
            [$($line)* ($field $kind $name $help)] [$($series)*] $($rest)*);
    };
    (@sort [$($cell:tt)*] [$($arg:tt)*] [$($line:tt)*] [$($series:tt)*]
        $(#[$doc:meta])* $field:ident; $($rest:tt)*) => {
        counters!(@sort [$($cell)* {$(#[$doc])*} $field] [$($arg)*] [$($line)*]
            [$($series)*] $($rest)*);
    };
    (@sort
        [$({$(#[$cdoc:meta])*} $cell:ident)*]
        [$({$(#[$adoc:meta])*} $arg:ident)*]
        [$(($lfield:ident $lkind:ident $lname:literal $lhelp:literal))*]
        [$($(#[$sdoc:meta])* $series:ident[$slots:expr]:
            $shape:ident $(($sum:ident))? $sname:literal $shelp:literal;)*]) => {
        /// One core's counters.
        #[derive(Debug, Default)]
        pub struct Stats {
            $($(#[$cdoc])* pub $cell: Cell<u64>,)*
            $($(#[$sdoc])* pub $series: [Cell<u64>; $slots],)*
        }

        /// One core's counters and gauges at one moment (crosses cores for a scrape).
        #[derive(Debug, Clone, Default)]
        pub struct Snapshot {
            /// The core it was taken on.
            pub core: usize,
            $($(#[$cdoc])* pub $cell: u64,)*
            $($(#[$adoc])* pub $arg: u64,)*
            $($(#[$sdoc])* pub $series: Vec<u64>,)*
        }

        impl Stats {
            /// A copy of the counters, with this core's gauges, to send to the scraping core.
            pub fn snapshot(&self, core: usize, $($arg: u64),*) -> Snapshot {
                Snapshot {
                    core,
                    $($cell: self.$cell.get(),)*
                    $($arg,)*
                    $($series: self.$series.iter().map(Cell::get).collect(),)*
                }
            }
        }

        /// The one-line-per-core metrics, in exposition order.
        pub(crate) const SCALARS: &[Scalar] = &[$(Scalar {
            name: $lname,
            kind: Kind::$lkind,
            help: $lhelp,
            value: |s| s.$lfield,
        },)*];

        /// The slotted metrics, in exposition order (after [`SCALARS`]).
        pub(crate) const SERIES: &[Series] = &[$(Series {
            name: $sname,
            help: $shelp,
            shape: Shape::$shape $((|s| s.$sum))?,
            slots: |s| &s.$series,
        },)*];
    };
    (scalars { $($scalars:tt)* } series { $($series:tt)* }) => {
        counters!(@sort [] [] [] [$($series)*] $($scalars)*);
    };
}

counters! {
    scalars {
        /// Connections accepted.
        accepted: Counter "ssegate_connections_accepted_total" "Connections accepted.";
        /// Connections open now.
        conns_open: Gauge "ssegate_connections_open" "Connections open.";
        /// Connections refused with 503 because of `max_connections`.
        over_capacity: Counter "ssegate_connections_over_capacity_total"
            "Connections refused with 503 by max_connections.";
        /// Heads not received within `header_timeout`.
        header_timeouts: Counter "ssegate_header_timeouts_total"
            "Connections closed for not sending a request head within header_timeout.";
        /// Subscribers connected now: the shard's count, given to [`Stats::snapshot`].
        arg subscribers: Gauge "ssegate_subscribers" "Subscribers connected.";
        /// Subscribers accepted.
        subscribed: Counter "ssegate_subscriptions_total" "Subscribe requests accepted.";
        /// Events accepted from publishers on this core.
        published: Counter "ssegate_events_published_total"
            "Events accepted from publishers connected to this core.";
        /// Events queued to local subscribers.
        delivered: Counter "ssegate_events_delivered_total" "Events queued to subscribers.";
        /// Events replayed from history.
        replayed: Counter "ssegate_events_replayed_total" "Events replayed from history on resume.";
        /// Resumes from an id older than the in-memory history, served from the engine.
        replayed_from_engine: Counter "ssegate_resumes_from_engine_total" "Resumes from an id older than the in-memory history, read from the engine's stream.";
        /// Bytes handed to the kernel for subscribers.
        bytes_written: Counter "ssegate_bytes_written_total" "Bytes written to subscribers.";
        /// Bytes queued for subscribers and not yet taken by the kernel: the shard's sum, given
        /// to [`Stats::snapshot`].
        arg queued_bytes: Gauge "ssegate_queued_bytes"
            "Bytes queued for subscribers, not yet taken by the kernel.";
        /// Subscribers dropped for passing `max_queued_bytes`.
        slow_consumers: Counter "ssegate_slow_consumer_disconnects_total"
            "Subscribers disconnected for passing max_queued_bytes.";
        /// Subscribers dropped because a write stalled for `write_timeout`.
        write_timeouts: Counter "ssegate_write_timeout_disconnects_total"
            "Subscribers disconnected because writes stalled for write_timeout.";
        /// Subscriptions refused because their new templates would pass `max_template_bytes`.
        template_budget_refusals: Counter "ssegate_template_budget_refusals_total"
            "Subscriptions refused (503) because their new templates would pass max_template_bytes.";
        /// Subscribers closed because their token's `exp` passed.
        tokens_expired: Counter "ssegate_token_expiry_disconnects_total"
            "Subscribers disconnected at their token's exp.";
        /// Subscriber streams ended by `max_stream_duration`.
        lifetimes_ended: Counter "ssegate_stream_lifetime_ends_total"
            "Streams ended by max_stream_duration.";
        /// Heartbeat comments queued.
        heartbeats: Counter "ssegate_heartbeats_total" "Heartbeat comments queued.";
        /// TLS handshakes completed.
        tls_handshakes: Counter "ssegate_tls_handshakes_total" "TLS handshakes completed.";
        /// TLS handshakes failed (or timed out).
        tls_failures: Counter "ssegate_tls_handshake_failures_total"
            "TLS handshakes failed or timed out (plaintext on the TLS port, scanners, clients that gave up).";
        /// HTTP/2 connections opened (ALPN `h2`, or h2c with prior knowledge).
        h2_connections: Counter "ssegate_http2_connections_total"
            "HTTP/2 connections (ALPN h2 over TLS, or h2c with prior knowledge).";
        /// HTTP/2 streams (requests) accepted.
        h2_streams: Counter "ssegate_http2_streams_total" "HTTP/2 streams (requests) accepted.";
        /// HTTP/2 streams the gateway reset (slow consumer, write stall, token expiry).
        h2_resets: Counter "ssegate_http2_streams_reset_total"
            "HTTP/2 subscriber streams the gateway reset (slow consumer, write stall, token expiry).";
        /// HTTP/2 connections closed with `ENHANCE_YOUR_CALM` for a flood.
        h2_floods: Counter "ssegate_http2_flood_closes_total"
            "HTTP/2 connections closed with ENHANCE_YOUR_CALM: rapid reset, SETTINGS or PING floods, CONTINUATION floods, empty DATA floods.";
        /// HTTP/2 connections ended by another protocol error.
        h2_errors: Counter "ssegate_http2_protocol_errors_total"
            "HTTP/2 connections ended by a protocol error (theirs or a GOAWAY we sent).";
        /// Access log lines dropped because the writer thread fell behind.
        access_log_dropped: Counter "ssegate_access_log_dropped_lines_total"
            "Access log lines dropped because the log writer fell behind.";
        /// Events in this core's history: its length, given to [`Stats::snapshot`].
        arg history: Gauge "ssegate_history_events" "Events retained in this core's history.";
        /// Sum of the observed latencies, in nanoseconds (the `_sum` of `latency_buckets`).
        latency_sum_ns;
    }

    series {
        /// Refusals by status, in the order of [`COUNTED_STATUSES`], then "other".
        errors_by_status[COUNTED_STATUSES.len() + 1]: ByStatus "ssegate_requests_refused_total"
            "Requests refused, by status (publish, subscribe and every other route).";
        /// Publish requests refused, by status, in the order of [`COUNTED_STATUSES`], then
        /// "other" (also counted in `errors_by_status`).
        publish_errors[COUNTED_STATUSES.len() + 1]: ByStatus "ssegate_publish_errors_total"
            "Publish requests refused, by status.";
        /// Connections closed, by reason, in the order of [`CloseReason::ALL`].
        closed_by_reason[CloseReason::ALL.len()]: ByReason "ssegate_connections_closed_total"
            "Connections closed, by reason.";
        /// Publish→write latency: counts per bucket of [`LATENCY_BUCKETS`] (not cumulative),
        /// then the `+Inf` slot.
        latency_buckets[LATENCY_BUCKETS.len() + 1]: Histogram(latency_sum_ns)
            "ssegate_delivery_latency_seconds"
            "Time from the sequencer accepting an event to its bytes being handed to the kernel for a subscriber; observed once per write, for the oldest event in the write.";
    }
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
        Stats::add(&self.latency_buckets[latency_slot(d)], 1);
        Stats::add(&self.latency_sum_ns, d.as_nanos() as u64);
    }
}

/// The slot of a latency in a histogram over [`LATENCY_BUCKETS`] (the last is `+Inf`).
pub fn latency_slot(d: std::time::Duration) -> usize {
    let secs = d.as_secs_f64();
    LATENCY_BUCKETS
        .iter()
        .position(|&le| secs <= le)
        .unwrap_or(LATENCY_BUCKETS.len())
}

/// The slot of `status` in [`COUNTED_STATUSES`], or the last ("other").
fn status_slot(status: u16) -> usize {
    COUNTED_STATUSES
        .iter()
        .position(|&s| s == status)
        .unwrap_or(COUNTED_STATUSES.len())
}
