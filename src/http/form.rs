//! Strict `application/x-www-form-urlencoded` decoding (queries and publish bodies).
//!
//! Owns: form decoding. May call: `error`.
//!
//! `form_urlencoded` is lenient by design (bad escapes pass through, invalid UTF-8 becomes
//! U+FFFD). A gateway must not silently publish to a topic other than the one meant, so this
//! refuses both with 400 instead; percent-decoding itself is `percent-encoding`'s.

use std::borrow::Cow;

use percent_encoding::percent_decode;

use crate::error::HttpError;

/// Decodes `a=1&b=2` into pairs, in order, keeping repeated names. Empty segments are
/// skipped; a name without `=` has an empty value.
pub fn parse_form(raw: &[u8]) -> Result<Vec<(String, String)>, HttpError> {
    let mut out = Vec::new();
    for part in raw.split(|&b| b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (name, value) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &part[..0]),
        };
        out.push((decode(name)?, decode(value)?));
    }
    Ok(out)
}

fn decode(raw: &[u8]) -> Result<String, HttpError> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' {
            let ok = raw.len() > i + 2
                && raw[i + 1].is_ascii_hexdigit()
                && raw[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(HttpError::BadParam("malformed percent-encoding".into()));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    let plus_free: Cow<[u8]> = if raw.contains(&b'+') {
        Cow::Owned(
            raw.iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(raw)
    };
    let bytes: Vec<u8> = percent_decode(&plus_free).collect();
    String::from_utf8(bytes).map_err(|_| HttpError::BadParam("parameter is not valid UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs_in_order() {
        let f = parse_form(b"topic=a%2Fb&topic=c+d&data=&flag&&x=%C3%A9").unwrap();
        assert_eq!(
            f,
            vec![
                ("topic".into(), "a/b".into()),
                ("topic".into(), "c d".into()),
                ("data".into(), "".into()),
                ("flag".into(), "".into()),
                ("x".into(), "é".into()),
            ]
        );
    }

    #[test]
    fn refuses_bad_escapes_and_bad_utf8() {
        assert!(parse_form(b"topic=%zz").is_err());
        assert!(parse_form(b"topic=%4").is_err());
        assert!(parse_form(b"topic=%ff%fe").is_err());
    }
}
