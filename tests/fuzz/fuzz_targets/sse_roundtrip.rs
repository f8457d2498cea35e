//! The SSE encoder (`ssegate::hub::event::encode`) against an independent parser, the
//! `sse-stream` crate, by a round trip: what a publisher sends is what a subscriber reads.
//!
//! Two publications (data, id, type, retry, private, any strings the fuzzer makes) are
//! sent as the publish path receives them, a form body through
//! `ssegate::hub::publish::parse_update`; the accepted ones are encoded and written one
//! after the other (with a heartbeat comment between them, sometimes), as a subscriber's
//! stream carries them, and parsed.
//!
//! Properties: no panic; the publish path refuses exactly the ids and types the protocol
//! forbids (empty, a leading `#` for ids, CR, LF or NUL, the reserved `earliest`) and keeps
//! the rest as sent; the parser yields exactly one event per accepted publication, in
//! order, with its id, type and retry, and its data with CRLF and CR line ends turned
//! into LF (the encoder's promise: one `data:` line per line of the payload, split on CRLF,
//! CR and LF, which the parser joins with LF).
#![no_main]

use arbitrary::Arbitrary;
use bytes::{Bytes, BytesMut};
use futures_lite::StreamExt;
use libfuzzer_sys::fuzz_target;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use sse_stream::{Sse, SseByteStream};
use ssegate::hub::event::{encode, HEARTBEAT};
use ssegate::hub::publish::parse_update;

const TOPIC: &str = "https://example.com/books/1";

#[derive(Arbitrary, Debug)]
struct Publication {
    data: String,
    id: Option<String>,
    event_type: Option<String>,
    retry: Option<u64>,
    private: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    first: Publication,
    second: Publication,
    heartbeat: bool,
}

fn form_body(p: &Publication) -> String {
    let enc = |s: &str| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    let mut body = format!("topic={}&data={}", enc(TOPIC), enc(&p.data));
    if let Some(id) = &p.id {
        body += &format!("&id={}", enc(id));
    }
    if let Some(t) = &p.event_type {
        body += &format!("&type={}", enc(t));
    }
    if let Some(r) = p.retry {
        body += &format!("&retry={r}");
    }
    if p.private {
        body += "&private=on";
    }
    body
}

/// What the protocol lets a publisher send (Mercure: ids and types become SSE fields, so
/// they cannot carry a line break; an id cannot look like a fragment or `earliest`).
fn allowed(p: &Publication) -> bool {
    let line_safe = |s: &str| !s.is_empty() && !s.contains(['\r', '\n', '\0']);
    p.id.as_deref()
        .is_none_or(|id| line_safe(id) && !id.starts_with('#') && id != "earliest")
        && p.event_type.as_deref().is_none_or(line_safe)
}

fn lf_only(data: &str) -> String {
    data.replace("\r\n", "\n").replace('\r', "\n")
}

fuzz_target!(|input: Input| {
    let mut stream = BytesMut::new();
    let mut expected = Vec::new();
    for p in [&input.first, &input.second] {
        let update = match parse_update(form_body(p).as_bytes(), 64) {
            Ok(u) => u,
            Err(e) => {
                assert!(!allowed(p), "refused {p:?}: {e:?}");
                continue;
            }
        };
        assert!(allowed(p), "accepted {p:?}");
        assert_eq!(update.topics, [TOPIC]);
        assert_eq!(update.data, p.data);
        assert_eq!(update.event_type, p.event_type);
        assert_eq!(update.retry, p.retry);
        assert_eq!(update.private, p.private);
        match &p.id {
            Some(id) => assert_eq!(&update.id, id),
            None => assert!(update.id.starts_with("urn:uuid:") && update.id.len() == 45),
        }
        if !expected.is_empty() && input.heartbeat {
            stream.extend_from_slice(&HEARTBEAT);
        }
        stream.extend_from_slice(&encode(&update));
        expected.push(Sse {
            event: update.event_type.clone(),
            data: Some(lf_only(&update.data)),
            id: Some(update.id.clone()),
            retry: update.retry,
        });
    }

    let chunks = futures_lite::stream::once(Ok::<Bytes, std::io::Error>(stream.freeze()));
    let parsed: Vec<Result<Sse, sse_stream::Error>> =
        futures_lite::future::block_on(SseByteStream::new(chunks).collect());
    let parsed: Vec<Sse> = parsed
        .into_iter()
        .map(|r| r.expect("the parser refused the stream"))
        .collect();
    assert_eq!(parsed, expected);
});
