//! The process's start-up and shutdown, in one place. Owns: binding the listeners, starting
//! one pinned executor per core, each core's life (build its state, start its tasks, report
//! ready, serve, shut down in order), and the handles `main` keeps (stop, TLS reload, join).
//! May call everything below it: `runtime`, `conn`, `net`, `hub`, `auth`, `access_log`,
//! `config`.
//!
//! Each executor gets what it needs by value when it is spawned (`CoreBoot`): its own
//! listener, stop and reload channels; core 0 also the admin listener and the order.
//!
//! Shutdown, on every core at once (`shutdown`): stop accepting and close idle keep-alive
//! connections; let publishes in flight finish on every core; once the order has sent its
//! last event to every core, flush each subscriber's queue and close it (spread over
//! `drain_period`, each with a `retry:` hint) so that clients reconnect elsewhere.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{CpuSet, ExecutorJoinHandle, LocalExecutorBuilder, Placement};

use crate::access_log::{self, AccessLog};
use crate::auth::Verifier;
use crate::config::{Config, Engine};
use crate::engine::{self, redis::Redis};
use crate::hub::sequencer::{self, Sequencer};
use crate::net::{listener, sys};
use crate::runtime::{Core, CoreMsg, Duties, Liveness, Parts, MESH_CAPACITY, SEQUENCER};

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
    Executors(#[source] std::io::Error),
    /// A core did not report ready.
    #[error("a core failed during start-up")]
    CoreFailed,
    /// The access log could not be opened.
    #[error("cannot open the access log: {0}")]
    AccessLog(#[source] std::io::Error),
    /// `redis_url` names no reachable address.
    #[error("invalid `redis_url`: {0}")]
    RedisUrl(#[source] engine::redis::UrlError),
    /// The TLS configuration for `rediss://` cannot be built.
    #[error("TLS to Redis: {0}")]
    RedisTls(#[source] crate::net::tls::TlsError),
    /// Redis could not be reached at start: a node that cannot see the order does not say
    /// it is ready (systemd restarts it; `Restart=on-failure`).
    #[error("cannot start the redis engine at {url}: {source}")]
    Redis {
        /// The server's address.
        url: SocketAddr,
        /// What failed.
        source: engine::redis::RedisError,
    },
}

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
    tls_reload: TlsReloader,
    executors: Vec<ExecutorJoinHandle<()>>,
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

/// What every core shares from the start-up thread.
struct Shared {
    cfg: Arc<Config>,
    publisher_key: Arc<str>,
    workers: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
    conns: Arc<AtomicUsize>,
    liveness: Liveness,
    /// Where each core hands its access log lines, when the access log is on.
    access_log: Option<flume::Sender<Option<Vec<u8>>>>,
    /// The redis engine's options, when it is the engine.
    redis: Option<engine::redis::Options>,
    /// Events the order placed before the cores serve (the redis engine's history, loaded
    /// at start): set by the sequencing core before it joins the mesh, read after.
    preloaded: AtomicU64,
    /// Each core reports its index here once it serves, or why it cannot (or drops its
    /// sender).
    ready: flume::Sender<Result<usize, StartError>>,
}

/// What one core gets, by value, when its executor is spawned.
struct CoreBoot {
    index: usize,
    listener: OwnedFd,
    /// Core 0 only: the admin listener.
    admin: Option<OwnedFd>,
    stop: flume::Receiver<()>,
    tls_reload: flume::Receiver<Arc<rustls::ServerConfig>>,
    mesh: MeshBuilder<CoreMsg, glommio::channels::channel_mesh::Full>,
    shared: Arc<Shared>,
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
    let (mut admin_fd, admin_addr) = match cfg.admin() {
        Some(addr) => {
            let (mut fds, bound) = sys::bind_reuseport(addr, 1, 128)
                .map_err(|source| StartError::Bind { addr, source })?;
            (fds.pop(), Some(bound))
        }
        None => (None, None),
    };
    let access_log = access_log::Writer::start(&access_log::Target::parse(&cfg.access_log))
        .map_err(StartError::AccessLog)?;
    let redis = match cfg.engine {
        Engine::Memory => None,
        Engine::Redis => {
            let url = engine::redis::Url::parse(&cfg.redis_url).map_err(StartError::RedisUrl)?;
            let addr = url.resolve().map_err(StartError::RedisUrl)?;
            let tls = match url.tls {
                false => None,
                true => Some(engine::redis::TlsClient {
                    config: crate::net::tls::client(cfg.redis_tls_ca.as_deref())
                        .map_err(StartError::RedisTls)?,
                    name: rustls_pki_types::ServerName::try_from(url.host.clone())
                        .map_err(|_| StartError::RedisUrl(engine::redis::UrlError::Host))?,
                }),
            };
            Some(engine::redis::Options {
                url,
                addr,
                tls,
                stream: cfg.redis_stream.clone(),
                history: cfg.redis_history_size,
                timeout: cfg.redis_timeout,
                backfill: cfg.history_size.min(cfg.redis_history_size),
            })
        }
    };
    let (ready_tx, ready_rx) = flume::unbounded();
    let shared = Arc::new(Shared {
        cfg: Arc::new(cfg),
        publisher_key: publisher_key.into(),
        workers,
        tls,
        conns: Arc::new(AtomicUsize::new(0)),
        liveness: Liveness::new(workers),
        access_log: access_log.as_ref().map(access_log::Writer::sender),
        redis,
        preloaded: AtomicU64::new(0),
        ready: ready_tx,
    });
    let mesh = MeshBuilder::full(workers, MESH_CAPACITY);
    let cpus = spread_cpus(workers);
    let mut stop = Vec::with_capacity(workers);
    let mut reload = Vec::with_capacity(workers);
    let mut executors = Vec::with_capacity(workers);
    let mut failed = None;
    for (index, listener) in fds.into_iter().enumerate() {
        let (stop_tx, stop_rx) = flume::bounded(1);
        let (reload_tx, reload_rx) = flume::unbounded();
        stop.push(stop_tx);
        reload.push(reload_tx);
        let boot = CoreBoot {
            index,
            listener,
            admin: if index == SEQUENCER {
                admin_fd.take()
            } else {
                None
            },
            stop: stop_rx,
            tls_reload: reload_rx,
            mesh: mesh.clone(),
            shared: shared.clone(),
        };
        let placement = cpus
            .get(index)
            .map_or(Placement::Unbound, |&c| Placement::Fixed(c));
        let spawned = LocalExecutorBuilder::new(placement)
            .name("ssegate")
            .io_memory(IO_MEMORY)
            .ring_depth(RING_DEPTH)
            .spawn(move || run_core(boot));
        match spawned {
            Ok(handle) => executors.push(handle),
            Err(e) => {
                failed = Some(StartError::Executors(e.into()));
                break;
            }
        }
    }
    let liveness = shared.liveness.clone();
    drop(shared);
    let mut running = Running {
        local_addr,
        admin_addr,
        workers,
        liveness,
        stop: Stopper(stop),
        tls_reload: TlsReloader(reload),
        executors,
        access_log,
    };
    if let Some(e) = failed {
        running.stop.stop();
        running.join();
        return Err(e);
    }
    for _ in 0..workers {
        let failed = match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => continue,
            Ok(Err(e)) => e,
            Err(_) => StartError::CoreFailed,
        };
        running.stop.stop();
        running.join();
        return Err(failed);
    }
    Ok(running)
}

/// One CPU per core, spread over physical cores before their siblings (what glommio's
/// `MaxSpread` placement does); empty when the topology cannot be read (then unpinned).
fn spread_cpus(n: usize) -> Vec<usize> {
    let Ok(online) = CpuSet::online() else {
        return Vec::new();
    };
    let mut locs: Vec<_> = online.into_iter().collect();
    locs.sort_by_key(|l| (l.numa_node, l.package, l.core, l.cpu));
    // Rank each CPU by how many siblings on its physical core come before it.
    let mut ranked: Vec<(usize, usize, usize)> = Vec::with_capacity(locs.len());
    let mut prev = None;
    let mut rank = 0;
    for (i, l) in locs.iter().enumerate() {
        let key = (l.numa_node, l.package, l.core);
        rank = if prev == Some(key) { rank + 1 } else { 0 };
        prev = Some(key);
        ranked.push((rank, i, l.cpu));
    }
    ranked.sort();
    ranked.into_iter().take(n).map(|(_, _, cpu)| cpu).collect()
}

impl Running {
    /// A handle that hands new TLS configurations to every core.
    pub fn tls_reloader(&self) -> TlsReloader {
        self.tls_reload.clone()
    }

    /// A handle that stops the cores.
    pub fn stopper(&self) -> Stopper {
        self.stop.clone()
    }

    /// Waits for every core's executor to finish, then for the access log's last lines to be
    /// written. Returns whether all cores ended cleanly.
    pub fn join(&mut self) -> bool {
        let ok = self
            .executors
            .drain(..)
            .map(ExecutorJoinHandle::join)
            .fold(true, |ok, r| ok & r.is_ok());
        if let Some(w) = self.access_log.take() {
            w.finish();
        }
        ok
    }
}

/// A core's life: build its state, start its tasks, report ready, serve until told to stop,
/// then shut down in order.
async fn run_core(boot: CoreBoot) {
    let CoreBoot {
        index,
        listener,
        admin,
        stop,
        tls_reload,
        mesh,
        shared,
    } = boot;
    let cfg = shared.cfg.clone();
    // The redis engine is connected before the mesh is joined: a sequencer that cannot see
    // the order ends its core here, and its peers, still waiting to join, are released by
    // the stop that `start` then sends (after the join they would wait for it to drain).
    let mut redis = None;
    let order: Option<Rc<dyn Sequencer>> = match (index == SEQUENCER, &shared.redis) {
        (false, _) => None,
        (true, None) => Some(Rc::new(sequencer::Memory::new(MESH_CAPACITY))),
        (true, Some(opts)) => match Redis::connect(opts.clone(), MESH_CAPACITY).await {
            Ok(r) => {
                shared.preloaded.store(r.placed(), Ordering::Release);
                redis = Some(r.clone());
                Some(r)
            }
            Err(source) => {
                let _ = shared.ready.send(Err(StartError::Redis {
                    url: opts.addr,
                    source,
                }));
                return;
            }
        },
    };
    // Raced against the stop: if a later executor could not be created, this one would
    // otherwise wait for its peers forever.
    let join = future::or(async { mesh.join().await.ok() }, async {
        let _ = stop.recv_async().await;
        None
    });
    let Some((senders, receivers)) = join.await else {
        tracing::error!(core = index, "joining the core mesh failed");
        return;
    };
    if senders.peer_id() != index {
        // Peers are numbered in executor creation order, which is `index`'s order.
        tracing::error!(
            core = index,
            peer = senders.peer_id(),
            "mesh numbering differs"
        );
        return;
    }
    let publisher_auth = Verifier::new(cfg.publisher_jwt_algorithm, &shared.publisher_key);
    let subscriber_auth = match &cfg.subscriber_jwt_key {
        Some(key) => Verifier::new(cfg.subscriber_jwt_algorithm, key),
        None => Verifier::new(cfg.publisher_jwt_algorithm, &shared.publisher_key),
    };
    let (publisher_auth, subscriber_auth) = match (publisher_auth, subscriber_auth) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(core = index, error = %e, "invalid JWT key");
            return;
        }
    };
    let duties = Duties::new(Parts {
        index,
        workers: shared.workers,
        cfg,
        publisher_auth,
        subscriber_auth,
        tls: shared.tls.clone(),
        conns: shared.conns.clone(),
        access_log: shared
            .access_log
            .clone()
            .map(|tx| AccessLog::new(index, tx)),
        liveness: shared.liveness.clone(),
        order,
        mesh: senders,
    });
    let core = duties.core().clone();

    {
        let core = core.clone();
        glommio::spawn_local(async move {
            while let Ok(config) = tls_reload.recv_async().await {
                *core.tls.borrow_mut() = Some(config);
                tracing::info!(core = core.index, "TLS certificate reloaded");
            }
        })
        .detach();
    }
    glommio::spawn_local(duties.clone().run_order()).detach();
    if let Some(redis) = redis {
        glommio::spawn_local(redis.clone().run_publisher()).detach();
        glommio::spawn_local(redis.clone().run_reader()).detach();
        glommio::spawn_local(redis.run_prober()).detach();
    }
    let receivers = Rc::new(receivers);
    for peer in (0..duties.workers()).filter(|&p| p != index) {
        glommio::spawn_local(duties.clone().run_receiver(receivers.clone(), peer)).detach();
    }
    duties.tick();
    glommio::spawn_local(duties.clone().run_sweep()).detach();
    glommio::spawn_local(crate::conn::flusher::run(core.clone())).detach();
    if let Some(admin) = admin {
        let admin = sys::glommio_listener(admin);
        glommio::spawn_local(crate::conn::admin::run(core.clone(), admin)).detach();
    }
    // Resume must find what was there before this process: every core applies the loaded
    // history before it accepts (bounded: a stuck mesh must not keep a core from serving).
    let preloaded = shared.preloaded.load(Ordering::Acquire);
    if preloaded > 0 {
        let loaded = future::or(
            async {
                core.wait_applied(preloaded).await;
                true
            },
            async {
                glommio::timer::sleep(Duration::from_secs(10)).await;
                false
            },
        );
        if !loaded.await {
            tracing::warn!(
                core = index,
                preloaded,
                "history not loaded within 10 s; serving"
            );
        }
    }
    let accept = {
        let core = core.clone();
        glommio::spawn_local(async move {
            let listener = sys::glommio_listener(listener);
            // Connection ids: the core in the top 16 bits, a count below.
            let mut conn_id = (index as u64) << 48;
            let admit = |tcp| {
                conn_id += 1;
                crate::conn::admit(&core, tcp, conn_id);
            };
            listener::run(&listener, index, || core.stopped(), admit).await
        })
    };
    let _ = shared.ready.send(Ok(index));
    tracing::debug!(core = index, "core serving");

    let _ = stop.recv_async().await;
    shutdown(&duties).await;
    accept.await;
    duties.flush_access_log();
    let s = &core.stats;
    tracing::info!(
        core = index,
        accepted = s.accepted.get(),
        subscribed = s.subscribed.get(),
        published = s.published.get(),
        delivered = s.delivered.get(),
        slow_consumers = s.slow_consumers.get(),
        "core stopped"
    );
}

/// Ordered shutdown of one core (every core runs it at once; see the module docs).
async fn shutdown(duties: &Duties) {
    duties.stop_serving().await;
    duties.finish_order().await;
    drain_subscribers(duties.core()).await;
    duties.until_no_subscriber().await;
}

/// Closes this core's subscribers spread over `drain_period` rather than all at once, so
/// their reconnections (to another process on the same port, or after a restart) do not
/// arrive as one storm. Each gets a final `retry:` hint (jittered 100–1000 ms) so it
/// reconnects promptly instead of after the browser's default delay.
async fn drain_subscribers(core: &Core) {
    const STEPS: usize = 20;
    let period = core.cfg.drain_period;
    if period.is_zero() {
        core.shard.borrow_mut().drain_all();
        return;
    }
    let step = period / STEPS as u32;
    for part in 0..STEPS {
        let retry = bytes::Bytes::from(format!("retry: {}\n\n", fastrand::u32(100..1000)));
        let drained = core
            .shard
            .borrow_mut()
            .drain_slice(part, STEPS, Some(&retry));
        tracing::debug!(core = core.index, part, drained, "draining subscribers");
        if part + 1 < STEPS && !core.shard.borrow().is_empty() {
            glommio::timer::sleep(step).await;
        }
    }
}
