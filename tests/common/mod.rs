//! Test harness: runs the real `ssegate` binary on port 0, waits for its ready line, and
//! talks to it with plain blocking sockets, reading raw bytes the way a client would.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The publisher key every test server is started with.
pub const KEY: &str = "test-publisher-key";

/// A running gateway process.
pub struct Server {
    child: Child,
    pub addr: SocketAddr,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`).
    pub admin: SocketAddr,
    /// Publisher token allowed to publish everywhere.
    pub token: String,
}

impl Server {
    /// Starts the gateway with `args` added to a test base (port 0, known key, quiet logs),
    /// and waits for the line it prints once every core serves.
    pub fn start(args: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", args)
    }

    /// Like [`Server::start`], on a given address (a second process on the same port).
    pub fn start_on(listen: &str, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ssegate"))
            .args(["--listen", listen, "--publisher-jwt-key", KEY])
            .args(["--admin-addr", "127.0.0.1:0"])
            .args(["--log-level", "warn"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn ssegate");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut admin = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("ssegate admin on ") {
                    admin = Some(rest.trim().to_owned());
                }
                if let Some(rest) = line.strip_prefix("ssegate listening on ") {
                    let addr = rest.split_whitespace().next().unwrap().to_owned();
                    let _ = tx.send((addr, admin.take()));
                }
            }
        });
        let (addr, admin) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok((a, admin)) => (
                a.parse().unwrap(),
                admin.expect("admin line").parse().unwrap(),
            ),
            Err(_) => {
                let _ = child.kill();
                panic!("ssegate did not report ready: {:?}", child.wait());
            }
        };
        Server {
            child,
            addr,
            admin,
            token: token(r#"{"mercure":{"publish":["*"]}}"#),
        }
    }

    /// Opens a new raw connection.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// A keep-alive publisher connection.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            stream: BufReader::new(self.connect()),
            token: self.token.clone(),
        }
    }

    /// Publishes once on a fresh connection; panics unless 200. Returns the event id.
    pub fn publish(&self, form: &[(&str, &str)]) -> String {
        let r = self.publisher().post(form);
        assert_eq!(r.status, 200, "publish failed: {}", r.body);
        r.body
    }

    /// Subscribes with a raw query string and extra headers; reads the response head.
    pub fn subscribe(&self, query: &str, headers: &[(&str, &str)]) -> Subscriber {
        let mut s = self.connect();
        let mut req = format!("GET /.well-known/mercure?{query} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut sub = Subscriber {
            stream: s,
            buf: Vec::new(),
            status: 0,
            headers: HashMap::new(),
            comments: 0,
            retry_hints: 0,
        };
        sub.read_head();
        sub
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        assert_eq!(r, 0);
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Signs an HS256 token with the test key.
pub fn token(claims_json: &str) -> String {
    token_with_key(claims_json, KEY)
}

/// Signs an HS256 token with any key.
pub fn token_with_key(claims_json: &str, key: &str) -> String {
    let claims: serde_json::Value = serde_json::from_str(claims_json).unwrap();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// Percent-encodes a form value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Encodes form pairs.
pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// Reads one response with a Content-Length body.
pub fn read_response(r: &mut impl BufRead) -> Response {
    try_read_response(r).expect("reading a response")
}

/// Reads one response; an I/O error or a connection closed early is an error.
pub fn try_read_response(r: &mut impl BufRead) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(ErrorKind::InvalidData, what.to_owned());
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&line))?;
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').ok_or_else(|| bad(h))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    let len: usize = headers
        .get("content-length")
        .map_or(Ok(0), |v| v.parse())
        .map_err(|_| bad("content-length"))?;
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body: String::from_utf8(body).map_err(|_| bad("body"))?,
    })
}

/// Sends raw bytes on a fresh connection and reads one response.
pub fn raw_request(server: &Server, bytes: &[u8]) -> Response {
    let mut s = server.connect();
    s.write_all(bytes).unwrap();
    read_response(&mut BufReader::new(s))
}

/// A keep-alive publisher.
pub struct Publisher {
    stream: BufReader<TcpStream>,
    pub token: String,
}

impl Publisher {
    /// POSTs a form; returns the response.
    pub fn post(&mut self, pairs: &[(&str, &str)]) -> Response {
        let auth = format!("Bearer {}", self.token);
        self.post_raw(&form(pairs), &[("Authorization", &auth)])
    }

    /// POSTs a form; an I/O error (e.g. the server closed the connection) is `None`.
    pub fn try_post(&mut self, pairs: &[(&str, &str)]) -> Option<Response> {
        let auth = format!("Bearer {}", self.token);
        self.send(&form(pairs), &[("Authorization", &auth)]).ok()
    }

    /// POSTs a body with the given extra headers.
    pub fn post_raw(&mut self, body: &str, headers: &[(&str, &str)]) -> Response {
        self.send(body, headers).expect("publish request")
    }

    fn send(&mut self, body: &str, headers: &[(&str, &str)]) -> std::io::Result<Response> {
        let mut req = format!(
            "POST /.well-known/mercure HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.stream.get_mut().write_all(req.as_bytes())?;
        try_read_response(&mut self.stream)
    }
}

/// One dispatched SSE event, as an EventSource would see it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
}

/// A subscriber connection with an incremental event-stream parser.
pub struct Subscriber {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub status: u16,
    pub headers: HashMap<String, String>,
    /// Comment lines seen so far (the opening `:` and heartbeats).
    pub comments: usize,
    /// `retry:` fields seen so far.
    pub retry_hints: usize,
}

/// What reading a subscriber's stream produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Got {
    Event(Event),
    /// The server closed the stream (EOF or reset).
    Closed,
    /// Nothing within the timeout.
    Timeout,
}

impl Subscriber {
    fn fill(&mut self) -> Result<usize, ErrorKind> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e) => Err(e.kind()),
        }
    }

    fn read_head(&mut self) {
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..pos].to_vec()).unwrap();
                self.buf.drain(..pos + 4);
                let mut lines = head.split("\r\n");
                self.status = lines
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .nth(1)
                    .unwrap()
                    .parse()
                    .unwrap();
                for l in lines {
                    let (k, v) = l.split_once(':').unwrap();
                    self.headers
                        .insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                }
                return;
            }
            match self.fill() {
                Ok(0) | Err(_) => panic!("connection ended before the response head"),
                Ok(_) => {}
            }
        }
    }

    /// The worker (core) that serves this subscriber.
    pub fn worker(&self) -> usize {
        self.headers["x-ssegate-worker"].parse().unwrap()
    }

    /// The body bytes buffered so far (for error responses).
    pub fn body_text(&mut self) -> String {
        let _ = self
            .stream
            .set_read_timeout(Some(Duration::from_millis(500)));
        while let Ok(n) = self.fill() {
            if n == 0 {
                break;
            }
        }
        String::from_utf8_lossy(&self.buf).into_owned()
    }

    /// Next dispatched event, parsed per the WHATWG event-stream rules.
    pub fn next(&mut self, timeout: Duration) -> Got {
        let deadline = Instant::now() + timeout;
        let mut ev = Event::default();
        let mut has_data = false;
        loop {
            while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8(self.buf[..nl].to_vec()).unwrap();
                self.buf.drain(..=nl);
                if line.is_empty() {
                    if has_data {
                        return Got::Event(ev);
                    }
                    ev = Event::default();
                    continue;
                }
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (field, value) = match line.split_once(':') {
                    Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                    None => (line.as_str(), ""),
                };
                match field {
                    "id" => ev.id = Some(value.to_owned()),
                    "event" => ev.event = Some(value.to_owned()),
                    "retry" => {
                        ev.retry = value.parse().ok();
                        self.retry_hints += 1;
                    }
                    "data" => {
                        if has_data {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(value);
                        has_data = true;
                    }
                    _ => {}
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Got::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.fill() {
                Ok(0) => return Got::Closed,
                Ok(_) => {}
                Err(ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Got::Timeout,
                Err(_) => return Got::Closed,
            }
        }
    }

    /// Next event, or panic.
    pub fn expect_event(&mut self) -> Event {
        match self.next(Duration::from_secs(10)) {
            Got::Event(e) => e,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// Reads events until the stream closes or `limit` passes; returns them and whether it
    /// closed.
    pub fn drain(&mut self, limit: Duration) -> (Vec<Event>, bool) {
        let deadline = Instant::now() + limit;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return (out, false);
            }
            match self.next(left) {
                Got::Event(e) => out.push(e),
                Got::Closed => return (out, true),
                Got::Timeout => return (out, false),
            }
        }
    }
}

/// Signs a token with an asymmetric test key from `tests/fixtures` (RS256 or ES256).
pub fn token_signed(claims_json: &str, alg: jsonwebtoken::Algorithm) -> String {
    let claims: serde_json::Value = serde_json::from_str(claims_json).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let key = match alg {
        jsonwebtoken::Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(
            &std::fs::read(format!("{dir}/rsa-private.pem")).unwrap(),
        ),
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(
            &std::fs::read(format!("{dir}/ec-private.pem")).unwrap(),
        ),
        other => panic!("no fixture key for {other:?}"),
    }
    .unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), &claims, &key).unwrap()
}

/// Path of a fixture file.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// GETs a path on the admin listener.
pub fn admin_get(server: &Server, path: &str) -> Response {
    let mut s = TcpStream::connect(server.admin).expect("connect admin");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    read_response(&mut BufReader::new(s))
}

/// Sums a metric over its `core` label (and any other labels matching `labels`).
pub fn metric_sum(text: &str, name: &str, labels: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (n, rest) = key.split_once('{')?;
            (n == name && rest.contains(labels)).then(|| value.parse::<u64>().ok())?
        })
        .sum()
}

/// A real `redis-server` on a free loopback port, without persistence, stopped on drop.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// Starts `redis-server` and waits for its "Ready to accept connections" line. `None`
    /// (with a message) when it is not installed, except under CI, where that is a failure.
    pub fn start() -> Option<Redis> {
        Redis::start_on(free_port())
    }

    /// Like [`Redis::start`], on a given port (Redis coming back where it was).
    pub fn start_on(port: u16) -> Option<Redis> {
        Redis::spawn(port, &["--port".into(), port.to_string()])
    }

    /// Like [`Redis::start`], speaking only TLS, with `tests/fixtures/redis-cert.pem` (for
    /// `localhost` and 127.0.0.1, signed by `redis-ca-cert.pem`; made with `openssl req
    /// -x509` for the CA, then `openssl x509 -req` with `CA:FALSE` and those names).
    pub fn start_tls() -> Option<Redis> {
        let port = free_port();
        let args = [
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            fixture("redis-cert.pem"),
            "--tls-key-file".into(),
            fixture("redis-key.pem"),
            "--tls-ca-cert-file".into(),
            fixture("redis-ca-cert.pem"),
            "--tls-auth-clients".into(),
            "no".into(),
        ];
        Redis::spawn(port, &args)
    }

    fn spawn(port: u16, listen: &[String]) -> Option<Redis> {
        let spawned = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--loglevel", "notice"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: redis-server not runnable ({e}); apt-get install redis-server");
                return None;
            }
            Err(e) => panic!("redis-server not runnable under CI: {e}"),
        };
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("Ready to accept connections") {
                    let _ = tx.send(());
                }
            }
        });
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            panic!("redis-server did not become ready: {:?}", child.wait());
        }
        Some(Redis { child, port })
    }

    /// The URL the gateway is given.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends every command in one write (pipelined) and returns each reply's first line.
    pub fn pipeline(&self, commands: &[Vec<String>]) -> Vec<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        let mut req = String::new();
        for args in commands {
            req.push_str(&format!("*{}\r\n", args.len()));
            for a in args {
                req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
            }
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut r = BufReader::new(s);
        (0..commands.len())
            .map(|_| {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if let Some(n) = line
                    .strip_prefix('$')
                    .and_then(|n| n.trim().parse::<usize>().ok())
                {
                    let mut bulk = vec![0; n + 2];
                    r.read_exact(&mut bulk).unwrap();
                    return String::from_utf8_lossy(&bulk[..n]).into_owned();
                }
                line.trim_end().to_owned()
            })
            .collect()
    }

    /// Runs one command (e.g. `FLUSHALL`) and returns its reply's first line.
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to redis");
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    /// Stops the server at once (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A loopback TCP proxy to a port, which a test can cut (every connection through it is
/// closed and new ones are closed at once) and restore: one node losing Redis while the
/// others keep it.
pub struct Proxy {
    pub port: u16,
    cut: std::sync::Arc<std::sync::atomic::AtomicBool>,
    open: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Starts forwarding a free port to `127.0.0.1:target`.
    pub fn start(target: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, o) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut open = o.lock().unwrap();
                open.push(client.try_clone().unwrap());
                open.push(server.try_clone().unwrap());
                drop(open);
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Proxy { port, cut, open }
    }

    /// The URL a node is given to reach Redis through this proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Closes every connection through the proxy and refuses new ones until restored.
    pub fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.cut.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
