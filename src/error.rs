//! Request errors and the one function that maps them to an HTTP status and a short body.

use std::fmt;

/// Why a request was refused. Each variant knows its status; the `Display` text is the short
/// reason sent as the body, so a client sees exactly what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpError {
    /// The request line or headers could not be parsed (client's fault).
    BadRequest(&'static str),
    /// A query or form parameter is missing or malformed (client's fault).
    BadParam(String),
    /// No valid token was presented (client's fault).
    Unauthorized(&'static str),
    /// The token is valid but does not allow the operation (client's fault).
    Forbidden(&'static str),
    /// No route for the path (client's fault).
    NotFound,
    /// The path exists but not for this method (client's fault).
    MethodNotAllowed(&'static str),
    /// A body without `Content-Length` (client's fault).
    LengthRequired,
    /// The body is larger than `max_body_bytes` (client's fault).
    PayloadTooLarge,
    /// The request URI is longer than the head allows (client's fault).
    UriTooLong,
    /// The body is not `application/x-www-form-urlencoded` (client's fault).
    UnsupportedMediaType,
    /// The request head is larger than `max_header_bytes` (client's fault).
    HeadersTooLarge,
    /// `max_connections` reached, or the gateway is shutting down (server's state).
    Unavailable(&'static str),
    /// The HTTP version is not 1.x (client's fault).
    VersionNotSupported,
    /// An `Expect` other than `100-continue` (client's fault).
    ExpectationFailed,
}

impl HttpError {
    /// The HTTP status code for this error.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) | HttpError::BadParam(_) => 400,
            HttpError::Unauthorized(_) => 401,
            HttpError::Forbidden(_) => 403,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed(_) => 405,
            HttpError::LengthRequired => 411,
            HttpError::PayloadTooLarge => 413,
            HttpError::UriTooLong => 414,
            HttpError::UnsupportedMediaType => 415,
            HttpError::HeadersTooLarge => 431,
            HttpError::Unavailable(_) => 503,
            HttpError::VersionNotSupported => 505,
            HttpError::ExpectationFailed => 417,
        }
    }

    /// Whether the connection must be closed after the response: the rest of the stream
    /// cannot be trusted (unread body, unparsable head) or the server wants the client gone.
    pub fn closes_connection(&self) -> bool {
        matches!(
            self,
            HttpError::BadRequest(_)
                | HttpError::LengthRequired
                | HttpError::PayloadTooLarge
                | HttpError::UriTooLong
                | HttpError::HeadersTooLarge
                | HttpError::Unavailable(_)
                | HttpError::VersionNotSupported
                | HttpError::ExpectationFailed
        )
    }

    /// Renders the full response: status line, headers and the reason as a text body.
    pub fn response(&self, keep_alive: bool) -> Vec<u8> {
        self.response_with(keep_alive, "")
    }

    /// Like [`HttpError::response`], with extra header lines (each ending in CRLF), e.g.
    /// CORS headers so a browser script can read the error.
    pub fn response_with(&self, keep_alive: bool, extra_headers: &str) -> Vec<u8> {
        let body = format!("{self}\n");
        let status = self.status();
        let mut extra = String::new();
        match self {
            HttpError::Unavailable(_) => extra.push_str("Retry-After: 1\r\n"),
            HttpError::Unauthorized(_) => extra.push_str("WWW-Authenticate: Bearer\r\n"),
            HttpError::MethodNotAllowed(allow) => {
                extra.push_str("Allow: ");
                extra.push_str(allow);
                extra.push_str("\r\n");
            }
            _ => {}
        }
        let connection = if keep_alive && !self.closes_connection() {
            "keep-alive"
        } else {
            "close"
        };
        format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {connection}\r\n{extra}{extra_headers}\r\n{body}",
            reason_phrase(status),
            body.len(),
        )
        .into_bytes()
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::BadRequest(why) => write!(f, "bad request: {why}"),
            HttpError::BadParam(why) => write!(f, "bad request: {why}"),
            HttpError::Unauthorized(why) => write!(f, "unauthorized: {why}"),
            HttpError::Forbidden(why) => write!(f, "forbidden: {why}"),
            HttpError::NotFound => f.write_str("not found"),
            HttpError::MethodNotAllowed(allow) => {
                write!(f, "method not allowed (allowed: {allow})")
            }
            HttpError::LengthRequired => {
                f.write_str("length required: send the body with Content-Length")
            }
            HttpError::PayloadTooLarge => f.write_str("payload too large"),
            HttpError::UriTooLong => f.write_str("URI too long"),
            HttpError::UnsupportedMediaType => {
                f.write_str("unsupported media type: use application/x-www-form-urlencoded")
            }
            HttpError::HeadersTooLarge => f.write_str("request header fields too large"),
            HttpError::Unavailable(why) => write!(f, "service unavailable: {why}"),
            HttpError::VersionNotSupported => f.write_str("HTTP version not supported"),
            HttpError::ExpectationFailed => {
                f.write_str("expectation failed: only Expect: 100-continue is supported")
            }
        }
    }
}

/// The standard reason phrase of the statuses this gateway sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
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

    #[test]
    fn unavailable_carries_retry_after_and_closes() {
        let r = String::from_utf8(HttpError::Unavailable("busy").response(true)).unwrap();
        assert!(r.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{r}");
        assert!(r.contains("Retry-After: 1\r\n"));
        assert!(r.contains("Connection: close\r\n"));
        assert!(r.ends_with("service unavailable: busy\n"));
    }

    #[test]
    fn content_length_matches_body() {
        let r = String::from_utf8(HttpError::Forbidden("topic").response(true)).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Connection: keep-alive"));
    }
}
