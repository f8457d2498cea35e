//! The order in a Redis stream, shared by every node. Owns: the node's connections to
//! Redis (one pipelining publishes, one blocking on the stream, one probing its tail, one
//! reading older events for resumes), the updates on their way there, and the reader's
//! position. May call: `hub` (the sequencer trait, the update and
//! its encoding), the connection in [`super::resp`].
//!
//! **Publish.** [`Redis::submit`] queues the update; the publisher task writes every queued
//! update as one `XADD … MAXLEN ~ redis_history_size *` each, many in one write (pipelined),
//! then reads their replies in order. The entry's stream id is its place in the one order.
//! Each entry carries the origin (node, core, publisher) it came from.
//!
//! **Read.** The reader task blocks on `XREAD` from the last id it has and yields every
//! entry, in the stream's order, as the next event of this node's order (numbered locally,
//! encoded once here). The sequencing core broadcasts it to its cores as in memory mode, so
//! every node and every core sees every event in the same order. A publisher is answered
//! when the reader has read its own entry back and it is visible on the publisher's core: a
//! publish answered before the next is sent, on any node, comes earlier in the order.
//!
//! **Older resumes.** A resume from an id older than memory's history reads the events
//! after it from the stream ([`Sequencer::older`]), found through the id index that the
//! publish script keeps (see [`XADD_SCRIPT`] and [`FIND_SCRIPT`]).
//!
//! **Failure.** A publish Redis refuses, or does not confirm within `redis_timeout`, is
//! handed back as [`Next::Refused`] (the publisher gets 503 with `Retry-After`): nothing is
//! acknowledged that Redis did not store. Either connection that fails is reopened with
//! jittered back-off (at most two seconds); the reader continues from its last id, so what
//! reached Redis meanwhile is not missed.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future::{self, poll_fn};

use super::resp::{within, Conn, Frame};
pub use super::resp::{RedisError, TlsClient};
use crate::hub::event::{encode, Update};
use crate::hub::sequencer::{Full, Next, Origin, Page, Past, Sequenced, Sequencer};
use crate::metrics::counters::{latency_slot, LATENCY_BUCKETS};
use crate::metrics::EngineStats;

/// Why a `redis_url` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// A scheme other than `redis://` or `rediss://`.
    #[error("must start with redis:// or rediss:// (TLS)")]
    Scheme,
    /// No host.
    #[error("no host")]
    Host,
    /// The port is not a number from 1 to 65535.
    #[error("the port must be a number from 1 to 65535")]
    Port,
    /// The path is not a database number.
    #[error("the path must be a database number, like /0")]
    Db,
    /// Query parameters, which nothing here reads.
    #[error("query parameters are not supported")]
    Query,
    /// The host name does not resolve.
    #[error("cannot resolve {0}")]
    Resolve(String),
}

/// A parsed `redis[s]://[user:password@]host[:port][/db]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// `rediss://`: TLS to Redis.
    pub tls: bool,
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// Port (6379 when absent).
    pub port: u16,
    /// ACL user (empty: the default user).
    pub user: String,
    /// Password, if any.
    pub password: Option<String>,
    /// Database number.
    pub db: u32,
}

impl Url {
    /// Parses a `redis_url`. User and password may be percent-encoded.
    pub fn parse(text: &str) -> Result<Url, UrlError> {
        let (tls, rest) = match (
            text.strip_prefix("redis://"),
            text.strip_prefix("rediss://"),
        ) {
            (Some(rest), _) => (false, rest),
            (_, Some(rest)) => (true, rest),
            _ => return Err(UrlError::Scheme),
        };
        if rest.contains('?') || rest.contains('#') {
            return Err(UrlError::Query);
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let (user, password) = match userinfo.map(|u| u.split_once(':')) {
            None => (String::new(), None),
            Some(Some((u, p))) => (decode(u), Some(decode(p))),
            // `redis://secret@host`: a password alone, as redis-cli reads it.
            Some(None) => (String::new(), userinfo.map(decode)),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or(UrlError::Host)?;
                (host, after.strip_prefix(':'))
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        if host.is_empty() {
            return Err(UrlError::Host);
        }
        let port = match port {
            None => 6379,
            Some(p) => p.parse().ok().filter(|&p| p > 0).ok_or(UrlError::Port)?,
        };
        let db = match path {
            "" => 0,
            n => n.parse().map_err(|_| UrlError::Db)?,
        };
        Ok(Url {
            tls,
            host: host.to_owned(),
            port,
            user,
            password,
            db,
        })
    }

    /// The server's address. Resolved once, at start: a core never waits on DNS.
    pub fn resolve(&self) -> Result<SocketAddr, UrlError> {
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| UrlError::Resolve(self.host.clone()))
    }
}

/// What the Redis order is built from (the `redis_*` keys).
#[derive(Debug, Clone)]
pub struct Options {
    /// The server.
    pub url: Url,
    /// Its address, resolved at start.
    pub addr: SocketAddr,
    /// With `rediss://`: how connections make their TLS handshake.
    pub tls: Option<TlsClient>,
    /// Stream key.
    pub stream: String,
    /// Entries the stream keeps.
    pub history: usize,
    /// Longest wait for one answer.
    pub timeout: Duration,
    /// Entries read into history at start: the newest `history_size` of the stream.
    pub backfill: usize,
}

/// One publish: `XADD` that, when the entry creates the stream (it was never there, or was
/// deleted or flushed), first gives the stream a new epoch, atomically with the entry. So
/// every entry of a stream is read under that stream's epoch, and a reader that finds the
/// epoch changed knows its position belongs to a stream that is gone.
///
/// Ids are found without scanning the stream. A hub-made id is derived from its entry's
/// stream id when the entry is read ([`derived_id`]): the entry carries no `i` field, and a
/// resume decodes the stream id back from the id, one `XRANGE` (O(log n) in the stream's
/// radix tree). A publisher's own id goes into the id index `<stream>:ids`, a sorted set of
/// id → the millisecond part of its entry's stream id (exact in a double up to 2^53): one
/// `ZSCORE`, then the few entries of that millisecond. A reused id keeps its latest entry's.
/// The index is trimmed with the stream: once it holds 1024 ids more than the stream keeps,
/// the ids older than the stream's first entry go (amortized O(log n), and bounded).
/// KEYS: stream, epoch, index. ARGV: new epoch, MAXLEN, the id to index (empty for a
/// hub-made one), then the entry's fields and values.
const XADD_SCRIPT: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then \
     redis.call('SET', KEYS[2], ARGV[1]) redis.call('DEL', KEYS[3]) end \
     local sid = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 4)) \
     if ARGV[3] ~= '' then \
       redis.call('ZADD', KEYS[3], string.match(sid, '^%d+'), ARGV[3]) \
       if redis.call('ZCARD', KEYS[3]) > tonumber(ARGV[2]) + 1024 then \
         local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1] \
         redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. string.match(first[1], '^%d+')) \
       end \
     end \
     return sid";

/// Finds an event id in the stream: by the stream id `ARGV[3]` when the id is a hub-made one
/// (is that entry still there?), else through the index: its millisecond (O(1)), then the
/// entries of that millisecond, the latest whose `i` is the id. Returns nil when the stream
/// does not hold it, else `{its stream id, the next ARGV[2] entries after it}`.
/// KEYS: stream, index. ARGV: event id, page size, stream id or empty.
const FIND_SCRIPT: &str = "local found = false \
     if ARGV[3] ~= '' then \
       if #redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3]) == 1 then found = ARGV[3] end \
     else \
       local ms = redis.call('ZSCORE', KEYS[2], ARGV[1]) \
       if not ms then return false end \
       for _, e in ipairs(redis.call('XRANGE', KEYS[1], ms, ms)) do \
         local f = e[2] \
         for i = 1, #f, 2 do \
           if f[i] == 'i' then if f[i + 1] == ARGV[1] then found = e[1] end break end \
         end \
       end \
     end \
     if not found then return false end \
     return {found, redis.call('XRANGE', KEYS[1], '(' .. found, '+', 'COUNT', ARGV[2])}";

/// Entries read from the stream per page of an older resume.
const PAGE: usize = 512;

/// Updates written per pipelined batch.
const BATCH: usize = 256;
/// Entries asked for per `XREAD`.
const READ_COUNT: usize = 512;
/// How long one `XREAD` blocks in Redis before it answers empty.
const BLOCK: Duration = Duration::from_millis(1000);
/// Events read and not yet taken by the order's task past which the reader waits.
const READ_AHEAD: usize = 4096;
/// Longest pause between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The order in a Redis stream (see the module docs).
pub struct Redis {
    opts: Options,
    /// This process's name in the entries' origin field.
    node: String,
    capacity: usize,
    /// Submitted, not yet written to Redis.
    outbox: RefCell<VecDeque<(Update, Origin)>>,
    /// Written by this node and not read back yet: origin → when it was written.
    outstanding: RefCell<HashMap<(usize, u64), Instant>>,
    /// Read from the stream (or refused), waiting for the order's task.
    ready: RefCell<VecDeque<Next>>,
    next_seq: Cell<u64>,
    /// The reader's position: the id of the last entry read.
    last_id: RefCell<Bytes>,
    /// The stream's epoch (see [`epoch`]) when the reader last read it.
    epoch: RefCell<Bytes>,
    /// [`epoch_tag`] of `epoch`, kept with it: every entry read derives ids from it.
    tag: Cell<u64>,
    /// The stream's key and its epoch's, made once: every publish and read sends them.
    stream_key: Bytes,
    epoch_key: Bytes,
    /// The id index's key, `<stream>:ids` (see [`XADD_SCRIPT`]).
    ids_key: Bytes,
    /// The SHA1 of [`XADD_SCRIPT`], as Redis gave it when the publisher's connection loaded
    /// it: publishes send `EVALSHA` and these 40 bytes, not the script.
    publish_sha: RefCell<Bytes>,
    /// The connection that reads older events for resumes, one read at a time.
    query: RefCell<Option<Conn>>,
    query_turn: glommio::sync::Semaphore,
    /// The order's task (`poll_next`).
    taker: RefCell<Option<Waker>>,
    /// Tasks waiting for room in the outbox (`poll_ready`).
    waiting_room: RefCell<Vec<Waker>>,
    /// The publisher task, waiting for updates to write.
    publisher: RefCell<Option<Waker>>,
    /// The reader task, waiting for the order's task to catch up.
    reader: RefCell<Option<Waker>>,
    /// The publisher's connection, opened at start.
    first: RefCell<Option<Conn>>,
    /// Why publishing fails now, as the publisher last saw it (`None`: it works).
    publish_down: Cell<Option<&'static str>>,
    /// Why reading the stream fails now, as the reader last saw it.
    read_down: Cell<Option<&'static str>>,
    reconnects: Cell<u64>,
    /// Publish round trips, over `metrics::counters::LATENCY_BUCKETS` then `+Inf`.
    rtt: RefCell<EngineRtt>,
    /// Age of the newest entry at the reader's last read, in seconds.
    lag: Cell<f64>,
    /// Syncs (`Sequencer::sync`): rounds started and finished by the prober, the callers
    /// waiting for the next round, and the prober's own waker.
    sync_started: Cell<u64>,
    sync_done: Cell<u64>,
    sync_waiters: RefCell<Vec<Waker>>,
    prober: RefCell<Option<Waker>>,
    /// The prober, waiting for the reader to pass an id.
    progress: RefCell<Option<Waker>>,
}

/// The publish round-trip histogram.
#[derive(Default)]
struct EngineRtt {
    slots: [u64; LATENCY_BUCKETS.len() + 1],
    sum_ns: u64,
}

impl EngineRtt {
    fn observe(&mut self, d: Duration) {
        self.slots[latency_slot(d)] += 1;
        self.sum_ns += d.as_nanos() as u64;
    }
}

impl Redis {
    /// Connects to Redis and learns where the stream ends: the node reads what is published
    /// from then on. Fails when Redis cannot be reached within the timeout.
    pub async fn connect(opts: Options, capacity: usize) -> Result<Rc<Redis>, RedisError> {
        let (mut conn, sha) = open_publisher(&opts).await?;
        let epoch = epoch(&mut conn, &opts).await?;
        // The newest entries, newest first: the history this node serves from the start,
        // and the position its reader continues from.
        let count = opts.backfill.max(1).to_string();
        let key = opts.stream.as_bytes();
        let tail = match conn
            .call(
                &[b"XREVRANGE", key, b"+", b"-", b"COUNT", count.as_bytes()],
                opts.timeout,
            )
            .await?
        {
            Frame::Array(entries) => entries,
            other => return Err(unexpected(&other)),
        };
        let (stream_key, epoch_key) = (
            Bytes::copy_from_slice(opts.stream.as_bytes()),
            epoch_key(&opts),
        );
        let ids_key = Bytes::from(format!("{}:ids", opts.stream));
        let redis = Rc::new(Redis {
            opts,
            node: format!("{:016x}", fastrand::u64(..)),
            capacity: capacity.max(1),
            outbox: RefCell::new(VecDeque::new()),
            outstanding: RefCell::new(HashMap::new()),
            ready: RefCell::new(VecDeque::new()),
            next_seq: Cell::new(1),
            last_id: RefCell::new(Bytes::from_static(b"0-0")),
            tag: Cell::new(epoch_tag(&epoch)),
            epoch: RefCell::new(epoch),
            stream_key,
            epoch_key,
            ids_key,
            publish_sha: RefCell::new(sha),
            query: RefCell::new(None),
            query_turn: glommio::sync::Semaphore::new(1),
            taker: RefCell::new(None),
            waiting_room: RefCell::new(Vec::new()),
            publisher: RefCell::new(None),
            reader: RefCell::new(None),
            first: RefCell::new(Some(conn)),
            publish_down: Cell::new(None),
            read_down: Cell::new(None),
            reconnects: Cell::new(0),
            rtt: RefCell::new(EngineRtt::default()),
            lag: Cell::new(0.0),
            sync_started: Cell::new(0),
            sync_done: Cell::new(0),
            sync_waiters: RefCell::new(Vec::new()),
            prober: RefCell::new(None),
            progress: RefCell::new(None),
        });
        let loaded = redis.take_list(tail.into_iter().rev())?;
        tracing::info!(events = loaded, last_id = %String::from_utf8_lossy(&redis.last_id.borrow()),
            "history loaded from the Redis stream");
        Ok(redis)
    }

    /// Events placed in the order so far: right after [`Redis::connect`], the history it
    /// loaded (every core has to apply that many before it serves).
    pub fn placed(&self) -> u64 {
        self.next_seq.get() - 1
    }

    /// The publisher task: writes the queued updates to the stream, many per round trip.
    pub async fn run_publisher(self: Rc<Self>) {
        let mut conn = self.first.borrow_mut().take();
        let mut failures = 0u32;
        loop {
            // Without a connection it reconnects at once, publishes or not: the breaker
            // (`submit` refuses while down) closes again as soon as Redis is back.
            poll_fn(|cx| {
                if self.outbox.borrow().is_empty() && conn.is_some() {
                    *self.publisher.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            let mut c = match conn.take() {
                Some(c) => c,
                None => match open_publisher(&self.opts).await {
                    Ok((c, sha)) => {
                        *self.publish_sha.borrow_mut() = sha;
                        if failures > 0 {
                            tracing::info!("Redis publisher connection restored");
                            self.reconnects.set(self.reconnects.get() + 1);
                        }
                        failures = 0;
                        self.publish_down.set(None);
                        c
                    }
                    Err(e) => {
                        failures += 1;
                        if failures == 1 {
                            tracing::warn!(error = %e, "cannot reach Redis; publishes refused");
                        }
                        self.publish_down.set(Some("Redis is unreachable"));
                        self.refuse_outbox("Redis is unreachable");
                        backoff(failures).await;
                        continue;
                    }
                },
            };
            let batch = self.write_batch(&mut c);
            if batch.is_empty() {
                conn = Some(c);
                continue;
            }
            match within(self.opts.timeout, self.confirm(&mut c, &batch)).await {
                Ok(()) => {
                    self.publish_down.set(None);
                    conn = Some(c);
                }
                Err(e) => {
                    failures += 1;
                    self.publish_down
                        .set(Some("Redis did not confirm publishes"));
                    tracing::warn!(error = %e, "Redis publish failed; reconnecting");
                    // Whatever was not confirmed is refused; the connection is dropped, so a
                    // late reply cannot be taken for another command's.
                    for origin in batch {
                        if self.outstanding.borrow_mut().remove(&key(origin)).is_some() {
                            self.refuse(origin, "Redis did not confirm the publish");
                        }
                    }
                }
            }
        }
    }

    /// Queues an `XADD` for up to [`BATCH`] updates from the outbox; returns their origins.
    fn write_batch(&self, c: &mut Conn) -> Vec<Origin> {
        let mut outbox = self.outbox.borrow_mut();
        let n = outbox.len().min(BATCH);
        let mut origins = Vec::with_capacity(n);
        let now = Instant::now();
        // Per batch, not per publish: the epoch only counts if an entry creates the stream.
        let maxlen = Bytes::from(self.opts.history.to_string());
        let fresh = Bytes::from(format!("{:016x}", fastrand::u64(..)));
        for (update, origin) in outbox.drain(..n) {
            c.push(self.xadd(update, origin, &maxlen, &fresh));
            self.outstanding.borrow_mut().insert(key(origin), now);
            origins.push(origin);
        }
        drop(outbox);
        for w in self.waiting_room.borrow_mut().drain(..) {
            w.wake();
        }
        origins
    }

    /// Writes the batch and reads one reply per update: an id is stored (its publisher is
    /// answered when the reader reads it back), an error reply is refused at once.
    async fn confirm(&self, c: &mut Conn, batch: &[Origin]) -> Result<(), RedisError> {
        let sent = Instant::now();
        c.flush().await?;
        for &origin in batch {
            let reply = c.read().await?;
            self.rtt.borrow_mut().observe(sent.elapsed());
            match reply {
                Frame::BulkString(_) => {}
                Frame::Error(e) => {
                    tracing::warn!(error = %e, "Redis refused a publish");
                    if self.outstanding.borrow_mut().remove(&key(origin)).is_some() {
                        self.refuse(origin, "Redis refused the publish");
                    }
                    if e.starts_with("NOSCRIPT") {
                        // Its script cache was flushed: a new connection loads the script.
                        return Err(RedisError::Server(e.to_string()));
                    }
                }
                other => return Err(unexpected(&other)),
            }
        }
        Ok(())
    }

    /// The `XADD` of one update. Fields: `i` id, `t` topic (repeated, canonical first), `d`
    /// data, `e` event type, `r` retry, `p` private, `o` origin (`node/core/token`).
    ///
    /// Sent as [`XADD_SCRIPT`] (by its SHA1), which also gives the stream a new epoch when
    /// this entry creates it and indexes a publisher's own id. A hub-made id is not sent: the
    /// reader derives it from the stream id.
    fn xadd(&self, u: Update, origin: Origin, maxlen: &Bytes, fresh: &Bytes) -> Vec<Bytes> {
        let mut args = Vec::with_capacity(14 + 2 * u.topics.len());
        let s = |b: &'static [u8]| Bytes::from_static(b);
        args.extend([
            s(b"EVALSHA"),
            self.publish_sha.borrow().clone(),
            s(b"3"),
            self.stream_key.clone(),
            self.epoch_key.clone(),
            self.ids_key.clone(),
            fresh.clone(),
            maxlen.clone(),
        ]);
        if u.generated_id {
            args.push(Bytes::new());
        } else {
            let id = Bytes::from(u.id);
            args.extend([id.clone(), s(b"i"), id]);
        }
        for topic in u.topics {
            args.extend([s(b"t"), Bytes::from(topic)]);
        }
        args.extend([s(b"d"), Bytes::from(u.data)]);
        if let Some(t) = u.event_type {
            args.extend([s(b"e"), Bytes::from(t)]);
        }
        if let Some(r) = u.retry {
            args.extend([s(b"r"), Bytes::from(r.to_string())]);
        }
        if u.private {
            args.extend([s(b"p"), s(b"1")]);
        }
        let o = format!("{}/{}/{}", self.node, origin.core, origin.token);
        args.extend([s(b"o"), Bytes::from(o)]);
        args
    }

    /// The reader task: blocks on the stream from the last id read and yields each entry as
    /// the next event.
    pub async fn run_reader(self: Rc<Self>) {
        let mut conn: Option<Conn> = None;
        let mut failures = 0u32;
        loop {
            // Let the order's task catch up before reading more.
            poll_fn(|cx| {
                if self.ready.borrow().len() >= READ_AHEAD {
                    *self.reader.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            self.expire_outstanding();
            let mut c = match conn.take() {
                Some(c) => c,
                None => match open(&self.opts).await {
                    Ok(c) => {
                        if failures > 0 {
                            tracing::info!("Redis reader connection restored");
                            self.reconnects.set(self.reconnects.get() + 1);
                        }
                        failures = 0;
                        c
                    }
                    Err(e) => {
                        failures += 1;
                        self.read_down.set(Some("the Redis stream cannot be read"));
                        if failures == 1 {
                            tracing::warn!(error = %e, "cannot reach Redis; reader retrying");
                        }
                        backoff(failures).await;
                        continue;
                    }
                },
            };
            let last = self.last_id.borrow().clone();
            let count = READ_COUNT.to_string();
            let block = BLOCK.as_millis().to_string();
            let args: [&[u8]; 7] = [
                b"XREAD",
                b"COUNT",
                count.as_bytes(),
                b"BLOCK",
                block.as_bytes(),
                b"STREAMS",
                self.opts.stream.as_bytes(),
            ];
            let mut args: Vec<Bytes> = args.iter().map(|a| Bytes::copy_from_slice(a)).collect();
            args.push(last);
            c.push(args);
            // The epoch is read after the entries (Redis answers a connection's commands in
            // order): if it changed, the entries may be the new stream's, read from an old
            // position, so they are dropped and read again from its start.
            c.push(vec![Bytes::from_static(b"GET"), self.epoch_key.clone()]);
            let replies = within(BLOCK + self.opts.timeout, async {
                c.flush().await?;
                let entries = c.read().await?;
                Ok((entries, c.read().await?))
            })
            .await;
            let replies = match replies.and_then(|(entries, e)| Ok((entries, epoch_of(e)?))) {
                Ok((entries, e)) if e == *self.epoch.borrow() => Ok(entries),
                Ok((_, e)) => {
                    if self.epoch.borrow().is_empty() {
                        tracing::info!("the Redis stream was created; reading it from its start");
                    } else {
                        tracing::warn!(
                            "the Redis stream was replaced (its epoch changed); history is \
                             cleared and the new stream is read from its start"
                        );
                    }
                    self.tag.set(epoch_tag(&e));
                    *self.epoch.borrow_mut() = e;
                    *self.last_id.borrow_mut() = Bytes::from_static(b"0-0");
                    self.ready.borrow_mut().push_back(Next::Reset);
                    if let Some(w) = self.taker.borrow_mut().take() {
                        w.wake();
                    }
                    conn = Some(c);
                    continue;
                }
                Err(e) => Err(e),
            };
            match replies {
                Ok(reply) => match self.take_entries(reply) {
                    Ok(n) => {
                        self.read_down.set(None);
                        let lag = match n {
                            0 => 0.0,
                            _ => placed_at(&self.last_id.borrow()).elapsed().as_secs_f64(),
                        };
                        self.lag.set(lag);
                        conn = Some(c);
                    }
                    Err(e) => tracing::warn!(error = %e, "bad stream read; reconnecting"),
                },
                Err(e) => {
                    failures += 1;
                    self.read_down.set(Some("the Redis stream cannot be read"));
                    tracing::warn!(error = %e, "Redis read failed; reconnecting");
                    backoff(failures).await;
                }
            }
        }
    }

    /// The prober task, behind [`Sequencer::sync`]: one round at a time, for every caller
    /// that arrived before it started, asks Redis for the id of the stream's newest entry on
    /// a connection of its own, then waits (within `redis_timeout`) for the reader to pass
    /// it. Any number of resumes cost Redis one `XREVRANGE … COUNT 1` per round.
    pub async fn run_prober(self: Rc<Self>) {
        let mut conn: Option<Conn> = None;
        loop {
            poll_fn(|cx| {
                if self.sync_waiters.borrow().is_empty() {
                    *self.prober.borrow_mut() = Some(cx.waker().clone());
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            let round = self.sync_started.get() + 1;
            self.sync_started.set(round);
            let probe = async {
                let mut c = match conn.take() {
                    Some(c) => c,
                    None => open(&self.opts).await?,
                };
                let key = self.opts.stream.as_bytes();
                let reply = c
                    .call(
                        &[b"XREVRANGE", key, b"+", b"-", b"COUNT", b"1"],
                        self.opts.timeout,
                    )
                    .await?;
                conn = Some(c);
                let tail = match reply {
                    Frame::Array(entries) => match entries.into_iter().next() {
                        Some(Frame::Array(entry)) => match entry.into_iter().next() {
                            Some(Frame::BulkString(id)) => Some(id),
                            other => return Err(unexpected(&other)),
                        },
                        _ => None,
                    },
                    other => return Err(unexpected(&other)),
                };
                Ok(tail)
            };
            match probe.await {
                Ok(Some(tail)) => {
                    let passed = poll_fn(|cx| {
                        if stream_id(&self.last_id.borrow()) >= stream_id(&tail) {
                            Poll::Ready(())
                        } else {
                            *self.progress.borrow_mut() = Some(cx.waker().clone());
                            Poll::Pending
                        }
                    });
                    future::or(passed, glommio::timer::sleep(self.opts.timeout)).await;
                }
                Ok(None) => {}
                // Nothing more to learn: the caller goes on with what this node has.
                Err(e) => tracing::debug!(error = %e, "stream probe failed"),
            }
            self.sync_done.set(round);
            for w in self.sync_waiters.borrow_mut().drain(..) {
                w.wake();
            }
        }
    }

    /// Turns an `XREAD` reply into events, in the stream's order.
    fn take_entries(&self, reply: Frame) -> Result<usize, RedisError> {
        let streams = match reply {
            Frame::Null => return Ok(0),
            Frame::Array(streams) => streams,
            other => return Err(unexpected(&other)),
        };
        let mut taken = 0;
        for stream in streams {
            let Frame::Array(mut parts) = stream else {
                return Err(unexpected(&stream));
            };
            let Some(Frame::Array(entries)) = parts.pop() else {
                return Err(RedisError::Protocol("stream without entries".into()));
            };
            taken += self.take_list(entries.into_iter())?;
        }
        Ok(taken)
    }

    /// Places stream entries (`[id, [field, value, …]]`, oldest first) as the next events.
    fn take_list(&self, entries: impl Iterator<Item = Frame>) -> Result<usize, RedisError> {
        let mut taken = 0;
        for entry in entries {
            let (id, fields) = split_entry(entry)?;
            match self.entry(&id, fields) {
                Some((update, origin)) => {
                    let seq = self.next_seq.get();
                    self.next_seq.set(seq + 1);
                    self.ready.borrow_mut().push_back(Next::Event(Sequenced {
                        seq,
                        frame: encode(&update),
                        update,
                        at: placed_at(&id),
                        origin,
                    }));
                    taken += 1;
                }
                None => tracing::warn!(id = %String::from_utf8_lossy(&id),
                    "stream entry is not an update; skipped"),
            }
            *self.last_id.borrow_mut() = id;
        }
        if let Some(w) = self.progress.borrow_mut().take() {
            w.wake();
        }
        if taken > 0 {
            if let Some(w) = self.taker.borrow_mut().take() {
                w.wake();
            }
        }
        Ok(taken)
    }

    /// An entry's update, and whom on this node it acknowledges.
    fn entry(&self, sid: &[u8], fields: Vec<Frame>) -> Option<(Update, Origin)> {
        let (u, o) = parse_entry(sid, self.tag.get(), fields)?;
        Some((u, o.map_or(Origin::NOBODY, |o| self.own_origin(&o))))
    }

    /// One page of [`Sequencer::older`]: the entries after the id (or after the previous
    /// page), up to this node's read position, read on the query connection.
    async fn read_older(&self, id: &str, next: Option<String>) -> Result<Option<Page>, RedisError> {
        let _turn = self
            .query_turn
            .acquire_permit(1)
            .await
            .map_err(|_| RedisError::Closed)?;
        let taken = self.query.borrow_mut().take();
        let mut c = match taken {
            Some(c) => c,
            None => open(&self.opts).await?,
        };
        let page = PAGE.to_string();
        let timeout = self.opts.timeout;
        // A hub-made id of this stream names its entry; any other goes through the index.
        let tag = self.tag.get();
        let sid = decode_id(id, tag).map_or(String::new(), |(ms, seq)| format!("{ms}-{seq}"));
        let (start, entries) = match &next {
            None => {
                let reply = c
                    .call(
                        &[
                            b"EVAL",
                            FIND_SCRIPT.as_bytes(),
                            b"2",
                            &self.stream_key,
                            &self.ids_key,
                            id.as_bytes(),
                            page.as_bytes(),
                            sid.as_bytes(),
                        ],
                        timeout,
                    )
                    .await?;
                match reply {
                    Frame::Null => {
                        *self.query.borrow_mut() = Some(c);
                        return Ok(None);
                    }
                    Frame::Array(parts) => {
                        let mut parts = parts.into_iter();
                        match (parts.next(), parts.next()) {
                            (Some(Frame::BulkString(found)), Some(Frame::Array(entries))) => {
                                (found, entries)
                            }
                            other => return Err(unexpected(&other)),
                        }
                    }
                    Frame::Error(e) => return Err(RedisError::Server(e.to_string())),
                    other => return Err(unexpected(&other)),
                }
            }
            Some(cursor) => {
                let from = format!("({cursor}");
                let reply = c
                    .call(
                        &[
                            b"XRANGE",
                            &self.stream_key,
                            from.as_bytes(),
                            b"+",
                            b"COUNT",
                            page.as_bytes(),
                        ],
                        timeout,
                    )
                    .await?;
                match reply {
                    Frame::Array(entries) => (Bytes::from(cursor.clone()), entries),
                    Frame::Error(e) => return Err(RedisError::Server(e.to_string())),
                    other => return Err(unexpected(&other)),
                }
            }
        };
        *self.query.borrow_mut() = Some(c);
        // From here on nothing waits: the reader's position and the seq it has placed are
        // one moment's, so the page ends exactly where this node's history takes over.
        let last = stream_id(&self.last_id.borrow());
        if stream_id(&start) > last {
            // Not read by this node yet (its reader is behind by more than a resume waits).
            return Ok(None);
        }
        let mut events = Vec::new();
        let mut end = start;
        let mut beyond = false;
        for entry in entries {
            let (sid, fields) = split_entry(entry)?;
            if stream_id(&sid) > last {
                beyond = true;
                break;
            }
            if let Some((u, _)) = parse_entry(&sid, tag, fields) {
                events.push(Past {
                    frame: encode(&u),
                    id: u.id,
                    topics: u.topics,
                    private: u.private,
                });
            }
            end = sid;
        }
        let next =
            (!beyond && stream_id(&end) < last).then(|| String::from_utf8_lossy(&end).into_owned());
        Ok(Some(Page {
            events,
            next,
            upto: self.placed(),
        }))
    }

    /// The publisher waiting on this node for the entry whose origin field is `o`, if any.
    fn own_origin(&self, o: &[u8]) -> Origin {
        let o = std::str::from_utf8(o).unwrap_or("");
        let mut parts = o.splitn(3, '/');
        let (Some(node), Some(core), Some(token)) = (parts.next(), parts.next(), parts.next())
        else {
            return Origin::NOBODY;
        };
        if node != self.node {
            return Origin::NOBODY;
        }
        let (Ok(core), Ok(token)) = (core.parse(), token.parse()) else {
            return Origin::NOBODY;
        };
        let origin = Origin { core, token };
        match self.outstanding.borrow_mut().remove(&key(origin)) {
            Some(_) => origin,
            // Already refused (it was confirmed too late): its publisher has its 503.
            None => Origin::NOBODY,
        }
    }

    /// Refuses the updates stored but not read back within twice the timeout (the reader is
    /// cut off): their publishers are not kept waiting.
    fn expire_outstanding(&self) {
        let limit = self.opts.timeout * 2;
        let now = Instant::now();
        let late: Vec<(usize, u64)> = self
            .outstanding
            .borrow()
            .iter()
            .filter(|(_, &at)| now.duration_since(at) > limit)
            .map(|(&k, _)| k)
            .collect();
        for (core, token) in late {
            self.outstanding.borrow_mut().remove(&(core, token));
            self.refuse(
                Origin { core, token },
                "Redis did not deliver the publish in time",
            );
        }
    }

    /// Why publishes are refused now, if they are.
    fn down(&self) -> Option<&'static str> {
        self.publish_down.get().or(self.read_down.get())
    }

    fn refuse_outbox(&self, why: &'static str) {
        let refused: Vec<Origin> = self.outbox.borrow_mut().drain(..).map(|(_, o)| o).collect();
        for origin in refused {
            self.refuse(origin, why);
        }
        for w in self.waiting_room.borrow_mut().drain(..) {
            w.wake();
        }
    }

    fn refuse(&self, origin: Origin, why: &'static str) {
        self.ready
            .borrow_mut()
            .push_back(Next::Refused { origin, why });
        if let Some(w) = self.taker.borrow_mut().take() {
            w.wake();
        }
    }
}

impl Sequencer for Redis {
    fn submit(&self, update: Update, origin: Origin) -> Result<(), Full> {
        if let Some(why) = self.down() {
            // The breaker is open: refused at once rather than after a timeout.
            self.refuse(origin, why);
            return Ok(());
        }
        let mut outbox = self.outbox.borrow_mut();
        if outbox.len() >= self.capacity {
            return Err(Full(update));
        }
        outbox.push_back((update, origin));
        drop(outbox);
        if let Some(w) = self.publisher.borrow_mut().take() {
            w.wake();
        }
        Ok(())
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.outbox.borrow().len() < self.capacity {
            return Poll::Ready(());
        }
        self.waiting_room.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        let next = self.ready.borrow_mut().pop_front();
        match next {
            Some(next) => {
                if self.ready.borrow().len() < READ_AHEAD {
                    if let Some(w) = self.reader.borrow_mut().take() {
                        w.wake();
                    }
                }
                Poll::Ready(next)
            }
            None => {
                *self.taker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn sequence_now(&self, update: Update, _origin: Origin) -> Result<Sequenced, Update> {
        // The place is Redis's to give.
        Err(update)
    }

    fn backlog(&self) -> usize {
        self.outbox.borrow().len() + self.outstanding.borrow().len() + self.ready.borrow().len()
    }

    fn sync(&self) -> Pin<Box<dyn Future<Output = u64> + '_>> {
        // The first round that starts after this call: its probe sees everything Redis
        // held now.
        let round = self.sync_started.get() + 1;
        let mut registered = false;
        Box::pin(async move {
            poll_fn(|cx| {
                if self.sync_done.get() >= round {
                    return Poll::Ready(());
                }
                if !registered {
                    registered = true;
                    if let Some(w) = self.prober.borrow_mut().take() {
                        w.wake();
                    }
                }
                self.sync_waiters.borrow_mut().push(cx.waker().clone());
                Poll::Pending
            })
            .await;
            self.placed()
        })
    }

    fn older(
        &self,
        id: String,
        next: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Option<Page>> + '_>> {
        Box::pin(async move {
            match self.read_older(&id, next).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read older events from the Redis stream");
                    None
                }
            }
        })
    }

    fn stats(&self) -> EngineStats {
        let rtt = self.rtt.borrow();
        EngineStats {
            engine: "redis",
            down: self.down(),
            reconnects: self.reconnects.get(),
            publish_rtt: rtt.slots,
            publish_rtt_sum_ns: rtt.sum_ns,
            reader_lag_seconds: self.lag.get(),
            reader_backlog: self.ready.borrow().len() as u64,
        }
    }
}

/// An entry's update and its origin field, if it is an update (a topic at least). Without
/// an `i` field its id is hub-made: derived from the stream id `sid` and the epoch's `tag`.
fn parse_entry(sid: &[u8], tag: u64, fields: Vec<Frame>) -> Option<(Update, Option<Bytes>)> {
    let mut u = Update::default();
    let mut origin = None;
    let mut fields = fields.into_iter();
    while let (Some(Frame::BulkString(f)), Some(Frame::BulkString(v))) =
        (fields.next(), fields.next())
    {
        let text = || String::from_utf8(v.to_vec()).ok();
        match &f[..] {
            b"i" => u.id = text()?,
            b"t" => u.topics.push(text()?),
            b"d" => u.data = text()?,
            b"e" => u.event_type = Some(text()?),
            b"r" => u.retry = text()?.parse().ok(),
            b"p" => u.private = &v[..] == b"1",
            b"o" => origin = Some(v),
            _ => {}
        }
    }
    if u.topics.is_empty() {
        return None;
    }
    if u.id.is_empty() {
        let (ms, seq) = stream_id(sid);
        u.id = derived_id(ms, seq, tag)?;
        u.generated_id = true;
    }
    Some((u, origin))
}

/// Bits of the epoch in a derived id.
const TAG_BITS: u32 = 42;

/// The epoch's part of derived ids: its low 42 bits (an epoch is 16 hex digits; anything
/// else is hashed).
fn epoch_tag(epoch: &[u8]) -> u64 {
    let value = std::str::from_utf8(epoch)
        .ok()
        .and_then(|e| u64::from_str_radix(e, 16).ok())
        .unwrap_or_else(|| {
            epoch.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            })
        });
    value & ((1 << TAG_BITS) - 1)
}

/// The hub-made id of the entry `ms-seq` of the stream whose epoch has `tag`: a
/// `urn:uuid:` of a version 8 (custom) UUID, RFC 9562, laid out as 48 bits of `ms`, the
/// version, 12 high bits of `seq`, the variant, 20 low bits of `seq` and 42 bits of the
/// tag. Unique per stream and time-ordered like a version 7 UUID; an id of another stream
/// (another epoch) does not decode here. `None` for a `seq` past 32 bits (never one that
/// `XADD … *` gives).
fn derived_id(ms: u64, seq: u64, tag: u64) -> Option<String> {
    if ms >= 1 << 48 || seq >= 1 << 32 {
        return None;
    }
    let hi = (ms << 16) | (0x8 << 12) | (seq >> 20);
    let lo = (0b10 << 62) | ((seq & 0xf_ffff) << TAG_BITS) | tag;
    let uuid = uuid::Uuid::from_u64_pair(hi, lo);
    let mut out = String::with_capacity(45);
    out.push_str("urn:uuid:");
    out.push_str(
        uuid.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    Some(out)
}

/// The stream id `(ms, seq)` a [`derived_id`] of the stream with epoch `tag` names.
fn decode_id(id: &str, tag: u64) -> Option<(u64, u64)> {
    let uuid = uuid::Uuid::try_parse(id.strip_prefix("urn:uuid:")?).ok()?;
    let (hi, lo) = uuid.as_u64_pair();
    let ours = (hi >> 12) & 0xf == 0x8 && lo >> 62 == 0b10;
    if !ours || lo & ((1 << TAG_BITS) - 1) != tag {
        return None;
    }
    let seq = ((hi & 0xfff) << 20) | ((lo >> TAG_BITS) & 0xf_ffff);
    Some((hi >> 16, seq))
}

/// A stream entry `[id, [field, value, …]]` in its two parts.
fn split_entry(entry: Frame) -> Result<(Bytes, Vec<Frame>), RedisError> {
    match entry {
        Frame::Array(pair) => {
            let mut pair = pair.into_iter();
            match (pair.next(), pair.next()) {
                (Some(Frame::BulkString(id)), Some(Frame::Array(fields))) => Ok((id, fields)),
                _ => Err(RedisError::Protocol("malformed entry".into())),
            }
        }
        other => Err(unexpected(&other)),
    }
}

fn key(origin: Origin) -> (usize, u64) {
    (origin.core, origin.token)
}

/// A connection for the publisher: opened, with [`XADD_SCRIPT`] loaded (Redis forgets its
/// scripts when it restarts, and a connection is opened again then). Returns the script's
/// SHA1.
async fn open_publisher(opts: &Options) -> Result<(Conn, Bytes), RedisError> {
    let mut c = open(opts).await?;
    let reply = c
        .call(&[b"SCRIPT", b"LOAD", XADD_SCRIPT.as_bytes()], opts.timeout)
        .await?;
    match reply {
        Frame::BulkString(sha) => Ok((c, sha)),
        Frame::Error(e) => Err(RedisError::Server(e.to_string())),
        other => Err(unexpected(&other)),
    }
}

async fn open(opts: &Options) -> Result<Conn, RedisError> {
    let auth = opts
        .url
        .password
        .as_deref()
        .map(|p| (opts.url.user.as_str(), p));
    Conn::open(
        opts.addr,
        opts.tls.as_ref(),
        auth,
        opts.url.db,
        opts.timeout,
    )
    .await
}

/// A stream id's two numbers (`<ms>-<seq>`), for ordering; (0, 0) when unreadable.
fn stream_id(id: &[u8]) -> (u64, u64) {
    let text = std::str::from_utf8(id).unwrap_or("");
    let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
    (ms.parse().unwrap_or(0), seq.parse().unwrap_or(0))
}

/// The key of the stream's epoch: `<stream>:epoch`.
fn epoch_key(opts: &Options) -> Bytes {
    Bytes::from(format!("{}:epoch", opts.stream))
}

/// The stream's epoch: a random value kept beside the stream, set by [`XADD_SCRIPT`] when
/// an entry creates the stream; empty while there is none. A flushed Redis, a failover to
/// an empty replica or a deleted stream gives the next stream a new one, so a changed
/// epoch tells a reader that the order it followed is gone (Centrifugo's stream epoch is
/// the model).
async fn epoch(c: &mut Conn, opts: &Options) -> Result<Bytes, RedisError> {
    epoch_of(c.call(&[b"GET", &epoch_key(opts)], opts.timeout).await?)
}

/// The epoch in a `GET` reply: empty for none.
fn epoch_of(reply: Frame) -> Result<Bytes, RedisError> {
    match reply {
        Frame::BulkString(e) => Ok(e),
        Frame::Null => Ok(Bytes::new()),
        Frame::Error(e) => Err(RedisError::Server(e.to_string())),
        other => Err(unexpected(&other)),
    }
}

/// Waits before the next attempt: jittered, doubling from 50 ms up to [`MAX_BACKOFF`].
async fn backoff(failures: u32) {
    let base = Duration::from_millis(50) * 2u32.saturating_pow(failures.min(6));
    let cap = base.min(MAX_BACKOFF);
    let jittered = cap / 2 + cap.mul_f64(fastrand::f64() / 2.0);
    glommio::timer::sleep(jittered).await;
}

/// When the entry `id` (`<ms>-<seq>`) was added, on this process's clock: its age counts
/// for `history_max_age` from then, not from when this node read it.
fn placed_at(id: &[u8]) -> Instant {
    let now = Instant::now();
    let ms = std::str::from_utf8(id)
        .ok()
        .and_then(|s| s.split('-').next())
        .and_then(|ms| ms.parse::<u64>().ok());
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    match ms {
        Some(ms) => now
            .checked_sub(wall.saturating_sub(Duration::from_millis(ms)))
            .unwrap_or(now),
        None => now,
    }
}

fn unexpected(frame: &impl std::fmt::Debug) -> RedisError {
    RedisError::Protocol(format!("{frame:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_uuids_that_decode_only_under_their_epoch() {
        let tag = epoch_tag(b"9f86d081884c7d65");
        let other = epoch_tag(b"0000000000000001");
        for (ms, seq) in [
            (1_764_772_800_123, 0),
            (1, (1 << 32) - 1),
            ((1 << 48) - 1, 77),
        ] {
            let id = derived_id(ms, seq, tag).unwrap();
            let uuid = uuid::Uuid::try_parse(&id["urn:uuid:".len()..]).unwrap();
            assert_eq!(uuid.get_version_num(), 8, "{id}");
            assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122, "{id}");
            assert_eq!(decode_id(&id, tag), Some((ms, seq)), "{id}");
            assert_eq!(decode_id(&id, other), None, "{id}");
        }
        assert_eq!(derived_id(1, 1 << 32, tag), None);
        assert_eq!(
            decode_id("urn:uuid:0191e5a0-4b2c-4c7e-9f00-000000000000", tag),
            None
        );
        assert_eq!(decode_id("custom-1", tag), None);
        // Time-ordered, like the stream.
        assert!(derived_id(5, 9, tag) < derived_id(6, 0, tag));
    }

    #[test]
    fn urls_parse_with_user_password_and_db() {
        let u = Url::parse("redis://app:s%40cret@10.0.0.5:6380/2").unwrap();
        assert_eq!(
            u,
            Url {
                tls: false,
                host: "10.0.0.5".into(),
                port: 6380,
                user: "app".into(),
                password: Some("s@cret".into()),
                db: 2,
            }
        );
        let u = Url::parse("redis://:pw@localhost").unwrap();
        assert_eq!(
            (u.port, u.user.as_str(), u.password.as_deref(), u.db),
            (6379, "", Some("pw"), 0)
        );
        assert!(matches!(Url::parse("http://x"), Err(UrlError::Scheme)));
        let u = Url::parse("rediss://cache.internal:6380").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "cache.internal", 6380)
        );
        assert!(matches!(Url::parse("redis:/x"), Err(UrlError::Scheme)));
        assert!(matches!(Url::parse("redis://x/abc"), Err(UrlError::Db)));
        assert!(Url::parse("not a url").is_err());
        assert!(matches!(Url::parse("redis://x:0"), Err(UrlError::Port)));
        assert!(matches!(Url::parse("redis://x:99999"), Err(UrlError::Port)));
        assert!(matches!(Url::parse("redis://x?db=1"), Err(UrlError::Query)));
        assert!(matches!(Url::parse("redis://:pw@"), Err(UrlError::Host)));
        let u = Url::parse("redis://[::1]:7000/3").unwrap();
        assert!(!u.tls);
        assert_eq!((u.host.as_str(), u.port, u.db), ("::1", 7000, 3));
        let u = Url::parse("redis://secret@h").unwrap();
        assert_eq!(
            (u.user.as_str(), u.password.as_deref()),
            ("", Some("secret"))
        );
    }
}
