//! ② TLS termination with rustls: the server configuration from PEM files (TLS 1.2 and 1.3,
//! rustls' safe defaults, ALPN `h2` then `http/1.1`, session tickets on), built with one explicit
//! crypto provider (aws-lc-rs, shared with the JWT verifier) so no process-wide default is
//! needed.
//!
//! Also the client configuration of `rediss://` connections to Redis: the roots from
//! `redis_tls_ca`, or the system's.
//!
//! Owns: the rustls server and client configurations. May call: nothing of the crate.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why the TLS configuration cannot be built: the operator's files or the crypto provider,
/// never a client. At start the gateway exits with it; on SIGHUP it keeps its certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate file cannot be read, or is not PEM.
    #[error("{}: {source}", path.display())]
    Certificate {
        /// The `tls_cert` file.
        path: PathBuf,
        /// What reading or decoding it reported.
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{}: no certificate", path.display())]
    NoCertificate {
        /// The `tls_cert` file.
        path: PathBuf,
    },
    /// The key file cannot be read, or holds no PEM private key.
    #[error("{}: {source}", path.display())]
    Key {
        /// The `tls_key` file.
        path: PathBuf,
        /// What reading or decoding it reported.
        source: pem::Error,
    },
    /// The crypto provider offers none of the safe protocol versions.
    #[error("{0}")]
    Protocols(#[source] rustls::Error),
    /// The key is not the certificate's, or rustls cannot use one of them.
    #[error("certificate and key do not match or are unusable: {0}")]
    Unusable(#[source] rustls::Error),
    /// No trusted root: `redis_tls_ca` holds no usable certificate, or the system has none.
    #[error("no trusted CA certificate for TLS to Redis ({0})")]
    NoRoots(String),
    /// The session-ticket encrypter could not be made.
    #[error("{0}")]
    Ticketer(#[source] rustls::Error),
}

/// The ALPN protocol id of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";

/// Loads the certificate chain and key and builds the server configuration; `http2` offers
/// ALPN `h2` before `http/1.1` (a client offering both gets HTTP/2).
pub fn load(cert: &Path, key: &Path, http2: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certs(cert)?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: key.to_owned(),
        source,
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Unusable)?;
    // rustls picks the first of ours the client also offers; a client offering no ALPN at
    // all gets HTTP/1.1.
    config.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    // Stateless resumption: returning clients skip the full handshake.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(TlsError::Ticketer)?;
    Ok(Arc::new(config))
}

/// The client configuration for TLS to Redis: certificates must chain to a root in the PEM
/// file `ca` (`redis_tls_ca`), or, without one, to the system's roots.
pub fn client(ca: Option<&Path>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            let (added, _) = roots.add_parsable_certificates(read_certs(path)?);
            if added == 0 {
                return Err(TlsError::NoRoots(path.display().to_string()));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoRoots(
                    "the system has none; set redis_tls_ca".to_owned(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Protocols)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Every certificate in the PEM file at `path`, in order.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |source| TlsError::Certificate {
        path: path.to_owned(),
        source,
    };
    CertificateDer::pem_file_iter(path)
        .map_err(bad)?
        .collect::<Result<_, _>>()
        .map_err(bad)
}
