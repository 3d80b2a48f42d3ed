//! Trust for HTTPS and WSS: the built-in roots plus the certificates in `--ca-file`, so a
//! server with a self-signed certificate can be used without turning verification off.

use std::path::Path;
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use crate::exit::Failure;

fn ca_failure(path: &Path, reason: impl std::fmt::Display) -> Failure {
    Failure::usage(format!("CA file {}: {reason}", path.display()))
        .hint("--ca-file / EMS_CA_FILE must name a PEM file with one or more certificates")
}

/// The PEM certificates in `path`, for reqwest.
pub fn reqwest_certificates(path: &Path) -> Result<Vec<reqwest::Certificate>, Failure> {
    let pem = std::fs::read(path).map_err(|e| ca_failure(path, e))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_failure(path, e))?;
    if certs.is_empty() {
        return Err(ca_failure(path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// A rustls client configuration for WSS: the system's roots plus `ca_file`.
pub fn rustls_config(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, Failure> {
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| ca_failure(path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| ca_failure(path, e))?;
        if certs.is_empty() {
            return Err(ca_failure(path, "holds no PEM certificate"));
        }
        for c in certs {
            roots.add(c).map_err(|e| ca_failure(path, e))?;
        }
    }
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Failure::connection(format!("TLS set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
