//! ③ A publish request: limits, token, body, validation, then the sequencer's
//! acknowledgement, answered with the event's id.
//!
//! Owns: a POST's checks, body and answer. May call: `runtime` (publish), `hub`, `auth`,
//! `http`.

use std::time::Instant;

use super::Stream;
use futures_lite::io::AsyncWriteExt;

use super::{read_more, with_timeout, Outcome};
use crate::auth::{find_token, Claims, Verifier};
use crate::error::HttpError;
use crate::http::{parse_form, response, Request, Response};
use crate::hub::publish::parse_update;
use crate::runtime::Core;

const FORM: &str = "application/x-www-form-urlencoded";

/// Handles one POST: the answer (the event's id, or why not) and whether its body was read.
pub(super) async fn handle(
    core: &Core,
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    req: &Request,
) -> Outcome {
    // Checks that need no body. A refusal here leaves the body unread.
    let len = match precheck(core, req) {
        Ok(len) => len,
        Err(e) => return Outcome::Answer(Err(e), false),
    };
    let claims = match verify_request(req, &core.publisher_auth, "missing bearer token") {
        Ok(c) => c,
        Err(e) => return Outcome::Answer(Err(e), false),
    };
    if req.expect_continue && stream.write_all(response::CONTINUE).await.is_err() {
        return Outcome::Gone(0);
    }
    if read_body(core, stream, buf, len).await.is_err() {
        return Outcome::Gone(0);
    }
    let answer = accept(core, &claims, &buf[..len]).await;
    buf.drain(..len);
    Outcome::Answer(answer, true)
}

/// Publishes the update in a body the client's token may publish, once the order has it;
/// the answer carries its id. Both protocols end here.
pub(super) async fn accept(
    core: &Core,
    claims: &Claims,
    body: &[u8],
) -> Result<Response, HttpError> {
    let update = parse_update(body, core.cfg.max_topics)?;
    if !claims.may_publish(&update.topics) {
        return Err(HttpError::Forbidden(
            "token does not allow publishing to these topics",
        ));
    }
    let id = core.publish(update).await?;
    Ok(Response::ok("text/plain; charset=utf-8", String::from(id))
        .header("X-Ssegate-Worker", itoa::Buffer::new().format(core.index)))
}

/// Verifies the token a request presents (`Authorization` header, else `authorization` in
/// the query, else the cookie, as the spec orders them) with `verifier`; `missing` is the
/// 401 reason when there is none.
pub(super) fn verify_request(
    req: &Request,
    verifier: &Verifier,
    missing: &'static str,
) -> Result<std::rc::Rc<Claims>, HttpError> {
    let query_token = query_param(&req.query, "authorization")?;
    let token = find_token(
        req.authorization.as_deref(),
        query_token.as_deref(),
        req.cookie.as_deref(),
    )?
    .ok_or(HttpError::Unauthorized(missing))?;
    verifier.verify(token)
}

/// The first value of `name` in a query string, decoded.
pub(super) fn query_param(query: &str, name: &str) -> Result<Option<String>, HttpError> {
    if !query.contains(name) {
        return Ok(None);
    }
    Ok(parse_form(query.as_bytes())?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v))
}

/// Validates framing and media type; returns the body length.
fn precheck(core: &Core, req: &Request) -> Result<usize, HttpError> {
    if req.has_transfer_encoding {
        return Err(HttpError::LengthRequired);
    }
    let len = req.content_length.ok_or(HttpError::LengthRequired)?;
    if len > core.cfg.max_body_bytes {
        return Err(HttpError::PayloadTooLarge);
    }
    check_media(req, len)?;
    Ok(len)
}

/// The body must be a form, or empty with no type.
pub(super) fn check_media(req: &Request, len: usize) -> Result<(), HttpError> {
    let media = req
        .content_type
        .as_deref()
        .map(|ct| ct.split(';').next().unwrap_or("").trim());
    match media {
        Some(m) if m.eq_ignore_ascii_case(FORM) => Ok(()),
        None if len == 0 => Ok(()),
        _ => Err(HttpError::UnsupportedMediaType),
    }
}

/// Makes sure `buf` holds the `len`-byte body, reading within `header_timeout`.
async fn read_body(
    core: &Core,
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    len: usize,
) -> std::io::Result<()> {
    let deadline = Instant::now() + core.cfg.header_timeout;
    while buf.len() < len {
        let left = deadline.saturating_duration_since(Instant::now());
        if with_timeout(left, read_more(stream, buf, len)).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}
