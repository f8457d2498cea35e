//! ② Request heads (HTTP/1.1 parsed here, HTTP/2 as `h2` gives them): parsing with limits,
//! routing, and `application/x-www-form-urlencoded` decoding for queries and publish bodies.
//!
//! Owns: the request head ([`Request`]), its limits, forms, CORS and [`Response`]. May
//! call: `error`.
//!
//! Only what a push gateway needs is parsed out of the head; the rest is validated by
//! `httparse` and dropped, so a request costs one small allocation per kept header.

mod cors;
mod form;
pub mod response;

pub use cors::Cors;
pub use form::parse_form;
pub use response::Response;

use crate::error::HttpError;

/// The endpoint of the Mercure protocol.
pub const MERCURE_PATH: &str = "/.well-known/mercure";

/// Most headers accepted in one request head; more is answered with 431.
const MAX_HEADERS: usize = 64;

/// The request methods the gateway routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: subscribe.
    Get,
    /// `POST`: publish.
    Post,
    /// `OPTIONS`: CORS preflight.
    Options,
    /// Any other method: answered 405 on a known path.
    Other,
}

impl Method {
    /// The method's name (`OTHER` for the rest), for the access log.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }
}

/// What the gateway keeps of a request head.
#[derive(Debug, Default)]
pub struct Request {
    /// Request method.
    pub method: Option<Method>,
    /// Path without the query.
    pub path: String,
    /// Raw query string (after `?`), still percent-encoded.
    pub query: String,
    /// `Content-Length`, if sent.
    pub content_length: Option<usize>,
    /// `Transfer-Encoding` was sent (chunked bodies are not accepted).
    pub has_transfer_encoding: bool,
    /// `Content-Type`, if sent.
    pub content_type: Option<String>,
    /// `Authorization`, if sent.
    pub authorization: Option<String>,
    /// `Last-Event-ID`, if sent and non-empty.
    pub last_event_id: Option<String>,
    /// `Cookie`, if sent (several `Cookie` headers are joined with `; `).
    pub cookie: Option<String>,
    /// `Origin`, if sent (browsers, cross-origin).
    pub origin: Option<String>,
    /// Whether the connection may be reused after the response (HTTP/1.1 default, or
    /// `Connection: keep-alive` on 1.0; `Connection: close` turns it off).
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent: the client waits for a `100 Continue` before the body.
    pub expect_continue: bool,
}

/// Parses a `Content-Length` value: `1*DIGIT` (RFC 9110 §8.6), nothing else. A sign, a
/// space inside or a list would be read differently by another parser in front of us, and
/// disagreeing on where a body ends is request smuggling.
fn content_length(v: &str) -> Result<usize, HttpError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HttpError::BadRequest("invalid Content-Length"));
    }
    v.parse()
        .map_err(|_| HttpError::BadRequest("invalid Content-Length"))
}

impl Request {
    /// A request for `method` and `target` (path, then the query after `?`), no headers yet.
    fn new(method: &str, target: &str) -> Request {
        let mut out = Request {
            method: Some(match method {
                "GET" => Method::Get,
                "POST" => Method::Post,
                "OPTIONS" => Method::Options,
                _ => Method::Other,
            }),
            ..Request::default()
        };
        match target.split_once('?') {
            Some((p, q)) => {
                out.path = p.to_owned();
                out.query = q.to_owned();
            }
            None => out.path = target.to_owned(),
        }
        out
    }

    /// The method, defaulting to [`Method::Other`].
    pub fn method(&self) -> Method {
        self.method.unwrap_or(Method::Other)
    }

    /// Keeps what the gateway uses of one header (the same for both protocols); the rest
    /// is dropped.
    fn take_header(&mut self, name: &str, value: &[u8]) -> Result<(), HttpError> {
        let value = || header_value(value);
        if name.eq_ignore_ascii_case("content-length") {
            let n = content_length(value()?)?;
            if self.content_length.is_some_and(|m| m != n) {
                return Err(HttpError::BadRequest("conflicting Content-Length headers"));
            }
            self.content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            self.has_transfer_encoding = true;
        } else if name.eq_ignore_ascii_case("content-type") {
            self.content_type = Some(value()?.to_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            if self.authorization.is_some() {
                return Err(HttpError::BadRequest("more than one Authorization header"));
            }
            self.authorization = Some(value()?.to_owned());
        } else if name.eq_ignore_ascii_case("last-event-id") {
            let v = value()?;
            if !v.is_empty() {
                self.last_event_id = Some(v.to_owned());
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            // HTTP/2 clients may send one `cookie` header per pair (RFC 9113 §8.2.3): joined
            // back the same way.
            let v = value()?;
            match &mut self.cookie {
                Some(c) => {
                    c.push_str("; ");
                    c.push_str(v);
                }
                None => self.cookie = Some(v.to_owned()),
            }
        } else if name.eq_ignore_ascii_case("origin") {
            self.origin = Some(value()?.to_owned());
        }
        Ok(())
    }
}

/// A header's value as text, trimmed.
fn header_value(v: &[u8]) -> Result<&str, HttpError> {
    std::str::from_utf8(v)
        .map(str::trim)
        .map_err(|_| HttpError::BadRequest("header value is not UTF-8"))
}

/// The gateway's view of an HTTP/2 request (its pseudo-headers and headers already checked
/// by `h2`: one `:method`, `:path`, no connection-specific headers). A stream is one
/// request, so it never keeps a connection alive by itself.
pub fn from_h2(head: &::http::request::Parts) -> Result<Request, HttpError> {
    let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::new(head.method.as_str(), target);
    for (name, value) in &head.headers {
        out.take_header(name.as_str(), value.as_bytes())?;
    }
    if out.has_transfer_encoding {
        return Err(HttpError::BadRequest(
            "Transfer-Encoding in an HTTP/2 request",
        ));
    }
    Ok(out)
}

/// Parses a request head at the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, or the request and the length of its head.
/// `max_head` bounds the head: a longer one is 431 (or 414 when the request line alone is
/// that long).
pub fn parse_head(buf: &[u8], max_head: usize) -> Result<Option<(Request, usize)>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() >= max_head {
                let line_done = buf[..max_head].contains(&b'\n');
                return Err(if line_done {
                    HttpError::HeadersTooLarge
                } else {
                    HttpError::UriTooLong
                });
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HttpError::VersionNotSupported),
        Err(_) => return Err(HttpError::BadRequest("malformed request head")),
    };
    if head_len > max_head {
        return Err(HttpError::HeadersTooLarge);
    }
    let mut out = Request::new(req.method.unwrap_or(""), req.path.unwrap_or("/"));
    let http10 = req.version == Some(0);
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut hosts = 0;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("connection") {
            for token in header_value(h.value)?.split(',') {
                let token = token.trim();
                connection_close |= token.eq_ignore_ascii_case("close");
                connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if name.eq_ignore_ascii_case("expect") && !http10 {
            // RFC 9110 §10.1.1: 100-continue is the only expectation there is (and an
            // HTTP/1.0 request's is ignored).
            if !header_value(h.value)?.eq_ignore_ascii_case("100-continue") {
                return Err(HttpError::ExpectationFailed);
            }
            out.expect_continue = true;
        } else {
            out.take_header(name, h.value)?;
        }
    }
    // RFC 9112 §3.2: a 1.1 request has exactly one Host; §6.1: a message with both framings
    // is refused rather than guessed at.
    if hosts > 1 || (hosts == 0 && !http10) {
        return Err(HttpError::BadRequest(if hosts == 0 {
            "missing Host header"
        } else {
            "more than one Host header"
        }));
    }
    if out.has_transfer_encoding && out.content_length.is_some() {
        return Err(HttpError::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    out.keep_alive = !connection_close && (!http10 || connection_keep_alive);
    Ok(Some((out, head_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_subscribe_request() {
        let raw = b"GET /.well-known/mercure?topic=a&topic=b HTTP/1.1\r\nHost: x\r\nLast-Event-ID: urn:1\r\n\r\nrest";
        let (req, n) = parse_head(raw, 8192).unwrap().unwrap();
        assert_eq!(n, raw.len() - 4);
        assert_eq!(req.method(), Method::Get);
        assert_eq!(req.path, MERCURE_PATH);
        assert_eq!(req.query, "topic=a&topic=b");
        assert_eq!(req.last_event_id.as_deref(), Some("urn:1"));
        assert!(req.keep_alive);
    }

    #[test]
    fn partial_heads_ask_for_more_until_the_limit() {
        assert!(parse_head(b"GET / HTTP/1.1\r\nHost:", 8192)
            .unwrap()
            .is_none());
        let long = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(300));
        assert_eq!(
            parse_head(long.as_bytes(), 256).unwrap_err(),
            HttpError::HeadersTooLarge
        );
        let long_uri = format!("GET /{} HTTP/1.1\r\n", "a".repeat(300));
        assert_eq!(
            parse_head(long_uri.as_bytes(), 256).unwrap_err(),
            HttpError::UriTooLong
        );
    }

    #[test]
    fn refuses_garbage_and_conflicting_lengths() {
        assert!(parse_head(b"\x00\x01\x02 nonsense\r\n\r\n", 8192).is_err());
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n";
        assert!(parse_head(raw, 8192).is_err());
    }

    #[test]
    fn framing_is_strict_where_rfc_9112_says_must() {
        let bad = |head: &str| match parse_head(head.as_bytes(), 8192) {
            Err(HttpError::BadRequest(why)) => why,
            other => panic!("{head:?}: {other:?}"),
        };
        for cl in [
            "+5",
            "-5",
            "5 5",
            "0x5",
            "5,5",
            "",
            " 5a",
            "99999999999999999999999",
        ] {
            let head = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(bad(&head), "invalid Content-Length", "{cl:?}");
        }
        // Surrounding whitespace is the field's, not the value's (RFC 9110 §5.5).
        let (r, _) = parse_head(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length:  7 \r\n\r\n",
            8192,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.content_length, Some(7));
        // Identical duplicates are one length; differing ones are refused.
        let (r, _) = parse_head(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            8192,
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.content_length, Some(3));
        assert!(bad(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        .contains("Transfer-Encoding"));
        assert_eq!(bad("GET / HTTP/1.1\r\n\r\n"), "missing Host header");
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            "more than one Host header"
        );
        assert_eq!(
            bad("GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n"),
            "more than one Authorization header"
        );
        // HTTP/1.0 has no Host requirement.
        assert!(parse_head(b"GET / HTTP/1.0\r\n\r\n", 8192)
            .unwrap()
            .is_some());
        assert_eq!(
            parse_head(
                b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",
                8192
            )
            .unwrap_err(),
            HttpError::ExpectationFailed
        );
        let (r, _) = parse_head(
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n\r\n",
            8192,
        )
        .unwrap()
        .unwrap();
        assert!(r.expect_continue);
        let (r, _) = parse_head(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(!r.expect_continue);
    }

    #[test]
    fn connection_close_and_http10() {
        let (r, _) = parse_head(
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            8192,
        )
        .unwrap()
        .unwrap();
        assert!(!r.keep_alive);
        let (r, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n", 8192)
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive);
    }
}
