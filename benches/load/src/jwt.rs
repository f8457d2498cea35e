//! The publisher's bearer token: HS256 over `{"mercure":{"publish":["*"]}}`, no expiry.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A compact JWS that lets its bearer publish to every topic.
pub fn publisher_token(key: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(br#"{"mercure":{"publish":["*"]}}"#);
    let signing_input = format!("{header}.{claims}");
    // HMAC accepts keys of any length: new_from_slice cannot fail for it.
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}
