//! ②③⑥ HTTP/2: a connection that negotiated ALPN `h2` over TLS, or opened with the HTTP/2
//! preface on a plaintext listener with `http2_cleartext`. Framing, HPACK, flow control and
//! the protocol's own defences are the `h2` crate's; this module drives one connection and
//! routes its streams to the same handlers HTTP/1.1 uses.
//!
//! Owns: an HTTP/2 connection's task (its streams, keep-alive PINGs, GOAWAY at shutdown,
//! the flood guard) and [`H2Stream`], a subscriber's half of one stream. May call:
//! `runtime` (through [`Core`]), `http`, `hub`, `metrics`, `access_log`, `net::sys`, and
//! the HTTP/1.1 side's handlers.
//!
//! One task per connection, not per stream: the streams are futures polled by the
//! connection's task (a `FuturesUnordered`, which wakes only the streams that have work), so
//! a stream costs its future and `h2`'s state, not a task. `h2` keeps each connection's
//! state behind a mutex of its own; only this task takes it, so it is never contended.
//!
//! An event's bytes stay shared: a subscriber's batch is handed to `h2` as the `Bytes` the
//! sequencer encoded (only the 9-byte frame header is per stream), and the stream takes no
//! more than the peer's window and `SEND_BUFFER` allow. The rest waits in the subscriber's
//! queue in the shard, under `max_queued_bytes` like any subscriber: a stream whose window
//! stays closed is reset when its queue passes it, and its siblings are not held up.

use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::FutureExt;
use futures_lite::io::{AsyncRead, AsyncWrite};
use futures_util::stream::{FuturesUnordered, StreamExt};
use glommio::timer::Timer;
use h2::server::SendResponse;
use h2::{Ping, Reason, RecvStream, SendStream};
use tokio_util::compat::FuturesAsyncReadCompatExt;

use super::subscriber::{self, Opened, Out};
use super::{api, page, publisher, route, with_timeout, Route, Stream};
use crate::access_log::Record;
use crate::error::HttpError;
use crate::http::{self, Method, Request, Response};
use crate::metrics::counters::{CloseReason, Stats};
use crate::net::sys::{self, SocketFd};
use crate::runtime::Core;

/// What a client sends first on an HTTP/2 connection (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Most bytes `h2` buffers for one stream beyond what the socket took: past it, the stream
/// gets no more window until the connection writes, and a subscriber's events wait in its
/// queue in the shard (bounded by `max_queued_bytes`) instead of piling up in `h2`.
const SEND_BUFFER: usize = 64 * 1024;

/// Longest wait for a GOAWAY to reach the socket when a connection is closed at once.
const CLOSE_LIMIT: Duration = Duration::from_secs(1);

/// SETTINGS and PING frames (not acknowledgements) a client may send per second; a browser
/// sends a handful per connection. More closes the connection with `ENHANCE_YOUR_CALM`.
const CONTROL_PER_SECOND: u32 = 100;

/// Serves an HTTP/2 connection to its end; `pre` holds what was read of it already (the
/// preface of an h2c connection). The preface and the client's SETTINGS must arrive by
/// `deadline`, like an HTTP/1.1 request head.
pub async fn serve(
    core: &Core,
    stream: Box<Stream>,
    pre: Vec<u8>,
    conn_id: u64,
    peer: Option<SocketAddr>,
    over_capacity: bool,
    deadline: Instant,
) -> CloseReason {
    Stats::add(&core.stats.h2_connections, 1);
    let cfg = &core.cfg;
    // One socket for every stream: the stall rule and the kernel's buffer are set once.
    stream.set_write_timeout(cfg.write_timeout);
    sys::set_send_buffer(SocketFd::of(&*stream), cfg.send_buffer);
    let resets_per_second = cfg.http2_max_concurrent_streams.max(100);
    let guard = Rc::new(RefCell::new(Guard::new(resets_per_second)));
    let wire = Wire {
        stream,
        pre,
        guard: guard.clone(),
    };
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(cfg.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(cfg.max_header_bytes).unwrap_or(u32::MAX))
        .max_send_buffer_size(SEND_BUFFER)
        .handshake::<_, Bytes>(wire.compat());
    let left = deadline.saturating_duration_since(Instant::now());
    let handshake = async { handshake.await.map_err(h2_io) };
    let mut conn = match with_timeout(left, handshake).await {
        Ok(c) => c,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            Stats::add(&core.stats.header_timeouts, 1);
            return CloseReason::HeaderTimeout;
        }
        Err(e) => {
            tracing::debug!(conn = conn_id, error = %e, "HTTP/2 handshake failed");
            return CloseReason::ClientClosed;
        }
    };
    tracing::debug!(conn = conn_id, "HTTP/2 connection");

    let mut ping = conn.ping_pong();
    let mut ping_timer = Timer::new(cfg.http2_keepalive);
    let mut ping_outstanding = false;
    // Runs while the connection has no stream: `keepalive_timeout` after the last one ended.
    let mut idle_timer = Timer::new(cfg.keepalive_timeout);
    let mut idle_armed = true;
    let mut streams: FuturesUnordered<Pin<Box<dyn Future<Output = ()> + '_>>> =
        FuturesUnordered::new();
    let mut stopped = Box::pin(core.stopped());
    // Why the connection is being closed gracefully, once it is.
    let mut closing: Option<CloseReason> = None;

    // Lives for one turn of the loop, on the stack: boxing the request would cost an
    // allocation per stream for nothing.
    #[allow(clippy::large_enum_variant)]
    enum Ev {
        Request(::http::Request<RecvStream>, SendResponse<Bytes>),
        Error(h2::Error),
        Closed,
        Flood(&'static str),
        Stop,
        Ping,
        Pong,
        PingFailed,
        Idle,
    }
    loop {
        let ev = poll_fn(|cx| {
            let accepted = conn.poll_accept(cx);
            if let Some(kind) = guard.borrow().tripped {
                return Poll::Ready(Ev::Flood(kind));
            }
            match accepted {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    return Poll::Ready(Ev::Request(req, respond))
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Ev::Error(e)),
                Poll::Ready(None) => return Poll::Ready(Ev::Closed),
                Poll::Pending => {}
            }
            // Every stream that was woken makes its progress; each one's end is just that.
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
            if streams.is_empty() && !idle_armed {
                idle_timer.reset(cfg.keepalive_timeout);
                idle_armed = true;
            }
            if closing.is_none() && stopped.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ev::Stop);
            }
            if let Some(p) = ping.as_mut() {
                if ping_outstanding {
                    match p.poll_pong(cx) {
                        Poll::Ready(Ok(_)) => return Poll::Ready(Ev::Pong),
                        Poll::Ready(Err(_)) => return Poll::Ready(Ev::PingFailed),
                        Poll::Pending => {}
                    }
                }
                if ping_timer.poll(cx).is_ready() {
                    return Poll::Ready(Ev::Ping);
                }
            }
            if idle_armed && closing.is_none() && idle_timer.poll(cx).is_ready() {
                return Poll::Ready(Ev::Idle);
            }
            Poll::Pending
        })
        .await;
        match ev {
            Ev::Request(req, respond) => {
                Stats::add(&core.stats.h2_streams, 1);
                idle_armed = false;
                // The request's phase is boxed on its own and freed when it ends: the
                // stream's future keeps only what a live subscriber needs (an async fn's
                // arguments stay in its future for its whole life).
                let asked = Box::pin(request(core, req, respond, conn_id, peer, over_capacity));
                streams.push(Box::pin(handle(asked, conn_id)));
                if over_capacity && closing.is_none() {
                    // Its streams are answered 503; the client should go elsewhere.
                    conn.graceful_shutdown();
                    closing = Some(CloseReason::Answered);
                }
            }
            Ev::Error(e) => return ended_by(core, conn_id, &e, closing),
            Ev::Closed => {
                return closing.unwrap_or(CloseReason::ClientClosed);
            }
            Ev::Flood(kind) => {
                Stats::add(&core.stats.h2_floods, 1);
                tracing::info!(
                    conn = conn_id,
                    flood = kind,
                    "HTTP/2 flood: connection closed"
                );
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
                let flushed = async { poll_fn(|cx| conn.poll_closed(cx)).await.map_err(h2_io) };
                let _ = with_timeout(CLOSE_LIMIT, flushed).await;
                return CloseReason::Http2Error;
            }
            Ev::Stop => {
                // GOAWAY: no new streams; subscribers are drained by the core (each ends
                // with END_STREAM after its last event and a `retry:` hint) and the
                // connection closes when the last stream is done.
                conn.graceful_shutdown();
                closing = Some(CloseReason::Shutdown);
            }
            Ev::Ping => {
                if ping_outstanding {
                    tracing::debug!(conn = conn_id, "HTTP/2 PING unanswered: connection closed");
                    return CloseReason::PingTimeout;
                }
                if let Some(p) = ping.as_mut() {
                    ping_outstanding = p.send_ping(Ping::opaque()).is_ok();
                }
                ping_timer.reset(cfg.http2_keepalive);
            }
            Ev::Pong => ping_outstanding = false,
            Ev::PingFailed => {
                ping = None;
                ping_outstanding = false;
            }
            Ev::Idle => {
                conn.graceful_shutdown();
                closing = Some(CloseReason::IdleTimeout);
            }
        }
    }
}

/// How a connection that failed ended, counted.
fn ended_by(core: &Core, conn_id: u64, e: &h2::Error, closing: Option<CloseReason>) -> CloseReason {
    if e.is_io() {
        return closing.unwrap_or(CloseReason::ClientClosed);
    }
    if e.is_go_away() && e.is_remote() && e.reason() == Some(Reason::NO_ERROR) {
        return CloseReason::ClientClosed;
    }
    if e.reason() == Some(Reason::ENHANCE_YOUR_CALM) {
        Stats::add(&core.stats.h2_floods, 1);
        tracing::info!(conn = conn_id, error = %e, "HTTP/2 flood: connection closed");
    } else {
        Stats::add(&core.stats.h2_errors, 1);
        tracing::debug!(conn = conn_id, error = %e, "HTTP/2 connection error");
    }
    CloseReason::Http2Error
}

fn h2_io(e: h2::Error) -> io::Error {
    if e.is_io() {
        return e
            .into_io()
            .unwrap_or_else(|| io::ErrorKind::BrokenPipe.into());
    }
    io::Error::other(e)
}

/// One stream: a request, routed like an HTTP/1.1 request and answered on the stream, or a
/// subscriber's stream for the rest of its life. As for HTTP/1.1, everything the request
/// needed is in a boxed future freed before the subscriber goes live: an idle stream's
/// future holds its [`subscriber::Live`] and little else.
async fn handle<'c>(
    request: Pin<Box<impl Future<Output = Option<subscriber::Live<'c>>>>>,
    conn_id: u64,
) {
    if let Some(live) = request.await {
        subscriber::stream(live, conn_id).await;
    }
}

/// Answers a stream's request; a subscription that opened is returned to go live.
async fn request(
    core: &Core,
    req: ::http::Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    conn_id: u64,
    peer: Option<SocketAddr>,
    over_capacity: bool,
) -> Option<subscriber::Live<'_>> {
    let start = Instant::now();
    let (head, body) = req.into_parts();
    let req = match http::from_h2(&head) {
        Ok(r) => r,
        Err(e) => {
            let log = Exchange {
                conn: conn_id,
                peer,
                req: None,
                start,
            };
            answer(core, &mut respond, &log, Err(e), "");
            return None;
        }
    };
    let cors = core.cors.headers(req.origin.as_deref());
    let log = Exchange {
        conn: conn_id,
        peer,
        req: Some(&req),
        start,
    };
    let result = match route(core, &req, over_capacity) {
        Route::Subscribe => {
            drop(body);
            let access = core.access_log.is_some().then(|| {
                Box::new(subscriber::AccessStart {
                    peer,
                    start,
                    written_before: 0,
                })
            });
            let out = Out::H2(Box::new(H2Stream {
                state: State::Head(respond),
                written: 0,
                write_timeout: core.cfg.write_timeout,
            }));
            match subscriber::open(core, out, &req, &cors, conn_id, access).await {
                Opened::Live(live) => return Some(live),
                Opened::Refused(e, Out::H2(s)) => {
                    if let State::Head(mut respond) = s.state {
                        answer(core, &mut respond, &log, Err(e), &cors);
                    }
                }
                Opened::Refused(..) | Opened::Ended(_) => {}
            }
            return None;
        }
        Route::Publish => {
            let r = publish(core, &req, body).await;
            if let Err(e) = &r {
                core.stats.publish_refused(e.status());
            }
            r
        }
        Route::Preflight => core.cors.preflight(&req),
        Route::Page => Ok(page()),
        Route::Subscriptions(query) => api::respond(core, &req, &query).await,
        Route::Refuse(e) => Err(e),
    };
    answer(core, &mut respond, &log, result, &cors);
    None
}

/// A stream's request, for its access log line.
struct Exchange<'a> {
    conn: u64,
    peer: Option<SocketAddr>,
    /// `None` when the request was refused before it could be read.
    req: Option<&'a Request>,
    start: Instant,
}

/// Answers a stream (an error is counted and logged, with the request's CORS headers) and
/// writes its access log line.
fn answer(
    core: &Core,
    respond: &mut SendResponse<Bytes>,
    ex: &Exchange<'_>,
    result: Result<Response, HttpError>,
    cors: &str,
) {
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            core.stats.refused(e.status());
            tracing::debug!(conn = ex.conn, status = e.status(), reason = %e, "request refused");
            Response::error(&e)
        }
    }
    .lines(cors);
    let status = resp.status();
    let (head, body) = resp.into_h2();
    let body = body.unwrap_or_default();
    let bytes = body.len() as u64;
    // A stream the client reset already cannot be answered: nothing to do about it.
    if let Ok(mut send) = respond.send_response(head, body.is_empty()) {
        if !body.is_empty() {
            let _ = send.send_data(body, true);
        }
    }
    core.log_access(&Record {
        conn: ex.conn,
        peer: ex.peer,
        method: ex.req.and_then(|r| r.method).map_or("-", Method::as_str),
        path: ex.req.map_or("-", |r| &r.path),
        status,
        bytes,
        duration: ex.start.elapsed(),
        end: None,
    });
}

/// A publish over HTTP/2: the same checks as over HTTP/1.1, except that the body's length
/// may be left to the stream's end (HTTP/2 frames it), still bounded by `max_body_bytes`.
async fn publish(core: &Core, req: &Request, mut body: RecvStream) -> Result<Response, HttpError> {
    let max = core.cfg.max_body_bytes;
    if req.content_length.is_some_and(|n| n > max) {
        return Err(HttpError::PayloadTooLarge);
    }
    if let Some(len) = req.content_length {
        publisher::check_media(req, len)?;
    }
    let claims = publisher::verify_request(req, &core.publisher_auth, "missing bearer token")?;
    let mut buf = Vec::new();
    let read = async {
        while let Some(chunk) = poll_fn(|cx| body.poll_data(cx)).await {
            let chunk = chunk.map_err(|_| HttpError::BadRequest("request body incomplete"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if buf.len() + chunk.len() > max {
                return Err(HttpError::PayloadTooLarge);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    let limit = async {
        glommio::timer::sleep(core.cfg.header_timeout).await;
        Err(HttpError::BadRequest("request body not received in time"))
    };
    read.or(limit).await?;
    publisher::check_media(req, buf.len())?;
    publisher::accept(core, &claims, &buf).await
}

/// A subscriber's half of an HTTP/2 stream: the response head once, then DATA frames
/// within the stream's flow-control window.
pub struct H2Stream {
    state: State,
    /// DATA bytes given to `h2` for this stream.
    written: u64,
    write_timeout: Duration,
}

enum State {
    /// The response head is not sent yet.
    Head(SendResponse<Bytes>),
    /// Sending the body.
    Body(SendStream<Bytes>),
}

impl H2Stream {
    /// DATA bytes written.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Sends the response head.
    pub fn begin(&mut self, head: Response) -> io::Result<()> {
        let State::Head(respond) = &mut self.state else {
            return Err(io::Error::other("response head sent twice"));
        };
        let send = respond
            .send_response(head.into_h2().0, false)
            .map_err(h2_io)?;
        self.state = State::Body(send);
        Ok(())
    }

    /// Sends `data` as the window allows, waiting up to `write_timeout` each time the
    /// window is closed.
    pub async fn write(&mut self, mut data: Bytes) -> io::Result<()> {
        let State::Body(send) = &mut self.state else {
            return Err(io::Error::other("response head not sent"));
        };
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let mut window = send.capacity();
            if window == 0 {
                let wait = poll_fn(|cx| match send.poll_capacity(cx) {
                    Poll::Ready(Some(r)) => Poll::Ready(r.map_err(h2_io)),
                    Poll::Ready(None) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                    Poll::Pending => Poll::Pending,
                });
                window = with_timeout(self.write_timeout, wait).await?;
            }
            let n = window.min(data.len());
            if n == 0 {
                continue;
            }
            send.send_data(data.split_to(n), false).map_err(h2_io)?;
            self.written += n as u64;
        }
        Ok(())
    }

    /// Whether the client reset the stream (or the connection is gone).
    pub fn poll_gone(&mut self, cx: &mut Context<'_>) -> bool {
        match &mut self.state {
            State::Head(r) => r.poll_reset(cx).is_ready(),
            State::Body(s) => s.poll_reset(cx).is_ready(),
        }
    }

    /// Ends the stream cleanly (`END_STREAM`).
    pub fn end(&mut self) {
        if let State::Body(s) = &mut self.state {
            let _ = s.send_data(Bytes::new(), true);
        }
    }

    /// Resets the stream (`RST_STREAM` with `CANCEL`): what it did not take is dropped.
    pub fn reset(&mut self) {
        match &mut self.state {
            State::Head(r) => r.send_reset(Reason::CANCEL),
            State::Body(s) => s.send_reset(Reason::CANCEL),
        }
    }
}

/// The connection's bytes as `h2` reads and writes them: first what was read before the
/// protocol was known, then the stream; every byte read passes the [`Guard`].
struct Wire {
    stream: Box<Stream>,
    pre: Vec<u8>,
    guard: Rc<RefCell<Guard>>,
}

impl AsyncRead for Wire {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut guard = this.guard.borrow_mut();
        if guard.tripped.is_some() {
            // Nothing more is read from a flooding client; its connection is being closed.
            return Poll::Pending;
        }
        if !this.pre.is_empty() {
            let n = this.pre.len().min(buf.len());
            buf[..n].copy_from_slice(&this.pre[..n]);
            this.pre.drain(..n);
            if this.pre.is_empty() {
                this.pre = Vec::new();
            }
            guard.scan(&buf[..n]);
            return Poll::Ready(Ok(n));
        }
        let r = Pin::new(&mut *this.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            guard.scan(&buf[..*n]);
        }
        r
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().stream).poll_close(cx)
    }
}

/// Watches the frames a client sends for the floods `h2` answers without limit: SETTINGS
/// and PING frames (each obliges an acknowledgement) and RST_STREAM (the rapid-reset attack
/// opens and cancels streams faster than a server can notice). It reads frame headers only
/// (nine bytes each, at known offsets); `h2` parses the frames themselves.
struct Guard {
    /// Bytes to pass before the next frame header (the preface, then each frame's payload).
    skip: usize,
    head: [u8; 9],
    have: usize,
    /// The current one-second window and what it counted.
    since: Instant,
    control: u32,
    resets: u32,
    resets_per_second: u32,
    /// The flood seen, once one is.
    tripped: Option<&'static str>,
}

impl Guard {
    fn new(resets_per_second: u32) -> Guard {
        Guard {
            skip: PREFACE.len(),
            head: [0; 9],
            have: 0,
            since: Instant::now(),
            control: 0,
            resets: 0,
            resets_per_second,
            tripped: None,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (9 - self.have).min(bytes.len());
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = self.head;
                self.skip = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                self.frame(h[3], h[4]);
            }
        }
    }

    /// Counts one frame of type `kind` with `flags`.
    fn frame(&mut self, kind: u8, flags: u8) {
        const RST_STREAM: u8 = 0x3;
        const SETTINGS: u8 = 0x4;
        const PING: u8 = 0x6;
        const ACK: u8 = 0x1;
        let control = matches!(kind, SETTINGS | PING) && flags & ACK == 0;
        if !control && kind != RST_STREAM {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.since) >= Duration::from_secs(1) {
            self.since = now;
            self.control = 0;
            self.resets = 0;
        }
        if control {
            self.control += 1;
            if self.control > CONTROL_PER_SECOND {
                self.tripped = Some(if kind == PING { "ping" } else { "settings" });
            }
        } else {
            self.resets += 1;
            if self.resets > self.resets_per_second {
                self.tripped = Some("rapid_reset");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: usize) -> Vec<u8> {
        let len = (payload as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
        f.resize(9 + payload, 0);
        f
    }

    #[test]
    fn the_guard_counts_frames_split_anywhere_and_trips_on_a_ping_flood() {
        let mut g = Guard::new(100);
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 12));
        for _ in 0..CONTROL_PER_SECOND - 1 {
            bytes.extend(frame(0x6, 0, 8));
            bytes.extend(frame(0x6, 1, 8)); // acknowledgements are not counted
            bytes.extend(frame(0x0, 0, 300));
        }
        for chunk in bytes.chunks(7) {
            g.scan(chunk);
        }
        assert_eq!(g.tripped, None);
        assert_eq!(g.control, CONTROL_PER_SECOND);
        g.scan(&frame(0x6, 0, 8));
        assert_eq!(g.tripped, Some("ping"));
    }

    #[test]
    fn the_guard_trips_on_rapid_resets() {
        let mut g = Guard::new(100);
        g.scan(PREFACE);
        for _ in 0..100 {
            g.scan(&frame(0x1, 0x5, 20));
            g.scan(&frame(0x3, 0, 4));
        }
        assert_eq!(g.tripped, None);
        g.scan(&frame(0x3, 0, 4));
        assert_eq!(g.tripped, Some("rapid_reset"));
    }
}
