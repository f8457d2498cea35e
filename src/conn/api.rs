//! ③ The subscriptions API (`GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`):
//! authorized like a subscription, answered from every core's shard gathered over the mesh.

use super::{Handled, Stream};
use futures_lite::io::AsyncWriteExt;

use super::publisher::verify_request;
use crate::error::HttpError;
use crate::http::Request;
use crate::hub::subscriptions::{self, Query};
use crate::runtime::Core;

/// Answers one API request; returns the response to write, or the error.
pub async fn respond(
    core: &Core,
    req: &Request,
    query: &Query,
    cors: &str,
) -> Result<Vec<u8>, HttpError> {
    // The spec: the client must present a token whose mercure.subscribe selectors match the
    // requested URL.
    let claims = verify_request(req, &core.subscriber_auth, "missing subscriber token")?;
    let allowed = claims
        .subscribe_rights()
        .is_some_and(|rights| rights.iter().any(|s| s.matches(&req.path)));
    if !allowed {
        return Err(HttpError::Forbidden(
            "token's mercure.subscribe does not cover this URL",
        ));
    }
    let all = core.gather_subscriptions().await?;
    let last_event_id = core
        .history
        .borrow()
        .newest_id()
        .unwrap_or_else(|| "earliest".into());
    let body =
        subscriptions::render(&req.path, query, &all, &last_event_id).ok_or(HttpError::NotFound)?;
    Ok(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/ld+json\r\nCache-Control: must-revalidate\r\nContent-Length: {}\r\nConnection: {}\r\n{cors}\r\n{body}",
        body.len(),
        if req.keep_alive { "keep-alive" } else { "close" },
    )
    .into_bytes())
}

/// Writes the API's answer or error: the status, and whether the connection may be reused.
pub(super) async fn handle(
    core: &Core,
    stream: &mut Stream,
    req: &Request,
    query: &Query,
    cors: &str,
    conn_id: u64,
) -> Handled {
    match respond(core, req, query, cors).await {
        Ok(resp) => match stream.write_all(&resp).await {
            Ok(()) => Handled::new(200, req.keep_alive),
            Err(_) => Handled::gone(200),
        },
        Err(e) => {
            let keep = req.keep_alive && !e.closes_connection();
            if super::reply_error(core, stream, conn_id, &e, keep, cors).await {
                Handled::new(e.status(), keep)
            } else {
                Handled::gone(e.status())
            }
        }
    }
}
