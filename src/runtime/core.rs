//! One core: its state, its tasks, and ④ the sequencer that gives every event its place in
//! the one order all cores share.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use event_listener::Event as Notify;
use futures_channel::oneshot;
use futures_lite::future;
use glommio::channels::channel_mesh::{Receivers, Senders};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};

use super::stats::Snapshot;
use super::{Boot, Stats};
use crate::access_log::{AccessLog, Record};
use crate::auth::Verifier;
use crate::clock::unix_millis;
use crate::config::Config;
use crate::error::HttpError;
use crate::http::Cors;
use crate::hub::event::{encode, Event, Update};
use crate::hub::history::History;
use crate::hub::shard::Shard;
use crate::hub::subscriptions::SubscriptionInfo;
use crate::hub::FastMap;
use crate::net::{listener, sys};

/// The core that sequences every event (single-node mode).
pub const SEQUENCER: usize = 0;

/// Who is waiting for a publish to be sequenced.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// Core that accepted the POST.
    pub core: usize,
    /// Key of the waiting publisher in that core's pending table.
    pub token: u64,
}

/// Messages between cores: the only values that cross threads.
#[derive(Debug)]
pub enum CoreMsg {
    /// To the sequencer: an update accepted on another core.
    Publish {
        /// Where to acknowledge.
        origin: Origin,
        /// The validated update.
        update: Update,
    },
    /// From the sequencer: an event in its final place and bytes.
    Event {
        /// Position in the shared order.
        seq: u64,
        /// SSE id.
        id: String,
        /// Topics for matching.
        topics: Vec<String>,
        /// Private update.
        private: bool,
        /// Encoded SSE bytes (copied into core-local memory on arrival).
        frame: Bytes,
        /// Sequencing time.
        at: Instant,
        /// The publisher to acknowledge, if it is on the receiving core.
        origin: Origin,
    },
    /// To the sequencer, at shutdown: this core has no publish in flight any more.
    Drained,
    /// To the sequencer: where is this event id in the order (a resume on a core that has
    /// not received it yet)?
    Locate {
        /// Core to answer.
        origin: Origin,
        /// The `Last-Event-ID` asked for.
        id: String,
    },
    /// The answer to [`CoreMsg::Locate`]: the event's seq, if the sequencer knows it.
    Located {
        /// The request's token on the asking core.
        token: u64,
        /// Seq of the id in the sequencer's history.
        seq: Option<u64>,
    },
    /// To every other core: report something about yourself.
    Query {
        /// Core to answer.
        origin: Origin,
        /// What to report.
        kind: QueryKind,
    },
    /// The answer to [`CoreMsg::Query`].
    Answer {
        /// The request's token on the asking core.
        token: u64,
        /// The report.
        answer: Answer,
    },
    /// From the sequencer, at shutdown: every event has been sent; close subscribers.
    Flush,
}

/// What a core can be asked about by another (answered from its own state, no lock).
#[derive(Debug, Clone, Copy)]
pub enum QueryKind {
    /// Its active subscriptions (subscriptions API).
    Subscriptions,
    /// Its counters (metrics).
    Stats,
}

/// A core's report.
#[derive(Debug)]
pub enum Answer {
    /// Active subscriptions.
    Subscriptions(Vec<SubscriptionInfo>),
    /// Counters and gauges.
    Stats(Box<Snapshot>),
}

/// A question to every core waiting for their answers.
struct Gathering {
    answers: Vec<Answer>,
    remaining: usize,
    done: Option<oneshot::Sender<Vec<Answer>>>,
}

/// A core's state, shared by its tasks through `Rc` (never across threads).
pub struct Core {
    /// This core's index, 0-based (core 0 is the sequencer).
    pub index: usize,
    /// Number of cores.
    pub workers: usize,
    /// The configuration.
    pub cfg: Arc<Config>,
    /// Local subscribers and their selector index.
    pub shard: RefCell<Shard>,
    /// The shared-order history, identical on every core.
    pub history: RefCell<History>,
    /// Publisher token verifier.
    pub publisher_auth: Verifier,
    /// Subscriber token verifier (the publisher's key when none is configured).
    pub subscriber_auth: Verifier,
    /// CORS policy.
    pub cors: Cors,
    /// TLS configuration of the client listener, replaced on SIGHUP (new handshakes use the
    /// new certificate; established connections keep theirs).
    pub tls: RefCell<Option<Arc<rustls::ServerConfig>>>,
    next_serial: Cell<u64>,
    /// Open connections on all cores, for `max_connections` (touched once per accept and
    /// close, never per event).
    pub conns: Arc<AtomicUsize>,
    /// This core's counters.
    pub stats: Stats,
    /// This core's access log buffer, when `access_log` is on.
    pub access_log: Option<AccessLog>,
    liveness: super::Liveness,
    mesh: Senders<CoreMsg>,
    /// Core 0 only: the sequencer's inbox (local and remote publishes, in arrival order).
    sequencer_tx: Option<LocalSender<(Update, Origin)>>,
    /// Publishers on this core waiting for their event to come back sequenced.
    pending: RefCell<FastMap<u64, oneshot::Sender<()>>>,
    /// Questions to the other cores waiting for their answers.
    gatherings: RefCell<FastMap<u64, Gathering>>,
    /// Resumes waiting for the sequencer to locate an id.
    locating: RefCell<FastMap<u64, oneshot::Sender<Option<u64>>>>,
    /// Seq of the last event applied on this core.
    applied_seq: Cell<u64>,
    /// Tasks waiting for `applied_seq` to reach a value (so apply notifies only then).
    seq_waiters: Cell<usize>,
    /// Core 0 only: updates in the sequencer's inbox or being sequenced.
    sequencing: Cell<usize>,
    /// Core 0 only: the seq the next sequenced update gets.
    next_seq: Cell<u64>,
    next_token: Cell<u64>,
    inflight: Cell<usize>,
    stopping: Cell<bool>,
    drained_peers: Cell<usize>,
    flushed: Cell<bool>,
    /// Woken on every state change that a waiting task may care about (stop, counters
    /// reaching zero, shutdown hand-offs).
    changed: Notify,
    /// Woken once, when the core is told to stop (see `stopped`).
    stop: Notify,
}

impl Core {
    /// Whether the core has been told to stop.
    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    /// Resolves once the core has been told to stop.
    ///
    /// Woken by the stop alone, not by every state change: the accept loop and each idle
    /// keep-alive connection wait on this beside another future, and a spurious wake re-polls
    /// that one too. glommio's `accept` keeps one more clone of the task's waker on every poll
    /// while it is pending, and a task's waker count is an `i16`: the accept loop of a core
    /// woken 32,767 times between two connections (one wake per publish, when every state
    /// change woke it) panicked and took the core down.
    pub async fn stopped(&self) {
        Self::wait_on(&self.stop, || self.stopping.get()).await
    }

    async fn wait_until(&self, cond: impl Fn(&Core) -> bool) {
        Self::wait_on(&self.changed, || cond(self)).await
    }

    async fn wait_on(event: &Notify, cond: impl Fn() -> bool) {
        loop {
            if cond() {
                return;
            }
            let listener = event.listen();
            if cond() {
                return;
            }
            listener.await;
        }
    }

    fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    /// A number no other subscriber of this core has had.
    pub fn next_serial(&self) -> u64 {
        let n = self.next_serial.get();
        self.next_serial.set(n + 1);
        n
    }

    /// Writes a request's access log line, when the access log is on.
    pub fn log_access(&self, record: &Record<'_>) {
        if let Some(log) = &self.access_log {
            Stats::add(&self.stats.access_log_dropped, log.record(record));
        }
    }

    /// Hands the buffered access log lines to the writer thread (never waits).
    fn flush_access_log(&self) {
        if let Some(log) = &self.access_log {
            Stats::add(&self.stats.access_log_dropped, log.flush());
        }
    }

    /// Called when a subscriber leaves the shard, so shutdown can see the shard empty.
    pub fn subscriber_gone(&self) {
        if self.stopping.get() {
            self.notify();
        }
    }

    /// Hands an update to the sequencer and waits until it is sequenced and visible on this
    /// core. Never waits on a full queue: a full sequencer inbox is a 503.
    pub async fn publish(&self, update: Update) -> Result<(), HttpError> {
        if self.stopping.get() {
            return Err(HttpError::Unavailable("shutting down"));
        }
        let token = self.token();
        if self.workers == 1 && self.sequencing.get() == 0 {
            // One core, and nothing ahead of this update in the sequencer's inbox: sequence
            // it here, in the same order the sequencer would, without two task switches, a
            // channel and a oneshot per publish (measured in bench-results/).
            let origin = Origin {
                core: self.index,
                token,
            };
            let peers = self.sequence(update, origin);
            debug_assert!(peers.is_empty());
            Stats::add(&self.stats.published, 1);
            return Ok(());
        }
        let (tx, rx) = oneshot::channel();
        self.pending.borrow_mut().insert(token, tx);
        if let Err(e) = self.send_to_sequencer(update, token) {
            self.pending.borrow_mut().remove(&token);
            return Err(e);
        }
        self.inflight.set(self.inflight.get() + 1);
        let done = rx.await;
        self.inflight.set(self.inflight.get() - 1);
        if self.inflight.get() == 0 {
            self.notify();
        }
        Stats::add(&self.stats.published, 1);
        done.map_err(|_| HttpError::Unavailable("shutting down"))
    }

    /// Hands an update the gateway makes itself (subscription events) to the sequencer,
    /// without waiting for it. Dropped when stopping (returns true: nothing is lost that a
    /// client could still see) or when the inbox is full (returns false, for the caller to
    /// log with its connection's id).
    #[must_use]
    pub fn submit(&self, update: Update) -> bool {
        if self.stopping.get() {
            return true;
        }
        let token = self.token();
        self.send_to_sequencer(update, token).is_ok()
    }

    fn token(&self) -> u64 {
        let token = self.next_token.get();
        self.next_token.set(token + 1);
        token
    }

    fn send_to_sequencer(&self, update: Update, token: u64) -> Result<(), HttpError> {
        let origin = Origin {
            core: self.index,
            token,
        };
        let sent = match &self.sequencer_tx {
            Some(seq) => {
                let ok = seq.try_send((update, origin)).is_ok();
                if ok {
                    self.sequencing.set(self.sequencing.get() + 1);
                }
                ok
            }
            None => self
                .mesh
                .try_send_to(SEQUENCER, CoreMsg::Publish { origin, update })
                .is_ok(),
        };
        if sent {
            Ok(())
        } else {
            Err(HttpError::Unavailable("publish queue full"))
        }
    }

    /// Makes sure this core has applied the event `id` names, if the sequencer has it: a
    /// client that saw it on another core (which may be a few events ahead of this one)
    /// must resume after it here, not from the start. Bounded by `limit`.
    pub async fn catch_up_to(&self, id: &str, limit: std::time::Duration) {
        if self.index == SEQUENCER || self.history.borrow().contains(id) {
            return;
        }
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        self.locating.borrow_mut().insert(token, tx);
        let origin = Origin {
            core: self.index,
            token,
        };
        let ask = CoreMsg::Locate {
            origin,
            id: id.to_owned(),
        };
        let wait = async {
            if self.mesh.send_to(SEQUENCER, ask).await.is_err() {
                return;
            }
            if let Ok(Some(seq)) = rx.await {
                self.seq_waiters.set(self.seq_waiters.get() + 1);
                self.wait_until(|c| c.applied_seq.get() >= seq).await;
                self.seq_waiters.set(self.seq_waiters.get() - 1);
            }
        };
        future::or(wait, glommio::timer::sleep(limit)).await;
        self.locating.borrow_mut().remove(&token);
    }

    /// This core's answer to `kind`.
    pub fn answer(&self, kind: QueryKind) -> Answer {
        match kind {
            QueryKind::Subscriptions => Answer::Subscriptions(self.shard.borrow().subscriptions()),
            QueryKind::Stats => {
                let shard = self.shard.borrow();
                Answer::Stats(Box::new(self.stats.snapshot(
                    self.index,
                    shard.len() as u64,
                    shard.queued_bytes() as u64,
                    self.history.borrow().len() as u64,
                )))
            }
        }
    }

    /// Every core's answer to `kind` (this one's first), gathered through the mesh.
    pub async fn gather(&self, kind: QueryKind) -> Result<Vec<Answer>, HttpError> {
        let mine = self.answer(kind);
        if self.workers == 1 {
            return Ok(vec![mine]);
        }
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        self.gatherings.borrow_mut().insert(
            token,
            Gathering {
                answers: vec![mine],
                remaining: self.workers - 1,
                done: Some(tx),
            },
        );
        let origin = Origin {
            core: self.index,
            token,
        };
        for peer in (0..self.workers).filter(|&p| p != self.index) {
            if self
                .mesh
                .send_to(peer, CoreMsg::Query { origin, kind })
                .await
                .is_err()
            {
                self.gatherings.borrow_mut().remove(&token);
                return Err(HttpError::Unavailable("a core is not answering"));
            }
        }
        rx.await
            .map_err(|_| HttpError::Unavailable("shutting down"))
    }

    /// The active subscriptions of every core.
    pub async fn gather_subscriptions(&self) -> Result<Vec<SubscriptionInfo>, HttpError> {
        let mut all = Vec::new();
        for answer in self.gather(QueryKind::Subscriptions).await? {
            if let Answer::Subscriptions(list) = answer {
                all.extend(list);
            }
        }
        Ok(all)
    }

    fn take_answer(&self, token: u64, answer: Answer) {
        let mut gatherings = self.gatherings.borrow_mut();
        let Some(g) = gatherings.get_mut(&token) else {
            return;
        };
        g.answers.push(answer);
        g.remaining -= 1;
        if g.remaining == 0 {
            if let Some(g) = gatherings.remove(&token) {
                if let Some(done) = g.done {
                    let _ = done.send(g.answers);
                }
            }
        }
    }

    /// The sequencer's step (core 0): numbers the update, encodes it once, applies it here and
    /// returns the messages that carry it to every other core. Applied here first: the
    /// sequencer's core is never behind another core, so it is the authority a resuming core
    /// asks about an id it does not know yet.
    fn sequence(&self, update: Update, origin: Origin) -> Vec<(usize, CoreMsg)> {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        let frame = encode(&update);
        let at = Instant::now();
        let peers: Vec<_> = (0..self.workers)
            .filter(|&p| p != self.index)
            .map(|peer| {
                let msg = CoreMsg::Event {
                    seq,
                    id: update.id.clone(),
                    topics: update.topics.clone(),
                    private: update.private,
                    frame: frame.clone(),
                    at,
                    origin,
                };
                (peer, msg)
            })
            .collect();
        self.apply(
            Event {
                seq,
                id: update.id.into(),
                topics: update.topics.into_iter().map(Into::into).collect(),
                private: update.private,
                frame,
                at,
            },
            origin,
        );
        peers
    }

    /// Applies a sequenced event on this core: history, local fan-out, and the waiting
    /// publisher's acknowledgement.
    fn apply(&self, ev: Event, origin: Origin) {
        self.applied_seq.set(ev.seq);
        if self.seq_waiters.get() > 0 {
            self.notify();
        }
        let ev = Rc::new(ev);
        {
            let mut h = self.history.borrow_mut();
            h.expire(ev.at);
            h.push(ev.clone());
        }
        let out = self.shard.borrow_mut().fan_out(&ev);
        Stats::add(&self.stats.delivered, out.delivered as u64);
        Stats::add(&self.stats.slow_consumers, out.dropped as u64);
        if out.dropped > 0 {
            tracing::info!(
                core = self.index,
                dropped = out.dropped,
                "slow subscribers disconnected"
            );
        }
        if origin.core == self.index {
            if let Some(tx) = self.pending.borrow_mut().remove(&origin.token) {
                let _ = tx.send(());
            }
        }
    }
}

/// ④ The sequencer (core 0): one task, one inbox, one order. Each update is sequenced
/// (`Core::sequence`: numbered, encoded once, applied here) and then sent to every other core.
/// With one core, a publish that finds the inbox empty is sequenced by its own connection
/// (`Core::publish`), which gives the same order without the hop.
async fn run_sequencer(core: Rc<Core>, inbox: LocalReceiver<(Update, Origin)>) {
    while let Some((update, origin)) = inbox.recv().await {
        let peers = core.sequence(update, origin);
        for (peer, msg) in peers {
            // Waits only if that core is behind by MESH_CAPACITY events: back-pressure
            // between cores, never on a subscriber.
            if core.mesh.send_to(peer, msg).await.is_err() {
                tracing::warn!(peer, "core channel closed; event not forwarded");
            }
        }
        core.sequencing.set(core.sequencing.get() - 1);
        if core.sequencing.get() == 0 {
            core.notify();
        }
    }
}

/// Receives what `peer` sends this core, in order.
async fn run_receiver(core: Rc<Core>, receivers: Rc<Receivers<CoreMsg>>, peer: usize) {
    while let Ok(Some(msg)) = receivers.recv_from(peer).await {
        match msg {
            CoreMsg::Publish { origin, update } => {
                if let Some(tx) = &core.sequencer_tx {
                    core.sequencing.set(core.sequencing.get() + 1);
                    if tx.send((update, origin)).await.is_err() {
                        core.sequencing.set(core.sequencing.get() - 1);
                    }
                }
            }
            CoreMsg::Query { origin, kind } => {
                let reply = CoreMsg::Answer {
                    token: origin.token,
                    answer: core.answer(kind),
                };
                let _ = core.mesh.send_to(origin.core, reply).await;
            }
            CoreMsg::Answer { token, answer } => core.take_answer(token, answer),
            CoreMsg::Locate { origin, id } => {
                let seq = core.history.borrow().seq_of(&id);
                let reply = CoreMsg::Located {
                    token: origin.token,
                    seq,
                };
                let _ = core.mesh.send_to(origin.core, reply).await;
            }
            CoreMsg::Located { token, seq } => {
                if let Some(tx) = core.locating.borrow_mut().remove(&token) {
                    let _ = tx.send(seq);
                }
            }
            CoreMsg::Event {
                seq,
                id,
                topics,
                private,
                frame,
                at,
                origin,
            } => core.apply(
                Event {
                    seq,
                    id: id.into(),
                    topics: topics.into_iter().map(Into::into).collect(),
                    private,
                    // One copy per core, so subscribers here clone a core-local refcount
                    // instead of bouncing one cache line between cores per delivery.
                    frame: Bytes::copy_from_slice(&frame),
                    at,
                },
                origin,
            ),
            CoreMsg::Drained => {
                core.drained_peers.set(core.drained_peers.get() + 1);
                core.notify();
            }
            CoreMsg::Flush => {
                core.flushed.set(true);
                core.notify();
            }
        }
    }
}

/// The per-core sweep. Heartbeats: each tick visits one slice of the table, so idle
/// subscribers get their `:` line about every `heartbeat_interval`, spread over it. Token
/// expiry and stream lifetimes: each tick (at most a second apart) ends the subscribers whose
/// deadline passed.
async fn run_heartbeats(core: Rc<Core>) {
    let interval = core.cfg.heartbeat_interval;
    let phases = (interval.as_millis() / 5).clamp(1, 16) as usize;
    let phases = phases.max(interval.as_secs() as usize).min(3600);
    let tick = interval / phases as u32;
    let mut phase = 0;
    while !core.stopping.get() {
        future::or(glommio::timer::sleep(tick), core.stopped()).await;
        if core.stopping.get() {
            break;
        }
        let now = Instant::now();
        core.liveness.tick(core.index);
        core.flush_access_log();
        let mut shard = core.shard.borrow_mut();
        let sent = shard.heartbeat_step(phase, phases, now, interval);
        let expired = shard.deadlines(unix_millis());
        drop(shard);
        Stats::add(&core.stats.heartbeats, sent as u64);
        Stats::add(&core.stats.tokens_expired, expired.tokens as u64);
        Stats::add(&core.stats.lifetimes_ended, expired.lifetimes as u64);
        if phase == 0 {
            core.history.borrow_mut().expire(now);
        }
        phase = (phase + 1) % phases;
    }
}

/// A core's life: build its state, start its tasks, report ready, serve until told to stop,
/// then shut down in order.
pub(super) async fn run(boot: Arc<Boot>, mesh: Senders<CoreMsg>, receivers: Receivers<CoreMsg>) {
    let index = mesh.peer_id();
    let cfg = boot.cfg.clone();
    let (sequencer_tx, sequencer_rx) = if index == SEQUENCER {
        let (tx, rx) = local_channel::new_bounded(super::MESH_CAPACITY);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let publisher_auth = Verifier::new(cfg.publisher_jwt_algorithm, &boot.publisher_key);
    let subscriber_auth = match &cfg.subscriber_jwt_key {
        Some(key) => Verifier::new(cfg.subscriber_jwt_algorithm, key),
        None => Verifier::new(cfg.publisher_jwt_algorithm, &boot.publisher_key),
    };
    let (publisher_auth, subscriber_auth) = match (publisher_auth, subscriber_auth) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(core = index, error = %e, "invalid JWT key");
            return;
        }
    };
    let core = Rc::new(Core {
        index,
        workers: boot.workers,
        shard: RefCell::new(
            Shard::new(cfg.max_queued_bytes).template_budget(cfg.max_template_bytes),
        ),
        history: RefCell::new(History::new(cfg.history_size, cfg.history_max_age)),
        publisher_auth,
        subscriber_auth,
        cors: Cors::new(&cfg.cors_origins),
        tls: RefCell::new(boot.tls.clone()),
        next_serial: Cell::new(0),
        conns: boot.conns.clone(),
        stats: Stats::default(),
        access_log: boot.access_log.clone().map(|tx| AccessLog::new(index, tx)),
        liveness: boot.liveness.clone(),
        mesh,
        sequencer_tx,
        pending: RefCell::new(FastMap::default()),
        gatherings: RefCell::new(FastMap::default()),
        locating: RefCell::new(FastMap::default()),
        applied_seq: Cell::new(0),
        seq_waiters: Cell::new(0),
        sequencing: Cell::new(0),
        next_seq: Cell::new(1),
        next_token: Cell::new(0),
        inflight: Cell::new(0),
        stopping: Cell::new(false),
        drained_peers: Cell::new(0),
        flushed: Cell::new(false),
        changed: Notify::new(),
        stop: Notify::new(),
        cfg,
    });
    let fd = boot.listeners.lock().ok().and_then(|mut l| l[index].take());
    let stop_rx = boot.stop_rx.lock().ok().and_then(|mut s| s[index].take());
    if let Some(reload) = boot
        .tls_reload
        .lock()
        .ok()
        .and_then(|mut r| r[index].take())
    {
        let core = core.clone();
        glommio::spawn_local(async move {
            while let Ok(config) = reload.recv_async().await {
                *core.tls.borrow_mut() = Some(config);
                tracing::info!(core = core.index, "TLS certificate reloaded");
            }
        })
        .detach();
    }
    let (Some(fd), Some(stop_rx)) = (fd, stop_rx) else {
        tracing::error!(core = index, "no listener handed to this core");
        return;
    };

    if let Some(rx) = sequencer_rx {
        glommio::spawn_local(run_sequencer(core.clone(), rx)).detach();
    }
    let receivers = Rc::new(receivers);
    for peer in (0..core.workers).filter(|&p| p != index) {
        glommio::spawn_local(run_receiver(core.clone(), receivers.clone(), peer)).detach();
    }
    core.liveness.tick(index);
    glommio::spawn_local(run_heartbeats(core.clone())).detach();
    glommio::spawn_local(crate::conn::flusher::run(core.clone())).detach();
    if index == SEQUENCER {
        if let Some(admin) = boot.admin.lock().ok().and_then(|mut a| a.take()) {
            glommio::spawn_local(crate::conn::admin::run(
                core.clone(),
                sys::glommio_listener(admin),
            ))
            .detach();
        }
    }
    let accept = glommio::spawn_local(listener::run(core.clone(), sys::glommio_listener(fd)));
    let _ = boot.ready.send(index);
    tracing::debug!(core = index, "core serving");

    let _ = stop_rx.recv_async().await;
    shutdown(&core).await;
    accept.await;
    core.flush_access_log();
    let s = &core.stats;
    tracing::info!(
        core = index,
        accepted = s.accepted.get(),
        subscribed = s.subscribed.get(),
        published = s.published.get(),
        delivered = s.delivered.get(),
        slow_consumers = s.slow_consumers.get(),
        "core stopped"
    );
}

/// Ordered shutdown: stop accepting and close idle publisher connections; let publishes in
/// flight finish on every core; then, once the sequencer has sent its last event to every
/// core, flush each subscriber's queue and close it so clients reconnect elsewhere.
async fn shutdown(core: &Rc<Core>) {
    core.stopping.set(true);
    core.stop.notify(usize::MAX);
    core.notify();
    core.wait_until(|c| c.inflight.get() == 0).await;
    if core.index == SEQUENCER {
        core.wait_until(|c| c.drained_peers.get() == c.workers - 1)
            .await;
        // Updates the gateway submitted without waiting (subscription events) may still be
        // in the inbox: sequence them before the last Flush.
        core.wait_until(|c| c.sequencing.get() == 0).await;
    }
    if core.workers > 1 {
        if core.index == SEQUENCER {
            for peer in 1..core.workers {
                let _ = core.mesh.send_to(peer, CoreMsg::Flush).await;
            }
        } else {
            let _ = core.mesh.send_to(SEQUENCER, CoreMsg::Drained).await;
            core.wait_until(|c| c.flushed.get()).await;
        }
    }
    drain_subscribers(core).await;
    core.wait_until(|c| c.shard.borrow().is_empty()).await;
}

/// Closes this core's subscribers spread over `drain_period` rather than all at once, so
/// their reconnections (to another process on the same port, or after a restart) do not
/// arrive as one storm. Each gets a final `retry:` hint (jittered 100–1000 ms) so it
/// reconnects promptly instead of after the browser's default delay.
async fn drain_subscribers(core: &Rc<Core>) {
    const STEPS: usize = 20;
    let period = core.cfg.drain_period;
    if period.is_zero() {
        core.shard.borrow_mut().drain_all();
        return;
    }
    let step = period / STEPS as u32;
    for part in 0..STEPS {
        let retry = bytes::Bytes::from(format!("retry: {}\n\n", fastrand::u32(100..1000)));
        let drained = core
            .shard
            .borrow_mut()
            .drain_slice(part, STEPS, Some(&retry));
        tracing::debug!(core = core.index, part, drained, "draining subscribers");
        if part + 1 < STEPS && !core.shard.borrow().is_empty() {
            glommio::timer::sleep(step).await;
        }
    }
}
