//! ① A per-core accept loop. Owns: accepting until told to stop, and backing off on resource
//! exhaustion instead of spinning. May call: nothing of the crate: what an accepted
//! connection becomes is the caller's (`conn::admit`).

use std::future::Future;
use std::io;
use std::time::Duration;

use futures_lite::future;
use glommio::net::{TcpListener, TcpStream};

/// How long to pause accepting after EMFILE/ENFILE/ENOBUFS/ENOMEM.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next accepted connection, or `None` once `stop` resolves (the pending accept is
/// dropped then).
pub async fn accept_or_stop(
    listener: &TcpListener,
    stop: impl Future<Output = ()>,
) -> Option<glommio::Result<TcpStream, ()>> {
    future::or(async { Some(listener.accept().await) }, async {
        stop.await;
        None
    })
    .await
}

/// Accepts connections on `listener` and hands each to `serve` until `stop()` resolves;
/// `core` names the core in log lines.
pub async fn run<S, F>(
    listener: &TcpListener,
    core: usize,
    stop: S,
    mut serve: impl FnMut(TcpStream),
) where
    S: Fn() -> F,
    F: Future<Output = ()>,
{
    loop {
        match accept_or_stop(listener, stop()).await {
            None => break,
            Some(Ok(stream)) => serve(stream),
            Some(Err(e)) => {
                let e = io::Error::from(e);
                if is_exhaustion(&e) {
                    tracing::warn!(core, error = %e, "accept failed, backing off");
                    future::or(glommio::timer::sleep(ACCEPT_BACKOFF), stop()).await;
                } else {
                    tracing::debug!(core, error = %e, "accept failed");
                }
            }
        }
    }
    tracing::debug!(core, "listener closed");
}

fn is_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
