//! The admin listener (core 0): `/metrics` (Prometheus text, every core's counters gathered
//! over the mesh and labelled by core), `/healthz` (the process answers) and `/readyz` (the
//! cores serve and are not shutting down).

use std::rc::Rc;
use std::time::Instant;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpListener;

use super::Stream;

use super::{linger, read_head, reply_error, HeadError};
use crate::error::HttpError;
use crate::http::Method;
use crate::metrics;
use crate::net::listener::accept_or_stop;
use crate::runtime::{Answer, Core, QueryKind};

/// Accepts admin connections until the core stops.
pub async fn run(core: Rc<Core>, listener: TcpListener) {
    loop {
        match accept_or_stop(&core, &listener).await {
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
        let req = match read_head(&core, &mut stream, &mut buf, first.take()).await {
            Ok(req) => req,
            Err(HeadError::Http(e)) => {
                reply_error(&core, &mut stream, 0, &e, false, "").await;
                break;
            }
            Err(_) => return,
        };
        let answer = match (req.method(), req.path.as_str()) {
            (Method::Get, "/metrics") => match core.gather(QueryKind::Stats).await {
                Ok(answers) => {
                    let mut cores: Vec<_> = answers
                        .into_iter()
                        .filter_map(|a| match a {
                            Answer::Stats(s) => Some(*s),
                            Answer::Subscriptions(_) => None,
                        })
                        .collect();
                    cores.sort_by_key(|s| s.core);
                    Ok(("text/plain; version=0.0.4", metrics::render(&cores)))
                }
                Err(e) => Err(e),
            },
            (Method::Get, "/healthz") => Ok(("text/plain", "ok\n".to_owned())),
            (Method::Get, "/readyz") if core.is_stopping() => {
                Err(HttpError::Unavailable("shutting down"))
            }
            (Method::Get, "/readyz") => Ok(("text/plain", "ready\n".to_owned())),
            (Method::Get, _) => Err(HttpError::NotFound),
            _ => Err(HttpError::MethodNotAllowed("GET")),
        };
        let ok = match answer {
            Ok((content_type, body)) => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
                    body.len(),
                    if req.keep_alive { "keep-alive" } else { "close" }
                );
                stream.write_all(head.as_bytes()).await.is_ok()
                    && stream.write_all(body.as_bytes()).await.is_ok()
            }
            Err(e) => reply_error(&core, &mut stream, 0, &e, req.keep_alive, "").await,
        };
        if !ok || !req.keep_alive {
            break;
        }
    }
    linger(stream).await;
}
