//! ② A TLS connection over a glommio `TcpStream`, driven through rustls' unbuffered API so
//! that an idle connection owns no I/O buffer.
//!
//! Owns: the TLS record layer of one connection. May call: `net::tls` (tests only).
//!
//! The stream is generic over its transport (a `TcpStream` unless named otherwise) only so
//! that the fuzz target `tests/fuzz` can drive the same code over bytes in memory.
//!
//! rustls' buffered `ServerConnection` (what futures-rustls wraps) keeps a receive buffer of
//! at least 4 KiB from its first read to its end, and an idle subscriber always has a read
//! pending. Here received bytes are read into, and decrypted from, one scratch buffer per
//! core; records are encrypted into the same scratch and written straight from it. A
//! connection keeps bytes of its own only while they are in flight: the tail of a partial
//! record, decrypted data the caller has not read yet, or records the socket did not take.
//! All three are freed as soon as they are empty.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncodeTlsData, EncryptError, InsufficientSizeError, WriteTraffic,
};
use rustls::ServerConfig;

/// Bytes asked of the socket per read, beyond the partial record kept from the last one: a
/// full record (16 KiB of plaintext and its overhead) fits.
const READ_SIZE: usize = 17 * 1024;
/// Most plaintext encrypted per `poll_write` (a replay batch is 64 KiB).
const MAX_WRITE: usize = 64 * 1024;
/// Plaintext bytes per record, and an upper bound on what a record adds to them (header,
/// content type, explicit nonce, tag).
const RECORD_PAYLOAD: usize = 16 * 1024;
const RECORD_OVERHEAD: usize = 64;

thread_local! {
    /// This core's buffer for bytes on their way between the socket and rustls. Only used
    /// inside a single poll, never across an await, so one per thread serves every
    /// connection of the core.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A server-side TLS stream over `S` (a glommio `TcpStream` in the gateway).
pub struct TlsStream<S = TcpStream> {
    tcp: S,
    conn: UnbufferedServerConnection,
    /// Received bytes rustls has not consumed yet (a partial record); usually empty.
    incoming: Vec<u8>,
    /// Decrypted bytes not returned by `poll_read` yet, from `plain_pos`.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Encrypted bytes the socket has not taken yet, from `out_pos`.
    outgoing: Vec<u8>,
    out_pos: usize,
    /// The peer sent close_notify: reads end cleanly.
    peer_closed: bool,
    /// The socket reached end of stream.
    eof: bool,
    /// Our close_notify is queued.
    close_sent: bool,
    /// rustls reported an error: the connection is unusable and must not be fed again.
    failed: bool,
}

/// Performs the server handshake on `tcp`. The caller bounds it in time.
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    tcp: S,
    config: Arc<ServerConfig>,
) -> io::Result<Box<TlsStream<S>>> {
    let conn = UnbufferedServerConnection::new(config).map_err(invalid)?;
    let mut tls = Box::new(TlsStream {
        tcp,
        conn,
        incoming: Vec::new(),
        plain: Vec::new(),
        plain_pos: 0,
        outgoing: Vec::new(),
        out_pos: 0,
        peer_closed: false,
        eof: false,
        close_sent: false,
        failed: false,
    });
    poll_fn(|cx| tls.poll_handshake(cx)).await?;
    Ok(tls)
}

fn failed() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "TLS connection failed earlier")
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Appends a handshake or alert record rustls wants sent to `out`.
fn encode(enc: &mut EncodeTlsData<'_, ServerConnectionData>, out: &mut Vec<u8>) -> io::Result<()> {
    let len = out.len();
    let need = match enc.encode(&mut []) {
        Ok(_) => return Ok(()),
        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
            required_size
        }
        Err(e) => return Err(io::Error::other(e.to_string())),
    };
    out.resize(len + need, 0);
    match enc.encode(&mut out[len..]) {
        Ok(n) => {
            out.truncate(len + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(len);
            Err(io::Error::other(e.to_string()))
        }
    }
}

/// Encrypts `data` with `wt` into `out` (grown as needed); returns the encrypted length.
fn encrypt(
    wt: &mut WriteTraffic<'_, ServerConnectionData>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<usize> {
    let bound = data.len() + data.len().div_ceil(RECORD_PAYLOAD).max(1) * RECORD_OVERHEAD;
    if out.len() < bound {
        out.resize(bound, 0);
    }
    match wt.encrypt(data, out) {
        Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
            out.resize(required_size, 0);
            wt.encrypt(data, out)
        }
        r => r,
    }
    .map_err(|e| io::Error::other(e.to_string()))
}

impl TlsStream {
    /// The TCP stream underneath.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether the handshake chose HTTP/2 (ALPN `h2`).
    pub fn is_h2(&self) -> bool {
        self.conn.alpn_protocol() == Some(crate::net::tls::ALPN_H2)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream<S> {
    /// After close: reads what the peer still sends straight from the socket and discards
    /// it, with what rustls had not consumed or returned yet. A connection that only lingers
    /// so that the kernel does not reset it has no use for the plaintext, and feeding rustls
    /// after our close_notify is what a hostile client can turn into a second fatal alert:
    /// a bad record there trips a debug assertion inside rustls (rustls/rustls#959; found
    /// by the `tls` fuzz target). Returns how many bytes went, 0 at end of stream.
    pub fn poll_drain(&mut self, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<io::Result<usize>> {
        let kept = self.incoming.len() + self.plain.len() - self.plain_pos;
        if kept > 0 {
            self.incoming = Vec::new();
            self.plain = Vec::new();
            self.plain_pos = 0;
            return Poll::Ready(Ok(kept));
        }
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            ready!(self.poll_send_queued(cx))?;
            if !self.conn.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            if self.eof || self.peer_closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(self.poll_fill(cx))?;
        }
    }

    /// Feeds `buf` (kept bytes, then new ones) to rustls: decrypted data goes to `plain`,
    /// records to send to `outgoing`. Returns how many bytes of `buf` rustls is done with;
    /// the rest must be presented again, in front of the next bytes read.
    fn process(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(failed());
        }
        let mut done = 0;
        loop {
            let status = self.conn.process_tls_records(&mut buf[done..]);
            let discard = status.discard;
            match status.state {
                Ok(ConnectionState::ReadTraffic(mut rt)) => {
                    while let Some(record) = rt.next_record() {
                        let record = record.map_err(invalid)?;
                        self.plain.extend_from_slice(record.payload);
                        done += record.discard;
                    }
                }
                Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                    encode(&mut enc, &mut self.outgoing)?
                }
                // Queued in `outgoing`, which is sent before anything else.
                Ok(ConnectionState::TransmitTlsData(t)) => t.done(),
                Ok(ConnectionState::PeerClosed) => self.peer_closed = true,
                Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    return Ok(done + discard);
                }
                // Nothing more to do with these bytes until more arrive.
                Ok(ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_)) => {
                    return Ok(done + discard);
                }
                // Early data is off (`max_early_data_size` 0); nothing else is expected.
                Ok(_) => return Err(io::Error::other("unexpected TLS state")),
                Err(e) => {
                    self.failed = true;
                    // rustls queued an alert saying why: take it (and only it: processing
                    // input again after an error is not allowed) so it is sent.
                    while self.conn.wants_write() {
                        match self.conn.process_tls_records(&mut []).state {
                            Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                                encode(&mut enc, &mut self.outgoing)?
                            }
                            _ => break,
                        }
                    }
                    return Err(invalid(e));
                }
            }
            done += discard;
        }
    }

    /// Reads what the socket has into the core's scratch buffer and processes it. Ready
    /// means progress: new plaintext, records to send, a close, or end of stream (`eof`).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = SCRATCH.with_borrow_mut(|scratch| {
            let kept = self.incoming.len();
            let end = kept + READ_SIZE;
            if scratch.len() < end {
                scratch.resize(end, 0);
            }
            scratch[..kept].copy_from_slice(&self.incoming);
            let n = ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut scratch[kept..end]))?;
            if n == 0 {
                self.eof = true;
                return Poll::Ready(Ok(()));
            }
            let used = kept + n;
            let done = self.process(&mut scratch[..used]);
            // What rustls is not done with stays with the connection (freed when none).
            self.incoming = match done {
                Ok(done) if done < used => scratch[done..used].to_vec(),
                _ => Vec::new(),
            };
            Poll::Ready(done.map(drop))
        });
        // Handshake messages, an alert or an answer to a key update go out now.
        match (result, self.poll_send_queued(cx)) {
            (Poll::Ready(Ok(())), Poll::Ready(Err(e))) => Poll::Ready(Err(e)),
            (result, _) => result,
        }
    }

    /// Writes `outgoing` to the socket; Ready(Ok) once all of it is written (and freed).
    fn poll_send_queued(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_pos < self.outgoing.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.outgoing[self.out_pos..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_pos += n;
        }
        self.outgoing = Vec::new();
        self.out_pos = 0;
        Poll::Ready(Ok(()))
    }

    /// Runs `f` once rustls can take application data, after queueing whatever records it
    /// has to send first.
    fn write_traffic<R>(
        &mut self,
        f: impl FnOnce(&mut WriteTraffic<'_, ServerConnectionData>) -> io::Result<R>,
    ) -> io::Result<R> {
        if self.failed {
            return Err(failed());
        }
        let mut f = Some(f);
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let discard = status.discard;
            let result = match status.state {
                Ok(ConnectionState::WriteTraffic(mut wt)) => f.take().map(|f| f(&mut wt)),
                Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                    encode(&mut enc, &mut self.outgoing).err().map(Err)
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    t.done();
                    None
                }
                Ok(ConnectionState::ReadTraffic(mut rt)) => {
                    while let Some(Ok(record)) = rt.next_record() {
                        self.plain.extend_from_slice(record.payload);
                    }
                    None
                }
                Ok(ConnectionState::PeerClosed) => {
                    self.peer_closed = true;
                    None
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    Some(Err(io::ErrorKind::NotConnected.into()))
                }
                Ok(_) => Some(Err(io::ErrorKind::BrokenPipe.into())),
                Err(e) => {
                    self.failed = true;
                    Some(Err(invalid(e)))
                }
            };
            self.incoming.drain(..discard);
            if let Some(result) = result {
                return result;
            }
        }
    }

    /// Writes as much of `data` as the socket takes now; returns the count.
    fn send_now(&mut self, cx: &mut Context<'_>, data: &[u8]) -> io::Result<usize> {
        let mut sent = 0;
        while sent < data.len() {
            match Pin::new(&mut self.tcp).poll_write(cx, &data[sent..]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => sent += n,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => break,
            }
        }
        Ok(sent)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Records a write left queued go out here too: a subscriber between events only
        // reads.
        if let Poll::Ready(Err(e)) = this.poll_send_queued(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.len().min(this.plain.len() - this.plain_pos);
                buf[..n].copy_from_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                if this.plain_pos == this.plain.len() {
                    this.plain = Vec::new();
                    this.plain_pos = 0;
                }
                return Poll::Ready(Ok(n));
            }
            if this.peer_closed || buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            if this.eof {
                // A truncation attack looks like this: say so, as rustls does.
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            ready!(this.poll_fill(cx))?;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    /// Encrypts up to `MAX_WRITE` bytes of `buf` and writes the records; those the socket
    /// does not take at once are kept and go out before anything else (on the next write,
    /// flush, read or close).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_send_queued(cx))?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let data = &buf[..buf.len().min(MAX_WRITE)];
        let sent = SCRATCH.with_borrow_mut(|scratch| {
            let len = this.write_traffic(|wt| encrypt(wt, data, scratch))?;
            let records = &scratch[..len];
            // Records rustls queued first (e.g. a key update) keep their place.
            let sent = if this.outgoing.is_empty() {
                this.send_now(cx, records)?
            } else {
                0
            };
            this.outgoing.extend_from_slice(&records[sent..]);
            io::Result::Ok(())
        });
        sent?;
        // The bytes are taken: what is still queued only fails a later call.
        if let Poll::Ready(Err(e)) = this.poll_send_queued(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_queued(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    /// Sends close_notify, then shuts down the sending side.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.close_sent {
            this.close_sent = true;
            let mut alert = [0u8; RECORD_OVERHEAD];
            let len = this.write_traffic(|wt| {
                wt.queue_close_notify(&mut alert)
                    .map_err(|e| io::Error::other(e.to_string()))
            });
            // A connection still handshaking has nothing to close cleanly.
            if let Ok(len) = len {
                this.outgoing.extend_from_slice(&alert[..len]);
            }
        }
        ready!(this.poll_send_queued(cx))?;
        Pin::new(&mut this.tcp).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use futures_lite::future::poll_once;
    use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
    use glommio::net::TcpListener;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

    use super::*;

    /// The gateway's server configuration with the fixture's certificate.
    fn server_config() -> Arc<ServerConfig> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        crate::net::tls::load(
            format!("{dir}/tls-a-cert.pem").as_ref(),
            format!("{dir}/tls-a-key.pem").as_ref(),
            true,
        )
        .unwrap()
    }

    /// More than one `poll_write` takes.
    const BIG: usize = 3 * MAX_WRITE + 123;

    /// Accepts the fixture's self-signed certificate.
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

    /// The client side, on its own thread: a request, a large reply ended by close_notify,
    /// then a last word and its own close_notify.
    fn client(addr: std::net::SocketAddr, version: &'static rustls::SupportedProtocolVersion) {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCert))
            .with_no_client_auth();
        let name = ServerName::try_from("localhost").unwrap();
        let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
        let mut sock = std::net::TcpStream::connect(addr).unwrap();
        let mut tls = rustls::Stream::new(&mut conn, &mut sock);
        tls.write_all(b"ping\r\n").unwrap();
        let mut reply = Vec::new();
        // Ok (not UnexpectedEof) only if the stream ended with close_notify.
        tls.read_to_end(&mut reply).unwrap();
        assert_eq!(reply.len(), BIG);
        assert!(reply.iter().all(|&b| b == b'x'));
        tls.write_all(b"bye").unwrap();
        tls.conn.send_close_notify();
        tls.flush().unwrap();
    }

    fn round_trip(version: &'static rustls::SupportedProtocolVersion) {
        let config = server_config();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let peer = std::thread::spawn(move || client(addr, version));
                let tcp = listener.accept().await.unwrap();
                let mut tls = accept(tcp, config).await.unwrap();

                let mut req = [0u8; 6];
                tls.read_exact(&mut req).await.unwrap();
                assert_eq!(&req, b"ping\r\n");
                // Idle with a read pending, as a subscriber is: no buffer of its own.
                let mut scratch = [0u8; 16];
                assert!(poll_once(tls.read(&mut scratch)).await.is_none());
                let held = (tls.incoming.capacity(), tls.plain.capacity());
                assert_eq!((held, tls.outgoing.capacity()), ((0, 0), 0));

                tls.write_all(&vec![b'x'; BIG]).await.unwrap();
                tls.flush().await.unwrap();
                assert_eq!(tls.outgoing.capacity(), 0);
                tls.close().await.unwrap();

                let mut rest = Vec::new();
                tls.read_to_end(&mut rest).await.unwrap();
                assert_eq!(rest, b"bye");
                peer.join().unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn tls13_round_trip_keeps_no_buffers_while_idle() {
        round_trip(&rustls::version::TLS13);
    }

    #[test]
    fn tls12_round_trip_keeps_no_buffers_while_idle() {
        round_trip(&rustls::version::TLS12);
    }

    /// A client that answers our close_notify with a record that does not decrypt: draining
    /// (what the gateway does after closing) discards it. Reading it through rustls instead
    /// panics in debug builds (rustls/rustls#959, found by the `tls` fuzz target).
    #[test]
    fn a_bad_record_after_our_close_is_drained() {
        let config = server_config();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let peer = std::thread::spawn(move || {
                    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                    let config = ClientConfig::builder_with_provider(provider)
                        .with_safe_default_protocol_versions()
                        .unwrap()
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(AnyCert))
                        .with_no_client_auth();
                    let name = ServerName::try_from("localhost").unwrap();
                    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
                    let mut sock = std::net::TcpStream::connect(addr).unwrap();
                    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
                    tls.write_all(b"ping").unwrap();
                    let mut reply = Vec::new();
                    tls.read_to_end(&mut reply).unwrap();
                    assert_eq!(reply, b"pong");
                    // An application-data record of 32 bytes no key made.
                    let mut bad = vec![0x17, 0x03, 0x03, 0x00, 0x20];
                    bad.extend_from_slice(&[0x5a; 32]);
                    sock.write_all(&bad).unwrap();
                    sock.shutdown(std::net::Shutdown::Write).unwrap();
                    bad.len()
                });
                let tcp = listener.accept().await.unwrap();
                let mut tls = accept(tcp, config).await.unwrap();
                let mut req = [0u8; 4];
                tls.read_exact(&mut req).await.unwrap();
                tls.write_all(b"pong").await.unwrap();
                tls.close().await.unwrap();
                let mut sink = [0u8; 64];
                let mut drained = 0;
                loop {
                    let n = poll_fn(|cx| tls.poll_drain(cx, &mut sink)).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    drained += n;
                }
                assert_eq!(drained, peer.join().unwrap());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn plaintext_fails_the_handshake() {
        let config = server_config();
        glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                let addr = listener.local_addr().unwrap();
                let peer = std::thread::spawn(move || {
                    let mut sock = std::net::TcpStream::connect(addr).unwrap();
                    sock.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                        .unwrap();
                    let mut answer = Vec::new();
                    let _ = sock.read_to_end(&mut answer);
                    answer
                });
                let tcp = listener.accept().await.unwrap();
                let err = accept(tcp, config)
                    .await
                    .err()
                    .expect("handshake must fail");
                assert_eq!(err.kind(), io::ErrorKind::InvalidData);
                // Dropping the stream closes the socket; the client got at most an alert.
                let answer = peer.join().unwrap();
                assert!(answer.len() < 64, "{answer:?}");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
