//! The coordinator: starts the subscriber processes, waits until every subscriber is
//! registered, measures idle memory, publishes, waits for the deliveries to drain and sums up.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::ipc::{FromWorker, ToWorker, WorkerReport};
use crate::proto::Flavor;
use crate::publish;
use crate::report::{Latency, Summary};
use crate::sys;
use crate::target::ServerProcs;
use crate::tls::{self, Transport};

/// RSS is read this often while waiting for it to settle and while publishing (for the peak).
const RSS_SAMPLE: Duration = Duration::from_millis(200);
/// This many equal consecutive reads mean RSS has settled.
const RSS_STABLE_READS: usize = 3;
/// Longest wait for RSS to settle; the last read is used after that (and flagged).
const RSS_SETTLE_MAX: Duration = Duration::from_secs(5);
/// Source addresses are 127.0.0.2 … 127.0.0.(1 + MAX_PROCESSES).
const MAX_PROCESSES: u32 = 200;

/// One run's parameters (everything except where the server is and who it is).
#[derive(Debug, Clone)]
pub struct Params {
    pub label: String,
    pub flavor: Flavor,
    pub transport: Transport,
    /// The certificate TLS trusts.
    pub ca: Option<PathBuf>,
    pub h2_streams: u32,
    /// One address per node; subscriber process k connects to `targets[k % len]`.
    pub targets: Vec<SocketAddr>,
    pub server: ServerProcs,
    pub subscribers: u32,
    pub topics: u32,
    pub per_process: u32,
    pub rate: f64,
    pub duration: Duration,
    pub payload_bytes: usize,
    pub publish_connections: u32,
    pub token: String,
    pub warmup: u32,
    pub connect_timeout: Duration,
    pub drain_timeout: Duration,
}

/// A subscriber process and its pipes.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    source: Ipv4Addr,
}

impl Worker {
    fn spawn(p: &Params, index: u32, first: u32, count: u32) -> anyhow::Result<Worker> {
        let exe: PathBuf = std::env::current_exe().context("locating our own binary")?;
        let source = Ipv4Addr::new(127, 0, 0, 2 + index as u8);
        let flavor = match p.flavor {
            Flavor::Mercure => "mercure",
            Flavor::Nchan => "nchan",
        };
        let mut command = Command::new(exe);
        command.arg("__worker");
        if let Some(ca) = &p.ca {
            command.arg("--ca").arg(ca);
        }
        let mut child = command
            .args([
                "--target",
                &p.targets[index as usize % p.targets.len()].to_string(),
                "--source",
                &source.to_string(),
            ])
            .args([
                "--flavor",
                flavor,
                "--count",
                &count.to_string(),
                "--first",
                &first.to_string(),
            ])
            .args(["--topics", &p.topics.to_string()])
            .args(["--transport", p.transport.as_str()])
            .args(["--h2-streams", &p.h2_streams.to_string()])
            .args([
                "--connect-timeout",
                &p.connect_timeout.as_secs_f64().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting a subscriber process")?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        Ok(Worker {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            source,
        })
    }

    async fn send(&mut self, msg: &ToWorker) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(msg).context("encoding a worker message")?;
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .with_context(|| format!("writing to worker {}", self.source))
    }

    async fn recv(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<FromWorker> {
        let line = tokio::time::timeout_at(deadline, self.lines.next_line())
            .await
            .with_context(|| format!("worker {} did not answer in time", self.source))?
            .with_context(|| format!("reading from worker {}", self.source))?
            .with_context(|| format!("worker {} exited without a word", self.source))?;
        match serde_json::from_str(&line)
            .with_context(|| format!("decoding worker {}'s {line:?}", self.source))?
        {
            FromWorker::Failed { error } => bail!("worker {}: {error}", self.source),
            msg => Ok(msg),
        }
    }

    async fn wait_ready(&mut self, deadline: tokio::time::Instant) -> anyhow::Result<u64> {
        match self.recv(deadline).await? {
            FromWorker::Ready { connect_ms, .. } => Ok(connect_ms),
            other => bail!("worker {}: expected Ready, got {other:?}", self.source),
        }
    }

    async fn finish(mut self, published: &[u64], drain: Duration) -> anyhow::Result<WorkerReport> {
        self.send(&ToWorker::Stop {
            published: published.to_vec(),
            drain_ms: drain.as_millis() as u64,
        })
        .await?;
        let deadline = tokio::time::Instant::now() + drain + Duration::from_secs(30);
        let report = match self.recv(deadline).await? {
            FromWorker::Report(r) => r,
            other => bail!("worker {}: expected Report, got {other:?}", self.source),
        };
        // The worker exits right after its report; its sockets close with it.
        let _ = tokio::time::timeout_at(deadline, self.child.wait()).await;
        Ok(report)
    }
}

/// Starts `count` subscribers spread over processes of at most `per_process` each.
async fn start_workers(
    p: &Params,
    count: u32,
    per_process: u32,
) -> anyhow::Result<(Vec<Worker>, u64)> {
    let procs = count.div_ceil(per_process.max(1)).max(1);
    if procs > MAX_PROCESSES {
        bail!("{procs} subscriber processes needed, at most {MAX_PROCESSES}");
    }
    let (base, extra) = (count / procs, count % procs);
    let mut workers = Vec::with_capacity(procs as usize);
    let mut first = 0;
    for i in 0..procs {
        let n = base + u32::from(i < extra);
        workers.push(Worker::spawn(p, i, first, n)?);
        first += n;
    }
    let deadline = tokio::time::Instant::now() + p.connect_timeout + Duration::from_secs(5);
    let mut connect_ms = 0;
    for w in workers.iter_mut() {
        connect_ms = connect_ms.max(w.wait_ready(deadline).await?);
    }
    Ok((workers, connect_ms))
}

/// Reads RSS every RSS_SAMPLE until RSS_STABLE_READS equal reads or RSS_SETTLE_MAX.
/// Sampling is the measurement here: RSS has no readiness signal.
async fn settled_rss(server: &ServerProcs) -> anyhow::Result<(u64, bool)> {
    let mut reads = vec![server.rss_kib()?];
    let until = Instant::now() + RSS_SETTLE_MAX;
    while Instant::now() < until {
        let tail = &reads[reads.len().saturating_sub(RSS_STABLE_READS)..];
        if tail.len() == RSS_STABLE_READS && tail.iter().all(|&r| r == tail[0]) {
            return Ok((tail[0], true));
        }
        tokio::time::sleep(RSS_SAMPLE).await;
        reads.push(server.rss_kib()?);
    }
    Ok((*reads.last().unwrap_or(&0), false))
}

/// One complete run. Must be called inside a `LocalSet`.
pub async fn run(p: &Params) -> anyhow::Result<Summary> {
    let measure = !p.server.is_empty();
    let mut s = Summary {
        label: p.label.clone(),
        flavor: format!("{:?}", p.flavor).to_lowercase(),
        transport: p.transport.as_str().to_string(),
        subscribers: u64::from(p.subscribers),
        topics: p.topics,
        processes: p.subscribers.div_ceil(p.per_process.max(1)).max(1),
        rate_target: p.rate,
        duration_s: p.duration.as_secs_f64(),
        payload_bytes: p.payload_bytes,
        ..Summary::default()
    };

    // Warm-up: pay the server's one-time costs (allocator arenas, first connections) before
    // the baseline, as benches/idle_rss.py does.
    if p.warmup > 0 {
        let (workers, _) =
            start_workers(p, p.warmup.min(p.subscribers.max(1)), p.per_process).await?;
        for w in workers {
            w.finish(&vec![0; p.topics as usize], Duration::ZERO)
                .await?;
        }
    }
    if measure {
        s.rss_before_kib = settled_rss(&p.server).await?.0;
    }

    let (mut workers, connect_ms) = start_workers(p, p.subscribers, p.per_process).await?;
    s.connect_ms = connect_ms;
    if measure {
        let (idle, settled) = settled_rss(&p.server).await?;
        s.rss_idle_kib = idle;
        s.rss_idle_settled = settled;
        s.rss_peak_kib = idle;
        if p.subscribers > 0 {
            s.bytes_per_idle_conn =
                (idle as f64 - s.rss_before_kib as f64) * 1024.0 / f64::from(p.subscribers);
        }
    }

    let plan = publish::Plan {
        flavor: p.flavor,
        targets: p.targets.clone(),
        topics: p.topics,
        connections: p.publish_connections,
        rate: p.rate,
        duration: p.duration,
        payload_bytes: p.payload_bytes,
        token: p.token.clone(),
        tls: match (&p.ca, p.transport) {
            (Some(ca), Transport::Tls | Transport::H2) => {
                Some(tls::client_config(ca, b"http/1.1")?)
            }
            _ => None,
        },
    };
    if !p.duration.is_zero() {
        s.first_publish_ack_us = publish::warm_up(&plan).await?;
    }

    // The measured phase: publishing, then the drain of what is still in flight.
    for w in workers.iter_mut() {
        w.send(&ToWorker::Start).await?;
    }
    let server_cpu0 = if measure { p.server.cpu_ns()? } else { 0 };
    let self_cpu0 = sys::self_cpu_ns();
    let peak = Rc::new(Cell::new(s.rss_peak_kib));
    let sampler = measure.then(|| {
        let (server, peak) = (p.server.clone(), peak.clone());
        tokio::task::spawn_local(async move {
            let mut tick = tokio::time::interval(RSS_SAMPLE);
            // Aborted by the coordinator when the phase ends; a cap of one day bounds it anyway.
            for _ in 0..(86_400_000 / RSS_SAMPLE.as_millis() as u64) {
                tick.tick().await;
                if let Ok(kib) = server.rss_kib() {
                    peak.set(peak.get().max(kib));
                }
            }
        })
    });

    let outcome = if p.duration.is_zero() {
        publish::Outcome {
            published: vec![0; p.topics as usize],
            refused: 0,
            ack_us: Histogram::new(3).context("creating the histogram")?,
            elapsed: Duration::ZERO,
        }
    } else {
        publish::run(&plan).await?
    };

    let mut latency =
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).context("creating the histogram")?;
    let mut workers_cpu = 0;
    let mut drained = true;
    // Stop all first so that they drain in parallel, then collect.
    let mut pending = Vec::with_capacity(workers.len());
    for w in workers.drain(..) {
        let published = outcome.published.clone();
        let drain = p.drain_timeout;
        pending.push(tokio::task::spawn_local(async move {
            w.finish(&published, drain).await
        }));
    }
    for handle in pending {
        let r = handle.await.context("a worker task panicked")??;
        s.expected += r.expected;
        s.received += r.received;
        s.missing += r.missing;
        s.duplicated += r.duplicated;
        s.unexpected += r.unexpected;
        s.malformed += r.malformed;
        s.disconnected += r.disconnected;
        drained &= r.drained;
        workers_cpu += r.cpu_ns;
        for (value, count) in r.latency_us {
            latency
                .record_n(value, count)
                .context("merging latencies")?;
        }
    }
    let server_cpu = if measure {
        p.server.cpu_ns()?.saturating_sub(server_cpu0)
    } else {
        0
    };
    let loadgen_cpu = sys::self_cpu_ns().saturating_sub(self_cpu0) + workers_cpu;
    if let Some(sampler) = sampler {
        sampler.abort();
    }
    if measure {
        s.rss_peak_kib = peak.get().max(p.server.rss_kib().unwrap_or(0));
    }

    s.drained = drained;
    s.latency_us = Latency::of(&latency);
    s.published = outcome.published.iter().sum();
    s.publish_refused = outcome.refused;
    s.ack_us = Latency::of(&outcome.ack_us);
    if !outcome.elapsed.is_zero() {
        s.publish_rate = s.published as f64 / outcome.elapsed.as_secs_f64();
    }
    s.server_cpu_ms = server_cpu as f64 / 1e6;
    s.loadgen_cpu_ms = loadgen_cpu as f64 / 1e6;
    if s.received > 0 {
        s.server_cpu_us_per_delivery = server_cpu as f64 / 1e3 / s.received as f64;
        s.loadgen_cpu_us_per_delivery = loadgen_cpu as f64 / 1e3 / s.received as f64;
    }
    if s.published > 0 {
        s.server_cpu_us_per_publish = server_cpu as f64 / 1e3 / s.published as f64;
    }
    Ok(s)
}
