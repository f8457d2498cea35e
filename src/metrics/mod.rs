//! Prometheus text exposition of every core's [`Snapshot`], labelled by core (sum them with
//! `sum without (core)`), plus build information.
//!
//! Owns: the exposition format. May call: nothing above it (`metrics::counters`).

use std::fmt::Write;

pub mod counters;

use self::counters::{CloseReason, Series, Shape, Snapshot, SCALARS, SERIES};
use self::counters::{COUNTED_STATUSES, LATENCY_BUCKETS};

/// The order's engine as the sequencing core sees it: one set per node, no core label.
#[derive(Debug, Clone, Default)]
pub struct EngineStats {
    /// `memory` or `redis`.
    pub engine: &'static str,
    /// Why it cannot take publishes now (`/readyz` says it); `None` when it can.
    pub down: Option<&'static str>,
    /// Connections to the engine reopened after a failure.
    pub reconnects: u64,
    /// Publish round trips (written → confirmed), slots over [`LATENCY_BUCKETS`] then `+Inf`.
    pub publish_rtt: [u64; LATENCY_BUCKETS.len() + 1],
    /// Their sum, in nanoseconds.
    pub publish_rtt_sum_ns: u64,
    /// How old the newest entry was when the reader last took entries (0: it took none).
    pub reader_lag_seconds: f64,
    /// Entries read and not yet broadcast to the cores.
    pub reader_backlog: u64,
}

/// Renders the exposition for all cores, then the engine's lines (the sequencing core's).
pub fn render(cores: &[Snapshot], engine: Option<&EngineStats>) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(out, "# HELP ssegate_build_info Build information.");
    let _ = writeln!(out, "# TYPE ssegate_build_info gauge");
    let _ = writeln!(
        out,
        "ssegate_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    for m in SCALARS {
        let _ = writeln!(out, "# HELP {} {}", m.name, m.help);
        let _ = writeln!(out, "# TYPE {} {}", m.name, m.kind.as_str());
        for s in cores {
            let _ = writeln!(out, "{}{{core=\"{}\"}} {}", m.name, s.core, (m.value)(s));
        }
    }
    for series in SERIES {
        let kind = match series.shape {
            Shape::Histogram(_) => "histogram",
            Shape::ByStatus | Shape::ByReason => "counter",
        };
        let _ = writeln!(out, "# HELP {} {}", series.name, series.help);
        let _ = writeln!(out, "# TYPE {} {kind}", series.name);
        for s in cores {
            match series.shape {
                Shape::ByStatus => by_status(&mut out, series, s),
                Shape::ByReason => by_reason(&mut out, series, s),
                Shape::Histogram(sum_ns) => histogram(&mut out, series, s, sum_ns(s)),
            }
        }
    }
    if let Some(e) = engine {
        render_engine(&mut out, e);
    }
    out
}

fn render_engine(out: &mut String, e: &EngineStats) {
    let engine = e.engine;
    let mut gauge = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{{engine=\"{engine}\"}} {value}");
    };
    gauge(
        "ssegate_engine_up",
        "gauge",
        "1 when the engine takes publishes, 0 when they are refused (see /readyz).",
        u8::from(e.down.is_none()).to_string(),
    );
    if engine == "memory" {
        return;
    }
    gauge(
        "ssegate_engine_reconnects_total",
        "counter",
        "Connections to the engine reopened after a failure.",
        e.reconnects.to_string(),
    );
    gauge(
        "ssegate_engine_reader_lag_seconds",
        "gauge",
        "Age of the newest entry when the reader last took entries from the stream.",
        format!("{:.6}", e.reader_lag_seconds),
    );
    gauge(
        "ssegate_engine_reader_backlog",
        "gauge",
        "Entries read from the stream and not yet broadcast to the cores.",
        e.reader_backlog.to_string(),
    );
    let name = "ssegate_engine_publish_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Publish round trips to the engine, written to confirmed."
    );
    let _ = writeln!(out, "# TYPE {name} histogram");
    let label = format!("engine=\"{engine}\"");
    histogram_lines(out, name, &label, &e.publish_rtt, e.publish_rtt_sum_ns);
}

/// One core's lines of a counter labelled by status (slots in the order of
/// [`COUNTED_STATUSES`], then "other").
fn by_status(out: &mut String, series: &Series, s: &Snapshot) {
    let name = series.name;
    for (i, n) in (series.slots)(s).iter().enumerate() {
        let status = COUNTED_STATUSES
            .get(i)
            .map_or("other".to_owned(), |st| st.to_string());
        let _ = writeln!(out, "{name}{{core=\"{}\",status=\"{status}\"}} {n}", s.core);
    }
}

/// One core's lines of a counter labelled by [`CloseReason`].
fn by_reason(out: &mut String, series: &Series, s: &Snapshot) {
    let name = series.name;
    for (reason, n) in CloseReason::ALL.iter().zip((series.slots)(s)) {
        let _ = writeln!(
            out,
            "{name}{{core=\"{}\",reason=\"{}\"}} {n}",
            s.core,
            reason.as_str()
        );
    }
}

/// One core's lines of a histogram over [`LATENCY_BUCKETS`] (slots not cumulative, `+Inf`
/// last) with its sum in nanoseconds.
fn histogram(out: &mut String, series: &Series, s: &Snapshot, sum_ns: u64) {
    let label = format!("core=\"{}\"", s.core);
    histogram_lines(out, series.name, &label, (series.slots)(s), sum_ns);
}

/// A histogram's `_bucket` (cumulative), `_sum` (seconds) and `_count` lines, from slots
/// over [`LATENCY_BUCKETS`] then `+Inf` and a sum in nanoseconds.
fn histogram_lines(out: &mut String, name: &str, label: &str, slots: &[u64], sum_ns: u64) {
    let mut cumulative = 0;
    for (i, n) in slots.iter().enumerate() {
        cumulative += n;
        let le = LATENCY_BUCKETS
            .get(i)
            .map_or("+Inf".to_owned(), |b| b.to_string());
        let _ = writeln!(out, "{name}_bucket{{{label},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum{{{label}}} {}", sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{name}_count{{{label}}} {cumulative}");
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
        let text = render(&[a, b], None);
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
