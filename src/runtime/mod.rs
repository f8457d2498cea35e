//! The per-core runtime: a core's state and duties ([`Core`]), what crosses cores
//! ([`mesh`]: [`CoreMsg`] is the only `Send` traffic between cores, over glommio's channel
//! mesh, and [`mesh::Requests`] the one table of questions a core waits on), a core's
//! [`lifecycle`], and each core's sign of life for the watchdog ([`Liveness`]). Owns no
//! thread: `server` starts the executors and runs a core's life on each. May call: `hub`,
//! `auth`, `config`, `metrics`, `access_log`, `http`, `error`, `clock`.

mod core;
pub mod lifecycle;
pub mod mesh;

pub use self::core::{Core, Duties, NotSubmitted, Parts, SEQUENCER};
pub use self::mesh::{CoreMsg, Question, Reply};

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Capacity of each core-to-core channel and of the order's inbox. A publish finding either
/// full is answered 503 rather than queued without bound.
pub const MESH_CAPACITY: usize = 4096;

/// When each core last showed it runs its tasks (its sweep ticks at least once a second),
/// for the systemd watchdog. Written once per tick per core, never on the event path.
#[derive(Clone)]
pub struct Liveness {
    start: Instant,
    ticks: Arc<[AtomicU64]>,
}

impl Liveness {
    /// No core has shown a sign of life yet.
    pub fn new(cores: usize) -> Liveness {
        Liveness {
            start: Instant::now(),
            ticks: (0..cores).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records that `core` just ran.
    pub fn tick(&self, core: usize) {
        let ms = self.start.elapsed().as_millis() as u64;
        if let Some(t) = self.ticks.get(core) {
            t.store(ms, Ordering::Relaxed);
        }
    }

    /// Whether every core has ticked within `within`.
    pub fn all_responsive(&self, within: Duration) -> bool {
        let now = self.start.elapsed().as_millis() as u64;
        let limit = within.as_millis() as u64;
        self.ticks
            .iter()
            .all(|t| now.saturating_sub(t.load(Ordering::Relaxed)) <= limit)
    }
}
