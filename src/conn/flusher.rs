//! ⑥ The core's flusher: writes the queues of dirty plain subscribers to their sockets, many
//! subscribers per wake-up, with no task woken per subscriber.
//!
//! Owns: the core's batched sends. May call: `hub` (the shard's dirty list and outboxes),
//! `net::sys`, `metrics`.
//!
//! Fan-out marks a subscriber dirty; the flusher takes the whole dirty list and gives each
//! subscriber one non-blocking send of everything queued for it. A send the kernel does not
//! take in full hands that subscriber to its own task (which awaits writability under
//! `write_timeout`), so the flusher never waits on a socket and one slow client cannot hold
//! up the others. Between slices of its list the flusher lets the core poll for I/O, so
//! publishes and other cores' events keep flowing during a long fan-out, and the events that
//! land meanwhile coalesce into the sends still to come: under load, fewer and larger writes.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use futures_lite::future::poll_fn;

use crate::config::WritePath;
use crate::metrics::counters::Stats;
use crate::net::sys::{self, SocketFd};
use crate::runtime::Core;

/// Subscribers written between two polls for I/O (~1–2 ms of sends at most), and the most
/// sends in one io_uring submission.
///
/// Measured on a 10k-subscriber broadcast at 50 events/s: when the flusher ran its whole list
/// before letting I/O in, each publish waited for a full fan-out (ack ~100 ms) and the
/// publisher fell behind its schedule; polling between slices kept acks at a few ms, and the
/// events arriving mid-list coalesce. (A 1 ms glommio preempt timer did the same, but makes
/// glommio 0.9 park an executor with runnable work now and then: see glommio/glommio#53.)
const SLICE: usize = 256;

/// The flusher's pause between slices: any timer makes the executor poll for I/O first.
const POLL_PAUSE: Duration = Duration::from_micros(1);

/// Runs for the life of the core (through the shutdown drain, so events fanned out just
/// before the drain still go out at once).
pub async fn run(core: Rc<Core>) {
    let ring = match core.cfg.write_path {
        WritePath::Send => None,
        WritePath::IoUring => match sys::SendRing::new(SLICE as u32) {
            Ok(ring) => Some(ring),
            Err(e) => {
                tracing::warn!(core = core.index, error = %e,
                    "no io_uring for subscriber writes; using send(2)");
                None
            }
        },
    };
    let mut batch = Batch {
        ring,
        sends: Vec::with_capacity(SLICE),
        ids: Vec::with_capacity(SLICE),
        results: Vec::with_capacity(SLICE),
    };
    let mut ready = Vec::new();
    loop {
        poll_fn(|cx| core.shard.borrow_mut().poll_dirty(cx, &mut ready)).await;
        for (i, slice) in ready.chunks(SLICE).enumerate() {
            if i > 0 {
                // Not `yield_now`: that only lets the tasks already woken run, while new
                // publishes and other cores' events wait for the executor to poll for I/O,
                // which it does when its run queue is empty. A timer makes the flusher wait
                // for that poll.
                glommio::timer::sleep(POLL_PAUSE).await;
            }
            let written = batch.flush_slice(&core, slice);
            Stats::add(&core.stats.bytes_written, written as u64);
        }
        ready.clear();
    }
}

/// One slice's sends: what to send, then the sends (one `send(2)` each, or one io_uring
/// submission), then their outcomes, the same for both paths.
struct Batch {
    /// `None`: the send(2) path.
    ring: Option<sys::SendRing>,
    sends: Vec<(SocketFd, Bytes)>,
    ids: Vec<usize>,
    results: Vec<io::Result<usize>>,
}

impl Batch {
    /// Writes what is queued for each dirty subscriber of `slice`; returns the bytes written.
    fn flush_slice(&mut self, core: &Core, slice: &[usize]) -> usize {
        {
            let mut shard = core.shard.borrow_mut();
            for &id in slice {
                if let Some(send) = shard.flush_begin(id) {
                    self.sends.push(send);
                    self.ids.push(id);
                }
            }
        }
        match &mut self.ring {
            Some(ring) => ring.send_all(&self.sends, &mut self.results),
            None => self.results.extend(
                self.sends
                    .iter()
                    .map(|(fd, bytes)| sys::send_nowait(*fd, bytes)),
            ),
        }
        // One clock read for the slice, after its sends: the bytes were with the kernel by
        // then (the latency samples are late by at most the slice's own send time).
        let now = Instant::now();
        let mut shard = core.shard.borrow_mut();
        let mut written = 0;
        let outcomes = self.ids.iter().zip(&self.sends).zip(self.results.drain(..));
        for ((&id, (_, bytes)), sent) in outcomes {
            let (n, queued_at) = shard.flush_end(id, bytes.len(), sent, now);
            written += n;
            if let Some(at) = queued_at {
                core.stats.observe_delivery(at, now);
            }
        }
        self.sends.clear();
        self.ids.clear();
        written
    }
}
