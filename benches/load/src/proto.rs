//! What goes over the wire: the two target flavors' subscribe and publish requests, the event
//! payload (sequence number + send time), and the decoding of a subscriber's response body
//! (close-delimited or chunked) into SSE lines.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How a target server is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Flavor {
    /// Mercure (ssegate, and the Go and axum peers): `GET /.well-known/mercure?topic=T`,
    /// `POST /.well-known/mercure` with a form body and a bearer token.
    Mercure,
    /// nchan: `GET /sub/T` with `Accept: text/event-stream`, `POST /pub/T` with the data as
    /// the body.
    Nchan,
}

/// Topic `k`'s name. Only `[a-z0-9-]`, so it needs no escaping in a path, a query or a form.
pub fn topic_name(k: u32) -> String {
    format!("bench-{k}")
}

impl Flavor {
    /// The complete subscribe request for topic `k`.
    pub fn subscribe_request(self, k: u32) -> Vec<u8> {
        format!(
            "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
            self.subscribe_path(k)
        )
        .into_bytes()
    }

    /// The subscribe request's path and query for topic `k` (HTTP/2 carries it in `:path`).
    pub fn subscribe_path(self, k: u32) -> String {
        let topic = topic_name(k);
        match self {
            Flavor::Mercure => format!("/.well-known/mercure?topic={topic}"),
            Flavor::Nchan => format!("/sub/{topic}"),
        }
    }

    /// Writes a complete keep-alive publish request for topic `k` carrying `payload` into
    /// `out` (cleared first, so one buffer serves every request of a connection).
    pub fn write_publish_request(self, out: &mut Vec<u8>, k: u32, payload: &[u8], token: &str) {
        out.clear();
        let mut head = String::with_capacity(256);
        // Writing into a String cannot fail.
        match self {
            Flavor::Mercure => {
                // The payload is [a-z0-9] only (see `write_payload`): no form escaping needed.
                let body_len =
                    "topic=".len() + topic_name(k).len() + "&data=".len() + payload.len();
                let _ = write!(
                    head,
                    "POST /.well-known/mercure HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                     Authorization: Bearer {token}\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\n\
                     Content-Length: {body_len}\r\n\r\ntopic=bench-{k}&data="
                );
            }
            Flavor::Nchan => {
                let _ = write!(
                    head,
                    "POST /pub/bench-{k} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                     Content-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    payload.len()
                );
            }
        }
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(payload);
    }
}

/// Writes an event payload: `s<seq>t<send_ns>p` padded with `x` to `size` bytes (longer if
/// `size` is too small for the header). `seq` counts the events of one topic from 0, so a
/// subscriber detects gaps and duplicates; `send_ns` is CLOCK_MONOTONIC at send time.
pub fn write_payload(out: &mut Vec<u8>, seq: u64, send_ns: u64, size: usize) {
    use std::io::Write as _;
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = write!(out, "s{seq}t{send_ns}p");
    if out.len() < size {
        out.resize(size, b'x');
    }
}

/// Parses `write_payload`'s output: `(seq, send_ns)`.
pub fn parse_payload(data: &[u8]) -> Option<(u64, u64)> {
    let rest = data.strip_prefix(b"s")?;
    let t = rest.iter().position(|&b| b == b't')?;
    let seq = parse_u64(&rest[..t])?;
    let rest = &rest[t + 1..];
    let p = rest.iter().position(|&b| b == b'p')?;
    let ts = parse_u64(&rest[..p])?;
    Some((seq, ts))
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

/// The longest SSE line accepted; longer means the stream is not what we expect.
const MAX_LINE: usize = 64 * 1024;

/// A malformed subscriber response body.
#[derive(Debug)]
pub enum BodyError {
    /// A chunk-size line that is not hexadecimal or is absurdly long.
    BadChunkSize,
    /// Something other than CRLF after a chunk's data.
    BadChunkEnd,
    /// An SSE line longer than `MAX_LINE`.
    LineTooLong,
}

impl std::error::Error for BodyError {}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BodyError::BadChunkSize => "malformed chunk size in a chunked body",
            BodyError::BadChunkEnd => "chunk data not followed by CRLF",
            BodyError::LineTooLong => "SSE line longer than 64 KiB",
        })
    }
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy)]
enum Chunk {
    /// Reading a chunk-size line: the value so far, its digit count, and whether we are in a
    /// chunk extension (`;…`), whose bytes are ignored.
    Size { value: u64, digits: u8, ext: bool },
    /// Inside a chunk's data, with this many bytes left.
    Data(u64),
    /// After a chunk's data, expecting CRLF.
    DataEnd,
    /// The last chunk was seen: the stream is over, anything further is ignored.
    Done,
}

/// Turns a subscriber's response body, as it arrives in reads of any size, into SSE lines.
/// Servers that stream with chunked transfer encoding (hyper, Go's net/http) and those that
/// close-delimit the stream (ssegate, nchan) both come out as the same lines.
pub struct BodyDecoder {
    chunk: Option<Chunk>,
    /// An incomplete line carried over to the next read (usually empty: it is only used when
    /// a line straddles two reads or two chunks).
    partial: Vec<u8>,
}

impl BodyDecoder {
    /// A decoder for a body that is chunked or not.
    pub fn new(chunked: bool) -> Self {
        BodyDecoder {
            chunk: chunked.then_some(Chunk::Size {
                value: 0,
                digits: 0,
                ext: false,
            }),
            partial: Vec::new(),
        }
    }

    /// Feeds body bytes; calls `on_line` with every complete line, without its `\n` or `\r\n`.
    pub fn feed(
        &mut self,
        mut bytes: &[u8],
        on_line: &mut impl FnMut(&[u8]),
    ) -> Result<(), BodyError> {
        let Some(mut state) = self.chunk else {
            return self.lines(bytes, on_line);
        };
        // Each iteration consumes at least one byte, so this ends after bytes.len() rounds.
        while !bytes.is_empty() {
            match state {
                Chunk::Size { value, digits, ext } => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    state = match b {
                        b'\n' if value == 0 && digits > 0 => Chunk::Done,
                        b'\n' if digits > 0 => Chunk::Data(value),
                        b'\n' => return Err(BodyError::BadChunkSize),
                        b'\r' => state,
                        b';' => Chunk::Size {
                            value,
                            digits,
                            ext: true,
                        },
                        _ if ext => state,
                        _ => {
                            let d = (b as char).to_digit(16).ok_or(BodyError::BadChunkSize)?;
                            if digits >= 15 {
                                return Err(BodyError::BadChunkSize);
                            }
                            Chunk::Size {
                                value: value * 16 + u64::from(d),
                                digits: digits + 1,
                                ext,
                            }
                        }
                    };
                }
                Chunk::Data(left) => {
                    let n = (left.min(bytes.len() as u64)) as usize;
                    self.lines(&bytes[..n], on_line)?;
                    bytes = &bytes[n..];
                    state = if left == n as u64 {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - n as u64)
                    };
                }
                Chunk::DataEnd => {
                    let b = bytes[0];
                    bytes = &bytes[1..];
                    state = match b {
                        b'\r' => Chunk::DataEnd,
                        b'\n' => Chunk::Size {
                            value: 0,
                            digits: 0,
                            ext: false,
                        },
                        _ => return Err(BodyError::BadChunkEnd),
                    };
                }
                Chunk::Done => break,
            }
        }
        self.chunk = Some(state);
        Ok(())
    }

    fn lines(
        &mut self,
        mut bytes: &[u8],
        on_line: &mut impl FnMut(&[u8]),
    ) -> Result<(), BodyError> {
        // One line per iteration: bounded by the number of newlines in `bytes`.
        while let Some(nl) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = (&bytes[..nl], &bytes[nl + 1..]);
            if self.partial.is_empty() {
                on_line(line.strip_suffix(b"\r").unwrap_or(line));
            } else {
                self.partial.extend_from_slice(line);
                let full = std::mem::take(&mut self.partial);
                on_line(full.strip_suffix(b"\r").unwrap_or(&full));
                self.partial = full;
                self.partial.clear();
            }
            bytes = rest;
        }
        if self.partial.len() + bytes.len() > MAX_LINE {
            return Err(BodyError::LineTooLong);
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(chunked: bool, parts: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut d = BodyDecoder::new(chunked);
        let mut out = Vec::new();
        for p in parts {
            d.feed(p, &mut |l: &[u8]| out.push(l.to_vec()))
                .expect("valid body");
        }
        out
    }

    #[test]
    fn payload_round_trip() {
        let mut buf = Vec::new();
        write_payload(&mut buf, 42, 123_456_789, 100);
        assert_eq!(buf.len(), 100);
        assert!(buf.iter().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(parse_payload(&buf), Some((42, 123_456_789)));
        assert_eq!(parse_payload(b"hello"), None);
    }

    #[test]
    fn close_delimited_lines_split_anywhere() {
        let lines = decode(false, &[b":\n", b"id: 1\nda", b"ta: s1t2p\n\n"]);
        assert_eq!(
            lines,
            vec![
                b":".to_vec(),
                b"id: 1".to_vec(),
                b"data: s1t2p".to_vec(),
                vec![]
            ]
        );
    }

    #[test]
    fn chunked_lines_split_across_chunks() {
        let body: &[u8] = b"2\r\n:\n\r\n9;ext=1\r\ndata: s1t\r\n3\r\n2p\n\r\n0\r\n\r\n";
        // Byte by byte, the hardest split.
        let parts: Vec<&[u8]> = body.chunks(1).collect();
        let lines = decode(true, &parts);
        assert_eq!(lines, vec![b":".to_vec(), b"data: s1t2p".to_vec()]);
    }

    #[test]
    fn chunked_rejects_garbage() {
        let mut d = BodyDecoder::new(true);
        assert!(d.feed(b"zz\r\n", &mut |_: &[u8]| {}).is_err());
    }
}
