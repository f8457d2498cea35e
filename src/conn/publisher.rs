//! ③ A publish request: limits, token, body, validation, then the sequencer's
//! acknowledgement, answered with the event's id.

use std::time::Instant;

use super::Stream;
use futures_lite::io::AsyncWriteExt;

use super::{read_more, reply_error, with_timeout, Handled};
use crate::auth::{find_token, Claims, Verifier};
use crate::error::HttpError;
use crate::http::{parse_form, Request};
use crate::hub::publish::parse_update;
use crate::runtime::Core;

const FORM: &str = "application/x-www-form-urlencoded";

/// Handles one POST: the status it answered and whether the connection is kept, closed
/// after lingering, or already gone.
pub(super) async fn handle(
    core: &Core,
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    req: &Request,
    cors: &str,
    conn_id: u64,
) -> Handled {
    // Checks that need no body. A refusal here leaves the body unread: close afterwards.
    let len = match precheck(core, req) {
        Ok(len) => len,
        Err(e) => {
            let keep = req.content_length == Some(0) && req.keep_alive && !e.closes_connection();
            return refuse(core, stream, conn_id, &e, keep, cors).await;
        }
    };
    let claims = match verify_request(req, &core.publisher_auth, "missing bearer token") {
        Ok(c) => c,
        Err(e) => {
            let keep = len == 0 && req.keep_alive;
            return refuse(core, stream, conn_id, &e, keep, cors).await;
        }
    };
    if req.expect_continue
        && stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .is_err()
    {
        return Handled::gone(0);
    }
    if read_body(core, stream, buf, len).await.is_err() {
        return Handled::gone(0);
    }

    let outcome = async {
        let update = parse_update(&buf[..len], core.cfg.max_topics)?;
        if !claims.may_publish(&update.topics) {
            return Err(HttpError::Forbidden(
                "token does not allow publishing to these topics",
            ));
        }
        let id = update.id.clone();
        core.publish(update).await?;
        Ok(id)
    }
    .await;
    buf.drain(..len);
    let keep = req.keep_alive && !core.is_stopping();
    match outcome {
        Ok(id) => {
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {}\r\nX-Ssegate-Worker: {}\r\n{cors}\r\n{id}",
                id.len(),
                if keep { "keep-alive" } else { "close" },
                core.index,
            );
            if stream.write_all(resp.as_bytes()).await.is_err() {
                return Handled::gone(200);
            }
            Handled::new(200, keep)
        }
        Err(e) => {
            let keep = keep && !e.closes_connection();
            refuse(core, stream, conn_id, &e, keep, cors).await
        }
    }
}

/// Answers a refused publish, counted by status.
async fn refuse(
    core: &Core,
    stream: &mut Stream,
    conn_id: u64,
    err: &HttpError,
    keep: bool,
    cors: &str,
) -> Handled {
    core.stats.publish_refused(err.status());
    if reply_error(core, stream, conn_id, err, keep, cors).await {
        Handled::new(err.status(), keep)
    } else {
        Handled::gone(err.status())
    }
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
    let media = req
        .content_type
        .as_deref()
        .map(|ct| ct.split(';').next().unwrap_or("").trim());
    match media {
        Some(m) if m.eq_ignore_ascii_case(FORM) => Ok(len),
        None if len == 0 => Ok(len),
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
