//! `ssegate-load`: the load generator for ssegate and its peers.
//!
//! ```text
//!  coordinator (this process)                         subscriber processes (`__worker`)
//!  ├─ starts N/5000 workers, one 127.0.0.x each ──►  open subscriptions, report Ready
//!  ├─ reads server RSS: before, idle (settled)        (registered = head + first `:` line)
//!  ├─ Start ─────────────────────────────────────►   note CPU
//!  ├─ publishes: seq + CLOCK_MONOTONIC send time      count, check order, record latency
//!  │  (topic k always on connection k % C)
//!  ├─ Stop { accepted per topic } ───────────────►   wait until all arrived (or time limit)
//!  └─ sums reports, server CPU and peak RSS  ◄─────   Report (counts, histogram, CPU)
//! ```
//!
//! It drives any server through a *flavor* (`mercure`: ssegate and the Go/axum peers;
//! `nchan`), reads the server's memory and CPU time from /proc (`--server-pid`, descendants
//! included, so nginx's master pid covers its workers), and prints a table and one JSON line.
//! `--smoke BINARY` starts ssegate itself, runs a small load and fails unless every delivery
//! arrived exactly once: the check CI runs (`benches/smoke.sh`).
#![deny(unsafe_code)]

mod ipc;
mod jwt;
mod proto;
mod publish;
mod report;
mod run;
mod sys;
mod target;
mod tls;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

use crate::proto::Flavor;
use crate::report::Summary;
use crate::target::{Gateway, ServerProcs};

/// Most subscribers a process may hold: the machine caps a process at 20,000 open files, and
/// smaller processes spread the load generator's work over more source addresses.
const MAX_PER_PROCESS: u32 = 5000;

#[derive(Debug, Parser)]
#[command(
    name = "ssegate-load",
    version,
    about = "Load generator for ssegate and its peers",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: a subscriber process started by the coordinator.
    #[command(name = "__worker", hide = true)]
    Worker(worker::WorkerArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Server address (loopback only). Repeat it for several nodes of one cluster: subscriber
    /// process k and publishing connection k go to the k-th address, round-robin.
    #[arg(long, required_unless_present = "smoke")]
    target: Vec<SocketAddr>,
    /// How to subscribe and publish.
    #[arg(long, value_enum, default_value = "mercure")]
    flavor: Flavor,
    /// Server process id for RSS and CPU; repeatable; descendants are included.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// A file holding more server pids, whitespace separated (e.g. nginx.pid).
    #[arg(long)]
    server_pid_file: Option<PathBuf>,
    /// SSE subscribers to open.
    #[arg(long, default_value_t = 1000)]
    subscribers: u32,
    /// Topics; subscriber i listens on topic i % topics, events go round-robin over them.
    #[arg(long, default_value_t = 1)]
    topics: u32,
    /// Total events per second to publish; 0 = as fast as the server answers.
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Seconds of publishing; 0 = idle (connect, measure memory, disconnect).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Size of each event's data.
    #[arg(long, default_value_t = 100)]
    payload_bytes: usize,
    /// Keep-alive publishing connections.
    #[arg(long, default_value_t = 4)]
    publish_connections: u32,
    /// HS256 key for the publisher token (mercure flavor).
    #[arg(long, env = "SSEGATE_PUBLISHER_JWT_KEY", default_value = "bench-key")]
    jwt_key: String,
    /// Subscribers per process (at most 5,000).
    #[arg(long, default_value_t = MAX_PER_PROCESS)]
    per_process: u32,
    /// Subscribers opened and closed before the memory baseline.
    #[arg(long, default_value_t = 200)]
    warmup: u32,
    /// Seconds allowed for every subscriber to register.
    #[arg(long, default_value_t = 120.0)]
    connect_timeout: f64,
    /// Seconds allowed after publishing for the last deliveries to arrive.
    #[arg(long, default_value_t = 10.0)]
    drain_timeout: f64,
    /// A name for this run in the output.
    #[arg(long, default_value = "run")]
    label: String,
    /// Smoke test: start this ssegate binary, run a small load, fail unless every delivery
    /// arrived exactly once.
    #[arg(long, value_name = "SSEGATE_BINARY")]
    smoke: Option<PathBuf>,
    /// How subscribers connect: plain TCP, HTTP/1.1 over TLS, or HTTP/2 over TLS (publishers
    /// speak HTTP/1.1, over TLS unless plain).
    #[arg(long, value_enum, default_value = "plain")]
    transport: tls::Transport,
    /// The certificate TLS trusts (the server's, or its CA), for `--transport tls|h2`.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Subscriber streams per HTTP/2 connection.
    #[arg(long, default_value_t = 20)]
    h2_streams: u32,
    /// With --smoke: the gateway's worker count.
    #[arg(long, default_value_t = 2)]
    smoke_workers: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Worker(args)) => worker::run(args),
        None => coordinate(cli.run),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ssegate-load: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn coordinate(mut a: RunArgs) -> anyhow::Result<()> {
    sys::raise_nofile_limit().context("raising the open-file limit")?;
    if a.per_process == 0 || a.per_process > MAX_PER_PROCESS {
        bail!("--per-process must be within 1..={MAX_PER_PROCESS}");
    }
    let valid = |v: f64| v.is_finite() && v >= 0.0;
    if a.topics == 0 || !valid(a.rate) || !valid(a.duration) {
        bail!("--topics must be at least 1, --rate and --duration not negative");
    }
    let gateway = match &a.smoke {
        Some(binary) => {
            // A small load that still crosses processes, cores and topics.
            a.subscribers = 300;
            a.per_process = 150;
            a.topics = 10;
            a.rate = 200.0;
            a.duration = 3.0;
            a.flavor = Flavor::Mercure;
            a.label = "smoke".into();
            let gw = Gateway::start(binary, a.smoke_workers, &a.jwt_key, Duration::from_secs(30))?;
            a.target = vec![gw.addr];
            a.server_pids = vec![gw.pid()];
            Some(gw)
        }
        None => None,
    };
    let targets = a.target.clone();
    if targets.is_empty() {
        bail!("--target is required");
    }
    if targets.iter().any(|t| !t.ip().is_loopback()) {
        bail!("--target must be a loopback address: this tool only loads the local machine");
    }
    let mut pids = a.server_pids.clone();
    if let Some(file) = &a.server_pid_file {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        for word in text.split_whitespace() {
            pids.push(
                word.parse()
                    .with_context(|| format!("{word:?} in {} is not a pid", file.display()))?,
            );
        }
    }
    if a.transport != tls::Transport::Plain && a.ca.is_none() {
        bail!("--transport {} needs --ca", a.transport.as_str());
    }
    let params = run::Params {
        label: a.label.clone(),
        transport: a.transport,
        ca: a.ca.clone(),
        h2_streams: a.h2_streams,
        flavor: a.flavor,
        targets,
        server: ServerProcs::new(pids),
        subscribers: a.subscribers,
        topics: a.topics,
        per_process: a.per_process,
        rate: a.rate,
        duration: Duration::from_secs_f64(a.duration),
        payload_bytes: a.payload_bytes,
        publish_connections: a.publish_connections,
        token: jwt::publisher_token(&a.jwt_key),
        warmup: a.warmup,
        connect_timeout: Duration::from_secs_f64(a.connect_timeout),
        drain_timeout: Duration::from_secs_f64(a.drain_timeout),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let summary = tokio::task::LocalSet::new().block_on(&rt, run::run(&params))?;
    print!("{}", summary.table());
    println!(
        "{}",
        serde_json::to_string(&summary).context("encoding the summary")?
    );
    if let Some(gw) = gateway {
        gw.stop(Duration::from_secs(15))?;
        check_smoke(&summary)?;
        println!(
            "smoke: OK ({} deliveries, none missing or duplicated)",
            summary.received
        );
    }
    Ok(())
}

/// The smoke mode's verdict: every published event reached every subscriber of its topic
/// exactly once, and nothing else arrived.
fn check_smoke(s: &Summary) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if s.published == 0 {
        problems.push("nothing was published".to_string());
    }
    if s.expected == 0 || s.received != s.expected {
        problems.push(format!(
            "received {} of {} expected deliveries",
            s.received, s.expected
        ));
    }
    for (what, n) in [
        ("missing", s.missing),
        ("duplicated", s.duplicated),
        ("unexpected", s.unexpected),
        ("malformed", s.malformed),
        ("disconnected", s.disconnected),
        ("refused publishes", s.publish_refused),
    ] {
        if n > 0 {
            problems.push(format!("{n} {what}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("smoke: FAILED: {}", problems.join(", "))
    }
}
