//! ② TLS termination with rustls: the server configuration from PEM files (TLS 1.2 and 1.3,
//! rustls' safe defaults, ALPN `http/1.1`, session tickets on), built with one explicit
//! crypto provider (aws-lc-rs, shared with the JWT verifier) so no process-wide default is
//! needed.

use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Loads the certificate chain and key and builds the server configuration.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate and key do not match or are unusable: {e}"))?;
    // HTTP/1.1 only for now; h2 would be added here.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless resumption: returning clients skip the full handshake.
    config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new().map_err(|e| e.to_string())?;
    Ok(Arc::new(config))
}
