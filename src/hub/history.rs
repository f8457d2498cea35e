//! The per-core event history used for `Last-Event-ID` resume.
//!
//! Owns: the events kept for resume and the id index. May call: `hub::event`.
//!
//! Every core receives every event in the sequencer's order, so every core holds the same
//! history and a subscriber resumes on whichever core it reconnects to, without asking
//! another core.

use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::event::Event;
use super::FastMap;

/// Where a resuming subscriber starts.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeFrom<'a> {
    /// Replay everything retained (`earliest`, or an id no longer known).
    Earliest,
    /// Replay what follows this id.
    After(&'a str),
}

/// Bounded, ordered history: by count (`history_size`) and optionally by age.
pub struct History {
    events: VecDeque<Rc<Event>>,
    /// id → seq of its latest event, so a resume finds its place without a scan.
    by_id: FastMap<Box<str>, u64>,
    capacity: usize,
    max_age: Option<Duration>,
}

impl History {
    /// An empty history.
    pub fn new(capacity: usize, max_age: Option<Duration>) -> History {
        History {
            events: VecDeque::with_capacity(capacity.min(4096)),
            by_id: FastMap::default(),
            capacity,
            max_age,
        }
    }

    /// Appends an event (seqs arrive in increasing order), evicting the oldest past capacity.
    pub fn push(&mut self, ev: Rc<Event>) {
        if self.events.len() == self.capacity {
            self.pop_front();
        }
        self.by_id.insert(ev.id.clone(), ev.seq);
        self.events.push_back(ev);
    }

    fn pop_front(&mut self) {
        if let Some(old) = self.events.pop_front() {
            if self.by_id.get(&old.id) == Some(&old.seq) {
                self.by_id.remove(&old.id);
            }
        }
    }

    /// Forgets every event (the order they belonged to was replaced).
    pub fn clear(&mut self) {
        self.events.clear();
        self.by_id.clear();
    }

    /// Drops events older than `history_max_age`.
    pub fn expire(&mut self, now: Instant) {
        let Some(max_age) = self.max_age else { return };
        while let Some(front) = self.events.front() {
            if now.saturating_duration_since(front.at) <= max_age {
                break;
            }
            self.pop_front();
        }
    }

    /// Number of retained events.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Seq of the newest retained event (0 when empty).
    pub fn newest_seq(&self) -> u64 {
        self.events.back().map_or(0, |e| e.seq)
    }

    /// Whether an event with this id is retained.
    pub fn contains(&self, id: &str) -> bool {
        self.by_id.contains_key(id)
    }

    /// Seq of the latest retained event with this id.
    pub fn seq_of(&self, id: &str) -> Option<u64> {
        self.by_id.get(id).copied()
    }

    /// Id of the newest retained event.
    pub fn newest_id(&self) -> Option<String> {
        self.events.back().map(|e| e.id.to_string())
    }

    /// Whether no event is retained.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The retained events after the one numbered `seq`.
    pub fn after_seq(&self, seq: u64) -> impl Iterator<Item = &Rc<Event>> + '_ {
        let first_seq = self.events.front().map_or(0, |e| e.seq);
        let skip = (seq + 1).saturating_sub(first_seq) as usize;
        self.events.iter().skip(skip)
    }

    /// The events to replay for a resume request, and the `Last-Event-ID` the response must
    /// carry (Mercure: the id preceding the first event sent, or `earliest` when there is
    /// none, including an id that is not in history).
    pub fn replay<'a>(
        &'a self,
        from: ResumeFrom<'_>,
    ) -> (impl Iterator<Item = &'a Rc<Event>> + 'a, String) {
        let first_seq = self.events.front().map_or(0, |e| e.seq);
        let (skip, header) = match from {
            ResumeFrom::After(id) => match self.by_id.get(id) {
                Some(&seq) => ((seq.saturating_sub(first_seq) + 1) as usize, id.to_owned()),
                None => (0, "earliest".to_owned()),
            },
            ResumeFrom::Earliest => (0, "earliest".to_owned()),
        };
        (self.events.iter().skip(skip), header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(seq: u64, id: &str) -> Rc<Event> {
        Rc::new(Event {
            seq,
            id: id.into(),
            topics: Box::new([]),
            private: false,
            frame: Bytes::new(),
            at: Instant::now(),
        })
    }

    fn ids(h: &History, from: ResumeFrom<'_>) -> (Vec<String>, String) {
        let (it, header) = h.replay(from);
        (it.map(|e| e.id.to_string()).collect(), header)
    }

    #[test]
    fn resumes_after_a_known_id_and_evicts_by_count() {
        let mut h = History::new(3, None);
        for i in 1..=4 {
            h.push(ev(i, &format!("e{i}")));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(
            ids(&h, ResumeFrom::After("e3")),
            (vec!["e4".into()], "e3".into())
        );
        assert_eq!(ids(&h, ResumeFrom::After("e4")), (vec![], "e4".into()));
        // e1 was evicted: everything retained, flagged as `earliest`.
        let (all, header) = ids(&h, ResumeFrom::After("e1"));
        assert_eq!(all, vec!["e2", "e3", "e4"]);
        assert_eq!(header, "earliest");
        assert_eq!(ids(&h, ResumeFrom::Earliest).0.len(), 3);
    }

    #[test]
    fn after_seq_skips_what_came_before() {
        let mut h = History::new(3, None);
        for i in 1..=5 {
            h.push(ev(i, &format!("e{i}")));
        }
        let after = |seq| h.after_seq(seq).map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(after(3), vec![4, 5]);
        assert_eq!(after(1), vec![3, 4, 5]);
        assert_eq!(after(5), Vec::<u64>::new());
    }

    #[test]
    fn a_repeated_id_resumes_after_its_latest_use() {
        let mut h = History::new(10, None);
        h.push(ev(1, "a"));
        h.push(ev(2, "b"));
        h.push(ev(3, "a"));
        h.push(ev(4, "c"));
        assert_eq!(ids(&h, ResumeFrom::After("a")).0, vec!["c"]);
    }

    #[test]
    fn expires_by_age() {
        let mut h = History::new(10, Some(Duration::from_millis(50)));
        h.push(ev(1, "a"));
        h.expire(Instant::now() + Duration::from_secs(1));
        assert!(h.is_empty());
        assert_eq!(ids(&h, ResumeFrom::After("a")).1, "earliest");
    }
}
