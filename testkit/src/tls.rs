//! A self-signed certificate for `127.0.0.1`, written as PEM files, for servers under test that
//! speak TLS (the cloud) and clients that must trust them (agent, emsctl, test HTTP clients).

use std::path::{Path, PathBuf};

/// A fresh certificate and key for `127.0.0.1`, in `cert.pem` and `key.pem` of a directory.
pub struct SelfSigned {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The certificate as PEM text (what a client adds to its trusted roots).
    pub cert_pem: String,
    /// The certificate in DER (for a rustls root store).
    pub cert_der: Vec<u8>,
}

impl SelfSigned {
    /// Generates the certificate and writes both files into `dir`.
    pub fn for_localhost(dir: &Path) -> std::io::Result<Self> {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
            .map_err(std::io::Error::other)?;
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        let cert_pem = cert.cert.pem();
        std::fs::write(&cert_path, &cert_pem)?;
        std::fs::write(&key_path, cert.key_pair.serialize_pem())?;
        Ok(SelfSigned {
            cert_path,
            key_path,
            cert_pem,
            cert_der: cert.cert.der().to_vec(),
        })
    }
}
