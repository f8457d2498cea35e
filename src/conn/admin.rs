//! The admin listener (core 0): `/metrics` (Prometheus text, every core's counters gathered
//! over the mesh and labelled by core), `/healthz` (the process answers) and `/readyz` (the
//! cores serve, are not shutting down, and the order's engine takes publishes).
//!
//! Owns: the admin routes. May call: `runtime` (gather), `metrics`, `http`, `net`.

use std::rc::Rc;
use std::time::Instant;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpListener;

use super::{linger, read_head, HeadError, Stream};
use crate::error::HttpError;
use crate::http::{Method, Request, Response};
use crate::metrics;
use crate::net::listener::accept_or_stop;
use crate::runtime::{Core, Question, Reply};

/// Accepts admin connections until the core stops.
pub async fn run(core: Rc<Core>, listener: TcpListener) {
    loop {
        match accept_or_stop(&listener, core.stopped()).await {
            None => break,
            Some(Ok(stream)) => {
                glommio::spawn_local(serve(core.clone(), Box::new(Stream::plain(stream)))).detach();
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "admin accept failed");
                glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve(core: Rc<Core>, mut stream: Box<Stream>) {
    let mut buf = Vec::new();
    let mut first = Some(Instant::now() + core.cfg.header_timeout);
    loop {
        let (answer, keep) = match read_head(&core, &mut stream, &mut buf, first.take()).await {
            Ok(req) => (answer(&core, &req).await, req.keep_alive),
            Err(HeadError::Http(e)) => (Err(e), false),
            Err(_) => return,
        };
        let resp = answer
            .unwrap_or_else(|e| {
                core.stats.refused(e.status());
                Response::error(&e)
            })
            .keep_alive(keep);
        let ok = stream.write_all(&resp.to_bytes()).await.is_ok();
        if !ok || !resp.keeps_alive() {
            break;
        }
    }
    linger(stream).await;
}

async fn answer(core: &Core, req: &Request) -> Result<Response, HttpError> {
    match (req.method(), req.path.as_str()) {
        (Method::Get, "/metrics") => {
            let mut cores: Vec<_> = core
                .gather(Question::Stats)
                .await?
                .into_iter()
                .filter_map(|r| match r {
                    Reply::Stats(s) => Some(*s),
                    _ => None,
                })
                .collect();
            cores.sort_by_key(|s| s.core);
            Ok(Response::ok(
                "text/plain; version=0.0.4",
                metrics::render(&cores, core.engine().as_ref()),
            ))
        }
        (Method::Get, "/healthz") => Ok(Response::ok("text/plain", "ok\n")),
        (Method::Get, "/readyz") if core.is_stopping() => {
            Err(HttpError::Unavailable("shutting down"))
        }
        (Method::Get, "/readyz") => match core.engine().and_then(|e| e.down) {
            Some(why) => Err(HttpError::Unavailable(why)),
            None => Ok(Response::ok("text/plain", "ready\n")),
        },
        (Method::Get, _) => Err(HttpError::NotFound),
        _ => Err(HttpError::MethodNotAllowed("GET")),
    }
}
