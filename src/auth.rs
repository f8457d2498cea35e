//! JWT authorization (Mercure §"Authorization"): finding the token, verifying it, and reading
//! the `mercure` claim.
//!
//! Owns: token lookup and verification, the claims. May call: `hub` (selectors), `error`,
//! `clock`.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use base64::Engine;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::HttpError;
use crate::hub::selector::Selector;
use crate::hub::FastMap;

/// The cookie a browser presents its token in (the name the spec recommends).
pub const COOKIE_NAME: &str = "mercureAuthorization";

/// JWT signature algorithms accepted for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
pub enum JwtAlgorithm {
    /// HMAC with SHA-256: the key is a shared secret.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 with SHA-256: the key is a PEM public key.
    RS256,
    /// ECDSA P-256 with SHA-256: the key is a PEM public key.
    ES256,
}

/// Why a configured JWT key cannot be used (the operator's fault: checked by
/// `Config::validate` before the gateway starts).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is the empty string.
    #[error("the key is empty")]
    Empty,
    /// An RS256/ES256 key that is not inline PEM names a file that cannot be read.
    #[error("cannot read PEM file {}: {source}", path.display())]
    ReadPem {
        /// The key, taken as a path.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// An RS256 key that is not a PEM RSA public key.
    #[error("not an RSA public key: {0}")]
    NotRsa(#[source] jsonwebtoken::errors::Error),
    /// An ES256 key that is not a PEM EC public key.
    #[error("not an EC public key: {0}")]
    NotEc(#[source] jsonwebtoken::errors::Error),
}

/// The `mercure` claim.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct MercureClaim {
    /// Topic selectors the bearer may publish to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish: Option<Vec<String>>,
    /// Topic selectors the bearer may receive private updates for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Vec<String>>,
    /// Free-form data attached to the subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
}

/// The claims the gateway reads; `exp` and `nbf` are checked by the verifier when present.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Mercure's claim; absent means no rights.
    #[serde(default)]
    pub mercure: MercureClaim,
    /// Expiry (seconds since the epoch), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    /// Not before (seconds since the epoch), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The claim's selectors, compiled once when the token is first verified (a verified
    /// token is remembered, so a publisher's grant is not recompiled on every publish).
    #[serde(skip)]
    grant: Grant,
}

/// Compiled `mercure.publish` and `mercure.subscribe` selectors.
#[derive(Debug, Default, Clone)]
struct Grant {
    publish: Box<[Selector]>,
    subscribe: Option<Box<[Selector]>>,
}

impl Claims {
    /// Claims carrying `mercure` and nothing else, compiled.
    pub fn new(mercure: MercureClaim) -> Claims {
        let mut c = Claims {
            mercure,
            ..Claims::default()
        };
        c.compile();
        c
    }

    /// Compiles the claim's selectors (done by the verifier; call it after building claims
    /// by hand).
    pub fn compile(&mut self) {
        let compile = |list: &[String]| list.iter().map(|s| Selector::parse(s)).collect();
        self.grant = Grant {
            publish: self
                .mercure
                .publish
                .as_deref()
                .map_or_else(Box::default, compile),
            subscribe: self
                .mercure
                .subscribe
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(compile),
        };
    }

    /// Whether the bearer may publish to all of `topics` (Mercure: every topic must match
    /// one of the `mercure.publish` selectors; none or an empty list allows nothing).
    pub fn may_publish(&self, topics: &[String]) -> bool {
        let allowed = &self.grant.publish;
        !allowed.is_empty() && topics.iter().all(|t| allowed.iter().any(|s| s.matches(t)))
    }

    /// The selectors the token authorizes for private updates (`mercure.subscribe`).
    pub fn subscribe_rights(&self) -> Option<&[Selector]> {
        self.grant.subscribe.as_deref()
    }
}

/// Checks tokens signed with one key.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    /// Tokens verified lately and their claims. Publishers send the same token on every
    /// request of a keep-alive connection (and subscribers on every reconnection): a hit is
    /// the same bytes, so the same signature, and skips the base64, HMAC or RSA/ECDSA and
    /// JSON work. Only `exp` is checked again (`nbf` can only have passed since). One per
    /// core, never shared; emptied when full.
    cache: RefCell<FastMap<Box<str>, Rc<Claims>>>,
}

/// Most tokens a verifier remembers.
const TOKEN_CACHE: usize = 1024;

impl Verifier {
    /// A verifier for `alg`: `key` is the HS256 secret, or for RS256/ES256 a PEM public key
    /// given inline or as the path of a PEM file.
    pub fn new(alg: JwtAlgorithm, key: &str) -> Result<Verifier, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        let pem = || -> Result<Vec<u8>, KeyError> {
            if key.trim_start().starts_with("-----BEGIN") {
                Ok(key.as_bytes().to_vec())
            } else {
                std::fs::read(key).map_err(|source| KeyError::ReadPem {
                    path: key.into(),
                    source,
                })
            }
        };
        let (alg, decoding) = match alg {
            JwtAlgorithm::HS256 => (Algorithm::HS256, DecodingKey::from_secret(key.as_bytes())),
            JwtAlgorithm::RS256 => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(&pem()?).map_err(KeyError::NotRsa)?,
            ),
            JwtAlgorithm::ES256 => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(&pem()?).map_err(KeyError::NotEc)?,
            ),
        };
        Ok(Verifier::with(alg, decoding))
    }

    fn with(alg: Algorithm, key: DecodingKey) -> Verifier {
        let mut validation = Validation::new(alg);
        // Mercure tokens often carry no `exp`; when they do, it is enforced with no leeway.
        validation.required_spec_claims.clear();
        validation.leeway = 0;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Verifier {
            key,
            validation,
            cache: RefCell::new(FastMap::default()),
        }
    }

    /// Verifies a compact JWS and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Rc<Claims>, HttpError> {
        if let Some(claims) = self.cache.borrow().get(token) {
            // As jsonwebtoken checks it (leeway 0): expired once `exp` is in the past.
            if claims.exp.is_some_and(|exp| exp < unix_now()) {
                return Err(HttpError::Unauthorized("token expired"));
            }
            return Ok(claims.clone());
        }
        let claims = Rc::new(self.decode(token)?);
        let mut cache = self.cache.borrow_mut();
        if cache.len() == TOKEN_CACHE {
            cache.clear();
        }
        cache.insert(token.into(), claims.clone());
        Ok(claims)
    }

    fn decode(&self, token: &str) -> Result<Claims, HttpError> {
        let mut claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                HttpError::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "token expired",
                    ErrorKind::ImmatureSignature => "token not yet valid",
                    ErrorKind::InvalidSignature => "invalid token signature",
                    ErrorKind::InvalidAlgorithm => "token algorithm not accepted",
                    _ => "malformed token",
                })
            })?;
        // RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` names extensions it
        // does not understand. This verifier understands none, and an empty list is invalid.
        if has_crit(token) {
            return Err(HttpError::Unauthorized(
                "token has critical header extensions",
            ));
        }
        claims.compile();
        Ok(claims)
    }
}

/// Whether the token's protected header has a `crit` member (called on a token whose
/// signature verified, so the header is well-formed base64url JSON).
fn has_crit(token: &str) -> bool {
    #[derive(Deserialize)]
    struct Crit {
        crit: Option<serde::de::IgnoredAny>,
    }
    let header = token.split('.').next().unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|json| serde_json::from_slice::<Crit>(&json).ok())
        // Unreadable here though the verifier accepted it: refuse rather than guess.
        .is_none_or(|h| h.crit.is_some())
}

/// Seconds since the epoch, as `exp` counts them.
fn unix_now() -> u64 {
    crate::clock::unix_millis() / 1000
}

/// Finds the token a client presents, in the spec's order of precedence: the
/// `Authorization: Bearer` header, else the `authorization` query parameter, else the
/// `mercureAuthorization` cookie. `Ok(None)` when there is none.
pub fn find_token<'a>(
    header: Option<&'a str>,
    query: Option<&'a str>,
    cookies: Option<&'a str>,
) -> Result<Option<&'a str>, HttpError> {
    if let Some(value) = header {
        let (scheme, token) = value
            .split_once(' ')
            .ok_or(HttpError::Unauthorized("malformed Authorization header"))?;
        if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
            return Err(HttpError::Unauthorized("malformed Authorization header"));
        }
        return Ok(Some(token.trim()));
    }
    if let Some(token) = query.filter(|t| !t.is_empty()) {
        return Ok(Some(token));
    }
    Ok(cookies.and_then(|header| {
        cookie::Cookie::split_parse(header)
            .filter_map(Result::ok)
            .find(|c| c.name() == COOKIE_NAME && !c.value().is_empty())
            .map(|c| {
                let v = c.value();
                // The parsed cookie borrows from `header`; find the same bytes there.
                let start = v.as_ptr() as usize - header.as_ptr() as usize;
                &header[start..start + v.len()]
            })
    }))
}

/// Signs a token for `claims` with an HS256 secret (used for the token printed at start).
pub fn sign_hs256(secret: &str, claims: &Claims) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing of a serializable claim set cannot fail")
}

/// A fresh random secret (256 bits, hex), for when no key is configured.
pub fn random_secret() -> std::io::Result<String> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verified_tokens_are_remembered_but_expire_and_forgeries_are_not_hits() {
        let v = Verifier::new(JwtAlgorithm::HS256, "k").unwrap();
        let mut c = claims(&["*"]);
        c.exp = Some(unix_now() + 3600);
        let token = sign_hs256("k", &c);
        let first = v.verify(&token).unwrap();
        assert!(Rc::ptr_eq(&first, &v.verify(&token).unwrap()), "not cached");
        // Same claims, other key: different bytes, verified (and refused) on its own.
        assert!(v.verify(&sign_hs256("other", &c)).is_err());
        // A remembered token whose `exp` has passed since is refused.
        let mut stale = (*first).clone();
        stale.exp = Some(unix_now() - 1);
        v.cache
            .borrow_mut()
            .insert(token.as_str().into(), Rc::new(stale));
        assert!(matches!(
            v.verify(&token),
            Err(HttpError::Unauthorized("token expired"))
        ));
    }

    fn claims(publish: &[&str]) -> Claims {
        Claims::new(MercureClaim {
            publish: Some(publish.iter().map(|s| s.to_string()).collect()),
            ..MercureClaim::default()
        })
    }

    #[test]
    fn round_trip_and_wrong_key() {
        let t = sign_hs256("k1", &claims(&["*"]));
        assert!(Verifier::new(JwtAlgorithm::HS256, "k1")
            .unwrap()
            .verify(&t)
            .is_ok());
        assert_eq!(
            Verifier::new(JwtAlgorithm::HS256, "k2")
                .unwrap()
                .verify(&t)
                .unwrap_err(),
            HttpError::Unauthorized("invalid token signature")
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let mut c = claims(&["*"]);
        c.exp = Some(1_000_000);
        let t = sign_hs256("k", &c);
        assert_eq!(
            Verifier::new(JwtAlgorithm::HS256, "k")
                .unwrap()
                .verify(&t)
                .unwrap_err(),
            HttpError::Unauthorized("token expired")
        );
    }

    #[test]
    fn publish_rights() {
        let topics = vec!["a".to_string(), "b".to_string()];
        assert!(claims(&["*"]).may_publish(&topics));
        assert!(claims(&["a", "b"]).may_publish(&topics));
        assert!(!claims(&["a"]).may_publish(&topics));
        assert!(!claims(&[]).may_publish(&topics));
        assert!(!Claims::default().may_publish(&topics));
    }

    #[test]
    fn token_precedence() {
        let cookie = Some("a=1; mercureAuthorization=from-cookie; b=2");
        assert_eq!(
            find_token(Some("Bearer h"), Some("q"), cookie).unwrap(),
            Some("h")
        );
        assert_eq!(find_token(None, Some("q"), cookie).unwrap(), Some("q"));
        assert_eq!(find_token(None, None, cookie).unwrap(), Some("from-cookie"));
        assert_eq!(find_token(None, None, Some("other=1")).unwrap(), None);
        assert_eq!(find_token(None, None, None).unwrap(), None);
        assert!(find_token(Some("Basic abc"), Some("q"), None).is_err());
    }
}
