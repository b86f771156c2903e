//! Serving certificates as operators run them: loaded from PEM files, swapped in place when the
//! files change (cert-manager rewrites them) without a restart or a dropped connection, and, for
//! tests and first steps, a self-signed CA and serving certificate made on the spot.

use anyhow::{anyhow, Context, Result};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a certificate chain and its key; `Err` names the file and what is wrong (the key must
/// match the first certificate).
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("{}: cannot read the certificate", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{}: no certificate in the file", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow!("{}: not a PEM private key: {e}", key.display()))?;
    CertifiedKey::from_der(chain, key_der, &provider())
        .map_err(|e| anyhow!("{} and {}: {e}", cert.display(), key.display()))
}

/// The certificate every handshake gets; [`Self::replace`] swaps it for new handshakes while
/// established connections keep theirs.
#[derive(Debug)]
pub struct LiveCert(RwLock<Arc<CertifiedKey>>);

impl LiveCert {
    pub fn new(first: CertifiedKey) -> Self {
        LiveCert(RwLock::new(Arc::new(first)))
    }

    pub fn replace(&self, next: CertifiedKey) {
        if let Ok(mut current) = self.0.write() {
            *current = Arc::new(next);
        }
    }
}

impl ResolvesServerCert for LiveCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().ok().map(|c| c.clone())
    }
}

pub fn server_config(cert: Arc<LiveCert>) -> Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Files written by [`self_signed`].
pub struct SelfSigned {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (the names cert-manager's Secrets use) into `dir`: a
/// CA and a serving certificate for `dns_names`, signed by it. For tests and trials; production
/// runs cert-manager (see deploy/).
pub fn self_signed(dir: &Path, dns_names: &[String]) -> Result<SelfSigned> {
    let fail = |e: rcgen::Error| anyhow!("making a self-signed certificate: {e}");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "meshguard webhook CA");
    ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
    let ca = ca_params.self_signed(&ca_key).map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(dns_names.to_vec()).map_err(fail)?;
    params.distinguished_name.push(rcgen::DnType::CommonName, dns_names.first().map_or("meshguard", |n| n.as_str()));
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.signed_by(&key, &ca, &ca_key).map_err(fail)?;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let out = SelfSigned { ca: dir.join("ca.crt"), cert: dir.join("tls.crt"), key: dir.join("tls.key") };
    write_atomically(&out.ca, ca.pem().as_bytes())?;
    write_atomically(&out.cert, cert.pem().as_bytes())?;
    write_atomically(&out.key, key.serialize_pem().as_bytes())?;
    Ok(out)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_signed_files_load_and_mismatched_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = super::self_signed(&dir.path().join("a"), &["meshguard.meshguard.svc".into()]).unwrap();
        super::load(&a.cert, &a.key).unwrap();
        let b = super::self_signed(&dir.path().join("b"), &["other".into()]).unwrap();
        let err = super::load(&a.cert, &b.key).unwrap_err().to_string();
        assert!(err.contains("tls.crt") && err.contains("tls.key"), "{err}");
        let err = super::load(&a.key, &a.key).unwrap_err().to_string();
        assert!(err.contains("no certificate") || err.contains("not a PEM"), "{err}");
    }
}
