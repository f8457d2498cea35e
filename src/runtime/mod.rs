//! The executor pool and the cross-core plumbing: one pinned glommio executor per core, each
//! with a [`Core`]; the channel mesh that carries [`CoreMsg`] (the only `Send` traffic
//! between cores); start-up readiness and the shutdown hand-off from `main`.

mod core;
pub mod stats;

pub use self::core::{Answer, Core, CoreMsg, Origin, QueryKind};
pub use self::stats::{Snapshot, Stats};
pub use crate::clock::unix_millis;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement, PoolThreadHandles};

use crate::access_log;
use crate::config::Config;
use crate::net::sys;

/// Capacity of each core-to-core channel. A publish finding the sequencer's channel full is
/// answered 503 rather than queued without bound.
const MESH_CAPACITY: usize = 4096;

/// io_uring registered memory per executor: a network server needs little (glommio's 10 MiB
/// default is sized for file I/O, and pins three times that per core).
const IO_MEMORY: usize = 64 * 1024;
/// io_uring depth of each executor's rings (glommio's default: 128). The kernel sizes a ring's
/// cancellation hash table from it (2^(log2(completion entries) − 5) buckets, at most 256), and
/// every idle subscriber keeps one readiness poll in that table. glommio cancels and re-arms
/// its throughput timer on every turn of the executor loop, and each cancellation walks one
/// bucket: with 128 entries that is 8 buckets of ~2,400 polls at 19k subscribers, which took
/// 25% of a core in the spread benchmark (`io_poll_find`); at 4096, 256 buckets, it took 1.8%
/// and the delivery p99 fell from ~600 ms to ~3.5 ms. Costs ~1 MiB of ring memory per core.
const RING_DEPTH: usize = 4096;

/// A started gateway.
pub struct Running {
    /// The address every core listens on (port resolved when 0 was asked for).
    pub local_addr: SocketAddr,
    /// The admin listener's address, if it is on.
    pub admin_addr: Option<SocketAddr>,
    /// Number of cores serving.
    pub workers: usize,
    /// Each core's last sign of life.
    pub liveness: Liveness,
    stop: Stopper,
    tls_reload: Vec<flume::Sender<Arc<rustls::ServerConfig>>>,
    handles: Option<PoolThreadHandles<()>>,
    /// The access log's writer thread, finished once every core has stopped.
    access_log: Option<access_log::Writer>,
}

/// Hands a new TLS configuration to every core (certificate reload on SIGHUP): new
/// handshakes use it, established connections keep theirs.
#[derive(Clone)]
pub struct TlsReloader(Vec<flume::Sender<Arc<rustls::ServerConfig>>>);

impl TlsReloader {
    /// Sends `config` to every core.
    pub fn reload_tls(&self, config: Arc<rustls::ServerConfig>) {
        for tx in &self.0 {
            let _ = tx.send(config.clone());
        }
    }
}

/// Tells every core to stop; cheap to clone and usable from any thread.
#[derive(Clone)]
pub struct Stopper(Vec<flume::Sender<()>>);

impl Stopper {
    /// Tells every core to stop: stop accepting, finish publishes in flight, close
    /// subscribers after their last event. Idempotent.
    pub fn stop(&self) {
        for tx in &self.0 {
            let _ = tx.try_send(());
        }
    }
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The executors could not be created (io_uring, memlock, CPU placement).
    #[error("cannot start executors: {0}")]
    Executors(String),
    /// A core did not report ready.
    #[error("a core failed during start-up")]
    CoreFailed,
    /// The access log could not be opened.
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
}

/// What each core needs from the start-up thread.
pub(crate) struct Boot {
    pub cfg: Arc<Config>,
    pub publisher_key: Arc<str>,
    pub workers: usize,
    pub listeners: Mutex<Vec<Option<OwnedFd>>>,
    /// The admin listener, served by core 0.
    pub admin: Mutex<Option<OwnedFd>>,
    /// TLS configuration at start, if TLS is on.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Per core: where reloaded TLS configurations arrive.
    pub tls_reload: Mutex<Vec<Option<flume::Receiver<Arc<rustls::ServerConfig>>>>>,
    pub stop_rx: Mutex<Vec<Option<flume::Receiver<()>>>>,
    pub ready: flume::Sender<usize>,
    pub conns: Arc<AtomicUsize>,
    pub liveness: Liveness,
    /// Where each core hands its access log lines, when the access log is on.
    pub access_log: Option<flume::Sender<Option<Vec<u8>>>>,
}

/// When each core last showed it runs its tasks (its sweep ticks at least once a second),
/// for the systemd watchdog. Written once per tick per core, never on the event path.
#[derive(Clone)]
pub struct Liveness {
    start: Instant,
    ticks: Arc<[AtomicU64]>,
}

impl Liveness {
    fn new(cores: usize) -> Liveness {
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

/// Binds the listeners, starts one executor per core and returns once every core serves.
pub fn start(
    cfg: Config,
    publisher_key: String,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Running, StartError> {
    let workers = cfg.effective_workers();
    let (fds, local_addr) =
        sys::bind_reuseport(cfg.listen, workers, cfg.backlog).map_err(|source| {
            StartError::Bind {
                addr: cfg.listen,
                source,
            }
        })?;
    let admin = match cfg.admin() {
        Some(addr) => {
            let (mut fds, bound) = sys::bind_reuseport(addr, 1, 128)
                .map_err(|source| StartError::Bind { addr, source })?;
            (fds.pop(), Some(bound))
        }
        None => (None, None),
    };
    let (admin_fd, admin_addr) = admin;
    let access_log = access_log::Writer::start(&access_log::Target::parse(&cfg.access_log))
        .map_err(StartError::AccessLog)?;
    let (ready_tx, ready_rx) = flume::unbounded();
    let mut stop = Vec::with_capacity(workers);
    let mut stop_rx = Vec::with_capacity(workers);
    let mut tls_reload = Vec::with_capacity(workers);
    let mut tls_reload_rx = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = flume::bounded(1);
        stop.push(tx);
        stop_rx.push(Some(rx));
        let (tx, rx) = flume::unbounded();
        tls_reload.push(tx);
        tls_reload_rx.push(Some(rx));
    }
    let boot = Arc::new(Boot {
        cfg: Arc::new(cfg),
        publisher_key: publisher_key.into(),
        workers,
        listeners: Mutex::new(fds.into_iter().map(Some).collect()),
        admin: Mutex::new(admin_fd),
        tls,
        tls_reload: Mutex::new(tls_reload_rx),
        stop_rx: Mutex::new(stop_rx),
        ready: ready_tx,
        conns: Arc::new(AtomicUsize::new(0)),
        liveness: Liveness::new(workers),
        access_log: access_log.as_ref().map(access_log::Writer::sender),
    });
    let liveness = boot.liveness.clone();
    let mesh = MeshBuilder::full(workers, MESH_CAPACITY);
    let handles =
        LocalExecutorPoolBuilder::new(PoolPlacement::MaxSpread(workers, CpuSet::online().ok()))
            .name("ssegate")
            .io_memory(IO_MEMORY)
            .ring_depth(RING_DEPTH)
            .on_all_shards(move || async move {
                let (senders, receivers) = match mesh.join().await {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::error!(error = %e, "joining the core mesh failed");
                        return;
                    }
                };
                core::run(boot, senders, receivers).await;
            })
            .map_err(|e| StartError::Executors(e.to_string()))?;

    let mut running = Running {
        local_addr,
        admin_addr,
        workers,
        liveness,
        stop: Stopper(stop),
        tls_reload,
        handles: Some(handles),
        access_log,
    };
    for _ in 0..workers {
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(_) => {}
            Err(_) => {
                running.stop.stop();
                running.join();
                return Err(StartError::CoreFailed);
            }
        }
    }
    Ok(running)
}

impl Running {
    /// A handle that hands new TLS configurations to every core.
    pub fn tls_reloader(&self) -> TlsReloader {
        TlsReloader(self.tls_reload.clone())
    }

    /// A handle that stops the cores.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Waits for every core's executor to finish, then for the access log's last lines to be
    /// written. Returns whether all cores ended cleanly.
    pub fn join(&mut self) -> bool {
        let ok = match self.handles.take() {
            Some(h) => h.join_all().into_iter().all(|r| r.is_ok()),
            None => true,
        };
        if let Some(w) = self.access_log.take() {
            w.finish();
        }
        ok
    }
}
