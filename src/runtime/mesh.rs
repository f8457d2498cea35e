//! What crosses cores, and the one table of questions a core waits on. Owns: [`CoreMsg`] (the
//! only values that cross threads) and [`Requests`] (a token per question, answers gathered
//! until the expected number arrived). May call: `hub` (the values carried), `metrics`.
//!
//! Every cross-core question (a publish waiting for its event to come back sequenced, a
//! resume asking where an id is in the order, a scrape or the subscriptions API asking every
//! core for its part) is one entry in one [`Requests`] table: asked with a token, answered
//! with [`CoreMsg::Reply`], completed when the expected number of replies is in.

use std::cell::{Cell, RefCell};
use std::time::Instant;

use bytes::Bytes;
use futures_channel::oneshot;

use crate::hub::event::Update;
use crate::hub::sequencer::{Origin, Page};
use crate::hub::subscriptions::SubscriptionInfo;
use crate::hub::FastMap;
use crate::metrics::counters::Snapshot;

/// Messages between cores.
#[derive(Debug)]
pub enum CoreMsg {
    /// To the sequencing core: an update accepted on another core.
    Publish {
        /// Where to acknowledge.
        origin: Origin,
        /// The validated update.
        update: Update,
    },
    /// From the sequencing core: an event in its final place and bytes.
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
    /// A question for another core.
    Ask {
        /// Core and token to answer.
        origin: Origin,
        /// What is asked.
        question: Question,
    },
    /// The answer to [`CoreMsg::Ask`].
    Reply {
        /// The question's token on the asking core.
        token: u64,
        /// The answer.
        reply: Reply,
    },
    /// From the sequencing core: the order was replaced; forget the history.
    Reset,
    /// To the sequencing core, at shutdown: this core has no publish in flight any more.
    Drained,
    /// From the sequencing core, at shutdown: every event has been sent; close subscribers.
    Flush,
}

/// What a core can be asked by another (answered from its own state, no lock).
#[derive(Debug, Clone)]
pub enum Question {
    /// Its active subscriptions (subscriptions API).
    Subscriptions,
    /// Its counters (metrics).
    Stats,
    /// Where this event id is in the order (the sequencing core answers: a resume on a core
    /// that has not received the event yet).
    Locate(String),
    /// The next page of events after an id that is older than the in-memory history, from
    /// the order's engine (the sequencing core answers; see `Sequencer::older`).
    Older {
        /// The id the client resumes after.
        id: String,
        /// Where the previous page ended (`None`: the first page).
        next: Option<String>,
    },
}

/// An answer to a [`Question`], or the acknowledgement that a publish is sequenced.
#[derive(Debug)]
pub enum Reply {
    /// Active subscriptions.
    Subscriptions(Vec<SubscriptionInfo>),
    /// Counters and gauges.
    Stats(Box<Snapshot>),
    /// The id's seq in the sequencing core's history, if it is there.
    Located(Option<u64>),
    /// A page of older events, or `None` when the engine does not hold the id.
    Older(Option<Page>),
    /// The publish is in the order and applied on its core, under this id.
    Sequenced(Box<str>),
    /// The order could not place the publish (its engine refused it or did not answer).
    Refused(&'static str),
}

/// One question waiting for its answers.
struct Waiting<T> {
    answers: Vec<T>,
    remaining: usize,
    done: oneshot::Sender<Vec<T>>,
}

/// The questions this core asked and waits on, by token. Only its own core touches it.
pub struct Requests<T> {
    next_token: Cell<u64>,
    waiting: RefCell<FastMap<u64, Waiting<T>>>,
}

impl<T> Default for Requests<T> {
    fn default() -> Self {
        Requests {
            next_token: Cell::new(0),
            waiting: RefCell::new(FastMap::default()),
        }
    }
}

impl<T> Requests<T> {
    /// A token no other question of this core has had (also for messages that wait for no
    /// answer).
    pub fn token(&self) -> u64 {
        let t = self.next_token.get();
        self.next_token.set(t + 1);
        t
    }

    /// Registers a question that completes once `more` answers (at least one) have come in
    /// after the ones it starts with (`first`: the asking core's own, say); returns its
    /// token and the receiver of every answer.
    pub fn ask(&self, first: Vec<T>, more: usize) -> (u64, oneshot::Receiver<Vec<T>>) {
        let token = self.token();
        let (done, rx) = oneshot::channel();
        let remaining = more.max(1);
        let answers = first;
        self.waiting.borrow_mut().insert(
            token,
            Waiting {
                answers,
                remaining,
                done,
            },
        );
        (token, rx)
    }

    /// Records an answer to `token`; the last expected one completes the question. Answers
    /// to questions forgotten or completed are ignored.
    pub fn answer(&self, token: u64, answer: T) {
        let mut waiting = self.waiting.borrow_mut();
        let Some(w) = waiting.get_mut(&token) else {
            return;
        };
        w.answers.push(answer);
        w.remaining -= 1;
        if w.remaining == 0 {
            if let Some(w) = waiting.remove(&token) {
                let _ = w.done.send(w.answers);
            }
        }
    }

    /// Drops a question (its asker stopped waiting); its receiver sees it cancelled.
    pub fn forget(&self, token: u64) {
        self.waiting.borrow_mut().remove(&token);
    }

    /// Questions still waiting.
    pub fn len(&self) -> usize {
        self.waiting.borrow().len()
    }

    /// Whether no question is waiting.
    pub fn is_empty(&self) -> bool {
        self.waiting.borrow().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_completes_with_every_expected_answer_and_ignores_the_rest() {
        let r = Requests::<u32>::default();
        let (a, mut rx_a) = r.ask(vec![0], 2);
        let (b, mut rx_b) = r.ask(Vec::new(), 1);
        assert_ne!(a, b);
        r.answer(a, 1);
        assert_eq!(rx_a.try_recv(), Ok(None), "completed early");
        r.answer(b, 9);
        r.answer(a, 2);
        assert_eq!(rx_a.try_recv(), Ok(Some(vec![0, 1, 2])));
        assert_eq!(rx_b.try_recv(), Ok(Some(vec![9])));
        // Late and unknown answers change nothing.
        r.answer(a, 3);
        r.answer(77, 3);
        assert!(r.is_empty());
    }

    #[test]
    fn a_forgotten_question_is_cancelled_and_its_answers_ignored() {
        let r = Requests::<u32>::default();
        let (t, mut rx) = r.ask(Vec::new(), 1);
        r.forget(t);
        assert!(rx.try_recv().is_err(), "not cancelled");
        r.answer(t, 1);
        assert_eq!(r.len(), 0);
    }
}
