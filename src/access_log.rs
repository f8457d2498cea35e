//! The optional access log (`access_log`): one line per request, written when the request is
//! answered, or for a subscriber when its stream ends.
//!
//! Owns: the per-core line buffer and the one writer thread. May call: nothing of the
//! crate.
//!
//! ```text
//! 2026-11-22T07:40:00.123Z core=0 conn=1 peer=127.0.0.1:40000 method=GET path=/.well-known/mercure status=200 bytes=1234 duration_ms=5012.345 end=client_closed
//! ```
//!
//! The path is logged without its query string, and no header is logged: tokens travel in
//! the `authorization` query parameter, the `Authorization` header and a cookie.
//!
//! **Writing never blocks a core.** Each core appends its lines to its own buffer (no lock,
//! no syscall), and hands the buffer to one writer thread — over a bounded channel, without
//! waiting — when it passes [`FLUSH_AT`] bytes and on every tick of its sweep (at most a
//! second apart), and once more when the core stops. The thread does the blocking `write`,
//! so a slow disk or a full stderr pipe stalls only it. If it falls behind by [`CHUNKS`]
//! chunks, further chunks are dropped and counted (`ssegate_access_log_dropped_lines_total`)
//! rather than queued without bound.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

/// A core hands its buffer to the writer once it holds this many bytes.
pub const FLUSH_AT: usize = 64 * 1024;

/// Chunks the writer thread may fall behind by before chunks are dropped.
pub const CHUNKS: usize = 1024;

/// What the writer thread receives: a chunk of lines, or `None` to finish.
type Chunk = Option<Vec<u8>>;

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// No access log.
    Off,
    /// The process's standard error (with the other log lines).
    Stderr,
    /// The process's standard output.
    Stdout,
    /// A file, created if needed and appended to.
    File(PathBuf),
}

impl Target {
    /// Reads the `access_log` value: `"off"`, `"stderr"`, `"stdout"` or a file path.
    pub fn parse(value: &str) -> Target {
        match value {
            "off" | "" => Target::Off,
            "stderr" => Target::Stderr,
            "stdout" => Target::Stdout,
            path => Target::File(PathBuf::from(path)),
        }
    }
}

/// The writer thread and the way to feed it.
pub struct Writer {
    tx: flume::Sender<Chunk>,
    thread: JoinHandle<()>,
}

impl Writer {
    /// Opens the target and starts the writer thread; `None` when the log is off.
    pub fn start(target: &Target) -> io::Result<Option<Writer>> {
        let mut out: Box<dyn Write + Send> = match target {
            Target::Off => return Ok(None),
            Target::Stderr => Box::new(io::stderr()),
            Target::Stdout => Box::new(io::stdout()),
            Target::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
            ),
        };
        let (tx, rx) = flume::bounded::<Chunk>(CHUNKS);
        let thread = std::thread::Builder::new()
            .name("ssegate-access-log".into())
            .spawn(move || {
                while let Ok(Some(chunk)) = rx.recv() {
                    if let Err(e) = out.write_all(&chunk).and_then(|()| out.flush()) {
                        tracing::warn!(error = %e, "access log write failed");
                    }
                }
                let _ = out.flush();
            })?;
        Ok(Some(Writer { tx, thread }))
    }

    /// A sender for one core.
    pub fn sender(&self) -> flume::Sender<Chunk> {
        self.tx.clone()
    }

    /// Writes what the cores have handed over, then stops the thread. Call once every core
    /// has stopped (each hands over its last lines as it stops).
    pub fn finish(self) {
        let _ = self.tx.send(None);
        let _ = self.thread.join();
    }
}

/// One request's line.
#[derive(Debug)]
pub struct Record<'a> {
    /// The connection's id (as in the other log lines).
    pub conn: u64,
    /// The client's address, when known.
    pub peer: Option<SocketAddr>,
    /// The request method.
    pub method: &'a str,
    /// The request path, without the query string.
    pub path: &'a str,
    /// The response status; 0 when the connection ended before a response.
    pub status: u16,
    /// Response bytes written (before TLS framing).
    pub bytes: u64,
    /// From the request head being read to the response being written (for a subscriber:
    /// to the end of its stream).
    pub duration: Duration,
    /// For a subscriber, why its stream ended.
    pub end: Option<&'a str>,
}

/// One core's buffer of lines (per core, never shared).
pub struct AccessLog {
    core: usize,
    buf: RefCell<Vec<u8>>,
    lines: Cell<u64>,
    tx: flume::Sender<Chunk>,
}

impl AccessLog {
    /// A buffer for `core` feeding the writer behind `tx`.
    pub fn new(core: usize, tx: flume::Sender<Chunk>) -> AccessLog {
        AccessLog {
            core,
            buf: RefCell::new(Vec::new()),
            lines: Cell::new(0),
            tx,
        }
    }

    /// Appends a line; returns the number of lines dropped if this filled the buffer and the
    /// writer had fallen behind.
    pub fn record(&self, r: &Record<'_>) -> u64 {
        let mut line = String::with_capacity(192);
        let _ = write!(
            line,
            "{} core={} conn={} peer=",
            humantime::format_rfc3339_millis(SystemTime::now()),
            self.core,
            r.conn
        );
        match r.peer {
            Some(p) => {
                let _ = write!(line, "{p}");
            }
            None => line.push('-'),
        }
        let _ = write!(line, " method={} path=", r.method);
        push_escaped(&mut line, r.path);
        let _ = write!(
            line,
            " status={} bytes={} duration_ms={:.3}",
            r.status,
            r.bytes,
            r.duration.as_secs_f64() * 1000.0
        );
        if let Some(end) = r.end {
            let _ = write!(line, " end={end}");
        }
        line.push('\n');
        let full = {
            let mut buf = self.buf.borrow_mut();
            buf.extend_from_slice(line.as_bytes());
            buf.len() >= FLUSH_AT
        };
        self.lines.set(self.lines.get() + 1);
        if full {
            self.flush()
        } else {
            0
        }
    }

    /// Hands the buffered lines to the writer without waiting; returns the number of lines
    /// dropped because it had fallen behind.
    pub fn flush(&self) -> u64 {
        let lines = self.lines.replace(0);
        if lines == 0 {
            return 0;
        }
        let chunk = std::mem::take(&mut *self.buf.borrow_mut());
        match self.tx.try_send(Some(chunk)) {
            Ok(()) => 0,
            Err(_) => lines,
        }
    }
}

/// Appends `s` with spaces, control characters, quotes, backslashes and non-ASCII bytes
/// percent-encoded, so a line always splits on spaces.
fn push_escaped(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_graphic() && b != b'"' && b != b'\\' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_buffered_then_handed_over_whole() {
        let (tx, rx) = flume::bounded(2);
        let log = AccessLog::new(1, tx);
        let dropped = log.record(&Record {
            conn: 7,
            peer: Some("127.0.0.1:4000".parse().unwrap()),
            method: "GET",
            path: "/a b\"",
            status: 200,
            bytes: 42,
            duration: Duration::from_micros(1500),
            end: Some("client_closed"),
        });
        assert_eq!(dropped, 0);
        assert!(rx.is_empty(), "written before the flush");
        assert_eq!(log.flush(), 0);
        let chunk = String::from_utf8(rx.try_recv().unwrap().unwrap()).unwrap();
        let (_, rest) = chunk.split_once(' ').unwrap();
        assert_eq!(
            rest,
            "core=1 conn=7 peer=127.0.0.1:4000 method=GET path=/a%20b%22 status=200 bytes=42 duration_ms=1.500 end=client_closed\n"
        );
        // Nothing buffered: nothing sent.
        assert_eq!(log.flush(), 0);
        assert!(rx.is_empty());
    }

    #[test]
    fn a_writer_behind_drops_and_counts() {
        let (tx, _rx) = flume::bounded(1);
        let log = AccessLog::new(0, tx);
        let r = Record {
            conn: 1,
            peer: None,
            method: "POST",
            path: "/",
            status: 400,
            bytes: 0,
            duration: Duration::ZERO,
            end: None,
        };
        log.record(&r);
        assert_eq!(log.flush(), 0);
        log.record(&r);
        log.record(&r);
        assert_eq!(log.flush(), 2);
    }

    #[test]
    fn targets() {
        assert_eq!(Target::parse("off"), Target::Off);
        assert_eq!(Target::parse("stderr"), Target::Stderr);
        assert_eq!(
            Target::parse("/var/log/ssegate/access.log"),
            Target::File("/var/log/ssegate/access.log".into())
        );
    }
}
