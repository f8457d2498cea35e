//! ④ Updates and their one-time encoding into SSE bytes.
//!
//! Owns: [`Update`], [`Event`] and the encoding. May call: nothing of the crate.
//!
//! An [`Update`] is what a publisher sent, validated. The sequencer gives it a position and
//! turns it into an [`Event`], whose `frame` holds the final `text/event-stream` bytes: every
//! subscriber on every core writes a clone of that handle, never a re-serialisation.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// A validated publication, not yet sequenced. It is `Send`: it crosses from the core that
/// accepted the POST to the sequencer.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Canonical topic first, then alternates; all are matched.
    pub topics: Vec<String>,
    /// Payload; may span lines.
    pub data: String,
    /// SSE `id` (custom, or `urn:uuid:` made by the hub).
    pub id: String,
    /// SSE `event` name.
    pub event_type: Option<String>,
    /// SSE `retry`, in milliseconds.
    pub retry: Option<u64>,
    /// Only for subscribers authorized for one of the topics.
    pub private: bool,
    /// `id` was made by the hub (the publisher gave none): an engine may replace it with one
    /// it can find without an index (the Redis engine derives it from the stream id).
    pub generated_id: bool,
}

/// A sequenced event as each core holds it in history and hands it to subscribers.
#[derive(Debug)]
pub struct Event {
    /// Position in the one order all cores share.
    pub seq: u64,
    /// SSE id, for `Last-Event-ID` lookup.
    pub id: Box<str>,
    /// Topics, for matching on fan-out and replay.
    pub topics: Box<[Box<str>]>,
    /// Private update (see [`Update::private`]).
    pub private: bool,
    /// The final SSE bytes, shared by every subscriber of this core.
    pub frame: Bytes,
    /// When the sequencer accepted it, for `history_max_age`.
    pub at: Instant,
}

/// The comment line sent as a heartbeat.
pub const HEARTBEAT: Bytes = Bytes::from_static(b":\n");

/// Encodes an update into one SSE event, per the WHATWG HTML event-stream format: optional
/// `event:` and `retry:` lines, the `id:` line, and one `data:` line per line of the payload
/// (split on CRLF, CR and LF), closed by a blank line.
pub fn encode(update: &Update) -> Bytes {
    let mut b = BytesMut::with_capacity(update.data.len() + update.id.len() + 48);
    if let Some(t) = &update.event_type {
        b.put_slice(b"event: ");
        b.put_slice(t.as_bytes());
        b.put_u8(b'\n');
    }
    if let Some(r) = update.retry {
        b.put_slice(b"retry: ");
        b.put_slice(itoa::Buffer::new().format(r).as_bytes());
        b.put_u8(b'\n');
    }
    b.put_slice(b"id: ");
    b.put_slice(update.id.as_bytes());
    b.put_u8(b'\n');
    for line in split_lines(&update.data) {
        b.put_slice(b"data: ");
        b.put_slice(line.as_bytes());
        b.put_u8(b'\n');
    }
    b.put_u8(b'\n');
    b.freeze()
}

/// Splits on CRLF, lone CR and lone LF, as an event-stream parser would. An empty payload
/// gives one empty line, so the event still dispatches with empty data.
fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let bytes = data.as_bytes();
    let mut start = 0;
    let mut i = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        while i < bytes.len() {
            match bytes[i] {
                b'\r' => {
                    let line = &data[start..i];
                    i += if bytes.get(i + 1) == Some(&b'\n') {
                        2
                    } else {
                        1
                    };
                    start = i;
                    return Some(line);
                }
                b'\n' => {
                    let line = &data[start..i];
                    i += 1;
                    start = i;
                    return Some(line);
                }
                _ => i += 1,
            }
        }
        done = true;
        Some(&data[start..])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(data: &str) -> Update {
        Update {
            topics: vec!["t".into()],
            data: data.into(),
            id: "urn:1".into(),
            event_type: None,
            retry: None,
            private: false,
            generated_id: false,
        }
    }

    #[test]
    fn splits_every_line_ending() {
        let b = encode(&update("a\r\nb\rc\nd"));
        assert_eq!(&b[..], b"id: urn:1\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
    }

    #[test]
    fn trailing_newline_gives_a_trailing_empty_data_line() {
        let b = encode(&update("a\n"));
        assert_eq!(&b[..], b"id: urn:1\ndata: a\ndata: \n\n");
    }

    #[test]
    fn empty_data_still_dispatches() {
        assert_eq!(&encode(&update(""))[..], b"id: urn:1\ndata: \n\n");
    }

    #[test]
    fn type_and_retry_come_first() {
        let mut u = update("x");
        u.event_type = Some("ping".into());
        u.retry = Some(2500);
        assert_eq!(
            &encode(&u)[..],
            b"event: ping\nretry: 2500\nid: urn:1\ndata: x\n\n"
        );
    }
}
