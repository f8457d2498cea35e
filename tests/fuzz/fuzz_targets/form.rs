//! `ssegate::http::parse_form` (queries and publish bodies) on arbitrary bytes.
//!
//! Properties: no panic; it accepts exactly what a strict reference decoder written here
//! accepts (escapes are `%` and two hex digits, every name and value is UTF-8 once decoded)
//! and gives the same pairs; on what it accepts it agrees with the lenient `form_urlencoded`
//! crate; and encoding its pairs again and parsing them gives the same pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use ssegate::http::parse_form;

/// The strict decoding, written independently: `None` for a bad escape or bad UTF-8.
fn reference(raw: &[u8]) -> Option<Vec<(String, String)>> {
    fn decode(s: &[u8]) -> Option<String> {
        let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
        let mut out = Vec::with_capacity(s.len());
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'%' => {
                    let hi = hex(*s.get(i + 1)?)?;
                    let lo = hex(*s.get(i + 2)?)?;
                    out.push(hi << 4 | lo);
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).ok()
    }
    raw.split(|&b| b == b'&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| {
            let (name, value) = match seg.iter().position(|&b| b == b'=') {
                Some(i) => (&seg[..i], &seg[i + 1..]),
                None => (seg, &seg[..0]),
            };
            Some((decode(name)?, decode(value)?))
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_form(data).ok();
    assert_eq!(parsed, reference(data), "disagrees with the reference");
    let Some(pairs) = parsed else { return };

    let lenient: Vec<(String, String)> = form_urlencoded::parse(data)
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(pairs, lenient, "disagrees with form_urlencoded");

    let encoded = pairs
        .iter()
        .map(|(n, v)| {
            format!(
                "{}={}",
                utf8_percent_encode(n, NON_ALPHANUMERIC),
                utf8_percent_encode(v, NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let again = parse_form(encoded.as_bytes()).expect("its own output encoded again parses");
    // An empty name and value encode to "=", which is kept; an empty segment is not.
    assert_eq!(again, pairs);
});
