//! One connection to Redis over glommio's own `TcpStream`: commands out, replies in, in
//! order. Owns: the socket and its two buffers. RESP2 framing is the `redis-protocol`
//! crate's; nothing here parses RESP by hand.
//!
//! Pipelining is the caller's: [`Conn::push`] any number of commands, [`Conn::flush`] them in
//! one write, then [`Conn::read`] one reply per command, in the order they were pushed.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use redis_protocol::resp2::decode::decode_bytes_mut;
use redis_protocol::resp2::encode::extend_encode;
pub use redis_protocol::resp2::types::BytesFrame as Frame;

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
    /// Redis answered with an error (`-ERR …`, `-NOAUTH …`).
    #[error("Redis: {0}")]
    Server(String),
}

/// The largest reply buffered before it is decoded (a stream read of many large events).
const MAX_REPLY: usize = 512 << 20;

/// A connection to one Redis server.
pub struct Conn {
    stream: TcpStream,
    out: BytesMut,
    input: BytesMut,
    scratch: Vec<u8>,
}

impl Conn {
    /// Connects to `addr` within `timeout`, then authenticates and selects `db`.
    pub async fn open(
        addr: SocketAddr,
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
