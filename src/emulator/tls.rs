//! TLS for emulated endpoints: a certificate authority of the emulator's own,
//! and one server certificate valid for every address a database can be reached
//! at (`localhost`, the public address and every node's two addresses), so that
//! a client verifies the server before and after a handoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::TlsAcceptor;

/// The file, in [`TlsMaterial::dir`], that holds the CA certificate (PEM).
pub const CA_FILE: &str = "ca.crt";

/// A CA and a server certificate signed by it, written to a folder.
pub struct TlsMaterial {
    /// The folder (the endpoints file's `certificatesLocation`): `ca.crt`,
    /// `server.crt`, `server.key`.
    pub dir: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    acceptor: TlsAcceptor,
}

/// The crypto provider of every TLS configuration here.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsMaterial {
    /// Generates a CA and a server certificate for `names` (host names or IP
    /// addresses) and writes them to `dir`.
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

        let ca_pem = ca_cert.pem();
        for (file, text) in [
            (CA_FILE, ca_pem.clone()),
            ("server.crt", cert.pem()),
            ("server.key", key.serialize_pem()),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca_cert.der().clone()];
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                chain,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .context("building the TLS server configuration")?;
        Ok(TlsMaterial {
            dir: dir.to_path_buf(),
            ca_pem,
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    /// What the endpoint proxies wrap accepted connections with.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }
}
