//! The publisher: keep-alive connections sending events at a set total rate (or as fast as the
//! server answers), each event carrying its topic's next sequence number and its send time.
//!
//! Topic `k` is always published on connection `k % connections`, one request at a time, so
//! the events of a topic reach the server in sequence order and a subscriber can tell a lost
//! or repeated event from a reordered one. A sequence number is used up only when the server
//! accepts the event (2xx): a refused publish (503 when overloaded) is retried with the same
//! number, so refusals never show up as missing deliveries; they are counted apart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::proto::{write_payload, Flavor};
use crate::sys;
use crate::tls::{self, Conn};

/// Longest wait for one publish's response before the run is declared broken.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest publish response accepted.
const MAX_RESPONSE: usize = 64 * 1024;
/// Cap on the events one connection sends in a run, whatever the rate: a bound on the loop.
const MAX_EVENTS_PER_CONNECTION: u64 = 100_000_000;

/// What to publish.
#[derive(Debug, Clone)]
pub struct Plan {
    pub flavor: Flavor,
    /// One address per node; connection k publishes to `targets[k % len]`.
    pub targets: Vec<SocketAddr>,
    pub topics: u32,
    pub connections: u32,
    /// Total events per second over all connections; 0 = each connection sends its next
    /// event as soon as the previous one is answered.
    pub rate: f64,
    pub duration: Duration,
    pub payload_bytes: usize,
    /// Bearer token (mercure flavor).
    pub token: String,
    /// HTTP/1.1 over TLS with this configuration; plain TCP when `None`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// What was published.
#[derive(Debug)]
pub struct Outcome {
    /// Events accepted per topic: the counts the subscribers must reach.
    pub published: Vec<u64>,
    /// Publishes refused by the server (non-2xx); their sequence numbers were reused.
    pub refused: u64,
    /// Send → response time of accepted publishes, in microseconds.
    pub ack_us: Histogram<u64>,
    /// Time from the first send to the last response.
    pub elapsed: Duration,
}

/// Runs the plan to its end. Must be called inside a `LocalSet`.
pub async fn run(plan: &Plan) -> anyhow::Result<Outcome> {
    let conns = plan.connections.clamp(1, plan.topics.max(1));
    let start = Instant::now();
    let start_ns = sys::monotonic_ns();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..conns {
        let owned: Vec<u32> = (c..plan.topics).step_by(conns as usize).collect();
        let rate = plan.rate * owned.len() as f64 / f64::from(plan.topics);
        let plan = plan.clone();
        let target = plan.targets[c as usize % plan.targets.len()];
        tasks.spawn_local(
            async move { connection(&plan, target, owned, rate, start, start_ns).await },
        );
    }
    let mut out = Outcome {
        published: vec![0; plan.topics as usize],
        refused: 0,
        ack_us: Histogram::new_with_bounds(1, 120_000_000, 3).context("creating the histogram")?,
        elapsed: Duration::ZERO,
    };
    // One result per connection task.
    while let Some(joined) = tasks.join_next().await {
        let conn = joined.context("a publisher task panicked")??;
        for (k, n) in conn.published {
            out.published[k as usize] += n;
        }
        out.refused += conn.refused;
        out.ack_us.add(&conn.ack_us).context("merging histograms")?;
    }
    out.elapsed = start.elapsed();
    Ok(out)
}

struct ConnOutcome {
    published: Vec<(u32, u64)>,
    refused: u64,
    ack_us: Histogram<u64>,
}

async fn connection(
    plan: &Plan,
    target: SocketAddr,
    owned: Vec<u32>,
    rate: f64,
    start: Instant,
    start_ns: u64,
) -> anyhow::Result<ConnOutcome> {
    let end = start + plan.duration;
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(1.0 / rate));
    let mut published = vec![0u64; owned.len()];
    let mut refused = 0;
    let mut ack_us =
        Histogram::new_with_bounds(1, 120_000_000, 3).context("creating the histogram")?;
    let mut stream = connect(target, plan.tls.as_ref()).await?;
    let (mut payload, mut request, mut response) = (Vec::new(), Vec::new(), Vec::new());

    for j in 0..MAX_EVENTS_PER_CONNECTION {
        match interval {
            Some(iv) => {
                // Paced: event j is due at start + j × interval. Pacing is the point here, not
                // a synchronisation: a late connection sends at once and catches up.
                let due = start + iv.mul_f64(j as f64);
                if due >= end {
                    break;
                }
                tokio::time::sleep_until(due).await;
            }
            None if Instant::now() >= end => break,
            None => {}
        }
        let slot = (j % owned.len() as u64) as usize;
        let topic = owned[slot];
        let sent_ns = sys::monotonic_ns();
        // The payload's timestamp is when the event was due, not when it could be sent: a
        // server that answers publishes late delays every later event of this connection,
        // and that delay belongs in the delivery latency (no coordinated omission). Unpaced
        // runs have no schedule: the send time is all there is.
        let stamp_ns = match interval {
            Some(iv) => start_ns + iv.mul_f64(j as f64).as_nanos() as u64,
            None => sent_ns,
        };
        write_payload(&mut payload, published[slot], stamp_ns, plan.payload_bytes);
        plan.flavor
            .write_publish_request(&mut request, topic, &payload, &plan.token);
        let (status, close) = exchange(&mut stream, &request, &mut response).await?;
        if (200..300).contains(&status) {
            published[slot] += 1;
            ack_us.saturating_record(sys::monotonic_ns().saturating_sub(sent_ns) / 1_000);
        } else if status == 401 || status == 403 || status == 404 || status == 400 {
            bail!("publish refused with {status}: check the flavor and the JWT key");
        } else {
            refused += 1;
        }
        if close {
            stream = connect(target, plan.tls.as_ref()).await?;
        }
    }
    Ok(ConnOutcome {
        published: owned.into_iter().zip(published).collect(),
        refused,
        ack_us,
    })
}

async fn connect(
    target: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<Conn> {
    let stream = TcpStream::connect(target)
        .await
        .with_context(|| format!("publisher connect {target}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(match tls {
        None => Conn::Plain(stream),
        Some(config) => Conn::Tls(Box::new(tls::handshake(stream, target, config).await?)),
    })
}

/// Reads one response; returns its status and whether the server will close the connection.
/// Bodies are delimited by Content-Length, or chunked (read to the last chunk).
/// Sends one publish request and reads its response (status, whether the server closes),
/// within `RESPONSE_TIMEOUT`.
async fn exchange(
    stream: &mut Conn,
    request: &[u8],
    response: &mut Vec<u8>,
) -> anyhow::Result<(u16, bool)> {
    let round_trip = async {
        stream
            .write_all(request)
            .await
            .context("sending a publish")?;
        // TLS: records the socket did not take at once go out now.
        stream.flush().await.context("sending a publish")?;
        read_response(stream, response).await
    };
    tokio::time::timeout(RESPONSE_TIMEOUT, round_trip)
        .await
        .with_context(|| format!("no publish response within {RESPONSE_TIMEOUT:?}"))?
}

async fn read_response(stream: &mut Conn, buf: &mut Vec<u8>) -> anyhow::Result<(u16, bool)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    // Every round reads at least one byte or fails; bounded by MAX_RESPONSE.
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .context("reading a publish response")?;
        if n == 0 {
            bail!("the server closed a publish connection mid-response");
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_RESPONSE {
            bail!("publish response over {MAX_RESPONSE} bytes");
        }
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(head_len) =
            resp.parse(buf).context("parsing a publish response")?
        else {
            continue;
        };
        let status = resp.code.unwrap_or(0);
        let mut close = false;
        let mut length = None;
        let mut chunked = false;
        for h in resp.headers.iter() {
            let value = String::from_utf8_lossy(h.value).to_ascii_lowercase();
            if h.name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .trim()
                        .parse::<usize>()
                        .context("bad Content-Length")?,
                );
            } else if h.name.eq_ignore_ascii_case("connection") {
                close = value.contains("close");
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.contains("chunked");
            }
        }
        let body = &buf[head_len..];
        let complete = match (length, chunked) {
            (Some(len), _) => body.len() >= len,
            (None, true) => body.starts_with(b"0\r\n\r\n") || body.ends_with(b"\r\n0\r\n\r\n"),
            (None, false) if status == 204 || status == 304 => true,
            (None, false) => bail!("publish response with neither Content-Length nor chunking"),
        };
        if complete {
            return Ok((status, close));
        }
    }
}

/// Publishes one event on topic `topics` (one past the last subscribed topic, so nobody
/// receives it) and returns its send → response time in microseconds. Run before the measured
/// phase: a server's first publish can pay one-time costs (ssegate's took ~0.5 s on a fresh
/// process), which would otherwise land in the latency tail of a short run. The figure is
/// reported on its own.
pub async fn warm_up(plan: &Plan) -> anyhow::Result<u64> {
    let mut stream = connect(plan.targets[0], plan.tls.as_ref()).await?;
    let (mut payload, mut request, mut response) = (Vec::new(), Vec::new(), Vec::new());
    let sent_ns = sys::monotonic_ns();
    write_payload(&mut payload, 0, sent_ns, plan.payload_bytes);
    plan.flavor
        .write_publish_request(&mut request, plan.topics, &payload, &plan.token);
    let (status, _) = exchange(&mut stream, &request, &mut response)
        .await
        .context("the warm-up publish")?;
    if !(200..300).contains(&status) {
        bail!("the warm-up publish was refused with {status}: check the flavor and the JWT key");
    }
    Ok(sys::monotonic_ns().saturating_sub(sent_ns) / 1_000)
}
