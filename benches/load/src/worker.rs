//! A subscriber process: opens `count` SSE subscriptions from one source address, reports when
//! all are registered, then counts, checks and times every event it receives.
//!
//! Everything runs on one current-thread runtime; per-subscriber state lives in one table
//! shared by the process's tasks (`Rc<RefCell<_>>`, never across threads). One task per
//! subscriber reads its socket (or, over HTTP/2, its stream; each connection's frames are
//! read by one more task); the control task talks to the coordinator.

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;
use std::io::Read as _;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};

use crate::ipc::{FromWorker, ToWorker, WorkerReport};
use crate::proto::{parse_payload, BodyDecoder, Flavor};
use crate::sys;
use crate::tls::{self, Transport};

/// Largest response head accepted from a server.
const MAX_HEAD: usize = 16 * 1024;
/// Bytes read per `read` call. Kept small because it sits in every subscriber task's future:
/// 5,000 subscribers × 4 KiB = 20 MB per process. A subscriber that falls behind still gets
/// ~30 events of 100 bytes per read.
const READ_BUF: usize = 4096;
/// Each HTTP/2 stream's receive window.
const H2_WINDOW: u32 = 1 << 20;

/// What a worker process is told on its command line.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Server address.
    #[arg(long)]
    pub target: SocketAddr,
    /// Local address every subscriber binds (127.0.0.x).
    #[arg(long)]
    pub source: Ipv4Addr,
    #[arg(long, value_enum)]
    pub flavor: Flavor,
    /// Subscribers to open.
    #[arg(long)]
    pub count: u32,
    /// Global index of this worker's first subscriber: subscriber `first + i` listens on topic
    /// `(first + i) % topics`, so topics are evenly spread over all workers.
    #[arg(long)]
    pub first: u32,
    #[arg(long)]
    pub topics: u32,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Time allowed for every subscriber to be registered, in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub connect_timeout: f64,
    #[arg(long, value_enum, default_value = "plain")]
    pub transport: Transport,
    /// The certificate TLS trusts (required with `--transport tls|h2`).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Subscriber streams per HTTP/2 connection.
    #[arg(long, default_value_t = 20)]
    pub h2_streams: u32,
}

/// One subscriber's bookkeeping.
#[derive(Debug, Default)]
struct Sub {
    topic: u32,
    /// The sequence number expected next: one more than the highest seen.
    next: u64,
    received: u64,
    duplicated: u64,
    malformed: u64,
    registered: bool,
    closed: bool,
    /// Set once `next` reached the published count, after `Stop`.
    complete: bool,
}

/// State shared by a worker's tasks.
struct Shared {
    subs: RefCell<Vec<Sub>>,
    latency_us: RefCell<Histogram<u64>>,
    registered: Cell<u32>,
    /// First connection failure; a single one invalidates the run.
    failure: RefCell<Option<String>>,
    /// Wakes the control task when registration is complete or has failed.
    registration: Notify,
    /// Per-topic published counts, known after `Stop`.
    published: RefCell<Option<Vec<u64>>>,
    /// Subscribers still missing events after `Stop`.
    incomplete: Cell<u64>,
    drained: Notify,
}

impl Shared {
    fn fail(&self, error: String) {
        self.failure.borrow_mut().get_or_insert(error);
        self.registration.notify_one();
    }

    /// Marks `sub` complete once it has every published event of its topic (or was closed),
    /// and wakes the drain when it was the last one.
    fn check_complete(&self, sub: &mut Sub) {
        if sub.complete {
            return;
        }
        let published = self.published.borrow();
        let Some(published) = published.as_ref() else {
            return;
        };
        let want = published.get(sub.topic as usize).copied().unwrap_or(0);
        if sub.next >= want || sub.closed {
            sub.complete = true;
            let left = self.incomplete.get().saturating_sub(1);
            self.incomplete.set(left);
            if left == 0 {
                self.drained.notify_one();
            }
        }
    }
}

/// Runs a worker process to completion.
pub fn run(args: WorkerArgs) -> anyhow::Result<()> {
    sys::raise_nofile_limit().context("raising the open-file limit")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    let result = local.block_on(&rt, control(args));
    if let Err(e) = &result {
        // Tell the coordinator why before exiting; it reads this instead of a bare EOF.
        send(&FromWorker::Failed {
            error: format!("{e:#}"),
        });
    }
    result
}

fn send(msg: &FromWorker) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    // If the coordinator is gone there is nobody to tell: ignoring the error is all we can do.
    if let Ok(line) = serde_json::to_string(msg) {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

async fn control(args: WorkerArgs) -> anyhow::Result<()> {
    let count = args.count as usize;
    let subs = (0..count)
        .map(|i| Sub {
            topic: (args.first + i as u32) % args.topics,
            ..Sub::default()
        })
        .collect();
    let shared = Rc::new(Shared {
        subs: RefCell::new(subs),
        latency_us: RefCell::new(
            Histogram::new_with_bounds(1, 120_000_000, 3).context("creating the histogram")?,
        ),
        registered: Cell::new(0),
        failure: RefCell::new(None),
        registration: Notify::new(),
        published: RefCell::new(None),
        incomplete: Cell::new(0),
        drained: Notify::new(),
    });

    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(args.connect_timeout);
    let permits = Rc::new(Semaphore::new(args.concurrency.max(1)));
    let tls = match (args.transport, &args.ca) {
        (Transport::Plain, _) => None,
        (Transport::Tls, Some(ca)) => Some(tls::client_config(ca, b"http/1.1")?),
        (Transport::H2, Some(ca)) => Some(tls::client_config(ca, b"h2")?),
        (_, None) => bail!("--transport {} needs --ca", args.transport.as_str()),
    };
    let args = Rc::new(args);
    if args.transport == Transport::H2 {
        let per = args.h2_streams.max(1) as usize;
        for first in (0..count).step_by(per) {
            let n = per.min(count - first);
            let config = tls.clone().context("TLS configuration")?;
            tokio::task::spawn_local(h2_connection(
                first..first + n,
                args.clone(),
                shared.clone(),
                permits.clone(),
                config,
            ));
        }
    } else {
        for i in 0..count {
            tokio::task::spawn_local(subscriber(
                i,
                args.clone(),
                shared.clone(),
                permits.clone(),
                tls.clone(),
            ));
        }
    }
    // Each wake-up is a registration, a failure or the deadline: at most count + 2 rounds.
    while shared.registered.get() < args.count && shared.failure.borrow().is_none() {
        if tokio::time::timeout_at(deadline, shared.registration.notified())
            .await
            .is_err()
        {
            bail!(
                "{} of {} subscribers registered within {:.0}s",
                shared.registered.get(),
                args.count,
                args.connect_timeout
            );
        }
    }
    if let Some(e) = shared.failure.borrow().as_ref() {
        bail!("{e}");
    }
    send(&FromWorker::Ready {
        subscribers: u64::from(args.count),
        connect_ms: started.elapsed().as_millis() as u64,
    });

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut cpu_start = sys::self_cpu_ns();
    // The coordinator sends at most `Start` then `Stop`; anything else ends the loop.
    for _ in 0..4 {
        let Some(line) = lines
            .next_line()
            .await
            .context("reading the coordinator's pipe")?
        else {
            return Ok(()); // The coordinator is gone: nothing left to report to.
        };
        match serde_json::from_str::<ToWorker>(&line).context("decoding a coordinator message")? {
            ToWorker::Start => cpu_start = sys::self_cpu_ns(),
            ToWorker::Stop {
                published,
                drain_ms,
            } => {
                let drained = drain(&shared, published, Duration::from_millis(drain_ms)).await;
                let mut report = report(&shared, drained);
                report.cpu_ns = sys::self_cpu_ns().saturating_sub(cpu_start);
                send(&FromWorker::Report(report));
                return Ok(());
            }
        }
    }
    bail!("unexpected messages from the coordinator")
}

/// Waits until every subscriber has every published event of its topic (or has been closed),
/// or `limit` passes. Returns whether everything arrived.
async fn drain(shared: &Shared, published: Vec<u64>, limit: Duration) -> bool {
    *shared.published.borrow_mut() = Some(published);
    {
        let mut subs = shared.subs.borrow_mut();
        shared.incomplete.set(subs.len() as u64);
        for sub in subs.iter_mut() {
            shared.check_complete(sub);
        }
    }
    if shared.incomplete.get() == 0 {
        return true;
    }
    let deadline = tokio::time::Instant::now() + limit;
    // Woken once when the last subscriber completes, or times out: bounded by the deadline.
    while shared.incomplete.get() > 0 {
        if tokio::time::timeout_at(deadline, shared.drained.notified())
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

fn report(shared: &Shared, drained: bool) -> WorkerReport {
    let subs = shared.subs.borrow();
    let published = shared.published.borrow();
    let published = published.as_deref().unwrap_or(&[]);
    let mut r = WorkerReport {
        subscribers: subs.len() as u64,
        drained,
        ..WorkerReport::default()
    };
    for sub in subs.iter() {
        let want = published.get(sub.topic as usize).copied().unwrap_or(0);
        r.expected += want;
        r.received += sub.received.min(want);
        r.missing += want.saturating_sub(sub.received);
        r.unexpected += sub.next.saturating_sub(want);
        r.duplicated += sub.duplicated;
        r.malformed += sub.malformed;
        r.disconnected += u64::from(sub.closed);
    }
    r.latency_us = shared
        .latency_us
        .borrow()
        .iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect();
    r
}

/// One subscriber's whole life: connect, subscribe, then read until the process exits.
async fn subscriber(
    i: usize,
    args: Rc<WorkerArgs>,
    shared: Rc<Shared>,
    permits: Rc<Semaphore>,
    tls: Option<Arc<rustls::ClientConfig>>,
) {
    let opened = {
        // The semaphore is never closed, so acquire cannot fail.
        let Ok(_permit) = permits.acquire().await else {
            return;
        };
        let topic = shared.subs.borrow()[i].topic;
        open(&args, topic, tls.as_ref()).await
    };
    let (stream, mut decoder, body) = match opened {
        Ok(v) => v,
        Err(e) => return shared.fail(format!("subscriber {i} from {}: {e:#}", args.source)),
    };
    if let Err(e) = deliver(&args, &shared, i, &mut decoder, &body) {
        return shared.fail(format!("subscriber {i}: {e}"));
    }
    let mut buf = [0u8; READ_BUF];
    let mut stream = match stream {
        tls::Conn::Plain(tcp) => return plain_reads(i, tcp, &args, &shared, decoder).await,
        tls::Conn::Tls(s) => s,
    };
    // TLS: records are decrypted by rustls; each round reads at least one byte or ends.
    loop {
        let n = stream.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return closed(&shared, i);
        }
        if let Err(e) = deliver(&args, &shared, i, &mut decoder, &buf[..n]) {
            return shared.fail(format!("subscriber {i}: {e}"));
        }
    }
}

/// Reads a plain TCP subscriber's socket until the server closes it.
async fn plain_reads(
    i: usize,
    stream: TcpStream,
    args: &WorkerArgs,
    shared: &Shared,
    mut decoder: BodyDecoder,
) {
    let fd = match stream.into_std().and_then(sys::register_readable) {
        Ok(fd) => fd,
        Err(e) => return shared.fail(format!("subscriber {i}: registering with the reactor: {e}")),
    };
    let mut buf = [0u8; READ_BUF];
    // Ends when the server closes the stream (or the process exits); each round is a wake-up.
    loop {
        let n = match fd.readable().await {
            Ok(mut guard) => match guard.try_io(|s| s.get_ref().read(&mut buf)) {
                Ok(Ok(n)) => {
                    // A TCP read returns everything queued up to the buffer's size, so a short
                    // read has observed an empty receive queue: clear the readiness now rather
                    // than pay a second read that fails with EAGAIN (that halves the syscalls
                    // per event). Data that arrived after the guard was made keeps the socket
                    // ready (tokio clears only the readiness the guard saw), so none is lost.
                    if n > 0 && n < buf.len() {
                        guard.clear_ready();
                    }
                    n
                }
                Ok(Err(_)) => 0,
                Err(_would_block) => continue,
            },
            Err(_) => 0,
        };
        if n == 0 {
            return closed(shared, i);
        }
        if let Err(e) = deliver(args, shared, i, &mut decoder, &buf[..n]) {
            return shared.fail(format!("subscriber {i}: {e}"));
        }
    }
}

/// The server ended subscriber `i`'s stream.
fn closed(shared: &Shared, i: usize) {
    let mut subs = shared.subs.borrow_mut();
    let sub = &mut subs[i];
    sub.closed = true;
    if !sub.registered {
        drop(subs);
        return shared.fail(format!(
            "subscriber {i}: closed by the server before registration"
        ));
    }
    shared.check_complete(sub);
}

/// One HTTP/2 connection carrying subscribers `range`, one stream each: the TLS handshake
/// (ALPN `h2`), the HTTP/2 preface and settings, then one request per subscriber. A task
/// reads the connection's frames; each stream's task takes its data.
async fn h2_connection(
    range: std::ops::Range<usize>,
    args: Rc<WorkerArgs>,
    shared: Rc<Shared>,
    permits: Rc<Semaphore>,
    config: Arc<rustls::ClientConfig>,
) {
    let first = range.start;
    let opened = async {
        let Ok(_permit) = permits.acquire().await else {
            bail!("connection limiter closed");
        };
        let tcp = connect(&args).await?;
        let tls = tls::handshake(tcp, args.target, &config).await?;
        let (client, connection) = h2::client::Builder::new()
            // The client never holds the server back: windows far above what a run queues.
            .initial_window_size(H2_WINDOW)
            .initial_connection_window_size(H2_WINDOW * args.h2_streams.max(1))
            .handshake::<_, bytes::Bytes>(tls)
            .await
            .context("HTTP/2 handshake")?;
        anyhow::Ok((client, connection))
    }
    .await;
    let (mut client, connection) = match opened {
        Ok(v) => v,
        Err(e) => return shared.fail(format!("subscriber {first} from {}: {e:#}", args.source)),
    };
    let failed = shared.clone();
    tokio::task::spawn_local(async move {
        // Ends with the connection; an error resets every stream, which their tasks report.
        if let Err(e) = connection.await {
            if !e.is_go_away() {
                connection_error(&failed, first, &e);
            }
        }
    });
    for i in range {
        let topic = shared.subs.borrow()[i].topic;
        let request = http::Request::get(format!(
            "https://{}{}",
            args.target,
            args.flavor.subscribe_path(topic)
        ))
        .header("accept", "text/event-stream")
        .body(());
        let request = match request {
            Ok(r) => r,
            Err(e) => return shared.fail(format!("subscriber {i}: building the request: {e}")),
        };
        // `ready` waits for a stream slot (the server's SETTINGS_MAX_CONCURRENT_STREAMS).
        client = match client.ready().await {
            Ok(c) => c,
            Err(e) => return shared.fail(format!("subscriber {i} over HTTP/2: {e}")),
        };
        match client.send_request(request, true) {
            Ok((response, _)) => {
                tokio::task::spawn_local(h2_stream(i, response, args.clone(), shared.clone()));
            }
            Err(e) => return shared.fail(format!("subscriber {i} over HTTP/2: {e}")),
        }
    }
}

/// An HTTP/2 connection ended in error (not a GOAWAY): its streams report what they lost.
fn connection_error(shared: &Shared, first: usize, e: &h2::Error) {
    if shared.subs.borrow()[first].registered {
        eprintln!("ssegate-load: HTTP/2 connection of subscriber {first}: {e}");
    }
}

/// One subscriber's HTTP/2 stream: the response head, then its data until the stream ends.
async fn h2_stream(
    i: usize,
    response: h2::client::ResponseFuture,
    args: Rc<WorkerArgs>,
    shared: Rc<Shared>,
) {
    let response = match response.await {
        Ok(r) => r,
        Err(e) => return shared.fail(format!("subscriber {i} over HTTP/2: {e}")),
    };
    if response.status() != http::StatusCode::OK {
        return shared.fail(format!(
            "subscriber {i}: subscribe answered {} over HTTP/2",
            response.status()
        ));
    }
    let mut body = response.into_body();
    let mut decoder = BodyDecoder::new(false);
    // Each round takes one DATA frame's bytes or ends with the stream.
    while let Some(data) = body.data().await {
        let Ok(data) = data else { break };
        // Hand the window back at once: the client must never be what holds the server up.
        let _ = body.flow_control().release_capacity(data.len());
        if let Err(e) = deliver(&args, &shared, i, &mut decoder, &data) {
            return shared.fail(format!("subscriber {i}: {e}"));
        }
    }
    closed(&shared, i);
}

/// Accounts for bytes received by subscriber `i`: registration (the opening `:` comment),
/// then every event's sequence number and latency. All events of one read share one receive
/// time, taken once per read.
fn deliver(
    args: &WorkerArgs,
    shared: &Shared,
    i: usize,
    decoder: &mut BodyDecoder,
    bytes: &[u8],
) -> Result<(), crate::proto::BodyError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let now_ns = sys::monotonic_ns();
    let mut subs = shared.subs.borrow_mut();
    let sub = &mut subs[i];
    let mut hist = shared.latency_us.borrow_mut();
    let mut newly_registered = false;
    decoder.feed(bytes, &mut |line: &[u8]| {
        if line.first() == Some(&b':') {
            if !sub.registered {
                sub.registered = true;
                newly_registered = true;
            }
        } else if let Some(data) = line.strip_prefix(b"data:") {
            let data = data.strip_prefix(b" ").unwrap_or(data);
            match parse_payload(data) {
                Some((seq, sent_ns)) => {
                    hist.saturating_record(now_ns.saturating_sub(sent_ns) / 1_000);
                    if seq >= sub.next {
                        sub.received += 1;
                        sub.next = seq + 1;
                    } else {
                        sub.duplicated += 1;
                    }
                }
                None => sub.malformed += 1,
            }
        }
    })?;
    shared.check_complete(sub);
    if newly_registered {
        shared.registered.set(shared.registered.get() + 1);
        if shared.registered.get() == args.count {
            shared.registration.notify_one();
        }
    }
    Ok(())
}

/// Connects from `args.source` (its own 127.0.0.x, any port).
async fn connect(args: &WorkerArgs) -> anyhow::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .context("socket")?;
    socket.set_nonblocking(true).context("O_NONBLOCK")?;
    sys::set_bind_address_no_port(socket.as_raw_fd()).context("IP_BIND_ADDRESS_NO_PORT")?;
    socket
        .bind(&SocketAddr::V4(SocketAddrV4::new(args.source, 0)).into())
        .with_context(|| format!("bind {}", args.source))?;
    let socket = TcpSocket::from_std_stream(socket.into());
    let stream = socket
        .connect(args.target)
        .await
        .with_context(|| format!("connect {}", args.target))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    Ok(stream)
}

/// Connects (and shakes hands, over TLS), sends the subscribe request and reads the response
/// head. Returns the stream, a decoder for its body and the body bytes read with the head.
async fn open(
    args: &WorkerArgs,
    topic: u32,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<(tls::Conn, BodyDecoder, Vec<u8>)> {
    let tcp = connect(args).await?;
    let request = args.flavor.subscribe_request(topic);
    Ok(match tls {
        None => {
            let mut tcp = tcp;
            let (decoder, body) = request_head(&mut tcp, &request).await?;
            (tls::Conn::Plain(tcp), decoder, body)
        }
        Some(config) => {
            let mut s = Box::new(tls::handshake(tcp, args.target, config).await?);
            let (decoder, body) = request_head(&mut *s, &request).await?;
            (tls::Conn::Tls(s), decoder, body)
        }
    })
}

/// Sends `request` and reads the response head; fails unless it is a 200.
async fn request_head<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
) -> anyhow::Result<(BodyDecoder, Vec<u8>)> {
    stream
        .write_all(request)
        .await
        .context("sending the request")?;
    stream.flush().await.context("sending the request")?;

    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    // Bounded by MAX_HEAD: every round adds at least one byte or returns.
    loop {
        let n = stream
            .read(&mut chunk)
            .await
            .context("reading the response head")?;
        if n == 0 {
            bail!("closed by the server before the response head");
        }
        head.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&head).context("parsing the response head")? {
            httparse::Status::Complete(len) => {
                if resp.code != Some(200) {
                    let text = String::from_utf8_lossy(&head[..len.min(200)]).into_owned();
                    bail!("subscribe answered {:?}: {text}", resp.code);
                }
                let chunked = resp.headers.iter().any(|h| {
                    h.name.eq_ignore_ascii_case("transfer-encoding")
                        && String::from_utf8_lossy(h.value)
                            .to_ascii_lowercase()
                            .contains("chunked")
                });
                let body = head[len..].to_vec();
                return Ok((BodyDecoder::new(chunked), body));
            }
            httparse::Status::Partial if head.len() > MAX_HEAD => {
                bail!("response head over {MAX_HEAD} bytes")
            }
            httparse::Status::Partial => {}
        }
    }
}
