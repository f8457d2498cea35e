//! ④ Where the one order comes from. Owns: giving each update its place (its `seq`) and
//! encoding it once. May call: [`super::event`] only. Knows nothing of cores or sockets: the
//! runtime asks a [`Sequencer`] for the next event and carries it to every core.
//!
//! [`Memory`] is the single-node order (the in-memory engine): a bounded inbox numbered in
//! arrival order. The Redis Streams order (`engine::redis`) is a second implementation of the
//! same trait: its `submit` hands the update to Redis, and `poll_next` yields what the
//! stream returns, in the stream's order, or an update Redis did not take.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::Bytes;

use super::event::{encode, Update};
use crate::metrics::EngineStats;

/// Who is waiting for an update to be sequenced: the core that accepted it and the key of
/// the waiting publisher in that core's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Core that accepted the update.
    pub core: usize,
    /// Key of the waiting publisher on that core.
    pub token: u64,
}

impl Origin {
    /// No publisher waits here: the update came from another node through the engine.
    pub const NOBODY: Origin = Origin {
        core: usize::MAX,
        token: 0,
    };
}

/// An update in its final place: numbered and encoded once.
#[derive(Debug)]
pub struct Sequenced {
    /// Position in the one order.
    pub seq: u64,
    /// The update (its id, topics and privacy travel with the frame).
    pub update: Update,
    /// The SSE bytes every subscriber gets a clone of.
    pub frame: Bytes,
    /// When it got its place (history age, publish→write latency).
    pub at: Instant,
    /// Whom to acknowledge.
    pub origin: Origin,
}

/// What the order hands out next.
#[derive(Debug)]
pub enum Next {
    /// An event in its place, for every core.
    Event(Sequenced),
    /// An update the order could not place (its engine refused it or did not answer in
    /// time): it was not stored, and its publisher is told so.
    Refused {
        /// Whom to tell.
        origin: Origin,
        /// Why, for the publisher's 503.
        why: &'static str,
    },
    /// The order was replaced (its engine lost it: a flushed Redis, a failover to an empty
    /// replica): every core forgets its history, so a resume from an id of the old order
    /// gets `earliest` instead of a silent splice of two orders. Events that follow are the
    /// new order's.
    Reset,
}

/// An event read back from the order's engine for a resume older than the in-memory
/// history: what a subscriber's core needs to match and write it. `Send`: it crosses the
/// mesh from the sequencing core.
#[derive(Debug)]
pub struct Past {
    /// SSE id.
    pub id: String,
    /// Topics, for matching.
    pub topics: Vec<String>,
    /// Private update.
    pub private: bool,
    /// The SSE bytes.
    pub frame: Bytes,
}

/// One page of the events that follow an id in the engine's order (see [`Sequencer::older`]).
#[derive(Debug)]
pub struct Page {
    /// Events, oldest first.
    pub events: Vec<Past>,
    /// Where the next page starts, when there is more before this node's read position.
    pub next: Option<String>,
    /// With the last page: the `seq` this node had placed when it was read. The page ends
    /// where that event does, so the rest follows in this node's history and live stream.
    pub upto: u64,
}

/// The order's inbox is full: the update is handed back (the caller answers 503).
#[derive(Debug)]
pub struct Full(pub Update);

/// The source of the one order, on the sequencing core. Never waits inside a call: a full
/// inbox is an error for local callers and a wait (`poll_ready`) for updates that already
/// crossed the mesh.
pub trait Sequencer {
    /// Accepts an update into the order on behalf of `origin`, or gives it back when the
    /// inbox is full.
    fn submit(&self, update: Update, origin: Origin) -> Result<(), Full>;

    /// Ready when [`Sequencer::submit`] would accept; otherwise wakes `cx` once it would.
    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()>;

    /// The next event in the order, or an update it could not place.
    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next>;

    /// Sequences `update` at once when nothing is ahead of it and the order can be decided
    /// here (the single-core fast path: no inbox, no task switch); else hands it back.
    fn sequence_now(&self, update: Update, origin: Origin) -> Result<Sequenced, Update>;

    /// Updates accepted and not handed out yet (shutdown waits for none).
    fn backlog(&self) -> usize;

    /// The position (a `seq`) by which this order holds everything its engine held when
    /// called: a resume from an id that another node published and this one has not read
    /// yet waits for it (the caller bounds the wait), then finds the id in history. The
    /// memory order holds everything already: 0, at once.
    fn sync(&self) -> Pin<Box<dyn Future<Output = u64> + '_>> {
        Box::pin(std::future::ready(0))
    }

    /// The events after the id `id` (first page), or after the cursor `next` of the previous
    /// page, from the engine's own store: a resume from an id older than the in-memory
    /// history. `None` when the engine does not hold the id (or cannot be asked now): the
    /// resume then gets `earliest`. The memory order has nothing beyond its history.
    fn older(
        &self,
        id: String,
        next: Option<String>,
    ) -> Pin<Box<dyn Future<Output = Option<Page>> + '_>> {
        let _ = (id, next);
        Box::pin(std::future::ready(None))
    }

    /// Its state and figures, for `/readyz` and `/metrics`.
    fn stats(&self) -> EngineStats {
        EngineStats {
            engine: "memory",
            ..EngineStats::default()
        }
    }
}

/// The in-memory order: numbered in arrival order, from 1.
pub struct Memory {
    inbox: RefCell<VecDeque<(Update, Origin)>>,
    capacity: usize,
    next_seq: Cell<u64>,
    /// The task taking events out (`poll_next`).
    reader: RefCell<Option<Waker>>,
    /// Tasks waiting for room (`poll_ready`).
    writers: RefCell<Vec<Waker>>,
}

impl Memory {
    /// An empty order whose inbox holds at most `capacity` updates.
    pub fn new(capacity: usize) -> Memory {
        Memory {
            inbox: RefCell::new(VecDeque::new()),
            capacity: capacity.max(1),
            next_seq: Cell::new(1),
            reader: RefCell::new(None),
            writers: RefCell::new(Vec::new()),
        }
    }

    fn place(&self, update: Update, origin: Origin) -> Sequenced {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        Sequenced {
            seq,
            frame: encode(&update),
            update,
            at: Instant::now(),
            origin,
        }
    }
}

impl Sequencer for Memory {
    fn submit(&self, update: Update, origin: Origin) -> Result<(), Full> {
        let mut inbox = self.inbox.borrow_mut();
        if inbox.len() >= self.capacity {
            return Err(Full(update));
        }
        inbox.push_back((update, origin));
        drop(inbox);
        if let Some(w) = self.reader.borrow_mut().take() {
            w.wake();
        }
        Ok(())
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.inbox.borrow().len() < self.capacity {
            return Poll::Ready(());
        }
        self.writers.borrow_mut().push(cx.waker().clone());
        Poll::Pending
    }

    fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Next> {
        let next = self.inbox.borrow_mut().pop_front();
        match next {
            Some((update, origin)) => {
                for w in self.writers.borrow_mut().drain(..) {
                    w.wake();
                }
                Poll::Ready(Next::Event(self.place(update, origin)))
            }
            None => {
                let mut reader = self.reader.borrow_mut();
                match &*reader {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *reader = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }

    fn sequence_now(&self, update: Update, origin: Origin) -> Result<Sequenced, Update> {
        if !self.inbox.borrow().is_empty() {
            return Err(update);
        }
        Ok(self.place(update, origin))
    }

    fn backlog(&self) -> usize {
        self.inbox.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &str) -> Update {
        Update {
            topics: vec!["t".into()],
            data: "d".into(),
            id: id.into(),
            event_type: None,
            retry: None,
            private: false,
            generated_id: false,
        }
    }

    fn origin(core: usize, token: u64) -> Origin {
        Origin { core, token }
    }

    fn next(s: &Memory) -> Poll<Sequenced> {
        s.poll_next(&mut Context::from_waker(Waker::noop()))
            .map(|n| match n {
                Next::Event(s) => s,
                Next::Refused { .. } | Next::Reset => panic!("the memory order only places"),
            })
    }

    #[test]
    fn events_come_out_numbered_in_arrival_order_encoded_once() {
        let s = Memory::new(8);
        assert!(next(&s).is_pending());
        s.submit(update("a"), origin(1, 7)).unwrap();
        s.submit(update("b"), origin(0, 3)).unwrap();
        assert_eq!(s.backlog(), 2);
        let Poll::Ready(a) = next(&s) else { panic!() };
        let Poll::Ready(b) = next(&s) else { panic!() };
        assert_eq!(
            (a.seq, a.update.id.as_str(), a.origin),
            (1, "a", origin(1, 7))
        );
        assert_eq!(
            (b.seq, b.update.id.as_str(), b.origin),
            (2, "b", origin(0, 3))
        );
        assert_eq!(&a.frame[..], b"id: a\ndata: d\n\n");
        assert!(next(&s).is_pending());
        assert_eq!(s.backlog(), 0);
    }

    #[test]
    fn a_full_inbox_hands_the_update_back_and_frees_room_when_read() {
        let s = Memory::new(1);
        let cx = &mut Context::from_waker(Waker::noop());
        s.submit(update("a"), origin(0, 0)).unwrap();
        let Err(Full(back)) = s.submit(update("b"), origin(0, 1)) else {
            panic!("accepted past capacity")
        };
        assert_eq!(back.id, "b");
        assert!(s.poll_ready(cx).is_pending());
        assert!(next(&s).is_ready());
        assert!(s.poll_ready(cx).is_ready());
    }

    #[test]
    fn sequence_now_only_when_nothing_is_ahead_and_numbers_stay_one_order() {
        let s = Memory::new(8);
        let now = s.sequence_now(update("a"), origin(0, 0)).unwrap();
        assert_eq!(now.seq, 1);
        s.submit(update("b"), origin(0, 1)).unwrap();
        // "c" would overtake "b": refused, so the caller queues it behind.
        let back = s.sequence_now(update("c"), origin(0, 2)).unwrap_err();
        s.submit(back, origin(0, 2)).unwrap();
        let Poll::Ready(b) = next(&s) else { panic!() };
        let Poll::Ready(c) = next(&s) else { panic!() };
        assert_eq!((b.seq, c.seq), (2, 3));
        assert_eq!(c.update.id, "c");
    }
}
