//! The TLS adapter (`src/conn/tls.rs`, rustls' unbuffered API) over an in-memory transport,
//! with the gateway's own server configuration (`ssegate::net::tls::load`, the test
//! certificate). The transport hands bytes over in fuzzer-chosen pieces and sometimes
//! answers "not now" (`Pending`), as a socket does.
//!
//! The first byte picks the mode:
//! - even: raw. Then a read size, a write size (0: unlimited) and the bytes a client sends,
//!   followed by end of stream (bit 1 of the mode: every other transport call is Pending).
//!   Properties: no panic, no hang (the handshake ends within a bound of polls); it never
//!   completes, since no key is behind these bytes; what the server sends is whole,
//!   well-formed TLS records.
//! - odd: a session with a real rustls client (TLS 1.2 or 1.3) that sends data, maybe a
//!   key update, reads the server's reply and close_notify, sends more and its own
//!   close_notify; the fuzzer picks the sizes, how the bytes are cut, and maybe one client
//!   byte to corrupt. The server, as the gateway does, reads the request, answers, closes
//!   and then drains what the client still sends without decrypting it. Properties:
//!   without corruption, everything arrives intact and in order on both sides and the
//!   exchange never stalls with both ends waiting (records the adapter keeps but does not
//!   send would do that); with corruption, the server never reads a byte the client did
//!   not send (what it reads is a prefix of it) and ends (closing the client's side when
//!   both wait). Found so far: a bad record after the server's close_notify, read through
//!   rustls, tripped rustls' debug assertion against a second fatal alert
//!   (rustls/rustls#959); the gateway now drains instead (seed `bad-record-after-close`).
#![no_main]

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};

use arbitrary::{Arbitrary, Unstructured};
use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libfuzzer_sys::fuzz_target;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, SignatureScheme,
};
use ssegate::fuzzing::tls::accept;

fn server_config() -> Arc<ServerConfig> {
    static CONFIG: OnceLock<Arc<ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures");
            let cert = format!("{dir}/tls-a-cert.pem");
            let key = format!("{dir}/tls-a-key.pem");
            ssegate::net::tls::load(cert.as_ref(), key.as_ref(), true).expect("test certificate")
        })
        .clone()
}

fn client_config(tls13: bool) -> Arc<ClientConfig> {
    static CONFIGS: OnceLock<[Arc<ClientConfig>; 2]> = OnceLock::new();
    let make = |version| {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    };
    let configs =
        CONFIGS.get_or_init(|| [make(&rustls::version::TLS12), make(&rustls::version::TLS13)]);
    configs[tls13 as usize].clone()
}

/// Accepts the test certificate (the session is about the server's adapter).
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Sizes for successive transport calls, cycled: 0 answers Pending once, any other number
/// is the most bytes the call moves. Empty: every call moves all it can. Pieces grow with
/// the bytes already moved (at least 1/64 of them): the handshake is cut byte by byte if
/// the plan says so, a 130 KiB reply in a few hundred pieces rather than 130,000 (which
/// made an input take 100 ms and the target run at 1,000 inputs a second).
struct Plan {
    sizes: Vec<u16>,
    next: usize,
    /// The previous call answered Pending: this one goes through, so no input stalls.
    pended: bool,
    moved: usize,
}

impl Plan {
    fn new(sizes: Vec<u16>) -> Plan {
        Plan {
            sizes,
            next: 0,
            pended: false,
            moved: 0,
        }
    }

    /// `None`: answer Pending.
    fn take(&mut self) -> Option<usize> {
        if self.sizes.is_empty() {
            return Some(usize::MAX);
        }
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        if size == 0 && !self.pended {
            self.pended = true;
            return None;
        }
        self.pended = false;
        Some((size as usize).max(1).max(self.moved / 64))
    }
}

/// Both directions of the in-memory connection.
struct Pipe {
    to_server: Vec<u8>,
    read_pos: usize,
    /// The client closed its side: once `to_server` is read, reads return end of stream.
    client_closed: bool,
    to_client: Vec<u8>,
    server_closed: bool,
    reads: Plan,
    writes: Plan,
    /// A call answered Pending by plan (not for want of bytes) since the driver last looked.
    pended: bool,
}

impl Pipe {
    fn new(reads: Vec<u16>, writes: Vec<u16>) -> Rc<RefCell<Pipe>> {
        Rc::new(RefCell::new(Pipe {
            to_server: Vec::new(),
            read_pos: 0,
            client_closed: false,
            to_client: Vec::new(),
            server_closed: false,
            reads: Plan::new(reads),
            writes: Plan::new(writes),
            pended: false,
        }))
    }
}

/// The server's end of the pipe: what the adapter sees as its socket.
struct Transport(Rc<RefCell<Pipe>>);

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut p = self.0.borrow_mut();
        let available = p.to_server.len() - p.read_pos;
        if available == 0 {
            return if p.client_closed {
                Poll::Ready(Ok(0))
            } else {
                Poll::Pending
            };
        }
        let Some(max) = p.reads.take() else {
            p.pended = true;
            return Poll::Pending;
        };
        let n = available.min(max).min(buf.len());
        p.reads.moved += n;
        let at = p.read_pos;
        buf[..n].copy_from_slice(&p.to_server[at..at + n]);
        p.read_pos += n;
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut p = self.0.borrow_mut();
        if p.server_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let Some(max) = p.writes.take() else {
            p.pended = true;
            return Poll::Pending;
        };
        let n = buf.len().min(max);
        p.writes.moved += n;
        p.to_client.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().server_closed = true;
        Poll::Ready(Ok(()))
    }
}

/// Asserts that `out` is a sequence of whole TLS records.
fn assert_records(out: &[u8]) {
    let mut rest = out;
    while !rest.is_empty() {
        assert!(rest.len() >= 5, "partial record header: {rest:02x?}");
        let (kind, version) = (rest[0], u16::from_be_bytes([rest[1], rest[2]]));
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        assert!((20..=23).contains(&kind), "record type {kind}");
        assert!(
            (0x0300..=0x0304).contains(&version),
            "record version {version:#x}"
        );
        assert!(len <= 16384 + 2048, "record of {len} bytes");
        assert!(
            rest.len() >= 5 + len,
            "partial record: {len} announced, {} sent",
            rest.len() - 5
        );
        rest = &rest[5 + len..];
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(mode, rest);
    } else if let Ok(s) = Session::arbitrary_take_rest(Unstructured::new(rest)) {
        session(s);
    }
});

fn raw(mode: u8, data: &[u8]) {
    let [r, w, bytes @ ..] = data else { return };
    let plan = |size: u8| match (size, mode & 2 != 0) {
        (0, false) => vec![],
        (0, true) => vec![0, u16::MAX],
        (n, false) => vec![n as u16],
        (n, true) => vec![0, n as u16],
    };
    let pipe = Pipe::new(plan(*r), plan(*w));
    {
        let mut p = pipe.borrow_mut();
        p.to_server = bytes.to_vec();
        p.client_closed = true;
    }
    let mut handshake = pin!(accept(Transport(pipe.clone()), server_config()));
    let mut cx = Context::from_waker(Waker::noop());
    let result = loop {
        let before = {
            let p = pipe.borrow();
            (p.read_pos, p.to_client.len())
        };
        if let Poll::Ready(r) = handshake.as_mut().poll(&mut cx) {
            break r;
        }
        // Every read answers at once here: a Pending the transport did not give is one
        // that nothing would ever wake.
        let mut p = pipe.borrow_mut();
        let moved = before != (p.read_pos, p.to_client.len());
        assert!(
            moved || std::mem::take(&mut p.pended),
            "Pending with nothing to wait for"
        );
    };
    assert!(result.is_err(), "a handshake completed from keyless bytes");
    assert_records(&pipe.borrow().to_client);
}

#[derive(Arbitrary, Debug)]
struct Session {
    tls13: bool,
    /// What the client sends first (the server reads exactly this much, then replies).
    first: Vec<u8>,
    /// Whether the client asks for a key update after `first` (TLS 1.3).
    key_update: bool,
    /// Length of the server's reply (cut to `MAX_REPLY`).
    reply_len: u32,
    /// What the client sends after the reply and its close_notify, then closes.
    last: Vec<u8>,
    /// The server's read buffer sizes, cycled (0: 1).
    server_reads: Vec<u16>,
    /// Transport plans (see [`Plan`]).
    transport_reads: Vec<u16>,
    transport_writes: Vec<u16>,
    /// Flip the bits `.1` of the client's byte at offset `.0` (a no-op when `.1` is 0 or
    /// the offset is past the end).
    corrupt: Option<(u32, u8)>,
}

/// Past two `poll_write` maximums (64 KiB each), so a reply takes three.
const MAX_REPLY: usize = 2 * 64 * 1024 + 4096;

fn session(s: Session) {
    let reply: Vec<u8> = (0..s.reply_len as usize % MAX_REPLY)
        .map(|i| (i % 251) as u8)
        .collect();
    // What the server reads: the client's first bytes (the rest comes after the server's
    // close_notify, and is drained).
    let sent: Vec<u8> = s.first.clone();
    let pipe = Pipe::new(s.transport_reads, s.transport_writes);
    let received = Rc::new(RefCell::new(Vec::new()));
    let mut server = pin!(serve(
        Transport(pipe.clone()),
        s.first.len(),
        &reply,
        &s.server_reads,
        received.clone()
    ));
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = Client {
        conn: ClientConnection::new(client_config(s.tls13), name).unwrap(),
        first: &s.first,
        last: &s.last,
        key_update: s.key_update,
        sent_first: false,
        sent_last: false,
        got: Vec::new(),
        got_close: false,
        failed: None,
        written: 0,
        corrupt: s.corrupt.filter(|c| c.1 != 0),
        corrupted: false,
    };
    let mut cx = Context::from_waker(Waker::noop());
    let mut result = None;
    let mut stalls = 0;
    for _ in 0..1_000_000 {
        if result.is_none() {
            if let Poll::Ready(r) = server.as_mut().poll(&mut cx) {
                result = Some(r);
            }
        }
        let moved = client.step(&pipe);
        let pended = std::mem::take(&mut pipe.borrow_mut().pended);
        if moved || pended {
            stalls = 0;
            continue;
        }
        if result.is_some() {
            break;
        }
        stalls += 1;
        if stalls < 2 {
            continue;
        }
        // Both ends wait for the other.
        assert!(
            !pipe.borrow().client_closed,
            "the server hangs after the client closed"
        );
        assert!(
            client.corrupted,
            "stalled: server waits, client waits (client: handshaking {}, sent first {}, got {} of {} reply bytes, close_notify {}, failed {:?}); {} bytes not read by the server",
            client.conn.is_handshaking(),
            client.sent_first,
            client.got.len(),
            reply.len(),
            client.got_close,
            client.failed,
            pipe.borrow().to_server.len() - pipe.borrow().read_pos,
        );
        // As a real client would, give up and close: the server must end.
        pipe.borrow_mut().client_closed = true;
        stalls = 0;
    }
    let result = result.expect("the server did not finish");
    let received = received.borrow();
    assert!(
        sent.starts_with(&received),
        "the server read bytes the client did not send"
    );
    assert!(
        reply.starts_with(&client.got),
        "the client read bytes the server did not send"
    );
    if client.corrupted {
        if result.is_ok() {
            assert_eq!(*received, sent, "ended cleanly without all the data");
        }
        return;
    }
    assert!(
        client.failed.is_none(),
        "client failed: {:?}",
        client.failed
    );
    if let Err(e) = result {
        panic!("server failed on an intact stream: {e}");
    }
    assert_eq!(*received, sent);
    assert_eq!(client.got, reply);
    assert!(client.got_close, "no close_notify from the server");
}

/// What the gateway does with a connection, in small: handshake, read the request, answer,
/// close, drain what is left.
async fn serve(
    transport: Transport,
    first_len: usize,
    reply: &[u8],
    read_sizes: &[u16],
    received: Rc<RefCell<Vec<u8>>>,
) -> io::Result<()> {
    let mut tls = accept(transport, server_config()).await?;
    let mut buf = vec![0u8; u16::MAX as usize + 1];
    let whole = buf.len();
    let mut sizes = read_sizes.iter().map(|&n| n.max(1) as usize).cycle();
    let mut size = || sizes.next().unwrap_or(whole);
    while received.borrow().len() < first_len {
        let want = size().min(first_len - received.borrow().len());
        let n = tls.read(&mut buf[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        received.borrow_mut().extend_from_slice(&buf[..n]);
    }
    tls.write_all(reply).await?;
    tls.flush().await?;
    tls.close().await?;
    // As the gateway lingers: what the client still sends is drained, not decrypted.
    loop {
        let want = size();
        let n = std::future::poll_fn(|cx| tls.poll_drain(cx, &mut buf[..want])).await?;
        if n == 0 {
            return Ok(());
        }
    }
}

struct Client<'a> {
    conn: ClientConnection,
    first: &'a [u8],
    last: &'a [u8],
    key_update: bool,
    sent_first: bool,
    sent_last: bool,
    got: Vec<u8>,
    got_close: bool,
    failed: Option<String>,
    /// Bytes sent so far, to find the one to corrupt.
    written: usize,
    corrupt: Option<(u32, u8)>,
    corrupted: bool,
}

impl Client<'_> {
    /// Takes what the server sent, acts on it, sends what rustls has. Whether bytes moved.
    fn step(&mut self, pipe: &RefCell<Pipe>) -> bool {
        if self.failed.is_some() {
            return false;
        }
        let incoming = std::mem::take(&mut pipe.borrow_mut().to_client);
        let mut moved = !incoming.is_empty();
        let mut rest = &incoming[..];
        while !rest.is_empty() {
            match self.conn.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return self.fail(pipe, e.to_string()),
            }
            if let Err(e) = self.conn.process_new_packets() {
                return self.fail(pipe, e.to_string());
            }
            if let Err(e) = self.drain() {
                return self.fail(pipe, e);
            }
        }
        assert!(rest.is_empty(), "client left {} bytes unread", rest.len());
        if let Err(e) = self.drain() {
            return self.fail(pipe, e);
        }
        if !self.conn.is_handshaking() && !self.sent_first {
            self.sent_first = true;
            moved = true;
            self.conn.writer().write_all(self.first).unwrap();
            if self.key_update {
                // TLS 1.2 has no key update: rustls refuses, which is fine here.
                let _ = self.conn.refresh_traffic_keys();
            }
        }
        if self.got_close && !self.sent_last {
            self.sent_last = true;
            moved = true;
            self.conn.writer().write_all(self.last).unwrap();
            self.conn.send_close_notify();
        }
        while self.conn.wants_write() {
            let mut out = Vec::new();
            self.conn.write_tls(&mut out).unwrap();
            if let Some((at, mask)) = self.corrupt {
                let at = at as usize;
                if (self.written..self.written + out.len()).contains(&at) {
                    out[at - self.written] ^= mask;
                    self.corrupted = true;
                }
            }
            self.written += out.len();
            moved |= !out.is_empty();
            pipe.borrow_mut().to_server.extend_from_slice(&out);
        }
        if self.sent_last && !pipe.borrow().client_closed {
            // Its close_notify is out: a client then closes the socket, which is what ends
            // the server's drain (the gateway's linger also has a time and byte limit).
            pipe.borrow_mut().client_closed = true;
            moved = true;
        }
        moved
    }

    /// Reads the plaintext rustls has decrypted.
    fn drain(&mut self) -> Result<(), String> {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match self.conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.got_close = true;
                    return Ok(());
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// The client gives up: it closes its side, as a real one would.
    fn fail(&mut self, pipe: &RefCell<Pipe>, why: String) -> bool {
        // Send the alert rustls queued, if any.
        let mut out = Vec::new();
        while self.conn.wants_write() && self.conn.write_tls(&mut out).is_ok() {}
        let mut p = pipe.borrow_mut();
        p.to_server.extend_from_slice(&out);
        p.client_closed = true;
        self.failed = Some(why);
        true
    }
}
