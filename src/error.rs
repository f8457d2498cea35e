//! Request errors: each knows its HTTP status, whether the connection survives it, and its
//! short reason (the body `http::Response::error` sends). Owns: [`HttpError`]. May call:
//! nothing of the crate.

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
