//! The run's figures: one `Summary`, printed as a table for people and as one JSON line for
//! the scenario runner.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles of a latency histogram, in microseconds.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// Everything one run measured.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub label: String,
    pub flavor: String,
    /// `plain`, `tls` or `h2` (subscribers' HTTP/2 over TLS).
    pub transport: String,
    pub subscribers: u64,
    pub topics: u32,
    pub processes: u32,
    pub rate_target: f64,
    pub duration_s: f64,
    pub payload_bytes: usize,
    /// Time for every subscriber to be registered.
    pub connect_ms: u64,

    /// Events the server accepted.
    pub published: u64,
    /// Publishes the server refused (non-2xx, e.g. 503 under overload).
    pub publish_refused: u64,
    /// Accepted events per second over the publishing time.
    pub publish_rate: f64,
    /// Publish send → response, µs.
    pub ack_us: Latency,
    /// The warm-up publish's send → response time, µs: the server's first publish, before the
    /// measured phase (one-time costs show here, not in the latency tail).
    pub first_publish_ack_us: u64,

    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub unexpected: u64,
    pub malformed: u64,
    pub disconnected: u64,
    /// Whether every subscriber had every event before the drain limit.
    pub drained: bool,
    /// Publish → receive, µs.
    pub latency_us: Latency,

    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_peak_kib: u64,
    /// Whether the idle reading settled (equal consecutive reads) before its time limit.
    pub rss_idle_settled: bool,
    /// (idle − before) / subscribers.
    pub bytes_per_idle_conn: f64,

    /// Server CPU time over the measured phase (publishing + drain).
    pub server_cpu_ms: f64,
    /// Server CPU per delivered event (µs); per accepted publish when nothing is delivered.
    pub server_cpu_us_per_delivery: f64,
    pub server_cpu_us_per_publish: f64,
    /// The load generator's own CPU over the same phase (coordinator + subscriber processes).
    pub loadgen_cpu_ms: f64,
    pub loadgen_cpu_us_per_delivery: f64,
}

impl Summary {
    /// A human-readable table.
    pub fn table(&self) -> String {
        let l = &self.latency_us;
        let a = &self.ack_us;
        let rows: Vec<(&str, String)> = vec![
            (
                "run",
                format!(
                    "{} ({:?} flavor, {} transport)",
                    self.label, self.flavor, self.transport
                ),
            ),
            (
                "load",
                if self.duration_s > 0.0 {
                    format!(
                        "{} subscribers over {} topics in {} processes; {} events/s target for {:.1}s, {} B payloads",
                        self.subscribers, self.topics, self.processes, self.rate_target, self.duration_s, self.payload_bytes
                    )
                } else {
                    format!(
                        "{} idle subscribers over {} topics in {} processes; no publishing",
                        self.subscribers, self.topics, self.processes
                    )
                },
            ),
            ("registered in", format!("{} ms", self.connect_ms)),
            (
                "published",
                format!("{} accepted ({:.1}/s), {} refused", self.published, self.publish_rate, self.publish_refused),
            ),
            (
                "publish ack µs",
                format!("p50 {} p99 {} max {} (first publish, unmeasured: {})", a.p50, a.p99, a.max, self.first_publish_ack_us),
            ),
            (
                "deliveries",
                format!(
                    "expected {} received {} missing {} duplicated {} (unexpected {}, malformed {}, disconnected {}, drained {})",
                    self.expected,
                    self.received,
                    self.missing,
                    self.duplicated,
                    self.unexpected,
                    self.malformed,
                    self.disconnected,
                    self.drained
                ),
            ),
            ("latency µs", format!("p50 {} p99 {} p99.9 {} max {} (n={})", l.p50, l.p99, l.p999, l.max, l.count)),
            (
                "server RSS KiB",
                format!(
                    "before {} idle {}{} peak {}",
                    self.rss_before_kib,
                    self.rss_idle_kib,
                    if self.rss_idle_settled { "" } else { " (not settled)" },
                    self.rss_peak_kib
                ),
            ),
            ("bytes/idle conn", format!("{:.0}", self.bytes_per_idle_conn)),
            (
                "server CPU",
                format!(
                    "{:.0} ms; {:.2} µs per delivery, {:.2} µs per publish",
                    self.server_cpu_ms, self.server_cpu_us_per_delivery, self.server_cpu_us_per_publish
                ),
            ),
            (
                "loadgen CPU",
                format!("{:.0} ms; {:.2} µs per delivery", self.loadgen_cpu_ms, self.loadgen_cpu_us_per_delivery),
            ),
        ];
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        rows.iter()
            .map(|(k, v)| format!("{k:>width$}  {v}\n"))
            .collect()
    }
}
