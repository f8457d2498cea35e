//! A client connection, plain or TLS, with the few socket operations the gateway needs.
//!
//! Owns: the plain-or-TLS stream type. May call: `conn::tls`.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use super::tls::TlsStream;

/// A connection as the request and subscriber code sees it.
pub struct Stream {
    io: Io,
    /// Bytes written so far (before TLS framing), for the access log: a request's size is
    /// the difference across its response.
    written: u64,
}

enum Io {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the rustls state is large and only TLS connections pay for it).
    Tls(Box<TlsStream>),
}

impl Stream {
    /// A plain TCP connection.
    pub fn plain(s: TcpStream) -> Stream {
        Stream {
            io: Io::Plain(s),
            written: 0,
        }
    }

    /// A TLS connection whose handshake is done.
    pub fn tls(s: Box<TlsStream>) -> Stream {
        Stream {
            io: Io::Tls(s),
            written: 0,
        }
    }

    /// Bytes written so far through this stream (not counting what the core's flusher wrote
    /// to its socket directly).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the connection negotiated HTTP/2 (ALPN `h2`).
    pub fn is_h2(&self) -> bool {
        matches!(&self.io, Io::Tls(s) if s.is_h2())
    }

    /// Plain TCP: the flusher may write to its socket directly.
    pub fn is_plain(&self) -> bool {
        matches!(self.io, Io::Plain(_))
    }

    fn tcp(&self) -> &TcpStream {
        match &self.io {
            Io::Plain(s) => s,
            Io::Tls(s) => s.tcp(),
        }
    }

    /// Fails writes that make no progress for `d`.
    pub fn set_write_timeout(&self, d: Duration) {
        let _ = self.tcp().set_write_timeout(Some(d));
    }

    /// After [`AsyncWriteExt::close`](futures_lite::io::AsyncWriteExt::close): reads and
    /// discards what the client still sends, without decrypting it (see
    /// `TlsStream::poll_drain`). Returns how many bytes went, 0 at end of stream.
    pub async fn drain(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => s.poll_drain(cx, buf),
        })
        .await
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = match &mut this.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = &r {
            this.written += *n as u64;
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    /// Closes the sending side: TLS sends close_notify first.
    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(s) => Pin::new(s).poll_close(cx),
            Io::Tls(s) => Pin::new(&mut **s).poll_close(cx),
        }
    }
}
