//! One core's state and its cross-core duties. Owns: the per-core state a connection's
//! handlers may touch (the `pub` fields: configuration, shard, history, verifiers, CORS,
//! TLS, counters, access log) and, privately, the plumbing they may not: the mesh, the order
//! ([`Sequencer`], on the sequencing core), the table of questions, the lifecycle. May call:
//! `hub`, `auth`, `config`, `metrics`, `access_log`, `http` (CORS), `error`.
//!
//! Handlers reach the rest of the gateway only through the methods here: [`Core::publish`],
//! [`Core::submit`], [`Core::catch_up_to`], [`Core::gather`], and the lifecycle's
//! [`Core::stopped`] / [`Core::is_stopping`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event as Notify;
use futures_lite::future::{self, poll_fn};
use glommio::channels::channel_mesh::{Receivers, Senders};

use super::lifecycle::{Lifecycle, Phase};
use super::mesh::{CoreMsg, Question, Reply, Requests};
use super::Liveness;
use crate::access_log::{AccessLog, Record};
use crate::auth::Verifier;
use crate::config::Config;
use crate::error::HttpError;
use crate::http::Cors;
use crate::hub::event::{Event, Update};
use crate::hub::history::History;
use crate::hub::sequencer::{Full, Next, Origin, Page, Sequenced, Sequencer};
use crate::hub::shard::Shard;
use crate::hub::subscriptions::SubscriptionInfo;
use crate::metrics::counters::Stats;

/// The core that sequences every event (single-node mode).
pub const SEQUENCER: usize = 0;

/// Why an update the gateway made itself was not handed to the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSubmitted {
    /// The core is stopping: no client will see it anyway.
    Stopping,
    /// The order's inbox is full: it is lost (the caller logs it).
    Full,
}

/// The order's inbox, or the channel to it, is full.
struct QueueFull;

/// What a core is built from (see `server`).
pub struct Parts {
    /// This core's index (its mesh peer id).
    pub index: usize,
    /// Number of cores.
    pub workers: usize,
    /// The configuration.
    pub cfg: Arc<Config>,
    /// Publisher token verifier.
    pub publisher_auth: Verifier,
    /// Subscriber token verifier.
    pub subscriber_auth: Verifier,
    /// TLS configuration at start, if TLS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Open connections on all cores.
    pub conns: Arc<AtomicUsize>,
    /// This core's access log buffer, when the access log is on.
    pub access_log: Option<AccessLog>,
    /// Every core's last sign of life.
    pub liveness: Liveness,
    /// The order's source, given to the sequencing core only.
    pub order: Option<Rc<dyn Sequencer>>,
    /// This core's senders on the mesh.
    pub mesh: Senders<CoreMsg>,
}

/// A core's state, shared by its tasks through `Rc` (never across threads).
pub struct Core {
    /// This core's index, 0-based (core 0 is the sequencer).
    pub index: usize,
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
    /// Open connections on all cores, for `max_connections` (touched once per accept and
    /// close, never per event).
    pub conns: Arc<AtomicUsize>,
    /// This core's counters.
    pub stats: Stats,
    /// This core's access log buffer, when `access_log` is on.
    pub access_log: Option<AccessLog>,
    next_serial: Cell<u64>,
    workers: usize,
    liveness: Liveness,
    life: Lifecycle,
    mesh: Senders<CoreMsg>,
    /// Sequencing core only: where the order comes from.
    order: Option<Rc<dyn Sequencer>>,
    /// Sequencing core only: events taken from the order and not yet sent to every core.
    broadcasting: Cell<usize>,
    /// Sequencing core only: cores that reported no publish in flight (shutdown).
    drained_peers: Cell<usize>,
    /// Questions to other cores (and publishes) waiting for their answers.
    requests: Requests<Reply>,
    /// Seq of the last event applied on this core.
    applied_seq: Cell<u64>,
    /// Resumes waiting for `applied_seq` to reach a value (so apply notifies only then).
    seq_waiters: Cell<usize>,
    applied: Notify,
}

impl Core {
    fn new(p: Parts) -> Core {
        let cfg = p.cfg;
        Core {
            index: p.index,
            shard: RefCell::new(
                Shard::new(cfg.max_queued_bytes).template_budget(cfg.max_template_bytes),
            ),
            history: RefCell::new(History::new(cfg.history_size, cfg.history_max_age)),
            publisher_auth: p.publisher_auth,
            subscriber_auth: p.subscriber_auth,
            cors: Cors::new(&cfg.cors_origins),
            tls: RefCell::new(p.tls),
            conns: p.conns,
            stats: Stats::default(),
            access_log: p.access_log,
            next_serial: Cell::new(0),
            workers: p.workers,
            liveness: p.liveness,
            life: Lifecycle::default(),
            mesh: p.mesh,
            order: p.order,
            broadcasting: Cell::new(0),
            drained_peers: Cell::new(0),
            requests: Requests::default(),
            applied_seq: Cell::new(0),
            seq_waiters: Cell::new(0),
            applied: Notify::new(),
            cfg,
        }
    }

    /// Whether the core has been told to stop.
    pub fn is_stopping(&self) -> bool {
        !self.life.is_serving()
    }

    /// Resolves once the core has been told to stop (woken by that alone, see
    /// [`Lifecycle`]).
    pub async fn stopped(&self) {
        self.life.stopped().await
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
        if self.is_stopping() {
            self.life.notify();
        }
    }

    /// Hands an update to the order and waits until it is sequenced and visible on this
    /// core; returns its id (the order's engine may give a hub-made id its own, see
    /// [`Update::generated_id`]). Never waits on a full queue: a full inbox is a 503.
    pub async fn publish(&self, update: Update) -> Result<Box<str>, HttpError> {
        let Some(_inflight) = self.life.begin_publish() else {
            return Err(HttpError::Unavailable("shutting down"));
        };
        let mut update = update;
        if self.workers == 1 {
            if let Some(order) = &self.order {
                // One core, and nothing ahead of this update: sequence it here, in the order
                // the sequencer task would, without two task switches, a queue and a oneshot
                // per publish (measured in bench-results/).
                let origin = Origin {
                    core: self.index,
                    token: self.requests.token(),
                };
                match order.sequence_now(update, origin) {
                    Ok(s) => {
                        let id = s.update.id.as_str().into();
                        let peers = self.distribute(s);
                        debug_assert!(peers.is_empty());
                        Stats::add(&self.stats.published, 1);
                        return Ok(id);
                    }
                    Err(back) => update = back,
                }
            }
        }
        let (token, rx) = self.requests.ask(Vec::new(), 1);
        if self.send_to_order(update, token).is_err() {
            self.requests.forget(token);
            return Err(HttpError::Unavailable("publish queue full"));
        }
        match rx.await {
            Ok(mut replies) => match replies.pop() {
                Some(Reply::Sequenced(id)) => {
                    Stats::add(&self.stats.published, 1);
                    Ok(id)
                }
                Some(Reply::Refused(why)) => Err(HttpError::Unavailable(why)),
                _ => Err(HttpError::Unavailable("shutting down")),
            },
            Err(_) => Err(HttpError::Unavailable("shutting down")),
        }
    }

    /// Hands an update the gateway makes itself (subscription events) to the order, without
    /// waiting for it.
    pub fn submit(&self, update: Update) -> Result<(), NotSubmitted> {
        if self.is_stopping() {
            return Err(NotSubmitted::Stopping);
        }
        let token = self.requests.token();
        self.send_to_order(update, token)
            .map_err(|_| NotSubmitted::Full)
    }

    /// Sends an update to the order (on this core, or to the sequencing core); `Err` when
    /// the inbox on the way is full.
    fn send_to_order(&self, update: Update, token: u64) -> Result<(), QueueFull> {
        let origin = Origin {
            core: self.index,
            token,
        };
        match &self.order {
            Some(order) => order.submit(update, origin).map_err(|_| QueueFull),
            None => self
                .mesh
                .try_send_to(SEQUENCER, CoreMsg::Publish { origin, update })
                .map_err(|_| QueueFull),
        }
    }

    /// Makes sure this core has applied the event `id` names, if the sequencer has it: a
    /// client that saw it on another core (which may be a few events ahead of this one)
    /// must resume after it here, not from the start. Bounded by `limit`.
    pub async fn catch_up_to(&self, id: &str, limit: Duration) {
        if self.history.borrow().contains(id) {
            return;
        }
        if self.order.is_some() {
            // The sequencing core: its engine may hold the id and this node not have read
            // it yet (it was published through another node).
            future::or(self.sync_order(), glommio::timer::sleep(limit)).await;
            return;
        }
        let (token, rx) = self.requests.ask(Vec::new(), 1);
        let ask = CoreMsg::Ask {
            origin: Origin {
                core: self.index,
                token,
            },
            question: Question::Locate(id.to_owned()),
        };
        let wait = async {
            if self.mesh.send_to(SEQUENCER, ask).await.is_err() {
                return;
            }
            let Ok(replies) = rx.await else { return };
            if let Some(Reply::Located(Some(seq))) = replies.first() {
                self.wait_applied(*seq).await;
            }
        };
        future::or(wait, glommio::timer::sleep(limit)).await;
        self.requests.forget(token);
    }

    /// The next page of events after `id` from the order's engine, for a resume from an id
    /// older than this core's history (see `Sequencer::older`); asked of the sequencing
    /// core. `None` when the engine does not hold it. The caller bounds the wait.
    pub async fn older(&self, id: &str, next: Option<String>) -> Option<Page> {
        if let Some(order) = &self.order {
            return order.older(id.to_owned(), next).await;
        }
        let (token, rx) = self.requests.ask(Vec::new(), 1);
        let ask = CoreMsg::Ask {
            origin: Origin {
                core: self.index,
                token,
            },
            question: Question::Older {
                id: id.to_owned(),
                next,
            },
        };
        let _forget = Forget(&self.requests, token);
        self.mesh.send_to(SEQUENCER, ask).await.ok()?;
        match rx.await.ok()?.pop() {
            Some(Reply::Older(page)) => page,
            _ => None,
        }
    }

    /// The order's engine, on the sequencing core (`None` elsewhere).
    pub fn engine(&self) -> Option<crate::metrics::EngineStats> {
        self.order.as_ref().map(|o| o.stats())
    }

    /// On the sequencing core: waits until this core has applied everything the order's
    /// engine held when called (see [`Sequencer::sync`]).
    async fn sync_order(&self) {
        if let Some(order) = &self.order {
            let seq = order.sync().await;
            self.wait_applied(seq).await;
        }
    }

    /// Waits until this core has applied the event numbered `seq` (at once if it has).
    pub async fn wait_applied(&self, seq: u64) {
        if self.applied_seq.get() >= seq {
            return;
        }
        self.seq_waiters.set(self.seq_waiters.get() + 1);
        super::lifecycle::wait_on(&self.applied, || self.applied_seq.get() >= seq).await;
        self.seq_waiters.set(self.seq_waiters.get() - 1);
    }

    /// This core's answer to `question`.
    fn answer(&self, question: &Question) -> Reply {
        match question {
            Question::Subscriptions => Reply::Subscriptions(self.shard.borrow().subscriptions()),
            Question::Stats => {
                let shard = self.shard.borrow();
                Reply::Stats(Box::new(self.stats.snapshot(
                    self.index,
                    shard.len() as u64,
                    shard.queued_bytes() as u64,
                    self.history.borrow().len() as u64,
                )))
            }
            Question::Locate(id) => Reply::Located(self.history.borrow().seq_of(id)),
            // Only the sequencing core has an engine to read (`run_receiver`).
            Question::Older { .. } => Reply::Older(None),
        }
    }

    /// Every core's answer to `question` (this one's first), gathered through the mesh.
    pub async fn gather(&self, question: Question) -> Result<Vec<Reply>, HttpError> {
        let mine = self.answer(&question);
        if self.workers == 1 {
            return Ok(vec![mine]);
        }
        let (token, rx) = self.requests.ask(vec![mine], self.workers - 1);
        let origin = Origin {
            core: self.index,
            token,
        };
        for peer in (0..self.workers).filter(|&p| p != self.index) {
            let ask = CoreMsg::Ask {
                origin,
                question: question.clone(),
            };
            if self.mesh.send_to(peer, ask).await.is_err() {
                self.requests.forget(token);
                return Err(HttpError::Unavailable("a core is not answering"));
            }
        }
        rx.await
            .map_err(|_| HttpError::Unavailable("shutting down"))
    }

    /// The active subscriptions of every core.
    pub async fn gather_subscriptions(&self) -> Result<Vec<SubscriptionInfo>, HttpError> {
        let mut all = Vec::new();
        for reply in self.gather(Question::Subscriptions).await? {
            if let Reply::Subscriptions(list) = reply {
                all.extend(list);
            }
        }
        Ok(all)
    }

    /// An event in its final place: applied here first, and the messages that carry it to
    /// every other core returned. Applied here first: the sequencing core is never behind
    /// another core, so it is the authority a resuming core asks about an id it does not
    /// know yet.
    fn distribute(&self, s: Sequenced) -> Vec<(usize, CoreMsg)> {
        let Sequenced {
            seq,
            update,
            frame,
            at,
            origin,
        } = s;
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
            self.applied.notify(usize::MAX);
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
            self.requests
                .answer(origin.token, Reply::Sequenced(ev.id.clone()));
        }
    }

    /// Forgets the history: the order it came from was replaced. Subscribers stay; a
    /// resume from an id of the old order now gets `earliest`.
    fn reset(&self) {
        let dropped = self.history.borrow().len();
        self.history.borrow_mut().clear();
        if dropped > 0 {
            tracing::warn!(
                core = self.index,
                dropped,
                "the order's stream was replaced; history cleared"
            );
        }
    }

    /// Tells the publisher behind `origin` that the order did not place its update.
    async fn refused(&self, origin: Origin, why: &'static str) {
        let reply = Reply::Refused(why);
        if origin.core == self.index {
            self.requests.answer(origin.token, reply);
        } else if origin.core < self.workers {
            let msg = CoreMsg::Reply {
                token: origin.token,
                reply,
            };
            let _ = self.mesh.send_to(origin.core, msg).await;
        }
    }

    fn order_idle(&self) -> bool {
        self.broadcasting.get() == 0 && self.order.as_ref().is_none_or(|o| o.backlog() == 0)
    }
}

/// A core's own duties, for `server` only: its tasks (the order, the receivers from each
/// peer, the sweep) and the steps of its shutdown. A connection's handlers hold `&Core`,
/// which offers none of these, nor the mesh, the order or the lifecycle.
#[derive(Clone)]
pub struct Duties(Rc<Core>);

impl Duties {
    /// Builds a core's state from its parts.
    pub fn new(p: Parts) -> Duties {
        Duties(Rc::new(Core::new(p)))
    }

    /// The state a connection's handlers (and the flusher, the admin listener) get.
    pub fn core(&self) -> &Rc<Core> {
        &self.0
    }

    /// Number of cores.
    pub fn workers(&self) -> usize {
        self.0.workers
    }

    /// Hands the buffered access log lines to the writer thread (never waits).
    pub fn flush_access_log(&self) {
        self.0.flush_access_log();
    }

    /// The order's task (sequencing core): each event the order yields is applied here and
    /// then sent to every other core, in that order.
    pub async fn run_order(self) {
        let Some(order) = self.0.order.clone() else {
            return;
        };
        loop {
            let s = match poll_fn(|cx| order.poll_next(cx)).await {
                Next::Event(s) => s,
                Next::Refused { origin, why } => {
                    self.0.refused(origin, why).await;
                    continue;
                }
                Next::Reset => {
                    self.0.reset();
                    for peer in (0..self.0.workers).filter(|&p| p != self.0.index) {
                        let _ = self.0.mesh.send_to(peer, CoreMsg::Reset).await;
                    }
                    continue;
                }
            };
            self.0.broadcasting.set(self.0.broadcasting.get() + 1);
            for (peer, msg) in self.0.distribute(s) {
                // Waits only if that core is behind by a full mesh channel: back-pressure
                // between cores, never on a subscriber.
                if self.0.mesh.send_to(peer, msg).await.is_err() {
                    tracing::warn!(peer, "core channel closed; event not forwarded");
                }
            }
            self.0.broadcasting.set(self.0.broadcasting.get() - 1);
            if self.0.order_idle() {
                self.0.life.notify();
            }
        }
    }

    /// Receives what `peer` sends this core, in order.
    pub async fn run_receiver(self, receivers: Rc<Receivers<CoreMsg>>, peer: usize) {
        while let Ok(Some(msg)) = receivers.recv_from(peer).await {
            match msg {
                CoreMsg::Publish { origin, update } => {
                    let Some(order) = &self.0.order else { continue };
                    // Already accepted by its core: wait for room rather than drop it.
                    let mut update = update;
                    loop {
                        poll_fn(|cx| order.poll_ready(cx)).await;
                        match order.submit(update, origin) {
                            Ok(()) => break,
                            Err(Full(back)) => update = back,
                        }
                    }
                }
                CoreMsg::Ask {
                    origin,
                    question: Question::Locate(id),
                } if self.0.order.is_some() => {
                    // Answered once this node has read what its engine holds: the id may
                    // have been published through another node. Its own task, so the
                    // receiver goes on meanwhile; the asking core bounds the wait.
                    let core = self.0.clone();
                    glommio::spawn_local(async move {
                        if !core.history.borrow().contains(&id) {
                            core.sync_order().await;
                        }
                        let reply = CoreMsg::Reply {
                            token: origin.token,
                            reply: Reply::Located(core.history.borrow().seq_of(&id)),
                        };
                        let _ = core.mesh.send_to(origin.core, reply).await;
                    })
                    .detach();
                }
                CoreMsg::Ask {
                    origin,
                    question: Question::Older { id, next },
                } if self.0.order.is_some() => {
                    // A read from the engine: its own task, as above.
                    let core = self.0.clone();
                    glommio::spawn_local(async move {
                        let page = core.older(&id, next).await;
                        let reply = CoreMsg::Reply {
                            token: origin.token,
                            reply: Reply::Older(page),
                        };
                        let _ = core.mesh.send_to(origin.core, reply).await;
                    })
                    .detach();
                }
                CoreMsg::Ask { origin, question } => {
                    let reply = CoreMsg::Reply {
                        token: origin.token,
                        reply: self.0.answer(&question),
                    };
                    let _ = self.0.mesh.send_to(origin.core, reply).await;
                }
                CoreMsg::Reply { token, reply } => self.0.requests.answer(token, reply),
                CoreMsg::Event {
                    seq,
                    id,
                    topics,
                    private,
                    frame,
                    at,
                    origin,
                } => self.0.apply(
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
                CoreMsg::Reset => self.0.reset(),
                CoreMsg::Drained => {
                    self.0.drained_peers.set(self.0.drained_peers.get() + 1);
                    self.0.life.notify();
                }
                CoreMsg::Flush => self.0.life.advance(Phase::Flushed),
            }
        }
    }

    /// The per-core sweep. Heartbeats: each tick visits one slice of the table, so idle
    /// subscribers get their `:` line about every `heartbeat_interval`, spread over it.
    /// Token expiry and stream lifetimes: each tick (at most a second apart) ends the
    /// subscribers whose deadline passed.
    pub async fn run_sweep(self) {
        let interval = self.0.cfg.heartbeat_interval;
        let phases = (interval.as_millis() / 5).clamp(1, 16) as usize;
        let phases = phases.max(interval.as_secs() as usize).min(3600);
        let tick = interval / phases as u32;
        let mut phase = 0;
        while !self.0.is_stopping() {
            future::or(glommio::timer::sleep(tick), self.0.stopped()).await;
            if self.0.is_stopping() {
                break;
            }
            let now = Instant::now();
            self.0.liveness.tick(self.0.index);
            self.0.flush_access_log();
            let mut shard = self.0.shard.borrow_mut();
            let sent = shard.heartbeat_step(phase, phases, now, interval);
            let expired = shard.deadlines(crate::clock::unix_millis());
            drop(shard);
            Stats::add(&self.0.stats.heartbeats, sent as u64);
            Stats::add(&self.0.stats.tokens_expired, expired.tokens as u64);
            Stats::add(&self.0.stats.lifetimes_ended, expired.lifetimes as u64);
            if phase == 0 {
                self.0.history.borrow_mut().expire(now);
            }
            phase = (phase + 1) % phases;
        }
    }

    /// Records that this core runs its tasks (for the watchdog).
    pub fn tick(&self) {
        self.0.liveness.tick(self.0.index);
    }

    /// Shutdown, first step: stop serving (listener, idle keep-alive connections and new
    /// publishes see it at once) and wait for this core's publishes in flight.
    pub async fn stop_serving(&self) {
        self.0.life.advance(Phase::Draining);
        self.0.life.until(|| self.0.life.inflight() == 0).await;
    }

    /// Shutdown, second step: once every core has no publish in flight and the order has
    /// handed out its last event to every core, this core is flushed: nothing more will
    /// reach its subscribers.
    pub async fn finish_order(&self) {
        if self.0.order.is_some() {
            let peers = self.0.workers - 1;
            self.0
                .life
                .until(|| self.0.drained_peers.get() == peers && self.0.order_idle())
                .await;
            for peer in (0..self.0.workers).filter(|&p| p != self.0.index) {
                let _ = self.0.mesh.send_to(peer, CoreMsg::Flush).await;
            }
            self.0.life.advance(Phase::Flushed);
        } else {
            let _ = self.0.mesh.send_to(SEQUENCER, CoreMsg::Drained).await;
            self.0
                .life
                .until(|| self.0.life.phase() >= Phase::Flushed)
                .await;
        }
    }

    /// Shutdown, last step: waits until the shard is empty (every subscriber closed).
    pub async fn until_no_subscriber(&self) {
        self.0.life.until(|| self.0.shard.borrow().is_empty()).await;
        self.0.life.advance(Phase::Stopped);
    }
}

/// Forgets a question when its asker stops waiting for the answer (a timeout drops it).
struct Forget<'a, T>(&'a Requests<T>, u64);

impl<T> Drop for Forget<'_, T> {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}
