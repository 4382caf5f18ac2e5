//! TLS of the client under test: whom it trusts, whether it verifies, the
//! versions it speaks and the certificate it shows; and TLS failures told in
//! words that say what to fix.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio_rustls::TlsConnector;

use super::ClientError;
use crate::config::{DatabaseConfig, TlsVersion};

/// Which CA the client trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TrustedCa {
    /// `ca.crt` in the database's `certificatesLocation`, or the system's
    /// roots when it names none.
    #[default]
    Database,
    /// The system's roots.
    System,
    /// This PEM file.
    File(PathBuf),
}

/// Which certificate the client shows (mutual TLS).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ClientCertificate {
    /// `client.crt` and `client.key` in the database's `certificatesLocation`
    /// when both are there; none otherwise.
    #[default]
    Database,
    /// None.
    Without,
    /// These PEM files: certificate, key.
    Files(PathBuf, PathBuf),
}

/// TLS settings of a client (used when the database is a TLS one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// Verify the server's certificate and name; off is insecure, and the
    /// client says so in a warning once.
    pub verify: bool,
    /// Whom it trusts.
    pub ca: TrustedCa,
    /// What it shows.
    pub client_certificate: ClientCertificate,
    /// The lowest version it speaks.
    pub min_version: TlsVersion,
    /// The highest version it speaks.
    pub max_version: TlsVersion,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            verify: true,
            ca: TrustedCa::Database,
            client_certificate: ClientCertificate::Database,
            min_version: TlsVersion::V12,
            max_version: TlsVersion::V13,
        }
    }
}

impl TlsOptions {
    /// The CA file the client trusts for `db`; `None`: the system's roots.
    pub fn ca_file(&self, db: &DatabaseConfig) -> Option<PathBuf> {
        match (&self.ca, db.certificates_location.as_ref()) {
            (TrustedCa::File(f), _) => Some(f.clone()),
            (TrustedCa::Database, Some(d)) if d.is_dir() => Some(d.join("ca.crt")),
            (TrustedCa::Database, Some(f)) => Some(f.clone()),
            _ => None,
        }
    }

    /// The certificate and key the client shows `db`, when it shows one.
    pub fn client_files(&self, db: &DatabaseConfig) -> Option<(PathBuf, PathBuf)> {
        match (&self.client_certificate, db.certificates_location.as_ref()) {
            (ClientCertificate::Files(c, k), _) => Some((c.clone(), k.clone())),
            (ClientCertificate::Database, Some(d)) if d.is_dir() => {
                let (c, k) = (d.join("client.crt"), d.join("client.key"));
                (c.exists() && k.exists()).then_some((c, k))
            }
            _ => None,
        }
    }

    /// `"1.2"`, `"1.3"` or `"1.2 to 1.3"`.
    pub fn versions(&self) -> String {
        if self.min_version == self.max_version {
            format!("TLS {} only", self.min_version.as_str())
        } else {
            format!(
                "TLS {} to {}",
                self.min_version.as_str(),
                self.max_version.as_str()
            )
        }
    }
}

/// What a client dials TLS with, and what its errors name.
pub(crate) struct ClientTls {
    pub connector: TlsConnector,
    /// Where the trusted CA came from (for errors).
    pub trusted: String,
    pub options: TlsOptions,
    pub has_certificate: bool,
}

static INSECURE_WARNED: AtomicBool = AtomicBool::new(false);

fn read(path: &Path, what: &str, db: &DatabaseConfig) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| {
        ClientError::Options(format!(
            "database {:?}: the {what} {} cannot be read ({e}); certificatesLocation must be a folder holding ca.crt (and client.crt, client.key for mutual TLS), or set the file in the client's TLS settings",
            db.name,
            path.display()
        ))
    })
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| {
            ClientError::Options(format!("{}: not PEM certificates ({e})", path.display()))
        })?;
    if certs.is_empty() {
        return Err(ClientError::Options(format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

impl ClientTls {
    /// Builds the TLS side of a client of `db`.
    pub fn new(db: &DatabaseConfig, options: &TlsOptions) -> Result<ClientTls, ClientError> {
        if options.min_version > options.max_version {
            return Err(ClientError::Options(format!(
                "the lowest TLS version ({}) is above the highest ({})",
                options.min_version.as_str(),
                options.max_version.as_str()
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TlsVersion::V12, &rustls::version::TLS12),
            (TlsVersion::V13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (options.min_version..=options.max_version).contains(v))
        .map(|(_, p)| p)
        .collect();
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ClientError::Options(format!("TLS versions: {e}")))?;

        let ca_file = options.ca_file(db);
        let mut roots = rustls::RootCertStore::empty();
        let trusted = match &ca_file {
            Some(f) => {
                for c in certificates(&read(f, "CA certificate", db)?, f)? {
                    roots.add(c).map_err(|e| {
                        ClientError::Options(format!("{}: not a usable CA ({e})", f.display()))
                    })?;
                }
                f.display().to_string()
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                "the system's roots".to_string()
            }
        };
        let builder = if options.verify {
            builder.with_root_certificates(roots)
        } else {
            if !INSECURE_WARNED.swap(true, Ordering::SeqCst) {
                tracing::warn!(
                    "TLS verification is off: the client accepts any server certificate and name (insecure; for tests only)"
                );
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        };
        let files = options.client_files(db);
        let config = match &files {
            Some((c, k)) => {
                use rustls::pki_types::pem::PemObject;
                let chain = certificates(&read(c, "client certificate", db)?, c)?;
                let key =
                    PrivateKeyDer::from_pem_slice(&read(k, "client key", db)?).map_err(|e| {
                        ClientError::Options(format!(
                            "{}: not a PEM private key ({e})",
                            k.display()
                        ))
                    })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    ClientError::Options(format!(
                        "the client certificate {} and key {} do not go together ({e})",
                        c.display(),
                        k.display()
                    ))
                })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            trusted,
            options: options.clone(),
            has_certificate: files.is_some(),
        })
    }

    /// The name the server's certificate must be valid for.
    pub fn server_name(host: &str) -> Result<ServerName<'static>, ClientError> {
        ServerName::try_from(host.to_string()).map_err(|e| {
            ClientError::Options(format!(
                "{host:?} is neither a host name nor an IP address ({e})"
            ))
        })
    }

    /// What went wrong in a TLS handshake with `target`, in words that say
    /// what to fix; `None` when `e` is not a TLS failure.
    pub fn explain(&self, e: &(dyn std::error::Error + 'static), target: &str) -> Option<String> {
        let tls = tls_error(e)?;
        let o = &self.options;
        let why = match tls {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                "the server's certificate for {target} is not signed by a CA the client trusts ({})",
                self.trusted
            ),
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!("the server's certificate is not valid for the name {target} dialled"),
            rustls::Error::InvalidCertificate(c) => {
                format!("the server's certificate for {target} is refused ({c:?})")
            }
            rustls::Error::PeerIncompatible(_)
            | rustls::Error::AlertReceived(AlertDescription::ProtocolVersion) => format!(
                "{target} and the client share no TLS version (the client speaks {})",
                o.versions()
            ),
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
            ) if !self.has_certificate => format!(
                "{target} requires a client certificate (mutual TLS) and the client has none: set one, or put client.crt and client.key in certificatesLocation"
            ),
            rustls::Error::AlertReceived(
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown,
            ) => format!("{target} refused the client's certificate"),
            other => format!("the TLS handshake with {target} failed: {other}"),
        };
        Some(why)
    }
}

/// The rustls error anywhere in `e`'s chain (kept inside an `io::Error`).
fn tls_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    let mut next = Some(e);
    while let Some(mut e) = next {
        // redis-rs keeps its io errors behind an Arc.
        if let Some(shared) = e.downcast_ref::<Shared>() {
            e = shared.as_ref();
        }
        if let Some(t) = e.downcast_ref::<rustls::Error>() {
            return Some(t);
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(t);
            }
        }
        next = e.source();
    }
    None
}

/// Accepts any certificate for any name (signatures are still checked, so the
/// handshake itself is sound).
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
