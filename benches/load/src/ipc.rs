//! Messages between the coordinator and its subscriber processes: one JSON object per line,
//! coordinator → worker on the worker's stdin, worker → coordinator on its stdout.

use serde::{Deserialize, Serialize};

/// Coordinator → worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// The measured phase begins: note the CPU time used so far.
    Start,
    /// Publishing is over. `published[k]` events were accepted on topic `k`: wait until every
    /// subscriber has them all (or `drain_ms` passes), then report and exit.
    Stop { published: Vec<u64>, drain_ms: u64 },
}

/// Worker → coordinator.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// Every subscriber of this worker has its response head and opening comment: it is
    /// registered with the server and will receive every event published from now on.
    Ready { subscribers: u64, connect_ms: u64 },
    /// The worker cannot do its job; the run is invalid.
    Failed { error: String },
    /// The worker's results, after `Stop`.
    Report(WorkerReport),
}

/// What one worker saw. Counts are over all of its subscribers.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct WorkerReport {
    /// Subscribers this worker held.
    pub subscribers: u64,
    /// Deliveries expected: Σ over subscribers of the events published on its topic.
    pub expected: u64,
    /// Distinct events received (each event counted once per subscriber).
    pub received: u64,
    /// Expected events never received (`expected - received`, per subscriber).
    pub missing: u64,
    /// Events received again, or out of order (a sequence number not above the last one).
    pub duplicated: u64,
    /// Events with a sequence number beyond what was published (should never happen).
    pub unexpected: u64,
    /// `data:` lines whose payload is not ours.
    pub malformed: u64,
    /// Subscribers whose stream the server closed during the run.
    pub disconnected: u64,
    /// Whether every subscriber had everything before the drain time limit.
    pub drained: bool,
    /// CPU time (user + system) this worker used between `Start` and its report.
    pub cpu_ns: u64,
    /// Publish → receive latency in microseconds, as (value, count) pairs of an HDR histogram.
    pub latency_us: Vec<(u64, u64)>,
}
