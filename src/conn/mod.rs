//! ②③⑥ A connection's life on its core. Owns: admission (`max_connections`), the TLS
//! handshake, reading request heads within limits, routing (`route`), writing every answer
//! and deciding what happens to the connection next (`respond`), and the subscriber stream
//! a connection may become. May call: `runtime` (through [`Core`]'s handler methods), `hub`,
//! `http`, `auth`, `net`, `access_log`, `error`, `metrics`.
//!
//! Each connection is one task. Its buffers are allocated while it reads a request and freed
//! when it becomes an idle subscriber: the long-lived future holds a stream, an id and a
//! handle to the core, nothing more.

pub mod admin;
mod api;
pub mod flusher;
mod http2;
mod publisher;
pub mod stream;
mod subscriber;
mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_lite::future;
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

pub use stream::Stream;

use crate::access_log::Record;
use crate::error::HttpError;
use crate::http::{self, Method, Request, Response, MERCURE_PATH};
use crate::hub::subscriptions::{self, Query};
use crate::metrics::counters::{CloseReason, Stats};
use crate::runtime::Core;

/// How long a closing connection is drained before it is dropped, so the client reads our
/// last response instead of a reset.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes drained while lingering.
const LINGER_BYTES: usize = 256 * 1024;

/// ① Takes an accepted connection: counts it against `max_connections` and starts its task.
/// Connections over the limit get a 503 with `Retry-After` once their request has been read.
pub fn admit(core: &Rc<Core>, tcp: TcpStream, conn_id: u64) {
    let open = core.conns.fetch_add(1, Ordering::Relaxed) + 1;
    Stats::add(&core.stats.accepted, 1);
    let over = open > core.cfg.max_connections;
    glommio::spawn_local(serve(core.clone(), Box::new(tcp), conn_id, over)).detach();
}

/// Why reading a request head ended without a request.
enum HeadError {
    /// The peer closed (or reset): nothing to answer.
    Closed,
    /// An idle keep-alive connection passed `keepalive_timeout`.
    Idle,
    /// An idle keep-alive connection was closed because the core is stopping.
    Stopped,
    /// The head did not arrive within `header_timeout` (slow loris).
    TimedOut,
    /// The head is invalid: answer it.
    Http(HttpError),
}

/// Releases the connection's slot in `max_connections` when the task ends.
struct Slot(Rc<Core>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.conns.fetch_sub(1, Ordering::Relaxed);
        let stats = &self.0.stats;
        stats.conns_open.set(stats.conns_open.get() - 1);
    }
}

/// Serves one accepted connection to the end.
///
/// This future is the connection's task for its whole life, so it is kept small: the
/// request phase (buffers, parsing, publishing) runs in a boxed future that is freed when
/// the connection becomes a subscriber stream, and the stream itself is boxed so that moving
/// it from phase to phase does not reserve room for a copy in each (futures are sized for
/// every value they may hold, and rustc overlaps few of them).
///
/// Log lines about a connection carry its id as the `conn` field. Not a tracing span: an
/// entered span per connection costs about 400 bytes of registry and formatting state per
/// idle subscriber (a third of the rest of it) and a shared lock on every poll.
async fn serve(core: Rc<Core>, stream: Box<TcpStream>, conn_id: u64, over_capacity: bool) {
    Stats::add(&core.stats.conns_open, 1);
    let _slot = Slot(core.clone());
    let reason = match Box::pin(requests(&core, stream, conn_id, over_capacity)).await {
        Ok(live) => subscriber::stream(live, conn_id).await,
        Err(reason) => reason,
    };
    core.stats.closed(reason);
    tracing::debug!(
        conn = conn_id,
        reason = %reason.as_str(),
        "connection closed"
    );
}

/// One request on a connection, for the access log and the refusal log lines.
struct Exchange<'a> {
    conn: u64,
    peer: Option<SocketAddr>,
    method: &'a str,
    path: &'a str,
    start: Instant,
    /// What the connection had written before this request.
    written_before: u64,
}

impl Exchange<'_> {
    /// Writes the request's access log line.
    fn answered(&self, core: &Core, stream: &Stream, status: u16) {
        core.log_access(&Record {
            conn: self.conn,
            peer: self.peer,
            method: self.method,
            path: self.path,
            status,
            bytes: stream.written() - self.written_before,
            duration: self.start.elapsed(),
            end: None,
        });
    }
}

/// What happens to a connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close after lingering (the response said `Connection: close`).
    Close,
    /// The connection is already gone (a write or read failed).
    Gone,
}

/// What a handler made of a request.
enum Outcome {
    /// Answer this. `body_read`: the request's body, if it had one, was consumed (else the
    /// connection cannot be reused: the body would be parsed as the next request).
    Answer(Result<Response, HttpError>, bool),
    /// The connection failed mid-request; `status` is what was answered, if anything.
    Gone(u16),
}

/// ③ Where a request goes.
enum Route {
    /// `GET /.well-known/mercure`: the connection becomes a subscriber stream.
    Subscribe,
    /// `POST /.well-known/mercure`.
    Publish,
    /// `OPTIONS /.well-known/mercure`: CORS preflight.
    Preflight,
    /// `GET /`, when `ui` is on.
    Page,
    /// `GET /.well-known/mercure/subscriptions…`.
    Subscriptions(Query),
    /// Refused at once.
    Refuse(HttpError),
}

/// Routes a request (refusals for capacity and shutdown first).
fn route(core: &Core, req: &Request, over_capacity: bool) -> Route {
    if over_capacity {
        Stats::add(&core.stats.over_capacity, 1);
        return Route::Refuse(HttpError::Unavailable("too many connections"));
    }
    if core.is_stopping() {
        return Route::Refuse(HttpError::Unavailable("shutting down"));
    }
    if req.path == MERCURE_PATH {
        return match req.method() {
            Method::Get => Route::Subscribe,
            Method::Post => Route::Publish,
            Method::Options => Route::Preflight,
            Method::Other => Route::Refuse(HttpError::MethodNotAllowed("GET, POST, OPTIONS")),
        };
    }
    if core.cfg.ui && req.path == "/" && req.method() == Method::Get {
        return Route::Page;
    }
    match subscriptions::parse_path(&req.path) {
        Some(_) if !core.cfg.subscriptions => Route::Refuse(HttpError::NotFound),
        Some(query) if req.method() == Method::Get => Route::Subscriptions(query),
        Some(_) => Route::Refuse(HttpError::MethodNotAllowed("GET")),
        None => Route::Refuse(HttpError::NotFound),
    }
}

/// The debug page.
fn page() -> Response {
    Response::ok("text/html; charset=utf-8", include_str!("../ui/index.html"))
        .header("Cache-Control", "no-cache")
}

/// Reads and answers requests until the connection closes (returning why) or becomes a
/// subscriber.
async fn requests(
    core: &Core,
    tcp: Box<TcpStream>,
    conn_id: u64,
    over_capacity: bool,
) -> Result<subscriber::Live<'_>, CloseReason> {
    // The first request's head (and the TLS handshake before it) must be complete within
    // `header_timeout` of the accept, however the bytes trickle in.
    let first_deadline = Instant::now() + core.cfg.header_timeout;
    let _ = tcp.set_nodelay(true);
    // One getpeername(2) per connection, only when something will print it.
    let peer = if core.access_log.is_some() || tracing::enabled!(tracing::Level::DEBUG) {
        tcp.peer_addr().ok()
    } else {
        None
    };
    tracing::debug!(
        conn = conn_id,
        core = core.index,
        peer = %peer.map_or_else(|| "-".to_owned(), |p| p.to_string()),
        "connection opened"
    );
    let tls = core.tls.borrow().clone();
    let mut stream = match tls {
        None => Box::new(Stream::plain(*tcp)),
        Some(config) => {
            match with_timeout(core.cfg.header_timeout, tls::accept(*tcp, config)).await {
                Ok(tls) => {
                    Stats::add(&core.stats.tls_handshakes, 1);
                    Box::new(Stream::tls(tls))
                }
                Err(e) => {
                    // Plain HTTP to the TLS port, a scanner, a client that gave up: close.
                    Stats::add(&core.stats.tls_failures, 1);
                    tracing::debug!(conn = conn_id, error = %e, "TLS handshake failed");
                    return Err(CloseReason::TlsFailed);
                }
            }
        }
    };
    let mut buf = Vec::new();
    if stream.is_h2() {
        return Err(http2::serve(
            core,
            stream,
            buf,
            conn_id,
            peer,
            over_capacity,
            first_deadline,
        )
        .await);
    }
    if core.cfg.http2_cleartext && stream.is_plain() {
        match sniff_preface(&mut stream, &mut buf, first_deadline).await {
            Ok(true) => {
                return Err(http2::serve(
                    core,
                    stream,
                    buf,
                    conn_id,
                    peer,
                    over_capacity,
                    first_deadline,
                )
                .await)
            }
            Ok(false) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                Stats::add(&core.stats.header_timeouts, 1);
                return Err(CloseReason::HeaderTimeout);
            }
            Err(_) => return Err(CloseReason::ClientClosed),
        }
    }
    let mut first = Some(first_deadline);
    loop {
        let head = read_head(core, &mut stream, &mut buf, first.take()).await;
        let req = match head {
            Ok(req) => req,
            Err(HeadError::Closed) => return Err(CloseReason::ClientClosed),
            Err(HeadError::Idle) => return Err(CloseReason::IdleTimeout),
            Err(HeadError::Stopped) => return Err(CloseReason::Shutdown),
            Err(HeadError::TimedOut) => {
                Stats::add(&core.stats.header_timeouts, 1);
                tracing::debug!(conn = conn_id, "request head timed out");
                return Err(CloseReason::HeaderTimeout);
            }
            Err(HeadError::Http(e)) => {
                // No request to name: the access log line has no method or path.
                let ex = Exchange {
                    conn: conn_id,
                    peer,
                    method: "-",
                    path: "-",
                    start: Instant::now(),
                    written_before: stream.written(),
                };
                let next = respond(core, &mut stream, &ex, None, Err(e), false, "").await;
                return Err(end(stream, next).await);
            }
        };
        let ex = Exchange {
            conn: conn_id,
            peer,
            method: req.method.map_or("-", Method::as_str),
            path: &req.path,
            start: Instant::now(),
            written_before: stream.written(),
        };
        let cors = core.cors.headers(req.origin.as_deref());
        let route = route(core, &req, over_capacity);
        let is_publish = matches!(route, Route::Publish);
        let outcome = match route {
            Route::Subscribe => {
                drop(buf);
                let access = core.access_log.is_some().then(|| {
                    Box::new(subscriber::AccessStart {
                        peer,
                        start: ex.start,
                        written_before: ex.written_before,
                    })
                });
                let out = subscriber::Out::H1(stream);
                return match subscriber::open(core, out, &req, &cors, conn_id, access).await {
                    subscriber::Opened::Live(live) => Ok(live),
                    subscriber::Opened::Refused(e, subscriber::Out::H1(mut stream)) => {
                        // A refused subscription closes its connection: no request to keep.
                        let next =
                            respond(core, &mut stream, &ex, None, Err(e), false, &cors).await;
                        Err(end(stream, next).await)
                    }
                    subscriber::Opened::Refused(..) => Err(CloseReason::Answered),
                    subscriber::Opened::Ended(reason) => Err(reason),
                };
            }
            Route::Publish => publisher::handle(core, &mut stream, &mut buf, &req).await,
            Route::Preflight => Outcome::Answer(core.cors.preflight(&req), false),
            Route::Page => Outcome::Answer(Ok(page()), false),
            Route::Subscriptions(query) => {
                Outcome::Answer(api::respond(core, &req, &query).await, false)
            }
            Route::Refuse(e) => Outcome::Answer(Err(e), false),
        };
        let next = match outcome {
            Outcome::Answer(result, body_read) => {
                if is_publish {
                    if let Err(e) = &result {
                        core.stats.publish_refused(e.status());
                    }
                }
                respond(core, &mut stream, &ex, Some(&req), result, body_read, &cors).await
            }
            Outcome::Gone(status) => {
                ex.answered(core, &stream, status);
                Next::Gone
            }
        };
        if next != Next::KeepAlive {
            return Err(end(stream, next).await);
        }
    }
}

/// ⑥ Writes the answer to a request (an error is counted and logged, and carries the
/// request's CORS headers so a browser script can read it), writes its access log line,
/// and says what happens to the connection: kept for another request only if the client
/// asked, the body was consumed, the answer allows it and the core is not stopping.
async fn respond(
    core: &Core,
    stream: &mut Stream,
    ex: &Exchange<'_>,
    req: Option<&Request>,
    result: Result<Response, HttpError>,
    body_read: bool,
    cors: &str,
) -> Next {
    let body_left = req.is_some_and(|r| {
        !body_read && (r.content_length.unwrap_or(0) > 0 || r.has_transfer_encoding)
    });
    let keep = req.is_some_and(|r| r.keep_alive) && !body_left && !core.is_stopping();
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            core.stats.refused(e.status());
            tracing::debug!(conn = ex.conn, status = e.status(), reason = %e, "request refused");
            Response::error(&e)
        }
    }
    .lines(cors)
    .keep_alive(keep);
    let ok = stream.write_all(&resp.to_bytes()).await.is_ok();
    ex.answered(core, stream, resp.status());
    match (ok, resp.keeps_alive()) {
        (false, _) => Next::Gone,
        (true, true) => Next::KeepAlive,
        (true, false) => Next::Close,
    }
}

/// Reads one request head into `buf` (which may already hold pipelined bytes) and removes it
/// from there. The first request of a connection has `first_deadline` (`header_timeout`
/// after the accept) for its whole head. Before the first byte of a later request, a
/// keep-alive connection may idle for `keepalive_timeout` (and is closed at once on
/// shutdown); once that request has begun, its whole head must arrive within
/// `header_timeout`.
async fn read_head(
    core: &Core,
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    first_deadline: Option<Instant>,
) -> Result<Request, HeadError> {
    let max = core.cfg.max_header_bytes;
    let first = first_deadline.is_some();
    if buf.is_empty() {
        let idle = match first_deadline {
            Some(at) => at.saturating_duration_since(Instant::now()),
            None => core.cfg.keepalive_timeout,
        };
        let read = with_timeout(idle, read_more(stream, buf, max));
        let n = if first {
            read.await
        } else {
            let stopped = async {
                core.stopped().await;
                None
            };
            match future::or(async { Some(read.await) }, stopped).await {
                Some(n) => n,
                None => return Err(HeadError::Stopped),
            }
        };
        match n {
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            // An idle keep-alive connection timing out is a normal end, not a slow loris.
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(if first {
                    HeadError::TimedOut
                } else {
                    HeadError::Idle
                })
            }
            Err(_) => return Err(HeadError::Closed),
        }
    }
    let deadline = first_deadline.unwrap_or_else(|| Instant::now() + core.cfg.header_timeout);
    loop {
        match http::parse_head(buf, max) {
            Ok(Some((req, len))) => {
                buf.drain(..len);
                return Ok(req);
            }
            Ok(None) => {}
            Err(e) => return Err(HeadError::Http(e)),
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match with_timeout(left, read_more(stream, buf, max)).await {
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(HeadError::TimedOut),
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

/// Reads the first bytes of a plaintext connection into `buf` until they either are the
/// HTTP/2 preface (`true`: HTTP/2 with prior knowledge) or cannot be (`false`: HTTP/1.1,
/// whose head parsing goes on from `buf`). By `deadline`, like a request head.
async fn sniff_preface(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> io::Result<bool> {
    loop {
        let n = buf.len().min(http2::PREFACE.len());
        if buf[..n] != http2::PREFACE[..n] {
            return Ok(false);
        }
        if n == http2::PREFACE.len() {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if with_timeout(left, read_more(stream, buf, http2::PREFACE.len())).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// First read size of a request. Most heads fit (a browser's EventSource request is a few
/// hundred bytes); the buffer doubles for larger ones. A connection waiting for its request
/// holds this much, so it is kept small: thousands may be waiting at once.
const FIRST_READ: usize = 512;

/// Appends what the socket has (up to `limit` bytes in `buf` in all) and returns the count;
/// 0 means end of stream.
async fn read_more(stream: &mut Stream, buf: &mut Vec<u8>, limit: usize) -> io::Result<usize> {
    let len = buf.len();
    let want = limit
        .saturating_sub(len)
        .min(len.max(FIRST_READ))
        .clamp(1, 16 * 1024);
    buf.resize(len + want, 0);
    let r = stream.read(&mut buf[len..]).await;
    buf.truncate(len + *r.as_ref().unwrap_or(&0));
    r
}

/// Runs `f`, failing with `TimedOut` after `d`.
async fn with_timeout<T>(d: Duration, f: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    future::or(f, async {
        glommio::timer::sleep(d).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}

/// Ends a connection after a request that did not keep it: lingers when the response said
/// `Connection: close`, returns how it ended.
async fn end(stream: Box<Stream>, next: Next) -> CloseReason {
    if next == Next::Gone {
        return CloseReason::ClientClosed;
    }
    linger(stream).await;
    CloseReason::Answered
}

/// Closes our side, then reads and discards what the client still sends (briefly), so the
/// kernel does not answer unread bytes with a reset that would destroy our last response.
async fn linger(mut stream: Box<Stream>) {
    if stream.close().await.is_err() {
        return;
    }
    let _ = with_timeout(LINGER, async {
        // On the heap: an array here would sit in every connection's future for its whole
        // life, since futures are sized for their largest state.
        let mut sink = vec![0u8; 4096];
        let mut total = 0;
        loop {
            let n = stream.drain(&mut sink).await?;
            total += n;
            if n == 0 || total >= LINGER_BYTES {
                return Ok(());
            }
        }
    })
    .await;
}
