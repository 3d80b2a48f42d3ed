//! TLS to PostgreSQL, as the connection URL asks with libpq's own parameters:
//!
//! | `sslmode` | what ems does |
//! |---|---|
//! | absent, `disable` | no TLS |
//! | `require`, `verify-ca` | TLS; the server's certificate must chain to a trusted root (its name is not checked) |
//! | `verify-full` | TLS; the certificate must chain to a trusted root and name the host |
//! | `prefer`, `allow` | refused at start: a connection that may silently be plain is not offered |
//!
//! The trusted roots are the PEM file `sslrootcert` names, or the system's store without it.
//! Unlike libpq, `require` verifies the chain too: ems never accepts a certificate nobody
//! vouches for. Both URL forms work: `postgres://…?sslmode=verify-full&sslrootcert=/etc/ca.pem`
//! and `host=… sslmode=verify-full sslrootcert=/etc/ca.pem` (values without quotes).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::DbError;

/// The TLS side of a connection: rustls when the URL asks for TLS; otherwise a connector that
/// is never used (the config says `sslmode=disable`) but must still accept any host, a Unix
/// socket's directory included, because tokio-postgres prepares it for every host it dials.
#[derive(Clone)]
pub struct Connector {
    rustls: MakeRustlsConnect,
    enabled: bool,
}

impl<S> tokio_postgres::tls::MakeTlsConnect<S> for Connector
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Stream;
    type TlsConnect = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::TlsConnect;
    type Error = <MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, hostname: &str) -> Result<Self::TlsConnect, Self::Error> {
        // With TLS off the name is never checked against a certificate: any valid one will do.
        let name = if self.enabled { hostname } else { "localhost" };
        tokio_postgres::tls::MakeTlsConnect::<S>::make_tls_connect(&mut self.rustls, name)
    }
}

/// How the connections of one `database_url` are made.
#[derive(Clone)]
pub struct Target {
    pub config: tokio_postgres::Config,
    pub tls: Connector,
    /// One line for the start-up log: `TLS off`, `TLS verify-full (roots: …)`.
    pub describe: String,
}

/// What `sslmode` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    /// Chain verified, host name not.
    VerifyCa,
    VerifyFull,
}

/// Parses `url` with ems's reading of `sslmode` and `sslrootcert`.
pub fn target(url: &str) -> Result<Target, DbError> {
    let (rest, mode, root_file) = take_tls_params(url)?;
    let mut config: tokio_postgres::Config =
        rest.parse().map_err(|e| DbError::Url(format!("{e}")))?;
    let describe;
    let enabled = mode != Mode::Disable;
    let client = match mode {
        Mode::Disable => {
            config.ssl_mode(SslMode::Disable);
            describe = "TLS off".to_string();
            // Never used with SslMode::Disable; one connector type keeps one stream type.
            client_config(RootCertStore::empty(), Mode::VerifyFull)?
        }
        mode => {
            config.ssl_mode(SslMode::Require);
            let (roots, from) = roots(root_file.as_deref())?;
            describe = format!(
                "TLS {} (roots: {from})",
                if mode == Mode::VerifyFull {
                    "verify-full"
                } else {
                    "verify-ca"
                }
            );
            client_config(roots, mode)?
        }
    };
    Ok(Target {
        config,
        tls: Connector {
            rustls: MakeRustlsConnect::new(client),
            enabled,
        },
        describe,
    })
}

/// Splits `sslmode` and `sslrootcert` off the URL (tokio-postgres knows neither the verify
/// modes nor the root file).
fn take_tls_params(url: &str) -> Result<(String, Mode, Option<PathBuf>), DbError> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| -> Result<bool, DbError> {
        match key {
            "sslmode" => {
                mode = Some(match value {
                    "disable" => Mode::Disable,
                    "require" | "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    "prefer" | "allow" => {
                        return Err(DbError::Url(format!(
                            "sslmode={value} may fall back to a plain connection without saying \
                             so; use sslmode=verify-full (or verify-ca, require) for TLS with a \
                             verified certificate, or sslmode=disable"
                        )));
                    }
                    other => {
                        return Err(DbError::Url(format!(
                            "sslmode={other} is not one of disable, require, verify-ca, \
                             verify-full"
                        )));
                    }
                });
                Ok(true)
            }
            "sslrootcert" => {
                root = Some(PathBuf::from(value));
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(k, &percent_decode(v))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            let (k, v) = word.split_once('=').unwrap_or((word, ""));
            if !take(k.trim(), v.trim())? {
                kept.push(word);
            }
        }
        kept.join(" ")
    };
    let mode = mode.unwrap_or(Mode::Disable);
    if mode == Mode::Disable && root.is_some() {
        return Err(DbError::Url(
            "sslrootcert is set but sslmode is not: add sslmode=verify-full to use TLS".into(),
        ));
    }
    Ok((rest, mode, root))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The trusted roots: the certificates of `file`, or the system's.
fn roots(file: Option<&Path>) -> Result<(RootCertStore, String), DbError> {
    let mut store = RootCertStore::empty();
    match file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| DbError::Url(format!("sslrootcert {}: {e}", path.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| DbError::Url(format!("sslrootcert {}: {e}", path.display())))?;
                store
                    .add(cert)
                    .map_err(|e| DbError::Url(format!("sslrootcert {}: {e}", path.display())))?;
            }
            if store.is_empty() {
                return Err(DbError::Url(format!(
                    "sslrootcert {}: no PEM certificate in it",
                    path.display()
                )));
            }
            Ok((store, path.display().to_string()))
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(DbError::Url(
                    "sslmode asks for TLS but the system has no trusted root certificates; \
                     name the server's CA with sslrootcert=/path/ca.pem"
                        .into(),
                ));
            }
            Ok((store, "the system's".into()))
        }
    }
}

fn client_config(roots: RootCertStore, mode: Mode) -> Result<ClientConfig, DbError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Url(format!("TLS: {e}")))?;
    let config = if mode == Mode::VerifyCa && !roots.is_empty() {
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| DbError::Url(format!("TLS roots: {e}")))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)))
            .with_no_client_auth()
    } else {
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(config)
}

/// `verify-ca`: the chain and the signatures are checked as usual; only a certificate that does
/// not name the host is accepted.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_of(url: &str) -> Result<(String, Mode, Option<PathBuf>), String> {
        take_tls_params(url).map_err(|e| e.to_string())
    }

    #[test]
    fn the_tls_parameters_are_taken_off_both_url_forms() {
        let (rest, mode, root) = mode_of(
            "postgres://ems@db:5432/ems?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem",
        )
        .unwrap();
        assert_eq!(rest, "postgres://ems@db:5432/ems?application_name=x");
        assert_eq!(mode, Mode::VerifyFull);
        assert_eq!(root, Some(PathBuf::from("/etc/ca.pem")));

        let (rest, mode, root) =
            mode_of("host=db user=ems sslmode=require sslrootcert=/ca.pem").unwrap();
        assert_eq!(rest, "host=db user=ems");
        assert_eq!(mode, Mode::VerifyCa);
        assert_eq!(root, Some(PathBuf::from("/ca.pem")));

        let (rest, mode, _) = mode_of("postgres://ems@db/ems").unwrap();
        assert_eq!(
            (rest.as_str(), mode),
            ("postgres://ems@db/ems", Mode::Disable)
        );
        let (rest, mode, _) = mode_of("postgres://ems@db/ems?sslmode=disable").unwrap();
        assert_eq!(
            (rest.as_str(), mode),
            ("postgres://ems@db/ems", Mode::Disable)
        );
    }

    #[test]
    fn modes_that_may_silently_be_plain_and_unknown_ones_are_refused() {
        for url in [
            "postgres://db/ems?sslmode=prefer",
            "host=db sslmode=allow",
            "postgres://db/ems?sslmode=verify_full",
            "postgres://db/ems?sslrootcert=/ca.pem",
        ] {
            let err = mode_of(url).unwrap_err();
            assert!(
                err.contains("sslmode") || err.contains("sslrootcert"),
                "{url}: {err}"
            );
        }
    }

    #[test]
    fn a_root_file_that_is_missing_or_holds_no_certificate_is_named() {
        let err = target("postgres://db/ems?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = target(&format!(
            "postgres://db/ems?sslmode=verify-full&sslrootcert={}",
            empty.display()
        ))
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");
    }
}
