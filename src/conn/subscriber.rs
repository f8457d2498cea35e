//! ⑥ A subscriber: register in the shard, write the response head and the replay, then live
//! as the connection's writer: wait for queued frames, write each batch in one `send`,
//! and notice a client that goes away.
//!
//! Owns: a subscription's parsing, registration (its [`Registration`] in the shard), replay
//! and live writes. May call: `runtime` (submit, catch up), `hub`, `auth`, `http`,
//! `net::sys`, `metrics`, `access_log`.
//!
//! The stream is close-delimited ([`Response::event_stream`]): the event bytes encoded once
//! by the sequencer go to the socket as they are.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use super::http2::H2Stream;
use super::Stream;
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::future::{self, poll_fn};
use futures_lite::io::{AsyncRead, AsyncWriteExt};

use crate::access_log::Record;
use crate::auth::find_token;
use crate::clock::unix_millis;
use crate::error::HttpError;
use crate::http::{parse_form, Request, Response, MERCURE_PATH};
use crate::hub::event::Event;
use crate::hub::history::ResumeFrom;
use crate::hub::selector::Selector;
use crate::hub::shard::{wants, wants_topics, Departed, DropReason, NewSubscriber, Next, Refused};
use crate::hub::subscriptions::{self, SubscriberInfo};
use crate::metrics::counters::{CloseReason, Stats};
use crate::net::sys::{self, SocketFd};
use crate::runtime::{Core, NotSubmitted};

/// Longest a resume waits for this core to receive the event it resumes after.
const CATCH_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Replayed events are coalesced into writes of about this size.
const REPLAY_BATCH: usize = 64 * 1024;

/// Longest wait for one page of older events from the engine (see [`replay_older`]).
const OLDER_PAGE_LIMIT: std::time::Duration = std::time::Duration::from_secs(3);

/// A subscription request, parsed and authorized.
struct Subscription {
    /// Selectors as written (compiled against the shard's cache at registration).
    topics: Vec<String>,
    /// `Last-Event-ID` header, else the `lastEventID` query parameter.
    last_event_id: Option<String>,
    /// The token's `mercure.subscribe` selectors, if it has any.
    rights: Option<Vec<Selector>>,
    /// The token's `exp`, if any: the stream is closed then.
    expires: Option<u64>,
    /// The token's `mercure.payload`, as JSON text (for subscription events).
    payload: Option<String>,
}

fn parse_subscription(core: &Core, req: &Request) -> Result<Subscription, HttpError> {
    let max_topics = core.cfg.max_topics;
    let max_selector = core.cfg.max_selector_bytes;
    let mut topics = Vec::new();
    let mut query_last_id = None;
    let mut query_token = None;
    for (name, value) in parse_form(req.query.as_bytes())? {
        match name.as_str() {
            "topic" => {
                if value.is_empty() {
                    return Err(HttpError::BadParam("empty \"topic\" parameter".into()));
                }
                if value.len() > max_selector {
                    return Err(HttpError::BadParam(format!(
                        "\"topic\" selector longer than {max_selector} bytes"
                    )));
                }
                if let Some(why) = Selector::refusal(&value) {
                    return Err(HttpError::BadParam(format!("\"topic\" selector {why}")));
                }
                if topics.len() == max_topics {
                    return Err(HttpError::BadParam(format!(
                        "too many \"topic\" parameters (at most {max_topics})"
                    )));
                }
                topics.push(value);
            }
            "lastEventID" if !value.is_empty() => query_last_id = Some(value),
            "authorization" if query_token.is_none() => query_token = Some(value),
            _ => {}
        }
    }
    if topics.is_empty() {
        return Err(HttpError::BadParam("missing \"topic\" parameter".into()));
    }
    let token = find_token(
        req.authorization.as_deref(),
        query_token.as_deref(),
        req.cookie.as_deref(),
    )?;
    let (rights, expires, payload) = match token {
        Some(token) => {
            let claims = core.subscriber_auth.verify(token)?;
            let payload = claims.mercure.payload.as_ref().map(|p| p.to_string());
            (
                claims.subscribe_rights().map(<[Selector]>::to_vec),
                claims.exp,
                payload,
            )
        }
        None if core.cfg.anonymous => (None, None, None),
        None => return Err(HttpError::Unauthorized("missing subscriber token")),
    };
    Ok(Subscription {
        topics,
        last_event_id: req.last_event_id.clone().or(query_last_id),
        rights,
        expires,
        payload,
    })
}

/// How a subscriber's stream ended.
#[derive(Debug)]
enum End {
    /// The client closed, reset, or sent bytes it should not have.
    Peer,
    /// Gateway shutdown or stream lifetime: queue flushed, close cleanly.
    Drained,
    /// Dropped by the gateway (slow consumer, token expiry).
    Dropped(DropReason),
    /// A write made no progress for `write_timeout`.
    WriteTimeout,
}

/// Where a subscriber's stream goes: a connection of its own (HTTP/1.1), or one stream of
/// an HTTP/2 connection (boxed: an idle HTTP/1.1 subscriber pays one word for the choice).
pub enum Out {
    /// The connection is the stream.
    H1(Box<Stream>),
    /// One stream of an HTTP/2 connection, whose task does the socket's I/O.
    H2(Box<H2Stream>),
}

impl Out {
    /// The socket the shard may write to and shut down: none for an HTTP/2 stream, which
    /// shares its socket with other streams.
    fn fd(&self) -> SocketFd {
        match self {
            Out::H1(s) => SocketFd::of(&**s),
            Out::H2(_) => SocketFd::NONE,
        }
    }

    /// Whether the client is gone: a subscriber sends nothing after its request, so a
    /// readable HTTP/1.1 socket means the client closed (0), reset (error), or misbehaves
    /// (data), all of which end the stream; an HTTP/2 stream is gone when reset.
    fn poll_gone(&mut self, cx: &mut std::task::Context<'_>) -> bool {
        match self {
            Out::H1(s) => {
                let mut scratch = [0u8; 16];
                Pin::new(&mut **s).poll_read(cx, &mut scratch).is_ready()
            }
            Out::H2(s) => s.poll_gone(cx),
        }
    }

    /// Whether the flusher may write the socket directly (plain HTTP/1.1).
    fn direct(&self) -> bool {
        matches!(self, Out::H1(s) if s.is_plain())
    }

    /// Bytes written for this subscriber (for HTTP/1.1, the connection's).
    fn written(&self) -> u64 {
        match self {
            Out::H1(s) => s.written(),
            Out::H2(s) => s.written(),
        }
    }

    /// Sends the response head; returns the buffer the first events are appended to (for
    /// HTTP/1.1 the head itself, so that head and replay go in one write), which begins with
    /// the opening comment that lets clients see the stream is live.
    fn begin(&mut self, head: Response) -> io::Result<BytesMut> {
        let mut b = BytesMut::with_capacity(320);
        match self {
            Out::H1(_) => head.write_to(&mut b),
            Out::H2(s) => s.begin(head)?,
        }
        b.put_slice(b":\n");
        Ok(b)
    }

    /// Writes `data`, whole.
    async fn write(&mut self, data: Bytes) -> io::Result<()> {
        match self {
            Out::H1(s) => s.write_all(&data).await,
            Out::H2(s) => s.write(data).await,
        }
    }

    /// Makes sure what was written is on its way (TLS records the socket did not take).
    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::H1(s) => s.flush().await,
            Out::H2(_) => Ok(()),
        }
    }

    /// Ends the stream cleanly (TLS close_notify, or HTTP/2 `END_STREAM`).
    async fn close(&mut self) -> io::Result<()> {
        match self {
            Out::H1(s) => s.close().await,
            Out::H2(s) => {
                s.end();
                Ok(())
            }
        }
    }

    /// The gateway ends the stream mid-way: the connection is reset when it closes, an
    /// HTTP/2 stream at once (`RST_STREAM`), so the kernel or the connection stops holding
    /// what the client did not read.
    fn abort(&mut self, core: &Core) {
        match self {
            Out::H1(s) => sys::abort_on_close(SocketFd::of(&**s)),
            Out::H2(s) => {
                s.reset();
                Stats::add(&core.stats.h2_resets, 1);
            }
        }
    }
}

/// A subscriber's entry in its core's shard, held beside its stream. The shard holds the
/// stream's socket ([`SocketFd`]) for the flusher and for drops; dropping the registration
/// (also when the connection's task is dropped mid-write) takes the entry out, and [`Live`]
/// drops it before the stream, so no entry outlives its socket.
struct Registration<'c> {
    /// The core whose shard holds the entry (and all the live phase needs: one pointer).
    core: &'c Core,
    id: usize,
}

impl Registration<'_> {
    /// Leaves the shard now; returns what the departure's subscription events need.
    fn leave(self) -> Option<Departed> {
        let this = std::mem::ManuallyDrop::new(self);
        this.core.shard.borrow_mut().remove(this.id)
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if let Ok(mut shard) = self.core.shard.try_borrow_mut() {
            shard.remove(self.id);
        }
    }
}

/// A registered subscriber whose response head and replay have been written: what the
/// connection's task keeps for the rest of its life. Fields drop in order: the registration
/// before the stream.
pub struct Live<'c> {
    registration: Registration<'c>,
    stream: Out,
    /// For the access log line written when the stream ends (boxed, and only when the access
    /// log is on: an idle subscriber without it pays one pointer).
    access: Option<Box<AccessStart>>,
}

/// When and from where a subscription was requested, for its access log line.
pub struct AccessStart {
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// When its request head was read.
    pub start: Instant,
    /// What the connection had written before this request (a keep-alive connection may
    /// have answered others first): the line counts this request's bytes only.
    pub written_before: u64,
}

/// What [`open`] made of a subscription request.
pub enum Opened<'c> {
    /// Registered, head and replay written: the stream goes live.
    Live(Live<'c>),
    /// Refused: the caller answers with the error (and closes an HTTP/1.1 connection).
    Refused(HttpError, Out),
    /// Registered, then ended while the head or replay was written.
    Ended(CloseReason),
}

/// Opens a subscription: parses the request, registers in the shard, writes the response
/// head and the replay. Everything this needs is freed before the stream goes live.
/// `access` is given when the access log is on: the line is written when the stream ends.
pub async fn open<'c>(
    core: &'c Core,
    stream: Out,
    req: &Request,
    cors: &str,
    conn_id: u64,
    access: Option<Box<AccessStart>>,
) -> Opened<'c> {
    let sub = match parse_subscription(core, req) {
        Ok(s) => s,
        Err(e) => return Opened::Refused(e, stream),
    };
    if let Out::H1(s) = &stream {
        // An HTTP/2 connection's socket is set up once for all its streams.
        s.set_write_timeout(core.cfg.write_timeout);
        sys::set_send_buffer(SocketFd::of(&**s), core.cfg.send_buffer);
    }
    if let Some(last) = sub.last_event_id.as_deref().filter(|id| *id != "earliest") {
        // This core may be a few events behind the one the client was on.
        core.catch_up_to(last, CATCH_UP_LIMIT).await;
    }

    let compiled = core.shard.borrow().compile(&sub.topics);
    let selectors = match compiled {
        Ok(selectors) => selectors,
        Err(refused) => {
            let e = match refused {
                Refused::OverBudget => {
                    Stats::add(&core.stats.template_budget_refusals, 1);
                    HttpError::Unavailable("template selector budget exhausted on this core")
                }
                Refused::TooComplex(why) => {
                    HttpError::BadParam(format!("\"topic\" selector {why}"))
                }
            };
            return Opened::Refused(e, stream);
        }
    };
    // Registration and the replay snapshot happen in one synchronous step: no event can
    // land between them, so the replay and the live stream neither overlap nor leave a gap.
    // A resume from an id older than this core's history: the engine may still hold it
    // (the Redis stream keeps more than memory does). Its pages are written first, before
    // registration; this core's history and live stream take over where they end.
    let mut stream = stream;
    let mut from_engine = None;
    if let Some(last) = sub.last_event_id.as_deref().filter(|id| *id != "earliest") {
        if !core.history.borrow().contains(last) {
            match replay_older(
                core,
                &mut stream,
                last,
                &selectors,
                sub.rights.as_deref(),
                cors,
            )
            .await
            {
                Ok(Some(upto)) => {
                    core.wait_applied(upto).await;
                    from_engine = Some(upto);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(conn = conn_id, error = %e, "older replay ended");
                    return Opened::Ended(CloseReason::ClientClosed);
                }
            }
        }
    }
    let (id, header, replay) = {
        let mut history = core.history.borrow_mut();
        let mut shard = core.shard.borrow_mut();
        history.expire(Instant::now());
        let (replay, header): (Vec<Rc<Event>>, Option<String>) = match &sub.last_event_id {
            None => (Vec::new(), None),
            // The head and the engine's part are written: what this core has since.
            Some(_) if from_engine.is_some() => {
                let upto = from_engine.unwrap_or_default();
                let events = history
                    .after_seq(upto)
                    .filter(|e| wants(&selectors, sub.rights.as_deref(), e))
                    .cloned()
                    .collect();
                (events, None)
            }
            Some(last) => {
                let from = if last == "earliest" {
                    ResumeFrom::Earliest
                } else {
                    ResumeFrom::After(last)
                };
                let (events, header) = history.replay(from);
                let events = events
                    .filter(|e| wants(&selectors, sub.rights.as_deref(), e))
                    .cloned()
                    .collect();
                (events, Some(header))
            }
        };
        let info = core.cfg.subscriptions.then(|| {
            Box::new(SubscriberInfo {
                id: crate::hub::publish::urn_uuid().into(),
                payload: sub.payload.map(Into::into),
            })
        });
        if let Some(info) = &info {
            for sel in &selectors {
                announce(
                    core,
                    subscriptions::event(sel.as_str(), info, true),
                    conn_id,
                );
            }
        }
        let id = shard.add(NewSubscriber {
            selectors,
            rights: sub.rights,
            fd: stream.fd(),
            direct: stream.direct(),
            after_seq: history.newest_seq(),
            expires: sub.expires,
            lifetime_ends: core.cfg.max_stream_duration.map(|d| {
                // 80–100% of the configured duration, so streams opened together do not all
                // reconnect together.
                let ms = d.as_millis() as u64;
                unix_millis() + ms - (ms / 5) * (fastrand::u64(0..=1000)) / 1000
            }),
            serial: core.next_serial(),
            info,
        });
        (id, header, replay)
    };
    Stats::add(&core.stats.subscribed, 1);
    Stats::add(&core.stats.replayed, replay.len() as u64);
    tracing::debug!(
        conn = conn_id,
        sub = id,
        replay = replay.len(),
        "subscribed"
    );

    let mut live = Live {
        registration: Registration { core, id },
        stream,
        access,
    };
    let head = match from_engine {
        Some(_) => Ok(BytesMut::new()),
        None => live
            .stream
            .begin(response_head(header.as_deref(), core.index, cors)),
    };
    let replayed = match head {
        Ok(head) => write_replay(&mut live.stream, head, replay).await,
        Err(e) => Err(e),
    };
    match replayed {
        Ok(()) => Opened::Live(live),
        Err(e) => Opened::Ended(finish(live, conn_id, Err(e))),
    }
}

/// Streams live events to a subscriber until it ends, then cleans up; returns why it ended.
pub async fn stream(mut live: Live<'_>, conn_id: u64) -> CloseReason {
    // One `&mut Live` down, not the core, stream and id apart: every idle subscriber's
    // future holds what is passed here (the connection's future went from 336 to 288
    // bytes; bench-results/redesign-2026-12-03.md).
    let end = live_loop(&mut live).await;
    if let Ok(End::Drained) = end {
        // Shutdown or lifetime: end the stream cleanly after the last event (TLS sends
        // close_notify first, so the client sees a proper end rather than a truncation).
        let _ = live.stream.close().await;
    }
    finish(live, conn_id, end)
}

/// Leaves the shard, counts how the stream ended, writes the access log line, and closes
/// the connection. Not async: it would otherwise reserve room for a second stream in every
/// subscriber's future.
fn finish(live: Live<'_>, conn_id: u64, end: io::Result<End>) -> CloseReason {
    let core = live.registration.core;
    let Live {
        registration,
        mut stream,
        access,
    } = live;
    let id = registration.id;
    // Leave the shard before the stream (and its socket) is dropped.
    let departed = registration.leave();
    let flushed = departed.as_ref().map_or(0, |d| d.flushed);
    if let Some(Departed {
        selectors,
        info: Some(info),
        ..
    }) = departed
    {
        for sel in selectors.iter() {
            announce(
                core,
                subscriptions::event(sel.as_str(), &info, false),
                conn_id,
            );
        }
    }
    core.subscriber_gone();
    let end = end.unwrap_or_else(|e| {
        if e.kind() == io::ErrorKind::TimedOut {
            End::WriteTimeout
        } else {
            End::Peer
        }
    });
    let reason = match end {
        // Closed by `stream` already; the request was read in full, so dropping the socket
        // sends no reset.
        End::Drained if core.is_stopping() => CloseReason::Shutdown,
        End::Drained => CloseReason::Lifetime,
        End::WriteTimeout => {
            // As for a slow consumer: reset rather than leave the kernel holding its bytes.
            stream.abort(core);
            Stats::add(&core.stats.write_timeouts, 1);
            CloseReason::WriteTimeout
        }
        End::Peer => CloseReason::ClientClosed,
        End::Dropped(reason) => {
            // The shard reset an HTTP/1.1 socket already; an HTTP/2 stream is reset here.
            if let Out::H2(_) = stream {
                stream.abort(core);
            }
            match reason {
                DropReason::SlowConsumer => CloseReason::SlowConsumer,
                DropReason::TokenExpired => CloseReason::TokenExpired,
            }
        }
    };
    tracing::debug!(
        conn = conn_id,
        sub = id,
        end = %reason.as_str(),
        "subscriber closed"
    );
    if let Some(a) = access {
        core.log_access(&Record {
            conn: conn_id,
            peer: a.peer,
            method: "GET",
            path: MERCURE_PATH,
            status: 200,
            bytes: stream.written() - a.written_before + flushed,
            duration: a.start.elapsed(),
            end: Some(reason.as_str()),
        });
    }
    drop(stream);
    reason
}

/// Hands a subscription event to the order; one lost to a full inbox is logged (one lost
/// because the core is stopping reaches nobody anyway).
fn announce(core: &Core, update: crate::hub::event::Update, conn_id: u64) {
    if core.submit(update) == Err(NotSubmitted::Full) {
        tracing::warn!(
            conn = conn_id,
            "sequencer inbox full: subscription event dropped"
        );
    }
}

/// The response head of a subscription.
fn response_head(last_event_id: Option<&str>, core: usize, cors: &str) -> Response {
    let mut head = Response::event_stream()
        .header("X-Ssegate-Worker", itoa::Buffer::new().format(core))
        .lines(cors);
    if let Some(id) = last_event_id {
        head = head.header("Last-Event-ID", id);
    }
    head
}

/// For a resume after `last`, an id this core's history does not hold: writes the response
/// head and the events after it that the order's engine still holds, page by page, up to
/// this node's read position; returns the `seq` where they end. `Ok(None)` (nothing written)
/// when the engine does not hold the id: the resume gets `earliest`. A page that does not
/// come within [`OLDER_PAGE_LIMIT`] once some are written ends the stream: the client
/// resumes after the last event it got.
async fn replay_older(
    core: &Core,
    stream: &mut Out,
    last: &str,
    selectors: &[Selector],
    rights: Option<&[Selector]>,
    cors: &str,
) -> io::Result<Option<u64>> {
    let mut next = None;
    let mut batch: Option<BytesMut> = None;
    loop {
        let page = future::or(core.older(last, next.take()), async {
            glommio::timer::sleep(OLDER_PAGE_LIMIT).await;
            None
        })
        .await;
        let Some(page) = page else {
            if batch.is_none() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the engine's next page of older events did not come in time",
            ));
        };
        let batch = match &mut batch {
            Some(b) => b,
            None => {
                Stats::add(&core.stats.replayed_from_engine, 1);
                batch.insert(stream.begin(response_head(Some(last), core.index, cors))?)
            }
        };
        let mut sent = 0u64;
        for ev in &page.events {
            if !wants_topics(selectors, rights, &ev.topics, ev.private) {
                continue;
            }
            if batch.len() + ev.frame.len() > REPLAY_BATCH && !batch.is_empty() {
                stream.write(batch.split().freeze()).await?;
            }
            batch.extend_from_slice(&ev.frame);
            sent += 1;
        }
        Stats::add(&core.stats.replayed, sent);
        if let Some(more) = page.next {
            next = Some(more);
            continue;
        }
        stream.write(batch.split().freeze()).await?;
        stream.flush().await?;
        return Ok(Some(page.upto));
    }
}

/// Writes the head and the replayed events, coalesced into large writes.
async fn write_replay(
    stream: &mut Out,
    mut batch: BytesMut,
    replay: Vec<Rc<Event>>,
) -> io::Result<()> {
    for ev in replay {
        if batch.len() + ev.frame.len() > REPLAY_BATCH && !batch.is_empty() {
            stream.write(batch.split().freeze()).await?;
        }
        batch.extend_from_slice(&ev.frame);
    }
    if !batch.is_empty() {
        stream.write(batch.freeze()).await?;
    }
    stream.flush().await
}

/// The live phase: one wake-up per batch of queued frames, one write per batch.
async fn live_loop(live: &mut Live<'_>) -> io::Result<End> {
    loop {
        // The closure captures the one `&mut Live`, not a pointer per field.
        let l = &mut *live;
        let next = poll_fn(move |cx| {
            if l.stream.poll_gone(cx) {
                return Poll::Ready(None);
            }
            let Registration { core, id } = l.registration;
            core.shard.borrow_mut().poll_next(id, cx).map(Some)
        })
        .await;
        match next {
            None => return Ok(End::Peer),
            Some(Next::Close) => return Ok(End::Drained),
            Some(Next::Dropped(reason)) => return Ok(End::Dropped(reason)),
            Some(Next::Write) => {
                let Registration { core, id } = live.registration;
                let Some(batch) = core.shard.borrow().batch(id) else {
                    continue;
                };
                let queued_at = core.shard.borrow_mut().take_queued_at(id);
                // The flush matters for TLS only: records the socket did not take at once
                // are sent (or time out) here, before the batch counts as written.
                match &mut live.stream {
                    Out::H1(s) => {
                        s.write_all(&batch).await?;
                        s.flush().await?;
                    }
                    // Boxed: the wait for flow-control window is no part of an idle
                    // subscriber's future.
                    Out::H2(s) => {
                        if let Some(r) = Box::pin(h2_write(core, id, s, batch.clone())).await? {
                            return Ok(End::Dropped(r));
                        }
                    }
                }
                // Read again rather than kept across the writes: a local held over an await
                // is a field of every subscriber's future.
                let Registration { core, id } = live.registration;
                core.shard
                    .borrow_mut()
                    .written(id, batch.len(), Instant::now());
                Stats::add(&core.stats.bytes_written, batch.len() as u64);
                if let Some(at) = queued_at {
                    core.stats.observe_delivery(at, Instant::now());
                }
            }
        }
    }
}

/// Writes a batch to an HTTP/2 stream, waiting for flow-control window, unless the shard
/// drops the subscriber meanwhile (its queue passed `max_queued_bytes` while the window
/// stayed closed): then the reason.
async fn h2_write(
    core: &Core,
    id: usize,
    s: &mut H2Stream,
    batch: Bytes,
) -> io::Result<Option<DropReason>> {
    future::or(async { s.write(batch).await.map(|()| None) }, async {
        poll_fn(|cx| core.shard.borrow_mut().poll_dropped(id, cx)).await;
        let reason = core.shard.borrow().dropped(id);
        Ok(Some(reason.unwrap_or(DropReason::SlowConsumer)))
    })
    .await
}
