//! `ssegate::http::parse_head` on arbitrary bytes, then what the gateway parses out of a head
//! it accepted: the query (`parse_form`) and the token carriers (`auth::find_token`).
//!
//! Properties: no panic; a complete head is no longer than the input nor than the limit, and
//! ends with its blank line; the bytes after it change nothing, and no strict prefix of it
//! is already complete (two parsers in a row must agree where a request ends); a head still
//! incomplete at the limit is refused, never waited for; every refusal is a 4xx or 505; a
//! token found is a non-empty part of the header, query or cookie it came from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssegate::auth::find_token;
use ssegate::http::{parse_form, parse_head};

/// The gateway's default `max_header_bytes`.
const LIMIT: usize = 8192;

fuzz_target!(|data: &[u8]| {
    let (req, head_len) = match parse_head(data, LIMIT) {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            assert!(data.len() < LIMIT, "waits for more past the limit");
            return;
        }
        Err(e) => {
            let s = e.status();
            assert!((400..500).contains(&s) || s == 505, "{e:?} → {s}");
            return;
        }
    };
    assert!(
        head_len <= data.len() && head_len <= LIMIT,
        "head {head_len}"
    );
    let head = &data[..head_len];
    assert!(head.ends_with(b"\n"), "a head ends with its blank line");

    // What follows the head (a body, the next request) does not change it.
    let (again, len) = parse_head(head, LIMIT)
        .expect("the head alone parses")
        .expect("the head alone is complete");
    assert_eq!(len, head_len);
    assert_eq!(format!("{again:?}"), format!("{req:?}"));
    // No shorter prefix is a complete head.
    for cut in [head_len - 1, head_len / 2] {
        assert!(
            !matches!(parse_head(&data[..cut], LIMIT), Ok(Some(_))),
            "complete after {cut} of {head_len} bytes"
        );
    }
    assert!(!req.path.contains('?'), "the query is split off the path");

    let query = parse_form(req.query.as_bytes()).ok();
    let query_token = query.as_ref().and_then(|pairs| {
        pairs
            .iter()
            .find(|(name, _)| name == "authorization")
            .map(|(_, v)| v.as_str())
    });
    let carriers = [
        req.authorization.as_deref(),
        query_token,
        req.cookie.as_deref(),
    ];
    if let Ok(Some(token)) = find_token(carriers[0], carriers[1], carriers[2]) {
        assert!(!token.is_empty());
        assert!(
            carriers.iter().flatten().any(|c| c.contains(token)),
            "token {token:?} from nowhere"
        );
    }
});
