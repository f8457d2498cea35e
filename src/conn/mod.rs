//! ②③⑥ A connection's life on its core: read a request head within limits, route it, and
//! either answer a publish (keep-alive, many per connection) or turn the connection into a
//! subscriber stream whose writer lives until the client or the gateway ends it.
//!
//! Each connection is one task. Its buffers are allocated while it reads a request and freed
//! when it becomes an idle subscriber: the long-lived future holds a stream, an id and a
//! handle to the core, nothing more.

pub mod admin;
mod api;
pub mod flusher;
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
use crate::http::{self, Method, Request, MERCURE_PATH};
use crate::hub::subscriptions;
use crate::runtime::stats::CloseReason;
use crate::runtime::{Core, Stats};

/// How long a closing connection is drained before it is dropped, so the client reads our
/// last response instead of a reset.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes drained while lingering.
const LINGER_BYTES: usize = 256 * 1024;

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

/// Serves one accepted connection to the end. `over_capacity` connections get a 503 with
/// `Retry-After` once their request has been read.
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
pub async fn serve(core: Rc<Core>, stream: Box<TcpStream>, conn_id: u64, over_capacity: bool) {
    Stats::add(&core.stats.conns_open, 1);
    let _slot = Slot(core.clone());
    let reason = match Box::pin(requests(&core, stream, conn_id, over_capacity)).await {
        Ok(live) => subscriber::stream(&core, live, conn_id).await,
        Err(reason) => reason,
    };
    core.stats.closed(reason);
    tracing::debug!(
        conn = conn_id,
        reason = %reason.as_str(),
        "connection closed"
    );
}

/// The parts of a request the access log needs once it is answered.
struct Exchange<'a> {
    conn: u64,
    peer: Option<SocketAddr>,
    method: &'a str,
    path: &'a str,
    start: Instant,
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

/// What a handler did with a request: the status it answered (0 if none, for the access
/// log) and what happens to the connection next.
struct Handled {
    status: u16,
    next: Next,
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

impl Handled {
    fn new(status: u16, keep_alive: bool) -> Handled {
        let next = if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
        Handled { status, next }
    }

    fn gone(status: u16) -> Handled {
        Handled {
            status,
            next: Next::Gone,
        }
    }
}

/// Reads and answers requests until the connection closes (returning why) or becomes a
/// subscriber.
async fn requests(
    core: &Core,
    tcp: Box<TcpStream>,
    conn_id: u64,
    over_capacity: bool,
) -> Result<subscriber::Live, CloseReason> {
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
                reply_error(core, &mut stream, conn_id, &e, false, "").await;
                ex.answered(core, &stream, e.status());
                linger(stream).await;
                return Err(CloseReason::Answered);
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
        let refusal = if over_capacity {
            Stats::add(&core.stats.over_capacity, 1);
            Some(HttpError::Unavailable("too many connections"))
        } else if core.is_stopping() {
            Some(HttpError::Unavailable("shutting down"))
        } else {
            None
        };
        let cors = core.cors.headers(req.origin.as_deref());
        let is_publish = req.path == MERCURE_PATH && req.method() == Method::Post;
        let err = match (refusal, req.path == MERCURE_PATH, req.method()) {
            (Some(e), ..) => e,
            (None, true, Method::Get) => {
                drop(buf);
                let access = core.access_log.is_some().then(|| {
                    Box::new(subscriber::AccessStart {
                        peer,
                        start: ex.start,
                        written_before: ex.written_before,
                    })
                });
                return match subscriber::open(core, stream, &req, &cors, conn_id, access).await {
                    subscriber::Opened::Live(live) => Ok(live),
                    subscriber::Opened::Refused(status, stream) => {
                        ex.answered(core, &stream, status);
                        linger(stream).await;
                        Err(CloseReason::Answered)
                    }
                    subscriber::Opened::Ended(reason) => Err(reason),
                };
            }
            (None, true, Method::Options) => match core.cors.preflight(&req) {
                Ok(resp) => {
                    let ok = stream.write_all(&resp).await.is_ok();
                    ex.answered(core, &stream, 204);
                    if !ok {
                        return Err(CloseReason::ClientClosed);
                    }
                    if !req.keep_alive {
                        linger(stream).await;
                        return Err(CloseReason::Answered);
                    }
                    continue;
                }
                Err(e) => e,
            },
            (None, true, Method::Post) => {
                let done =
                    publisher::handle(core, &mut stream, &mut buf, &req, &cors, conn_id).await;
                ex.answered(core, &stream, done.status);
                match done.next {
                    Next::KeepAlive => continue,
                    next => return Err(end(stream, next).await),
                }
            }
            (None, true, _) => HttpError::MethodNotAllowed("GET, POST, OPTIONS"),
            (None, false, Method::Get) if core.cfg.ui && req.path == "/" => {
                let page = include_str!("../ui/index.html");
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-cache\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n{page}",
                    page.len(),
                    if req.keep_alive { "keep-alive" } else { "close" }
                );
                let ok = stream.write_all(resp.as_bytes()).await.is_ok();
                ex.answered(core, &stream, 200);
                if !ok {
                    return Err(CloseReason::ClientClosed);
                }
                if req.keep_alive {
                    continue;
                }
                linger(stream).await;
                return Err(CloseReason::Answered);
            }
            (None, false, method) => match subscriptions::parse_path(&req.path) {
                Some(_) if !core.cfg.subscriptions => HttpError::NotFound,
                Some(query) if method == Method::Get => {
                    let done = api::handle(core, &mut stream, &req, &query, &cors, conn_id).await;
                    ex.answered(core, &stream, done.status);
                    match done.next {
                        Next::KeepAlive => continue,
                        next => return Err(end(stream, next).await),
                    }
                }
                Some(_) => HttpError::MethodNotAllowed("GET"),
                None => HttpError::NotFound,
            },
        };
        if is_publish {
            core.stats.publish_refused(err.status());
        }
        // An unread body would be parsed as the next request: close instead.
        let has_body = req.content_length.unwrap_or(0) > 0 || req.has_transfer_encoding;
        let keep = req.keep_alive && !has_body && !err.closes_connection();
        let ok = reply_error(core, &mut stream, conn_id, &err, keep, &cors).await;
        ex.answered(core, &stream, err.status());
        if !ok {
            return Err(CloseReason::ClientClosed);
        }
        if !keep {
            linger(stream).await;
            return Err(CloseReason::Answered);
        }
    }
}

/// Writes an error response (with the request's CORS headers, so a browser script can read
/// it); returns whether the write succeeded.
async fn reply_error(
    core: &Core,
    stream: &mut Stream,
    conn_id: u64,
    err: &HttpError,
    keep_alive: bool,
    cors: &str,
) -> bool {
    core.stats.refused(err.status());
    tracing::debug!(conn = conn_id, status = err.status(), reason = %err, "request refused");
    stream
        .write_all(&err.response_with(keep_alive, cors))
        .await
        .is_ok()
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
