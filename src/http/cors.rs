//! CORS (`cors_origins`): which browser origins may subscribe and publish, and the headers
//! that tell the browser so. A listed origin may send credentials (the `mercureAuthorization`
//! cookie); `*` admits any origin but never with credentials, as browsers require.
//!
//! Owns: the CORS policy and its headers. May call: `error`, `http::response`.

use super::{Request, Response};
use crate::error::HttpError;

/// Request headers a browser may send cross-origin.
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Last-Event-ID, Cache-Control";

/// The configured CORS policy.
#[derive(Debug, Clone, Default)]
pub struct Cors {
    any: bool,
    origins: Vec<String>,
}

impl Cors {
    /// Builds the policy from `cors_origins`.
    pub fn new(list: &[String]) -> Cors {
        Cors {
            any: list.iter().any(|o| o == "*"),
            origins: list.iter().filter(|o| *o != "*").cloned().collect(),
        }
    }

    /// The CORS header lines for a response to a request from `origin` (empty when the
    /// request is not cross-origin or the origin is not allowed).
    pub fn headers(&self, origin: Option<&str>) -> String {
        let Some(origin) = origin else {
            return String::new();
        };
        if self.origins.iter().any(|o| o == origin) {
            format!(
                "Access-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
            )
        } else if self.any {
            "Access-Control-Allow-Origin: *\r\n".to_owned()
        } else {
            String::new()
        }
    }

    /// Answers a preflight `OPTIONS` request: 204 with the allowed methods and headers, or
    /// 403 when the origin is not allowed.
    pub fn preflight(&self, req: &Request) -> Result<Response, HttpError> {
        let cors = self.headers(req.origin.as_deref());
        if cors.is_empty() {
            return Err(HttpError::Forbidden("origin not allowed (cors_origins)"));
        }
        Ok(Response::new(204)
            .lines(&cors)
            .header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            .header("Access-Control-Allow-Headers", ALLOW_HEADERS)
            .header("Access-Control-Max-Age", "600"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_origins_get_credentials_star_does_not() {
        let c = Cors::new(&["https://app.example".into(), "*".into()]);
        let h = c.headers(Some("https://app.example"));
        assert!(h.contains("Access-Control-Allow-Origin: https://app.example\r\n"));
        assert!(h.contains("Access-Control-Allow-Credentials: true\r\n"));
        let h = c.headers(Some("https://other.example"));
        assert_eq!(h, "Access-Control-Allow-Origin: *\r\n");
        assert_eq!(c.headers(None), "");
        assert_eq!(Cors::new(&[]).headers(Some("https://app.example")), "");
    }
}
