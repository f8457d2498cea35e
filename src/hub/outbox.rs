//! ⑥ One subscriber's write protocol. Owns: the frames queued for its socket, their bytes,
//! the parked writer task, and who may write the socket now ([`Writer`]). May call: nothing
//! of the crate. The shard keeps one outbox per subscriber; the core's flusher and the
//! subscriber's own task are its two writers and call only the methods here.
//!
//! Who writes:
//! - the **task** while the response head and replay are written, after a send that did not
//!   take everything (it then awaits writability under `write_timeout`), while draining, and
//!   always for TLS (records are sealed per connection);
//! - the **flusher** for an idle plain socket: a push only puts the subscriber on the dirty
//!   list, and the flusher later sends everything queued in one non-blocking send.
//!
//! Both take the same [`Outbox::batch`] (everything queued as one buffer, zero-copy when
//! one frame is queued) and report what the kernel took with [`Outbox::consume`] or
//! [`Outbox::flushed`]; frames stay queued (and counted) until then.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};

/// Who may write the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// The subscriber's task.
    Task,
    /// The core's flusher; `dirty` when the subscriber is on its list.
    Flusher {
        /// On the flusher's list.
        dirty: bool,
    },
}

/// What a push asks of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Pushed {
    /// Nothing (the task was woken, or the subscriber is already on the flusher's list).
    Done,
    /// Put the subscriber on the flusher's list.
    MarkDirty,
}

/// The frames waiting for one subscriber's socket. Kept small: at 100k+ subscribers per
/// core every field counts.
pub struct Outbox {
    /// Clones of shared frames (empty when idle: no allocation).
    queue: VecDeque<Bytes>,
    /// Bytes queued, not yet taken by the kernel.
    queued_bytes: usize,
    /// The subscriber's task, parked until there is something for it.
    waker: Option<Waker>,
    /// When the sequencer accepted the oldest event queued since the last write, for the
    /// publish→write latency histogram.
    queued_at: Option<Instant>,
    /// Last time bytes reached the kernel, for heartbeats.
    last_write: Instant,
    /// Bytes the flusher wrote (the task's writes are counted by its stream).
    flushed: u64,
    writer: Writer,
    /// A plain socket: the flusher may write it once the task is done.
    direct: bool,
}

impl Outbox {
    /// An empty outbox. Its task writes first (head and replay); a `direct` (plain) socket is
    /// handed to the flusher when the task finds nothing left.
    pub fn new(direct: bool, now: Instant) -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            queued_bytes: 0,
            waker: None,
            queued_at: None,
            last_write: now,
            flushed: 0,
            writer: Writer::Task,
            direct,
        }
    }

    /// Bytes queued, not yet taken by the kernel.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Who writes now.
    pub fn writer(&self) -> Writer {
        self.writer
    }

    /// Last time bytes reached the kernel.
    pub fn last_write(&self) -> Instant {
        self.last_write
    }

    /// Bytes the flusher wrote.
    pub fn flushed_bytes(&self) -> u64 {
        self.flushed
    }

    /// Queues a frame (`at`: when its event was sequenced, none for heartbeats and hints)
    /// and tells its writer.
    #[inline]
    pub fn push(&mut self, frame: Bytes, at: Option<Instant>) -> Pushed {
        self.queued_bytes += frame.len();
        self.queue.push_back(frame);
        if let Some(at) = at {
            self.queued_at.get_or_insert(at);
        }
        match &mut self.writer {
            Writer::Task => {
                self.wake();
                Pushed::Done
            }
            Writer::Flusher { dirty: true } => Pushed::Done,
            Writer::Flusher { dirty } => {
                *dirty = true;
                Pushed::MarkDirty
            }
        }
    }

    /// Everything queued as one buffer (zero-copy when one frame is queued); the frames stay
    /// queued until [`Outbox::consume`] says the kernel took them.
    pub fn batch(&self) -> Option<Bytes> {
        match self.queue.len() {
            0 => None,
            1 => self.queue.front().cloned(),
            _ => {
                let mut buf = BytesMut::with_capacity(self.queued_bytes);
                for frame in &self.queue {
                    buf.extend_from_slice(frame);
                }
                Some(buf.freeze())
            }
        }
    }

    /// When the oldest event queued since the last write was sequenced; reset for the next.
    pub fn take_queued_at(&mut self) -> Option<Instant> {
        self.queued_at.take()
    }

    /// `n` bytes from the front of the queue reached the kernel.
    pub fn consume(&mut self, mut n: usize, now: Instant) {
        self.queued_bytes = self.queued_bytes.saturating_sub(n);
        self.last_write = now;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                break;
            };
            if front.len() <= n {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }

    /// The task's wait while the subscriber is open: ready when it has something to write;
    /// otherwise parks it, handing a plain socket to the flusher.
    pub fn poll_task(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.writer == Writer::Task && !self.queue.is_empty() {
            return Poll::Ready(());
        }
        if self.writer == Writer::Task && self.direct {
            self.writer = Writer::Flusher { dirty: false };
        }
        self.park(cx);
        Poll::Pending
    }

    /// Keeps `cx`'s waker, to be woken by the next push, drain or clear.
    pub fn park(&mut self, cx: &mut Context<'_>) {
        match &self.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => self.waker = Some(cx.waker().clone()),
        }
    }

    /// The flusher's turn on a dirty subscriber: what to send, or `None` when there is
    /// nothing for it (the task writes now, or nothing is queued). Takes it off the list.
    pub fn take_for_flusher(&mut self) -> Option<Bytes> {
        match self.writer {
            Writer::Flusher { dirty: true } => {
                self.writer = Writer::Flusher { dirty: false };
                self.batch()
            }
            _ => None,
        }
    }

    /// The flusher's send of `len` bytes took `sent`; returns the bytes taken and, when
    /// some were, when the oldest of their events was sequenced. Anything short of all of
    /// them (a full send buffer, an error) hands the socket to the task, which waits for
    /// writability under `write_timeout` (or meets the same error and ends the stream).
    pub fn flushed(
        &mut self,
        len: usize,
        sent: std::io::Result<usize>,
        now: Instant,
    ) -> (usize, Option<Instant>) {
        let n = *sent.as_ref().unwrap_or(&0);
        self.consume(n, now);
        self.flushed += n as u64;
        let queued_at = if n > 0 { self.queued_at.take() } else { None };
        if n < len || !self.queue.is_empty() {
            self.to_task();
        }
        (n, queued_at)
    }

    /// The task writes from now on (draining: what is queued, then close).
    pub fn to_task(&mut self) {
        self.writer = Writer::Task;
        self.wake();
    }

    /// Frees the queue (the subscriber was dropped) and wakes the task to clean up.
    pub fn clear(&mut self) {
        self.queue = VecDeque::new();
        self.queued_bytes = 0;
        self.wake();
    }

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn the_task_writes_first_then_hands_a_plain_socket_to_the_flusher() {
        let now = Instant::now();
        let mut o = Outbox::new(true, now);
        assert_eq!(o.push(frame(10), Some(now)), Pushed::Done);
        assert!(o.poll_task(&mut cx()).is_ready());
        assert_eq!(
            o.take_for_flusher(),
            None,
            "the flusher wrote the task's bytes"
        );
        let b = o.batch().unwrap();
        o.consume(b.len(), now);
        assert!(o.poll_task(&mut cx()).is_pending());
        assert_eq!(o.writer(), Writer::Flusher { dirty: false });
        // Two pushes, one mark, one send with both.
        assert_eq!(o.push(frame(10), Some(now)), Pushed::MarkDirty);
        assert_eq!(o.push(frame(20), Some(now)), Pushed::Done);
        assert_eq!(o.take_for_flusher().unwrap().len(), 30);
        assert_eq!(o.take_for_flusher(), None, "sent twice");
        let (n, at) = o.flushed(30, Ok(30), now);
        assert_eq!((n, at.is_some(), o.queued_bytes()), (30, true, 0));
        assert_eq!(o.flushed_bytes(), 30);
    }

    #[test]
    fn a_short_send_or_an_error_hands_the_rest_to_the_task() {
        let now = Instant::now();
        let mut o = Outbox::new(true, now);
        assert!(o.poll_task(&mut cx()).is_pending());
        let _ = o.push(frame(10), Some(now));
        let _ = o.push(frame(10), Some(now));
        let b = o.take_for_flusher().unwrap();
        assert_eq!(o.flushed(b.len(), Ok(4), now).0, 4);
        assert_eq!(o.writer(), Writer::Task);
        assert_eq!(o.batch().unwrap().len(), 16);
        // While the task writes, pushes are the task's.
        assert_eq!(o.push(frame(5), None), Pushed::Done);
        o.consume(21, now);
        assert!(o.poll_task(&mut cx()).is_pending());
        let _ = o.push(frame(3), None);
        let b = o.take_for_flusher().unwrap();
        let gone = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(o.flushed(b.len(), Err(gone), now), (0, None));
        assert_eq!(o.writer(), Writer::Task);
        assert!(o.poll_task(&mut cx()).is_ready());
    }

    #[test]
    fn a_tls_socket_stays_with_its_task() {
        let now = Instant::now();
        let mut o = Outbox::new(false, now);
        assert!(o.poll_task(&mut cx()).is_pending());
        assert_eq!(o.push(frame(1), None), Pushed::Done);
        assert_eq!(o.writer(), Writer::Task);
        assert!(o.poll_task(&mut cx()).is_ready());
    }

    #[test]
    fn consume_splits_a_frame_and_clear_frees_everything() {
        let now = Instant::now();
        let mut o = Outbox::new(false, now);
        let _ = o.push(Bytes::from_static(b"abcdef"), None);
        o.consume(2, now);
        assert_eq!(&o.batch().unwrap()[..], b"cdef");
        o.clear();
        assert!(o.is_empty() && o.queued_bytes() == 0);
    }
}
