//! The `ssegate` binary: flags and file → configuration → logging → cores → signals.

use std::process::ExitCode;
use std::sync::mpsc;

use anyhow::Context;
use clap::Parser;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use ssegate::auth;
use ssegate::config::{Cli, Config, LogFormat};
use ssegate::{runtime, server};

/// mimalloc rather than glibc's malloc: the publish path makes a dozen short-lived allocations
/// per event, and glibc's bookkeeping (`_int_malloc`, `_int_free`, `unlink_chunk`,
/// `malloc_consolidate`) was ~9% of a core in the publish profile; with mimalloc one core
/// accepts ~12% more publishes. Two settings keep idle memory where glibc had it (1.3 KB per
/// subscriber): no transparent huge pages (the `no_thp` feature; with them the process starts
/// 14 MB larger) and `PURGE_DELAY_MS`. Both measured in `bench-results/allocator-2026-11-22.md`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long mimalloc keeps freed pages before returning them to the OS. Its default (1 s) left
/// the pages freed after connection set-up resident in an idle gateway: +200 B per idle
/// subscriber. 10 ms (mimalloc 2's default) does not.
const PURGE_DELAY_MS: std::ffi::c_long = 10;
/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (libmimalloc-sys names no constant).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// What the main thread waits for.
enum Happening {
    Signal(i32),
    CoresExited(bool),
}

fn main() -> ExitCode {
    // SAFETY: sets a plain integer option; mimalloc reads it on each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ssegate: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let cfg = cli.load()?;
    cfg.validate()?;
    if cli.check_config {
        println!("{cfg:#?}");
        return Ok(ExitCode::SUCCESS);
    }
    init_tracing(&cfg);

    // Signals are caught by a plain thread (glommio has no signal API) and forwarded; the
    // handlers are installed before any executor starts.
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    let (tx, events) = mpsc::channel();
    let signal_tx = tx.clone();
    std::thread::Builder::new()
        .name("ssegate-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if signal_tx.send(Happening::Signal(sig)).is_err() {
                    break;
                }
            }
        })?;

    let key = publisher_key(&cfg)?;
    let shutdown_timeout = cfg.shutdown_timeout;
    let tls = load_tls(&cfg)?;
    let tls_paths = cfg.tls_cert.clone().zip(cfg.tls_key.clone());
    let http2 = cfg.http2;
    let mut running = server::start(cfg, key, tls)?;
    let reloader = running.tls_reloader();
    let stopper = running.stopper();
    if let Some(admin) = running.admin_addr {
        println!("ssegate admin on {admin}");
    }
    println!(
        "ssegate listening on {} (workers={})",
        running.local_addr, running.workers
    );
    tracing::info!(addr = %running.local_addr, workers = running.workers, "ready");
    // systemd (Type=notify): ready only now that every core's listener is bound and serving.
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status("serving"),
    ]);
    if let Some(period) = sd_notify::watchdog_enabled() {
        let liveness = running.liveness.clone();
        std::thread::Builder::new()
            .name("ssegate-watchdog".into())
            .spawn(move || watchdog(liveness, period))?;
    }
    std::thread::Builder::new()
        .name("ssegate-join".into())
        .spawn(move || {
            let ok = running.join();
            let _ = tx.send(Happening::CoresExited(ok));
        })?;

    loop {
        match events.recv() {
            Ok(Happening::Signal(SIGHUP)) => match &tls_paths {
                // A bad new certificate is refused with a log line; the old one stays.
                Some((cert, key)) => match ssegate::net::tls::load(cert, key, http2) {
                    Ok(config) => {
                        reloader.reload_tls(config);
                        tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload refused; keeping the current certificate")
                    }
                },
                None => tracing::info!("SIGHUP: nothing to reload (TLS is off)"),
            },
            Ok(Happening::Signal(sig)) => {
                tracing::info!(signal = sig, timeout = ?shutdown_timeout, "shutting down");
                break;
            }
            Ok(Happening::CoresExited(_)) | Err(_) => {
                tracing::error!("a core stopped unexpectedly");
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Stopping,
        sd_notify::NotifyState::Status("draining"),
    ]);
    stopper.stop();
    match events.recv_timeout(shutdown_timeout) {
        Ok(Happening::CoresExited(ok)) => {
            tracing::info!("stopped");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Ok(Happening::Signal(sig)) => {
            tracing::warn!(signal = sig, "second signal: exiting now");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            tracing::warn!("shutdown_timeout reached: exiting with connections open");
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Pings the systemd watchdog at half its period, but only while every core's executor is
/// running its tasks (each core's sweep ticks at least once a second; three missed ticks
/// mean a stalled core). A stalled core therefore stops the pings and systemd restarts us.
fn watchdog(liveness: runtime::Liveness, period: std::time::Duration) {
    let every = period / 2;
    let within = std::time::Duration::from_secs(3);
    loop {
        if liveness.all_responsive(within) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("a core has not run for 3 s: withholding the watchdog ping");
        }
        std::thread::sleep(every);
    }
}

/// The TLS configuration, when `tls_cert` and `tls_key` are set.
fn load_tls(cfg: &Config) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    match (&cfg.tls_cert, &cfg.tls_key) {
        // As a message: its text already ends with its source's, which `{e:#}` would repeat.
        (Some(cert), Some(key)) => Ok(Some(
            ssegate::net::tls::load(cert, key, cfg.http2).map_err(anyhow::Error::msg)?,
        )),
        _ => Ok(None),
    }
}

/// The configured publisher key, or a random one for this run with a token to use it.
fn publisher_key(cfg: &Config) -> anyhow::Result<String> {
    if let Some(k) = &cfg.publisher_jwt_key {
        return Ok(k.clone());
    }
    let key = auth::random_secret().context("generating a publisher key")?;
    let token = auth::sign_hs256(
        &key,
        &auth::Claims::new(auth::MercureClaim {
            publish: Some(vec!["*".into()]),
            subscribe: Some(vec!["*".into()]),
            payload: None,
        }),
    );
    tracing::warn!("no publisher_jwt_key configured: generated a random key for this run only");
    println!("publisher token (valid until restart): {token}");
    Ok(key)
}

fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
