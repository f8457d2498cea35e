//! Every response the gateway writes, built in one place. Owns: the status line, the framing
//! headers (`Content-Length`, `Connection`) and the rendering of an [`HttpError`] as a
//! response. May call: `error`.
//!
//! A handler says what to answer (status, type, body, extra headers); whether the
//! connection stays open is decided once, by [`Response::keep_alive`] and the error's own
//! rule ([`HttpError::closes_connection`]). A subscriber's stream head is the one response
//! without a length: it is close-delimited ([`Response::event_stream`]).

use bytes::{BufMut, BytesMut};

use crate::error::HttpError;

/// The interim response to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// A response: status, headers, body.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    content_type: Option<&'static str>,
    /// Extra header lines, each ending in CRLF.
    headers: String,
    /// `None`: a close-delimited stream follows the head (no `Content-Length`).
    body: Option<Vec<u8>>,
    keep_alive: bool,
    /// An error after which the connection cannot be trusted, or the server wants the
    /// client gone ([`HttpError::closes_connection`]): closed whatever was asked.
    must_close: bool,
}

impl Response {
    /// A response with `status`, no body, and the connection closed after it.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            content_type: None,
            headers: String::new(),
            body: Some(Vec::new()),
            keep_alive: false,
            must_close: false,
        }
    }

    /// `200 OK` with a body of `content_type`.
    pub fn ok(content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        Response::new(200).body(content_type, body)
    }

    /// The head of an SSE stream: `200 OK`, `text/event-stream`, never cached, and
    /// close-delimited (an SSE response never ends by itself, so chunked framing would only
    /// add bytes and force a copy of every shared frame).
    pub fn event_stream() -> Response {
        let mut r = Response::new(200);
        r.content_type = Some("text/event-stream");
        r.body = None;
        r.header(
            "Cache-Control",
            "private, no-cache, no-store, must-revalidate, max-age=0",
        )
        .header("Pragma", "no-cache")
        .header("X-Accel-Buffering", "no")
    }

    /// The response to a refused request: its status, the headers the status calls for, and
    /// the reason as a short text body.
    pub fn error(err: &HttpError) -> Response {
        let mut r =
            Response::new(err.status()).body("text/plain; charset=utf-8", format!("{err}\n"));
        match err {
            HttpError::Unavailable(_) => r = r.header("Retry-After", "1"),
            HttpError::Unauthorized(_) => r = r.header("WWW-Authenticate", "Bearer"),
            HttpError::MethodNotAllowed(allow) => r = r.header("Allow", allow),
            _ => {}
        }
        r.must_close = err.closes_connection();
        r
    }

    /// Sets the body and its type.
    #[must_use]
    pub fn body(mut self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Response {
        self.content_type = Some(content_type);
        self.body = Some(body.into());
        self
    }

    /// Adds a header line.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push_str(name);
        self.headers.push_str(": ");
        self.headers.push_str(value);
        self.headers.push_str("\r\n");
        self
    }

    /// Adds header lines given whole (each ending in CRLF), e.g. the request's CORS headers.
    #[must_use]
    pub fn lines(mut self, lines: &str) -> Response {
        self.headers.push_str(lines);
        self
    }

    /// Asks to keep the connection open after this response. Ignored for a stream, and for
    /// an error after which the connection cannot be trusted.
    #[must_use]
    pub fn keep_alive(mut self, keep: bool) -> Response {
        self.keep_alive = keep;
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// Whether the connection stays open for another request after this response.
    pub fn keeps_alive(&self) -> bool {
        self.keep_alive && self.body.is_some() && !self.must_close
    }

    /// Appends the response's bytes to `out`.
    pub fn write_to(&self, out: &mut BytesMut) {
        let body = self.body.as_deref();
        out.reserve(96 + self.headers.len() + body.map_or(0, <[u8]>::len));
        out.put_slice(b"HTTP/1.1 ");
        out.put_slice(itoa::Buffer::new().format(self.status).as_bytes());
        out.put_u8(b' ');
        out.put_slice(reason_phrase(self.status).as_bytes());
        out.put_slice(b"\r\n");
        if let Some(t) = self.content_type {
            out.put_slice(b"Content-Type: ");
            out.put_slice(t.as_bytes());
            out.put_slice(b"\r\n");
        }
        if let Some(body) = body {
            out.put_slice(b"Content-Length: ");
            out.put_slice(itoa::Buffer::new().format(body.len()).as_bytes());
            out.put_slice(b"\r\n");
        }
        out.put_slice(if self.keeps_alive() {
            b"Connection: keep-alive\r\n"
        } else {
            b"Connection: close\r\n"
        });
        out.put_slice(self.headers.as_bytes());
        out.put_slice(b"\r\n");
        if let Some(body) = body {
            out.put_slice(body);
        }
    }

    /// The response as HTTP/2 sends it: the head (no `Connection`, which HTTP/2 forbids;
    /// `content-length` when there is a body) and the body, `None` for a stream.
    pub fn into_h2(self) -> (::http::Response<()>, Option<bytes::Bytes>) {
        let mut head = ::http::Response::builder().status(self.status);
        if let Some(t) = self.content_type {
            head = head.header("content-type", t);
        }
        if let Some(body) = &self.body {
            head = head.header("content-length", body.len());
        }
        for line in self.headers.split("\r\n").filter(|l| !l.is_empty()) {
            if let Some((name, value)) = line.split_once(':') {
                head = head.header(name.trim(), value.trim());
            }
        }
        // Every part is the gateway's own (statuses, names and values it wrote); should one
        // ever be invalid, the client gets a 500 rather than a panic.
        let head = head.body(()).unwrap_or_else(|_| {
            let mut r = ::http::Response::new(());
            *r.status_mut() = ::http::StatusCode::INTERNAL_SERVER_ERROR;
            r
        });
        (head, self.body.map(bytes::Bytes::from))
    }

    /// The response's bytes.
    pub fn to_bytes(&self) -> BytesMut {
        let mut out = BytesMut::new();
        self.write_to(&mut out);
        out
    }
}

/// The standard reason phrase of the statuses this gateway sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &Response) -> String {
        String::from_utf8(r.to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn unavailable_carries_retry_after_and_closes() {
        let r = text(&Response::error(&HttpError::Unavailable("busy")).keep_alive(true));
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        assert!(r.contains("Retry-After: 1\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("service unavailable: busy\n"));
    }

    #[test]
    fn content_length_matches_body_and_keep_alive_is_asked_for() {
        let r = text(&Response::error(&HttpError::Forbidden("topic")).keep_alive(true));
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: keep-alive"));
        let r = text(&Response::error(&HttpError::Forbidden("topic")));
        assert!(r.contains("Connection: close"), "{r}");
    }

    #[test]
    fn errors_that_leave_the_stream_intact_may_keep_it() {
        let bad_param = Response::error(&HttpError::BadParam("x".into())).keep_alive(true);
        assert!(bad_param.keeps_alive());
        let bad_request = Response::error(&HttpError::BadRequest("x")).keep_alive(true);
        assert!(!bad_request.keeps_alive());
    }

    #[test]
    fn a_stream_head_has_no_length_and_closes() {
        let r = text(&Response::event_stream().keep_alive(true));
        assert!(r.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"));
        assert!(!r.contains("Content-Length"), "{r}");
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("\r\n\r\n"));
    }
}
