//! How subscribers and publishers reach the server: plain TCP, HTTP/1.1 over TLS, or HTTP/2
//! over TLS (ALPN `h2`, many subscriber streams per connection). TLS trusts one certificate
//! file (`--ca`, the test certificate), so the handshake is verified as a client would.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use anyhow::{bail, Context as _};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// How connections are spoken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
pub enum Transport {
    /// HTTP/1.1 over plain TCP.
    Plain,
    /// HTTP/1.1 over TLS (ALPN `http/1.1`): one connection per subscriber.
    Tls,
    /// HTTP/2 over TLS (ALPN `h2`): `--h2-streams` subscribers per connection; publishers
    /// still speak HTTP/1.1 over TLS (one request in flight per connection either way).
    H2,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Plain => "plain",
            Transport::Tls => "tls",
            Transport::H2 => "h2",
        }
    }
}

/// A client TLS configuration trusting the certificates in `ca`, offering `alpn`.
pub fn client_config(ca: &Path, alpn: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("parsing {}", ca.display()))?;
        roots.add(cert).context("adding a trusted certificate")?;
    }
    if roots.is_empty() {
        bail!("{} holds no certificate", ca.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// The TLS handshake over `tcp`, for a server at `target` (its IP is the name checked).
pub async fn handshake(
    tcp: TcpStream,
    target: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let name = ServerName::IpAddress(target.ip().into());
    let tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {target}"))?;
    let want = config.alpn_protocols.first().map(Vec::as_slice);
    let got = tls.get_ref().1.alpn_protocol();
    if got != want {
        bail!(
            "{target} negotiated ALPN {:?}, not {:?}",
            got.map(String::from_utf8_lossy),
            want.map(String::from_utf8_lossy)
        );
    }
    Ok(tls)
}

/// A publisher's connection: plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
