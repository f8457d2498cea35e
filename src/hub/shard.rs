//! ⑤ The per-core subscriber shard: this core's subscribers, the index from selector to
//! subscribers, and the fan-out of one event to every local match.
//!
//! Owns: the subscriber table, the selector index, deadlines and fan-out; each subscriber's
//! [`Outbox`] is its write protocol. May call: `hub` (event, selector, outbox), `net::sys`
//! (drops).
//!
//! Only this core touches its shard (`Rc<RefCell<_>>`, no lock). Fan-out never waits: each
//! matching subscriber gets a clone of the event's `Bytes` pushed on its bounded queue; a
//! subscriber whose queue would pass `max_queued_bytes` is dropped on the spot (it will
//! reconnect and resume from history), so one slow client cannot hold up the core.
//!
//! Who writes a subscriber's queue to its socket, and when, is its [`Outbox`]'s business; the
//! shard keeps the selector index, the deadlines and the fan-out.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use slab::Slab;

use super::event::{Event, HEARTBEAT};
use super::outbox::{Outbox, Pushed};
use super::selector::Selector;
use super::subscriptions::{SubscriberInfo, SubscriptionInfo};
use super::{FastMap, IdSet};
use crate::net::sys::{self, SocketFd};

/// Why a subscriber was closed by the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Its queue passed `max_queued_bytes`.
    SlowConsumer,
    /// Its token's `exp` passed (the spec requires closing the connection then).
    TokenExpired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Receiving events.
    Open,
    /// Shutting down: write what is queued, then close.
    Draining,
    /// Closed by the gateway; nothing more is written.
    Dropped(DropReason),
}

/// What a subscriber's writer should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Bytes are queued: take a batch and write it.
    Write,
    /// Drained during shutdown: close the connection cleanly.
    Close,
    /// Dropped by the gateway.
    Dropped(DropReason),
}

/// One subscriber's entry. Kept small: at 100k+ subscribers per core every field counts.
struct Subscriber {
    /// Its queue and who writes it.
    outbox: Outbox,
    /// Seq of the last event queued: an event matching several selectors is queued once.
    last_seq: u64,
    /// What the subscriber asked for (to unindex, and to match replays).
    selectors: Box<[Selector]>,
    /// Its token's `mercure.subscribe` selectors: the private updates it may receive.
    rights: Option<Box<[Selector]>>,
    /// Unique per core, so a stale expiry entry never closes a reused slot.
    serial: u64,
    /// Id and payload for the subscriptions feature (only when `subscriptions` is on).
    info: Option<Box<SubscriberInfo>>,
    state: State,
    /// The socket, so a drop can abort a write in progress (and the flusher can write).
    fd: SocketFd,
}

/// What [`Shard::add`] needs to know about a new subscriber.
pub struct NewSubscriber {
    /// Topic selectors from the query (compiled with [`Shard::intern`]).
    pub selectors: Vec<Selector>,
    /// `mercure.subscribe` selectors of its token, if any.
    pub rights: Option<Vec<Selector>>,
    /// Its socket, so a drop can shut it down.
    pub fd: SocketFd,
    /// A plain socket the flusher may write to (not TLS).
    pub direct: bool,
    /// Newest seq already in history: live delivery starts after it.
    pub after_seq: u64,
    /// Token expiry (seconds since the epoch), if the token has `exp`: closed then.
    pub expires: Option<u64>,
    /// End of the stream's lifetime (milliseconds since the epoch), if
    /// `max_stream_duration` is set: drained and closed then, so the client reconnects.
    pub lifetime_ends: Option<u64>,
    /// Unique per core.
    pub serial: u64,
    /// Id and payload, when the subscriptions feature is on.
    pub info: Option<Box<SubscriberInfo>>,
}

/// What a deadline ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Deadline {
    TokenExpiry,
    Lifetime,
}

/// Subscribers ended by [`Shard::deadlines`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Closed because their token expired.
    pub tokens: usize,
    /// Drained because `max_stream_duration` passed.
    pub lifetimes: usize,
}

/// A removed subscriber's selectors and subscriptions info.
pub struct Departed {
    /// Its topic selectors.
    pub selectors: Box<[Selector]>,
    /// Its id and payload, when the subscriptions feature is on.
    pub info: Option<Box<SubscriberInfo>>,
    /// Bytes the flusher wrote to it.
    pub flushed: u64,
}

/// Why a subscription's selectors were not compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Its new templates would pass the core's `max_template_bytes` (503: try later).
    OverBudget,
    /// A template would need more matching threads than any subscriber may ask for (400:
    /// the reason, see [`Selector::too_complex`]).
    TooComplex(String),
}

/// Counts returned by a fan-out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    /// Subscribers that got the event queued.
    pub delivered: usize,
    /// Subscribers dropped as slow consumers.
    pub dropped: usize,
}

/// This core's subscribers and their index.
pub struct Shard {
    subs: Slab<Subscriber>,
    /// Exact selectors: topic string → subscribers. Found by one hash lookup per topic.
    exact: FastMap<Box<str>, IdSet>,
    /// Selectors that must be tested (`*`, URI templates), by their text: one compiled
    /// selector per distinct text, shared by all the subscribers that use it, dropped with
    /// its last subscriber.
    patterns: FastMap<Box<str>, (Selector, IdSet)>,
    /// Budget bytes of the compiled selectors in `patterns` (memory and matching work, see
    /// [`Selector::budget_bytes`]), and the most they may count: an anonymous client must not
    /// be able to make a core compile and keep (and test on every event) an unbounded amount
    /// of templates.
    template_bytes: usize,
    template_budget: usize,
    /// Deadlines: (when in ms since the epoch, id, serial, what), soonest first.
    deadlines: BinaryHeap<Reverse<(u64, usize, u64, Deadline)>>,
    max_queued_bytes: usize,
    /// Reused by fan-out for the subscribers to drop, so fan-out does not allocate.
    scratch: Vec<usize>,
    /// Subscribers with frames queued for the flusher, in the order they became dirty.
    dirty: Vec<usize>,
    /// The flusher, parked until `dirty` has something.
    flusher: Option<Waker>,
}

/// Whether a subscriber with these selectors and rights should receive `ev` (fan-out and
/// replay agree). A private update also needs one of the update's topics (canonical or
/// alternate) to match one of the token's `mercure.subscribe` selectors.
pub fn wants(selectors: &[Selector], rights: Option<&[Selector]>, ev: &Event) -> bool {
    selectors.iter().any(|s| s.matches_any(&ev.topics)) && may_see(rights, ev)
}

/// [`wants`] for an event given by its topics and privacy (one read back from the engine).
pub fn wants_topics<S: AsRef<str>>(
    selectors: &[Selector],
    rights: Option<&[Selector]>,
    topics: &[S],
    private: bool,
) -> bool {
    selectors.iter().any(|s| s.matches_any(topics))
        && (!private || rights.is_some_and(|r| r.iter().any(|s| s.matches_any(topics))))
}

#[inline]
fn may_see(rights: Option<&[Selector]>, ev: &Event) -> bool {
    !ev.private || rights.is_some_and(|r| r.iter().any(|s| s.matches_any(&ev.topics)))
}

impl Shard {
    /// An empty shard.
    pub fn new(max_queued_bytes: usize) -> Shard {
        Shard {
            subs: Slab::new(),
            exact: FastMap::default(),
            patterns: FastMap::default(),
            template_bytes: 0,
            template_budget: usize::MAX,
            deadlines: BinaryHeap::new(),
            max_queued_bytes,
            scratch: Vec::new(),
            dirty: Vec::new(),
            flusher: None,
        }
    }

    /// Subscribers on this core.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Bytes queued for all subscribers, not yet taken by the kernel.
    pub fn queued_bytes(&self) -> usize {
        self.subs.iter().map(|(_, s)| s.outbox.queued_bytes()).sum()
    }

    /// Whether this core has no subscriber.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Bounds the memory of the compiled templates this shard keeps (see
    /// [`Shard::compile`]); unbounded by default.
    #[must_use]
    pub fn template_budget(mut self, bytes: usize) -> Shard {
        self.template_budget = bytes;
        self
    }

    /// What the compiled templates of this core count against its budget (heap bytes and
    /// matching work, see [`Selector::budget_bytes`]).
    pub fn template_bytes(&self) -> usize {
        self.template_bytes
    }

    /// Compiles a selector, or reuses this core's compiled copy of the same text.
    pub fn intern(&self, raw: &str) -> Selector {
        match self.patterns.get(raw) {
            Some((sel, _)) => sel.clone(),
            None => Selector::parse(raw),
        }
    }

    /// Compiles a subscription's selectors ([`Shard::intern`] each), or refuses them when
    /// the templates among them that this core does not have yet would pass its budget.
    pub fn compile(&self, raws: &[String]) -> Result<Vec<Selector>, Refused> {
        let mut new_bytes = 0;
        let mut selectors = Vec::with_capacity(raws.len());
        for raw in raws {
            let sel = self.intern(raw);
            if let Some(why) = sel.too_complex() {
                return Err(Refused::TooComplex(why));
            }
            if sel.exact().is_none() && !self.patterns.contains_key(raw.as_str()) {
                new_bytes += sel.budget_bytes();
            }
            selectors.push(sel);
        }
        if new_bytes > 0 && self.template_bytes + new_bytes > self.template_budget {
            return Err(Refused::OverBudget);
        }
        Ok(selectors)
    }

    /// Registers a subscriber and indexes it for live events after `seq` (the newest event
    /// already in history, which its writer replays itself). Returns its id.
    pub fn add(&mut self, new: NewSubscriber) -> usize {
        let id = self.subs.insert(Subscriber {
            // The task writes the response head and the replay first; the flusher takes over
            // a plain socket when the task finds its queue empty.
            outbox: Outbox::new(new.direct, Instant::now()),
            last_seq: new.after_seq,
            selectors: new.selectors.into_boxed_slice(),
            rights: new.rights.map(Vec::into_boxed_slice),
            serial: new.serial,
            info: new.info,
            state: State::Open,
            fd: new.fd,
        });
        if let Some(exp) = new.expires {
            let at = exp.saturating_mul(1000);
            self.deadlines
                .push(Reverse((at, id, new.serial, Deadline::TokenExpiry)));
        }
        if let Some(at) = new.lifetime_ends {
            self.deadlines
                .push(Reverse((at, id, new.serial, Deadline::Lifetime)));
        }
        let sub = &self.subs[id];
        for sel in sub.selectors.iter() {
            match sel.exact() {
                Some(topic) => {
                    self.exact.entry(topic.into()).or_default().insert(id);
                }
                None => {
                    let bytes = &mut self.template_bytes;
                    self.patterns
                        .entry(sel.as_str().into())
                        .or_insert_with(|| {
                            *bytes += sel.budget_bytes();
                            (sel.clone(), IdSet::default())
                        })
                        .1
                        .insert(id);
                }
            }
        }
        id
    }

    fn unindex(&mut self, id: usize) {
        let Some(sub) = self.subs.get(id) else { return };
        for sel in sub.selectors.iter() {
            match sel.exact() {
                Some(topic) => {
                    if let Some(set) = self.exact.get_mut(topic) {
                        set.swap_remove(&id);
                        if set.is_empty() {
                            self.exact.remove(topic);
                        }
                    }
                }
                None => {
                    if let Some((_, set)) = self.patterns.get_mut(sel.as_str()) {
                        set.swap_remove(&id);
                        if set.is_empty() {
                            self.patterns.remove(sel.as_str());
                            self.template_bytes -= sel.budget_bytes();
                        }
                    }
                }
            }
        }
    }

    /// Forgets a subscriber whose writer has finished; returns what the subscription events
    /// announcing its departure need.
    pub fn remove(&mut self, id: usize) -> Option<Departed> {
        if matches!(
            self.subs.get(id).map(|s| s.state),
            Some(State::Open | State::Draining)
        ) {
            self.unindex(id);
        }
        self.subs.try_remove(id).map(|s| Departed {
            selectors: s.selectors,
            info: s.info,
            flushed: s.outbox.flushed_bytes(),
        })
    }

    /// This core's active subscriptions (one per selector of each subscriber).
    pub fn subscriptions(&self) -> Vec<SubscriptionInfo> {
        let mut out = Vec::new();
        for (_, sub) in self.subs.iter() {
            let Some(info) = &sub.info else { continue };
            if sub.state != State::Open {
                continue;
            }
            for sel in sub.selectors.iter() {
                out.push(SubscriptionInfo {
                    topic: sel.as_str().to_owned(),
                    subscriber: info.id.to_string(),
                    payload: info.payload.as_deref().map(str::to_owned),
                });
            }
        }
        out
    }

    /// Queues `ev` for every local subscriber that wants it.
    pub fn fan_out(&mut self, ev: &Event) -> FanOut {
        let mut out = FanOut::default();
        let mut drop = std::mem::take(&mut self.scratch);
        let max = self.max_queued_bytes;
        let subs = &mut self.subs;
        let dirty = &mut self.dirty;
        for topic in ev.topics.iter() {
            if let Some(set) = self.exact.get(&**topic) {
                for &id in set {
                    deliver(subs, dirty, id, ev, max, &mut out, &mut drop);
                }
            }
        }
        for (sel, set) in self.patterns.values() {
            if sel.matches_any(&ev.topics) {
                for &id in set {
                    deliver(subs, dirty, id, ev, max, &mut out, &mut drop);
                }
            }
        }
        self.wake_flusher();
        for &id in &drop {
            self.drop_subscriber(id, DropReason::SlowConsumer);
        }
        out.dropped = drop.len();
        drop.clear();
        self.scratch = drop;
        out
    }

    /// Closes a subscriber from the gateway's side: unindexed at once, queue freed, socket
    /// shut down (which also aborts a write in progress), writer woken to clean up.
    pub fn drop_subscriber(&mut self, id: usize, reason: DropReason) {
        self.unindex(id);
        let Some(sub) = self.subs.get_mut(id) else {
            return;
        };
        sub.state = State::Dropped(reason);
        if reason == DropReason::SlowConsumer {
            // What it did not read is lost anyway (it resumes from history): reset, so the
            // kernel frees its send buffer now rather than keep an orphan socket full of
            // bytes that crowds out the readers that do read.
            sys::abort_on_close(sub.fd);
        }
        sys::shutdown_both(sub.fd);
        sub.outbox.clear();
    }

    /// Acts on the deadlines passed at `now_ms` (milliseconds since the epoch): a subscriber
    /// whose token expired is closed at once; one whose lifetime ended is drained (what is
    /// queued is written, then the stream ends cleanly and the client resumes elsewhere).
    pub fn deadlines(&mut self, now_ms: u64) -> Expired {
        let mut out = Expired::default();
        while let Some(&Reverse((at, id, serial, what))) = self.deadlines.peek() {
            if at > now_ms {
                break;
            }
            self.deadlines.pop();
            let Some(sub) = self.subs.get_mut(id) else {
                continue;
            };
            if sub.serial != serial || sub.state != State::Open {
                continue;
            }
            match what {
                Deadline::TokenExpiry => {
                    self.drop_subscriber(id, DropReason::TokenExpired);
                    out.tokens += 1;
                }
                Deadline::Lifetime => {
                    sub.drain();
                    out.lifetimes += 1;
                }
            }
        }
        out
    }

    /// Asks every subscriber to flush what it has and close (graceful shutdown).
    pub fn drain_all(&mut self) {
        self.drain_slice(0, 1, None);
    }

    /// Drains the subscribers whose id is `part` modulo `parts` (graceful shutdown spread
    /// over `drain_period`), each after `retry` (an SSE `retry:` frame telling the client how
    /// soon to reconnect) when given. Returns how many were drained.
    pub fn drain_slice(&mut self, part: usize, parts: usize, retry: Option<&Bytes>) -> usize {
        let mut n = 0;
        for (id, sub) in self.subs.iter_mut() {
            if id % parts != part || sub.state != State::Open {
                continue;
            }
            if let Some(r) = retry {
                let _ = sub.outbox.push(r.clone(), None);
            }
            sub.drain();
            n += 1;
        }
        n
    }

    /// The writer task's wait: ready when it has something to write or the subscriber
    /// must close; otherwise parks it (see [`Outbox::poll_task`]).
    pub fn poll_next(&mut self, id: usize, cx: &mut Context<'_>) -> Poll<Next> {
        let Some(sub) = self.subs.get_mut(id) else {
            return Poll::Ready(Next::Close);
        };
        match sub.state {
            State::Dropped(r) => Poll::Ready(Next::Dropped(r)),
            // Draining subscribers are always written by their task.
            State::Draining if sub.outbox.is_empty() => Poll::Ready(Next::Close),
            State::Draining => Poll::Ready(Next::Write),
            State::Open => sub.outbox.poll_task(cx).map(|()| Next::Write),
        }
    }

    /// Ready once `id` is dropped by the gateway (or gone); otherwise parks the writer's
    /// waker, which a drop wakes (for a writer waiting on something else than its queue).
    pub fn poll_dropped(&mut self, id: usize, cx: &mut Context<'_>) -> Poll<()> {
        match self.subs.get_mut(id) {
            None => Poll::Ready(()),
            Some(sub) if matches!(sub.state, State::Dropped(_)) => Poll::Ready(()),
            Some(sub) => {
                sub.outbox.park(cx);
                Poll::Pending
            }
        }
    }

    /// Why `id` was dropped, if it was.
    pub fn dropped(&self, id: usize) -> Option<DropReason> {
        match self.subs.get(id)?.state {
            State::Dropped(r) => Some(r),
            _ => None,
        }
    }

    /// Everything queued for `id`, as one buffer (see [`Outbox::batch`]).
    pub fn batch(&self, id: usize) -> Option<Bytes> {
        self.subs.get(id)?.outbox.batch()
    }

    /// When the oldest event in the batch just taken was accepted by the sequencer (`None`
    /// for a batch of heartbeats or shutdown hints); resets it for the next batch. Call right
    /// after [`Shard::batch`].
    pub fn take_queued_at(&mut self, id: usize) -> Option<Instant> {
        self.subs.get_mut(id)?.outbox.take_queued_at()
    }

    /// Records that the task's write of `n` bytes reached the kernel.
    pub fn written(&mut self, id: usize, n: usize, now: Instant) {
        if let Some(sub) = self.subs.get_mut(id) {
            sub.outbox.consume(n, now);
        }
    }

    /// The flusher's wait: ready when subscribers are dirty, which are moved into `into`
    /// (empty on entry) in the order they became dirty.
    pub fn poll_dirty(&mut self, cx: &mut Context<'_>, into: &mut Vec<usize>) -> Poll<()> {
        if self.dirty.is_empty() {
            match &self.flusher {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => self.flusher = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        std::mem::swap(&mut self.dirty, into);
        Poll::Ready(())
    }

    fn wake_flusher(&mut self) {
        if !self.dirty.is_empty() {
            if let Some(w) = self.flusher.take() {
                w.wake();
            }
        }
    }

    /// What the flusher should send to dirty subscriber `id`: its socket and everything
    /// queued, or `None` when there is nothing for the flusher to do (removed, dropped, or
    /// its task writes now).
    pub fn flush_begin(&mut self, id: usize) -> Option<(SocketFd, Bytes)> {
        let sub = self.subs.get_mut(id)?;
        let bytes = sub.outbox.take_for_flusher()?;
        (sub.state == State::Open).then_some((sub.fd, bytes))
    }

    /// Records the outcome of the flusher's send to `id` of `len` bytes (see
    /// [`Outbox::flushed`]).
    pub fn flush_end(
        &mut self,
        id: usize,
        len: usize,
        sent: std::io::Result<usize>,
        now: Instant,
    ) -> (usize, Option<Instant>) {
        match self.subs.get_mut(id) {
            Some(sub) => sub.outbox.flushed(len, sent, now),
            None => (0, None),
        }
    }

    /// One step of the heartbeat sweep. The table is cut into `phases` slices by id; each
    /// call visits one slice, so a full turn of `phases` calls spans one heartbeat interval
    /// and the heartbeats of many idle connections spread over it instead of firing at once.
    /// A visited subscriber idle for `interval` minus one step gets a `:` line.
    pub fn heartbeat_step(
        &mut self,
        phase: usize,
        phases: usize,
        now: Instant,
        interval: Duration,
    ) -> usize {
        let due = interval - interval / phases as u32;
        let mut sent = 0;
        let mut id = phase;
        let end = self.subs.capacity();
        while id < end {
            if let Some(sub) = self.subs.get_mut(id) {
                if sub.state == State::Open
                    && sub.outbox.is_empty()
                    && now.saturating_duration_since(sub.outbox.last_write()) >= due
                {
                    if sub.outbox.push(HEARTBEAT, None) == Pushed::MarkDirty {
                        self.dirty.push(id);
                    }
                    sent += 1;
                }
            }
            id += phases;
        }
        self.wake_flusher();
        sent
    }
}

#[inline]
fn deliver(
    subs: &mut Slab<Subscriber>,
    dirty: &mut Vec<usize>,
    id: usize,
    ev: &Event,
    max: usize,
    out: &mut FanOut,
    drop: &mut Vec<usize>,
) {
    let Some(sub) = subs.get_mut(id) else { return };
    if sub.last_seq >= ev.seq || sub.state != State::Open || !may_see(sub.rights.as_deref(), ev) {
        return;
    }
    sub.last_seq = ev.seq;
    if sub.outbox.queued_bytes() + ev.frame.len() > max {
        drop.push(id);
        return;
    }
    if sub.outbox.push(ev.frame.clone(), Some(ev.at)) == Pushed::MarkDirty {
        dirty.push(id);
    }
    out.delivered += 1;
}

impl Subscriber {
    /// Write what is queued, then close: the task does this, so it owns the writes now.
    fn drain(&mut self) {
        self.state = State::Draining;
        self.outbox.to_task();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    fn ev(seq: u64, topics: &[&str], len: usize) -> Rc<Event> {
        Rc::new(Event {
            seq,
            id: format!("e{seq}").into(),
            topics: topics.iter().map(|t| Box::<str>::from(*t)).collect(),
            private: false,
            frame: Bytes::from(vec![b'x'; len]),
            at: Instant::now(),
        })
    }

    fn sel(v: &[&str]) -> Vec<Selector> {
        v.iter().map(|s| Selector::parse(s)).collect()
    }

    fn new(selectors: &[&str]) -> NewSubscriber {
        NewSubscriber {
            selectors: sel(selectors),
            rights: None,
            fd: SocketFd::NONE,
            direct: false,
            after_seq: 0,
            expires: None,
            lifetime_ends: None,
            serial: 0,
            info: None,
        }
    }

    fn park(s: &mut Shard, id: usize) -> Poll<Next> {
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        s.poll_next(id, &mut Context::from_waker(&waker))
    }

    fn dirty(s: &mut Shard) -> Vec<usize> {
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut out = Vec::new();
        let _ = s.poll_dirty(&mut Context::from_waker(&waker), &mut out);
        out
    }

    #[test]
    fn the_flusher_takes_over_idle_plain_subscribers_and_hands_back_short_sends() {
        let mut s = Shard::new(1 << 20);
        let plain = s.add(NewSubscriber {
            direct: true,
            ..new(&["t"])
        });
        let tls = s.add(new(&["t"]));
        // Until its task has written the head and replay and found its queue empty, the
        // task writes: the event is for the task, not the flusher.
        s.fan_out(&ev(1, &["t"], 10));
        assert!(dirty(&mut s).is_empty());
        assert_eq!(park(&mut s, plain), Poll::Ready(Next::Write));
        let b = s.batch(plain).unwrap();
        s.written(plain, b.len(), Instant::now());
        assert_eq!(park(&mut s, plain), Poll::Pending);
        assert_eq!(s.batch(tls).unwrap().len(), 10);
        s.written(tls, 10, Instant::now());
        assert_eq!(park(&mut s, tls), Poll::Pending);

        // Now idle: two events make it dirty once; one send carries both.
        s.fan_out(&ev(2, &["t"], 10));
        s.fan_out(&ev(3, &["t"], 20));
        assert_eq!(dirty(&mut s), vec![plain]);
        let (_, bytes) = s.flush_begin(plain).unwrap();
        assert_eq!(bytes.len(), 30);
        assert!(s.flush_begin(plain).is_none(), "flushed twice");
        let (n, queued_at) = s.flush_end(plain, 30, Ok(30), Instant::now());
        assert_eq!(n, 30);
        assert!(
            queued_at.is_some(),
            "no latency sample for the flushed events"
        );
        assert_eq!(park(&mut s, plain), Poll::Pending);
        assert_eq!(
            s.queued_bytes(),
            30,
            "the TLS subscriber still holds its two events"
        );

        // A short send: the rest of the front frame and the next one go to the task.
        s.fan_out(&ev(4, &["t"], 10));
        s.fan_out(&ev(5, &["t"], 10));
        assert_eq!(dirty(&mut s), vec![plain]);
        let (_, bytes) = s.flush_begin(plain).unwrap();
        assert_eq!(s.flush_end(plain, bytes.len(), Ok(4), Instant::now()).0, 4);
        assert_eq!(park(&mut s, plain), Poll::Ready(Next::Write));
        assert_eq!(s.batch(plain).unwrap().len(), 16);
        // While the task writes, new events are the task's too.
        s.fan_out(&ev(6, &["t"], 10));
        assert!(dirty(&mut s).is_empty());
        s.written(plain, 16, Instant::now());
        assert_eq!(park(&mut s, plain), Poll::Ready(Next::Write));
        assert_eq!(s.batch(plain).unwrap().len(), 10);
        s.written(plain, 10, Instant::now());
        // Empty again: back to the flusher.
        assert_eq!(park(&mut s, plain), Poll::Pending);
        s.fan_out(&ev(7, &["t"], 10));
        assert_eq!(dirty(&mut s), vec![plain]);

        // A failed send (peer gone) also goes to the task, which meets the error itself.
        let (_, bytes) = s.flush_begin(plain).unwrap();
        let gone = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(
            s.flush_end(plain, bytes.len(), Err(gone), Instant::now()),
            (0, None)
        );
        assert_eq!(park(&mut s, plain), Poll::Ready(Next::Write));
    }

    #[test]
    fn fan_out_reaches_exact_and_star_once_each() {
        let mut s = Shard::new(1 << 20);
        let a = s.add(new(&["a", "b"]));
        let star = s.add(new(&["*"]));
        let c = s.add(new(&["c"]));
        // Matches `a` twice (two topics) but is queued once.
        let out = s.fan_out(&ev(1, &["a", "b"], 10));
        assert_eq!(
            out,
            FanOut {
                delivered: 2,
                dropped: 0
            }
        );
        assert_eq!(s.batch(a).unwrap().len(), 10);
        assert!(s.batch(c).is_none());
        assert_eq!(s.batch(star).unwrap().len(), 10);
    }

    #[test]
    fn batches_coalesce_and_slow_consumers_are_dropped() {
        let mut s = Shard::new(2048);
        let id = s.add(new(&["t"]));
        s.fan_out(&ev(1, &["t"], 4));
        s.fan_out(&ev(2, &["t"], 1000));
        assert_eq!(s.batch(id).unwrap().len(), 1004);
        // Not yet written: 1004 bytes still count; the next two pass the 2048 cap.
        assert_eq!(s.fan_out(&ev(3, &["t"], 1000)).delivered, 1);
        assert_eq!(s.fan_out(&ev(4, &["t"], 1000)).dropped, 1);
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        let mut cx = Context::from_waker(&waker);
        assert_eq!(
            s.poll_next(id, &mut cx),
            Poll::Ready(Next::Dropped(DropReason::SlowConsumer))
        );
        // Unindexed at once: later events do not reach it.
        assert_eq!(s.fan_out(&ev(5, &["t"], 1)).delivered, 0);
        s.remove(id);
        assert!(s.is_empty());
    }

    #[test]
    fn heartbeats_visit_one_slice_per_step() {
        let mut s = Shard::new(1 << 20);
        for _ in 0..8 {
            s.add(new(&["t"]));
        }
        let later = Instant::now() + Duration::from_secs(60);
        let sent: usize = (0..4)
            .map(|p| s.heartbeat_step(p, 4, later, Duration::from_secs(15)))
            .sum();
        assert_eq!(sent, 8);
        assert_eq!(
            s.heartbeat_step(0, 4, Instant::now(), Duration::from_secs(15)),
            0
        );
    }
}

#[cfg(test)]
mod private_tests {
    use super::*;
    use std::rc::Rc;

    fn private_ev(seq: u64, topics: &[&str]) -> Rc<Event> {
        Rc::new(Event {
            seq,
            id: format!("e{seq}").into(),
            topics: topics.iter().map(|t| Box::<str>::from(*t)).collect(),
            private: true,
            frame: Bytes::from_static(b"x"),
            at: Instant::now(),
        })
    }

    fn add(s: &mut Shard, topics: &[&str], rights: Option<&[&str]>, expires: Option<u64>) -> usize {
        let selectors = topics.iter().map(|t| s.intern(t)).collect();
        s.add(NewSubscriber {
            selectors,
            rights: rights.map(|r| r.iter().map(|t| Selector::parse(t)).collect()),
            fd: SocketFd::NONE,
            direct: false,
            after_seq: 0,
            expires,
            lifetime_ends: None,
            serial: 7,
            info: None,
        })
    }

    #[test]
    fn private_updates_need_rights_on_one_of_their_topics() {
        let mut s = Shard::new(1 << 20);
        let anon = add(&mut s, &["https://x/books/{id}"], None, None);
        let other = add(
            &mut s,
            &["https://x/books/{id}"],
            Some(&["https://x/users/bob/{?topic}"]),
            None,
        );
        let alice = add(
            &mut s,
            &["https://x/books/{id}"],
            Some(&["https://x/users/alice/{?topic}"]),
            None,
        );
        let out = s.fan_out(&private_ev(
            1,
            &[
                "https://x/books/1",
                "https://x/users/alice/?topic=https%3A%2F%2Fx%2Fbooks%2F1",
            ],
        ));
        assert_eq!(out.delivered, 1);
        assert!(s.batch(alice).is_some());
        assert!(s.batch(anon).is_none());
        assert!(s.batch(other).is_none());
    }

    #[test]
    fn the_template_budget_counts_distinct_templates_until_they_are_left() {
        let one = Selector::parse("https://x/{a}/{b}").budget_bytes();
        let mut s = Shard::new(1 << 20).template_budget(2 * one + one / 2);
        let owned = |v: &[&str]| v.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let a = add(&mut s, &["https://x/{a}/{b}"], None, None);
        // Shared, exact and `*` selectors cost nothing more.
        assert!(s
            .compile(&owned(&["https://x/{a}/{b}", "exact", "*"]))
            .is_ok());
        add(&mut s, &["https://y/{a}/{b}"], None, None);
        assert_eq!(s.template_bytes(), 2 * one);
        assert_eq!(
            s.compile(&owned(&["https://z/{a}/{b}"])),
            Err(Refused::OverBudget)
        );
        s.remove(a);
        assert_eq!(s.template_bytes(), one);
        assert!(s.compile(&owned(&["https://z/{a}/{b}"])).is_ok());
    }

    #[test]
    fn templates_are_compiled_once_per_core() {
        let mut s = Shard::new(1 << 20);
        add(&mut s, &["https://x/{id}"], None, None);
        let again = s.intern("https://x/{id}");
        let (first, _) = &s.patterns["https://x/{id}"];
        match (first, &again) {
            (Selector::Template(a), Selector::Template(b)) => assert!(std::sync::Arc::ptr_eq(a, b)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn expired_tokens_close_their_subscriber_once() {
        let mut s = Shard::new(1 << 20);
        let a = add(&mut s, &["t"], None, Some(100));
        add(&mut s, &["t"], None, Some(200));
        assert_eq!(s.deadlines(99_000).tokens, 0);
        assert_eq!(s.deadlines(150_000).tokens, 1);
        let waker = futures_lite::future::block_on(futures_lite::future::poll_fn(|cx| {
            Poll::Ready(cx.waker().clone())
        }));
        assert_eq!(
            s.poll_next(a, &mut Context::from_waker(&waker)),
            Poll::Ready(Next::Dropped(DropReason::TokenExpired))
        );
        assert_eq!(s.deadlines(150_000).tokens, 0);
        assert_eq!(s.deadlines(1_000_000).tokens, 1);
    }
}
