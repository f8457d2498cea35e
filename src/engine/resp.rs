//! One connection to Redis over glommio's own `TcpStream`, in the clear or through TLS
//! (`rediss://`): commands out, replies in, in order. Owns: the socket, its TLS session and
//! its two buffers. RESP2 framing is the `redis-protocol` crate's, TLS is rustls' (through
//! `futures-rustls`, which drives a `ClientConnection` over any futures-io stream such as
//! glommio's); nothing here parses RESP or TLS by hand.
//!
//! Pipelining is the caller's: [`Conn::push`] any number of commands, [`Conn::flush`] them in
//! one write, then [`Conn::read`] one reply per command, in the order they were pushed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode;
pub use redis_protocol::resp2::types::BytesFrame as Frame;
use rustls_pki_types::ServerName;

/// What a `rediss://` connection is made with: the client configuration (the trusted roots)
/// and the name the server's certificate must carry.
#[derive(Clone)]
pub struct TlsClient {
    /// Roots and protocol versions, built once at start.
    pub config: Arc<rustls::ClientConfig>,
    /// The URL's host, checked against the certificate (and sent as SNI when a name).
    pub name: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The socket, in the clear or inside a TLS session.
enum Transport {
    Plain(TcpStream),
    Tls(Box<futures_rustls::client::TlsStream<TcpStream>>),
}

impl Transport {
    async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_all(bytes).await,
            Transport::Tls(s) => {
                s.write_all(bytes).await?;
                // rustls holds the records until flushed.
                s.flush().await
            }
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf).await,
            Transport::Tls(s) => s.read(buf).await,
        }
    }
}

/// Why a call to Redis failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    /// Connecting, reading or writing failed.
    #[error("Redis I/O: {0}")]
    Io(#[from] io::Error),
    /// No answer within the configured `redis_timeout`.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis closed the connection.
    #[error("Redis closed the connection")]
    Closed,
    /// The bytes were not RESP2, or not the reply the command has.
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// The TLS handshake with a `rediss://` server failed (its certificate is not trusted,
    /// names another host, or it does not speak TLS).
    #[error("TLS to Redis: {0}")]
    Tls(String),
    /// Redis answered with an error (`-ERR …`, `-NOAUTH …`).
    #[error("Redis: {0}")]
    Server(String),
}

/// The largest reply buffered before it is decoded (a stream read of many large events).
const MAX_REPLY: usize = 512 << 20;

/// A connection to one Redis server.
pub struct Conn {
    stream: Transport,
    out: BytesMut,
    input: BytesMut,
    scratch: Vec<u8>,
}

impl Conn {
    /// Connects to `addr` within `timeout` (and makes the TLS handshake when `tls` is
    /// given), then authenticates and selects `db`.
    pub async fn open(
        addr: SocketAddr,
        tls: Option<&TlsClient>,
        auth: Option<(&str, &str)>,
        db: u32,
        timeout: Duration,
    ) -> Result<Conn, RedisError> {
        let stream = TcpStream::connect_timeout(addr, timeout)
            .await
            .map_err(|e| RedisError::Io(e.into()))?;
        stream
            .set_nodelay(true)
            .map_err(|e| RedisError::Io(e.into()))?;
        let stream = match tls {
            None => Transport::Plain(stream),
            Some(tls) => {
                let connector = futures_rustls::TlsConnector::from(tls.config.clone());
                let handshake = async {
                    connector
                        .connect(tls.name.clone(), stream)
                        .await
                        .map_err(|e| RedisError::Tls(e.to_string()))
                };
                Transport::Tls(Box::new(within(timeout, handshake).await?))
            }
        };
        let mut conn = Conn {
            stream,
            out: BytesMut::with_capacity(4096),
            input: BytesMut::with_capacity(4096),
            scratch: vec![0; 16 * 1024],
        };
        if let Some((user, password)) = auth {
            let reply = if user.is_empty() {
                conn.call(&[b"AUTH", password.as_bytes()], timeout).await?
            } else {
                conn.call(&[b"AUTH", user.as_bytes(), password.as_bytes()], timeout)
                    .await?
            };
            expect_ok(reply)?;
        }
        if db != 0 {
            let db = db.to_string();
            expect_ok(conn.call(&[b"SELECT", db.as_bytes()], timeout).await?)?;
        }
        Ok(conn)
    }

    /// Queues one command (its arguments as bulk strings) for the next [`Conn::flush`].
    pub fn push(&mut self, args: Vec<Bytes>) {
        let frame = Frame::Array(args.into_iter().map(Frame::BulkString).collect());
        // Encoding into a growable buffer cannot run out of room.
        let _ = extend_encode(&mut self.out, &frame);
    }

    /// Writes every queued command.
    pub async fn flush(&mut self) -> Result<(), RedisError> {
        let out = self.out.split();
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// The next reply, waiting for its bytes. An error reply is a [`Frame::Error`], not an
    /// `Err`: in a pipeline, one refused command says nothing of the others.
    pub async fn read(&mut self) -> Result<Frame, RedisError> {
        loop {
            match decode_bytes_mut(&mut self.input) {
                Ok(Some((frame, _, _))) => return Ok(frame),
                Ok(None) => {}
                Err(e) => return Err(RedisError::Protocol(e.to_string())),
            }
            if self.input.len() > MAX_REPLY {
                return Err(RedisError::Protocol("reply too large".into()));
            }
            let n = self.stream.read(&mut self.scratch).await?;
            if n == 0 {
                return Err(RedisError::Closed);
            }
            self.input.extend_from_slice(&self.scratch[..n]);
        }
    }

    /// One command and its reply within `timeout`; an error reply is an `Err`.
    pub async fn call(&mut self, args: &[&[u8]], timeout: Duration) -> Result<Frame, RedisError> {
        self.push(args.iter().map(|a| Bytes::copy_from_slice(a)).collect());
        within(timeout, async {
            self.flush().await?;
            match self.read().await? {
                Frame::Error(e) => Err(RedisError::Server(e.to_string())),
                reply => Ok(reply),
            }
        })
        .await
    }
}

/// `fut`, or [`RedisError::Timeout`] once `timeout` has passed.
pub async fn within<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<T, RedisError> {
    future::or(fut, async {
        glommio::timer::sleep(timeout).await;
        Err(RedisError::Timeout(timeout))
    })
    .await
}

fn expect_ok(reply: Frame) -> Result<(), RedisError> {
    match reply {
        Frame::SimpleString(s) if &s[..] == b"OK" => Ok(()),
        other => Err(RedisError::Protocol(format!("{other:?}"))),
    }
}
