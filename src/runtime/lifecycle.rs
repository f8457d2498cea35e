//! A core's life as one state machine: serving → draining → flushed → stopped. Owns: the
//! phase, the publishes in flight, and the wake-ups of the tasks that wait on either. May
//! call: nothing of the crate.
//!
//! - **Serving**: connections, requests and publishes are accepted.
//! - **Draining** (told to stop): the listener and idle keep-alive connections close, new
//!   publishes get 503, publishes in flight finish.
//! - **Flushed**: every event of the order has reached this core (the sequencing core sent
//!   its last one): subscribers get what is queued, a `retry:` hint, and are closed.
//! - **Stopped**: no subscriber is left; the core's tasks end.
//!
//! Phases only move forward. The shutdown sequence (`server`) drives them; the tasks of the
//! core wait on them.

use std::cell::Cell;

use event_listener::Event as Notify;

/// Where a core is in its life (ordered: each phase follows the one before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Accepting connections and publishes.
    Serving,
    /// Told to stop: nothing new is accepted, what is in flight finishes.
    Draining,
    /// Every event has reached this core: subscribers are flushed and closed.
    Flushed,
    /// Nothing left on this core.
    Stopped,
}

/// One core's phase and the counts its transitions wait on.
pub struct Lifecycle {
    phase: Cell<Phase>,
    /// Publishes on this core waiting for their event to come back sequenced.
    inflight: Cell<usize>,
    /// Woken on every change a waiting task may care about.
    changed: Notify,
    /// Woken once, when the core leaves `Serving`. Apart from `changed`: the accept loop and
    /// every idle keep-alive connection wait on this beside another future, and a spurious
    /// wake re-polls that one too. glommio's `accept` keeps one more clone of the task's
    /// waker on every poll while it is pending, and a task's waker count is an `i16`: an
    /// accept loop woken 32,767 times between two connections (once per publish, when every
    /// change woke it) panicked and took its core down.
    stop: Notify,
}

/// A publish in flight on this core; ends (and may let shutdown go on) when dropped.
#[must_use]
pub struct InFlight<'a>(&'a Lifecycle);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let life = self.0;
        life.inflight.set(life.inflight.get() - 1);
        if life.inflight.get() == 0 && life.phase.get() != Phase::Serving {
            life.notify();
        }
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: Cell::new(Phase::Serving),
            inflight: Cell::new(0),
            changed: Notify::new(),
            stop: Notify::new(),
        }
    }
}

impl Lifecycle {
    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase.get()
    }

    /// Whether the core still accepts new work.
    pub fn is_serving(&self) -> bool {
        self.phase.get() == Phase::Serving
    }

    /// Moves to `to` if it is later than the current phase (phases never go back); wakes
    /// the waiting tasks.
    pub fn advance(&self, to: Phase) {
        if to <= self.phase.get() {
            return;
        }
        let was = self.phase.replace(to);
        if was == Phase::Serving {
            self.stop.notify(usize::MAX);
        }
        self.notify();
    }

    /// Counts a publish in flight, unless the core stopped serving.
    pub fn begin_publish(&self) -> Option<InFlight<'_>> {
        if !self.is_serving() {
            return None;
        }
        self.inflight.set(self.inflight.get() + 1);
        Some(InFlight(self))
    }

    /// Publishes in flight on this core.
    pub fn inflight(&self) -> usize {
        self.inflight.get()
    }

    /// Wakes the tasks waiting for a condition (one a transition waits on changed).
    pub fn notify(&self) {
        self.changed.notify(usize::MAX);
    }

    /// Resolves once the core left `Serving`. Woken by that alone (see `stop`).
    pub async fn stopped(&self) {
        wait_on(&self.stop, || !self.is_serving()).await
    }

    /// Resolves once `cond` holds, re-checked after each [`Lifecycle::notify`].
    pub async fn until(&self, cond: impl Fn() -> bool) {
        wait_on(&self.changed, cond).await
    }
}

/// Resolves once `cond` holds, re-checked each time `event` fires.
pub(crate) async fn wait_on(event: &Notify, cond: impl Fn() -> bool) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::{block_on, poll_once};

    #[test]
    fn phases_only_move_forward_and_stopping_refuses_new_publishes() {
        let life = Lifecycle::default();
        let p = life.begin_publish().expect("serving accepts publishes");
        assert_eq!(life.inflight(), 1);
        life.advance(Phase::Draining);
        assert!(life.begin_publish().is_none());
        life.advance(Phase::Serving);
        assert_eq!(life.phase(), Phase::Draining, "went back");
        drop(p);
        assert_eq!(life.inflight(), 0);
        life.advance(Phase::Stopped);
        life.advance(Phase::Flushed);
        assert_eq!(life.phase(), Phase::Stopped);
    }

    #[test]
    fn waiters_wake_on_stop_and_on_the_last_publish_in_flight() {
        let life = Lifecycle::default();
        let p = life.begin_publish().unwrap();
        block_on(async {
            let mut stopped = Box::pin(life.stopped());
            let mut idle = Box::pin(life.until(|| life.inflight() == 0));
            assert!(poll_once(&mut stopped).await.is_none());
            assert!(poll_once(&mut idle).await.is_none());
            life.advance(Phase::Draining);
            assert!(poll_once(&mut stopped).await.is_some());
            assert!(poll_once(&mut idle).await.is_none());
            drop(p);
            assert!(poll_once(&mut idle).await.is_some());
        });
    }
}
