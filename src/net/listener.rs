//! ① The per-core accept loop: accepts until told to stop, enforces `max_connections`,
//! backs off on resource exhaustion instead of spinning, and hands each connection to its
//! own task on this core.

use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_lite::future;
use glommio::net::{TcpListener, TcpStream};

use crate::conn;
use crate::runtime::Core;

/// How long to pause accepting after EMFILE/ENFILE/ENOBUFS/ENOMEM.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next accepted connection, or `None` once the core is told to stop (the pending
/// accept is dropped then).
pub async fn accept_or_stop(
    core: &Core,
    listener: &TcpListener,
) -> Option<glommio::Result<TcpStream, ()>> {
    future::or(async { Some(listener.accept().await) }, async {
        core.stopped().await;
        None
    })
    .await
}

/// Accepts connections on this core's listener until the core stops.
pub async fn run(core: Rc<Core>, listener: TcpListener) {
    let mut next_conn_id: u64 = (core.index as u64) << 48;
    loop {
        match accept_or_stop(&core, &listener).await {
            None => break,
            Some(Ok(stream)) => {
                next_conn_id += 1;
                let open = core.conns.fetch_add(1, Ordering::Relaxed) + 1;
                core.stats.accepted.set(core.stats.accepted.get() + 1);
                let over = open > core.cfg.max_connections;
                glommio::spawn_local(conn::serve(
                    core.clone(),
                    Box::new(stream),
                    next_conn_id,
                    over,
                ))
                .detach();
            }
            Some(Err(e)) => {
                let e = io::Error::from(e);
                if is_exhaustion(&e) {
                    tracing::warn!(core = core.index, error = %e, "accept failed, backing off");
                    future::or(glommio::timer::sleep(ACCEPT_BACKOFF), core.stopped()).await;
                } else {
                    tracing::debug!(core = core.index, error = %e, "accept failed");
                }
            }
        }
    }
    tracing::debug!(core = core.index, "listener closed");
}

fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
