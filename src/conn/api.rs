//! ③ The subscriptions API (`GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`):
//! authorized like a subscription, answered from every core's shard gathered over the mesh.
//!
//! Owns: the API's authorization and answer. May call: `runtime` (gather), `hub`, `http`.

use super::publisher::verify_request;
use crate::error::HttpError;
use crate::http::{Request, Response};
use crate::hub::subscriptions::{self, Query};
use crate::runtime::Core;

/// Answers one API request.
pub async fn respond(core: &Core, req: &Request, query: &Query) -> Result<Response, HttpError> {
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
    Ok(Response::ok("application/ld+json", body).header("Cache-Control", "must-revalidate"))
}
