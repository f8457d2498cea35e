//! Prometheus text exposition of every core's [`Snapshot`], labelled by core (sum them with
//! `sum without (core)`), plus build information.

use std::fmt::Write;

use crate::runtime::stats::{CloseReason, COUNTED_STATUSES, LATENCY_BUCKETS};
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
        name: "ssegate_template_budget_refusals_total",
        kind: "counter",
        help: "Subscriptions refused (503) because their new templates would pass max_template_bytes.",
        value: |s| s.template_budget_refusals,
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
        name: "ssegate_tls_handshakes_total",
        kind: "counter",
        help: "TLS handshakes completed.",
        value: |s| s.tls_handshakes,
    },
    Metric {
        name: "ssegate_tls_handshake_failures_total",
        kind: "counter",
        help: "TLS handshakes failed or timed out (plaintext on the TLS port, scanners, clients that gave up).",
        value: |s| s.tls_failures,
    },
    Metric {
        name: "ssegate_access_log_dropped_lines_total",
        kind: "counter",
        help: "Access log lines dropped because the log writer fell behind.",
        value: |s| s.access_log_dropped,
    },
    Metric {
        name: "ssegate_history_events",
        kind: "gauge",
        help: "Events retained in this core's history.",
        value: |s| s.history,
    },
];

/// Writes one counter labelled by core and status (slots in the order of
/// [`COUNTED_STATUSES`], then "other").
fn by_status(
    out: &mut String,
    cores: &[Snapshot],
    name: &str,
    help: &str,
    slots: fn(&Snapshot) -> &Vec<u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for s in cores {
        for (i, n) in slots(s).iter().enumerate() {
            let status = COUNTED_STATUSES
                .get(i)
                .map_or("other".to_owned(), |st| st.to_string());
            let _ = writeln!(out, "{name}{{core=\"{}\",status=\"{status}\"}} {n}", s.core);
        }
    }
}

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
    by_status(
        &mut out,
        cores,
        "ssegate_requests_refused_total",
        "Requests refused, by status (publish, subscribe and every other route).",
        |s| &s.errors_by_status,
    );
    by_status(
        &mut out,
        cores,
        "ssegate_publish_errors_total",
        "Publish requests refused, by status.",
        |s| &s.publish_errors,
    );
    let name = "ssegate_connections_closed_total";
    let _ = writeln!(out, "# HELP {name} Connections closed, by reason.");
    let _ = writeln!(out, "# TYPE {name} counter");
    for s in cores {
        for (reason, n) in CloseReason::ALL.iter().zip(&s.closed_by_reason) {
            let _ = writeln!(
                out,
                "{name}{{core=\"{}\",reason=\"{}\"}} {n}",
                s.core,
                reason.as_str()
            );
        }
    }
    let name = "ssegate_delivery_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from the sequencer accepting an event to its bytes being handed to the kernel for a subscriber; observed once per write, for the oldest event in the write."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    for s in cores {
        let mut cumulative = 0;
        for (i, n) in s.latency_buckets.iter().enumerate() {
            cumulative += n;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or("+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{core=\"{}\",le=\"{le}\"}} {cumulative}",
                s.core
            );
        }
        let _ = writeln!(
            out,
            "{name}_sum{{core=\"{}\"}} {}",
            s.core,
            s.latency_sum_ns as f64 / 1e9
        );
        let _ = writeln!(out, "{name}_count{{core=\"{}\"}} {cumulative}", s.core);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_core_with_help_and_type() {
        let mut latency_buckets = vec![0; LATENCY_BUCKETS.len() + 1];
        latency_buckets[0] = 2; // ≤ 0.5 ms
        latency_buckets[LATENCY_BUCKETS.len()] = 1; // > 2.5 s
        let a = Snapshot {
            core: 0,
            delivered: 5,
            errors_by_status: vec![1; COUNTED_STATUSES.len() + 1],
            publish_errors: vec![0; COUNTED_STATUSES.len() + 1],
            closed_by_reason: vec![3; CloseReason::ALL.len()],
            latency_buckets,
            latency_sum_ns: 3_000_500_000,
            ..Snapshot::default()
        };
        let b = Snapshot {
            core: 1,
            delivered: 7,
            errors_by_status: vec![0; COUNTED_STATUSES.len() + 1],
            ..Snapshot::default()
        };
        let text = render(&[a, b]);
        assert!(text.contains("# TYPE ssegate_events_delivered_total counter\n"));
        assert!(text.contains("ssegate_events_delivered_total{core=\"0\"} 5\n"));
        assert!(text.contains("ssegate_events_delivered_total{core=\"1\"} 7\n"));
        assert!(text.contains("ssegate_requests_refused_total{core=\"0\",status=\"431\"} 1\n"));
        assert!(text.contains("ssegate_requests_refused_total{core=\"0\",status=\"other\"} 1\n"));
        assert!(text
            .contains("ssegate_connections_closed_total{core=\"0\",reason=\"slow_consumer\"} 3\n"));
        assert!(text.contains("# TYPE ssegate_delivery_latency_seconds histogram\n"));
        assert!(
            text.contains("ssegate_delivery_latency_seconds_bucket{core=\"0\",le=\"0.0005\"} 2\n")
        );
        assert!(text.contains("ssegate_delivery_latency_seconds_bucket{core=\"0\",le=\"2.5\"} 2\n"));
        assert!(
            text.contains("ssegate_delivery_latency_seconds_bucket{core=\"0\",le=\"+Inf\"} 3\n")
        );
        assert!(text.contains("ssegate_delivery_latency_seconds_count{core=\"0\"} 3\n"));
        assert!(text.contains("ssegate_delivery_latency_seconds_sum{core=\"0\"} 3.0005\n"));
    }
}
