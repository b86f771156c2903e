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

/// The largest certificate chain or key file read: a chain of a few certificates is a few KiB.
pub const MAX_PEM_BYTES: usize = 1 << 20;

/// A PEM file, read as rule files are: a regular file only (a FIFO put in its place would block
/// the reader, `/dev/zero` behind a symlink would never end) of at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path, what: &str) -> Result<String> {
    crate::sources::read_text(path, MAX_PEM_BYTES)
        .map_err(|e| anyhow!("{}: cannot read the {what}: {}", path.display(), e.message))
}

/// Reads a certificate chain and its key; `Err` names the file and what is wrong (the key must
/// match the first certificate).
pub fn load(cert: &Path, key: &Path) -> Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(read_pem(cert, "certificate")?.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(anyhow!("{}: no certificate in the file", cert.display()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(read_pem(key, "private key")?.as_bytes())
        .map_err(|e| anyhow!("{}: not a PEM private key: {e}", key.display()))?;
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
    write_atomically(&out.ca, ca.pem().as_bytes(), 0o644)?;
    write_atomically(&out.cert, cert.pem().as_bytes(), 0o644)?;
    // The private key is readable by its owner only, whatever the umask.
    write_atomically(&out.key, key.serialize_pem().as_bytes(), 0o600)?;
    Ok(out)
}

/// Writes through a temporary file created with `mode` and a rename, so a reader never sees half
/// a file, nor a key with wider permissions than it ends with.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
    // The umask may have narrowed `mode` further; set exactly it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .and_then(|()| file.write_all(bytes))
        .and_then(|()| file.sync_all())
        .with_context(|| format!("{}: cannot write", tmp.display()))?;
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

    #[test]
    fn the_private_key_is_its_owners_alone_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        // SAFETY: umask only changes this process's file-creation mask.
        let old = unsafe { libc::umask(0o022) };
        let made = super::self_signed(dir.path(), &["a".into()]);
        unsafe { libc::umask(old) };
        let made = made.unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&made.key), 0o600);
        assert_eq!((mode(&made.cert), mode(&made.ca)), (0o644, 0o644));
    }

    /// A FIFO in place of the certificate must not block the reader (it would stop a runtime
    /// worker), nor a device behind a symlink fill memory: both are refused at once, by name.
    #[test]
    fn a_fifo_or_a_device_in_place_of_a_pem_file_is_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let good = super::self_signed(&dir.path().join("good"), &["a".into()]).unwrap();
        let fifo = dir.path().join("fifo.crt");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path we own.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let started = std::time::Instant::now();
        let err = super::load(&fifo, &good.key).unwrap_err().to_string();
        assert!(err.contains("fifo.crt") && err.contains("regular files only"), "{err}");
        let zero = dir.path().join("zero.key");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = super::load(&good.cert, &zero).unwrap_err().to_string();
        assert!(err.contains("zero.key") && err.contains("regular files only"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "refused without waiting");
        let big = dir.path().join("big.crt");
        std::fs::write(&big, vec![b'a'; super::MAX_PEM_BYTES + 1]).unwrap();
        assert!(super::load(&big, &good.key).unwrap_err().to_string().contains("big.crt"));
    }
}
