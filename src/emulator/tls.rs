//! TLS for emulated endpoints: a certificate authority of the emulator's own,
//! one server certificate valid for every address a database can be reached
//! at (`localhost`, the public address, every node's two addresses and names),
//! so that a client verifies the server before and after a handoff, and one
//! client certificate for databases that require mutual TLS.
//!
//! The folder (the endpoints file's `certificatesLocation`) holds the names
//! other clients' suites read: `ca.crt` (Jedis's `TEST_CA_CERT`), `redis.crt`
//! and `redis.key` (the server's, Jedis's `TEST_SERVER_CERT`), `client.crt` and
//! `client.key` (redis-py's scenario suite reads these from `MTLS_CONFIG_PATH`).
//! Private keys are owner-only (0600), in the emulator's run directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

pub use crate::config::TlsVersion;

/// The file, in [`TlsMaterial::dir`], that holds the CA certificate (PEM).
pub const CA_FILE: &str = "ca.crt";
/// The server certificate and key (PEM).
pub const SERVER_FILES: (&str, &str) = ("redis.crt", "redis.key");
/// The client certificate and key for mutual TLS (PEM).
pub const CLIENT_FILES: (&str, &str) = ("client.crt", "client.key");
/// Common name of the client certificate.
pub const CLIENT_NAME: &str = "maint-e2e client";

/// The versions from `v` up, as a server configuration takes them.
fn and_up(v: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static BOTH: [&rustls::SupportedProtocolVersion; 2] =
        [&rustls::version::TLS13, &rustls::version::TLS12];
    match v {
        TlsVersion::V12 => &BOTH,
        TlsVersion::V13 => &BOTH[..1],
    }
}

/// What an endpoint asks of a TLS client.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsPolicy {
    /// The lowest version accepted.
    pub min_version: TlsVersion,
    /// A client certificate signed by the CA is required (mutual TLS).
    pub client_auth: bool,
}

/// A CA, a server certificate and a client certificate signed by it, written
/// to a folder.
pub struct TlsMaterial {
    /// The folder (the endpoints file's `certificatesLocation`).
    pub dir: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key_der: Vec<u8>,
}

/// The crypto provider of every TLS configuration here.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Writes `text` to `path`, readable by the owner only when `secret`.
fn write_file(path: &Path, text: &str, secret: bool) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    if secret {
        o.mode(0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

impl TlsMaterial {
    /// Generates a CA, a server certificate for `names` (host names or IP
    /// addresses) and a client certificate, and writes them to `dir`.
    pub fn generate(dir: &Path, ca_name: &str, names: &[String]) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the certificate folder {}", dir.display()))?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(DnType::CommonName, "maint-e2e endpoint");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, CLIENT_NAME);
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params.signed_by(&client_key, &issuer)?;

        let ca_pem = ca_cert.pem();
        for (file, text, secret) in [
            (CA_FILE, ca_pem.clone(), false),
            (SERVER_FILES.0, cert.pem(), false),
            (SERVER_FILES.1, key.serialize_pem(), true),
            (CLIENT_FILES.0, client_cert.pem(), false),
            (CLIENT_FILES.1, client_key.serialize_pem(), true),
        ] {
            write_file(&dir.join(file), &text, secret)?;
        }
        Ok(TlsMaterial {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_der: ca_cert.der().clone(),
            chain: vec![cert.der().clone(), ca_cert.der().clone()],
            key_der: key.serialize_der(),
        })
    }

    /// What an endpoint with `policy` wraps accepted connections with.
    pub fn acceptor(&self, policy: TlsPolicy) -> Result<TlsAcceptor> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(and_up(policy.min_version))?;
        let builder = if policy.client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone())?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .context("building the client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .context("building the TLS server configuration")?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// TLS of one database: the material, what its endpoints ask, and their acceptor.
#[derive(Clone)]
pub struct EndpointTls {
    /// The CA and certificates.
    pub material: Arc<TlsMaterial>,
    /// What the endpoints ask of clients.
    pub policy: TlsPolicy,
    /// What accepted connections are wrapped with.
    pub acceptor: TlsAcceptor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_owner_only_and_every_file_is_written() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        TlsMaterial::generate(dir.path(), "test CA", &["localhost".into()]).unwrap();
        for f in [CA_FILE, SERVER_FILES.0, CLIENT_FILES.0] {
            let text = std::fs::read_to_string(dir.path().join(f)).unwrap();
            assert!(text.contains("BEGIN CERTIFICATE"), "{f}");
        }
        for f in [SERVER_FILES.1, CLIENT_FILES.1] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{f} is {:o}", mode & 0o777);
        }
    }
}
