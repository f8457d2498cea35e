//! Prometheus text exposition of every core's [`Snapshot`], labelled by core (sum them with
//! `sum without (core)`), plus build information.

use std::fmt::Write;

use crate::runtime::stats::COUNTED_STATUSES;
use crate::runtime::Snapshot;

/// One metric: name, type, help, and how to read it from a snapshot.
struct Metric {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Snapshot) -> u64,
}

const METRICS: &[Metric] = &[
    Metric {
        name: "ssegate_connections_accepted_total",
        kind: "counter",
        help: "Connections accepted.",
        value: |s| s.accepted,
    },
    Metric {
        name: "ssegate_connections_closed_total",
        kind: "counter",
        help: "Connections closed.",
        value: |s| s.closed,
    },
    Metric {
        name: "ssegate_connections_open",
        kind: "gauge",
        help: "Connections open.",
        value: |s| s.conns_open,
    },
    Metric {
        name: "ssegate_connections_over_capacity_total",
        kind: "counter",
        help: "Connections refused with 503 by max_connections.",
        value: |s| s.over_capacity,
    },
    Metric {
        name: "ssegate_header_timeouts_total",
        kind: "counter",
        help: "Connections closed for not sending a request head within header_timeout.",
        value: |s| s.header_timeouts,
    },
    Metric {
        name: "ssegate_subscribers",
        kind: "gauge",
        help: "Subscribers connected.",
        value: |s| s.subscribers,
    },
    Metric {
        name: "ssegate_subscriptions_total",
        kind: "counter",
        help: "Subscribe requests accepted.",
        value: |s| s.subscribed,
    },
    Metric {
        name: "ssegate_events_published_total",
        kind: "counter",
        help: "Events accepted from publishers connected to this core.",
        value: |s| s.published,
    },
    Metric {
        name: "ssegate_events_delivered_total",
        kind: "counter",
        help: "Events queued to subscribers.",
        value: |s| s.delivered,
    },
    Metric {
        name: "ssegate_events_replayed_total",
        kind: "counter",
        help: "Events replayed from history on resume.",
        value: |s| s.replayed,
    },
    Metric {
        name: "ssegate_bytes_written_total",
        kind: "counter",
        help: "Bytes written to subscribers.",
        value: |s| s.bytes_written,
    },
    Metric {
        name: "ssegate_queued_bytes",
        kind: "gauge",
        help: "Bytes queued for subscribers, not yet taken by the kernel.",
        value: |s| s.queued_bytes,
    },
    Metric {
        name: "ssegate_slow_consumer_disconnects_total",
        kind: "counter",
        help: "Subscribers disconnected for passing max_queued_bytes.",
        value: |s| s.slow_consumers,
    },
    Metric {
        name: "ssegate_write_timeout_disconnects_total",
        kind: "counter",
        help: "Subscribers disconnected because writes stalled for write_timeout.",
        value: |s| s.write_timeouts,
    },
    Metric {
        name: "ssegate_token_expiry_disconnects_total",
        kind: "counter",
        help: "Subscribers disconnected at their token's exp.",
        value: |s| s.tokens_expired,
    },
    Metric {
        name: "ssegate_stream_lifetime_ends_total",
        kind: "counter",
        help: "Streams ended by max_stream_duration.",
        value: |s| s.lifetimes_ended,
    },
    Metric {
        name: "ssegate_heartbeats_total",
        kind: "counter",
        help: "Heartbeat comments queued.",
        value: |s| s.heartbeats,
    },
    Metric {
        name: "ssegate_history_events",
        kind: "gauge",
        help: "Events retained in this core's history.",
        value: |s| s.history,
    },
];

/// Renders the exposition for all cores.
pub fn render(cores: &[Snapshot]) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "# HELP ssegate_build_info Build information.");
    let _ = writeln!(out, "# TYPE ssegate_build_info gauge");
    let _ = writeln!(
        out,
        "ssegate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for m in METRICS {
        let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
        let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind);
        for s in cores {
            let _ = writeln!(out, "{}{{core=\"{}\"}} {}", m.name, s.core, (m.value)(s));
        }
    }
    let name = "ssegate_requests_refused_total";
    let _ = writeln!(out, "# HELP {name} Requests refused, by status.");
    let _ = writeln!(out, "# TYPE {name} counter");
    for s in cores {
        for (i, n) in s.errors_by_status.iter().enumerate() {
            let status = COUNTED_STATUSES
                .get(i)
                .map_or("other".to_owned(), |st| st.to_string());
            let _ = writeln!(out, "{name}{{core=\"{}\",status=\"{status}\"}} {n}", s.core);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_core_with_help_and_type() {
        let a = Snapshot {
            core: 0,
            delivered: 5,
            errors_by_status: vec![1; 13],
            ..Snapshot::default()
        };
        let b = Snapshot {
            core: 1,
            delivered: 7,
            errors_by_status: vec![0; 13],
            ..Snapshot::default()
        };
        let text = render(&[a, b]);
        assert!(text.contains("# TYPE ssegate_events_delivered_total counter\n"));
        assert!(text.contains("ssegate_events_delivered_total{core=\"0\"} 5\n"));
        assert!(text.contains("ssegate_events_delivered_total{core=\"1\"} 7\n"));
        assert!(text.contains("ssegate_requests_refused_total{core=\"0\",status=\"431\"} 1\n"));
        assert!(text.contains("ssegate_requests_refused_total{core=\"0\",status=\"other\"} 1\n"));
    }
}
