//! TLS for both ports (rustls with the ring provider): a certificate chain and key from PEM files, read
//! again when either file changes (connections already open keep the certificate they started with; a
//! pair that does not load or does not match is logged and the old one kept). The REST port offers HTTP/2
//! and HTTP/1.1 through ALPN, the gRPC port HTTP/2.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// The `[tls]` table: both ports serve TLS when `cert` and `key` are set.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
    /// Seconds between checks of the files for changes; 0: read once at start.
    pub reload_secs: u64,
}

impl TlsConfig {
    /// The certificate and key files, when TLS is on; an error when only one is set.
    pub fn files(&self) -> anyhow::Result<Option<(PathBuf, PathBuf)>> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some((cert.clone(), key.clone()))),
            (None, None) => Ok(None),
            _ => anyhow::bail!("tls needs both `cert` and `key`"),
        }
    }
}

/// The certificate in use, swapped when the files change.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Acceptors for both ports over one reloading certificate.
#[derive(Clone)]
pub struct Tls {
    /// ALPN h2 and http/1.1.
    pub http: TlsAcceptor,
    /// ALPN h2.
    pub grpc: TlsAcceptor,
}

impl Tls {
    /// Loads the files (failing start-up when they do not load) and, with `reload_secs`, watches them.
    pub fn start(config: &TlsConfig) -> anyhow::Result<Option<Tls>> {
        let Some((cert, key)) = config.files()? else { return Ok(None) };
        let current = Arc::new(Current(RwLock::new(Arc::new(load(&cert, &key)?))));
        let acceptor = |alpn: &[&[u8]]| -> anyhow::Result<TlsAcceptor> {
            let mut server = rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
            server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
            Ok(TlsAcceptor::from(Arc::new(server)))
        };
        let tls = Tls { http: acceptor(&[b"h2", b"http/1.1"])?, grpc: acceptor(&[b"h2"])? };
        if config.reload_secs > 0 {
            tokio::spawn(watch(current, cert, key, Duration::from_secs(config.reload_secs)));
        }
        Ok(Some(tls))
    }
}

/// Reads the chain and the key and checks that they belong together.
fn load(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading TLS certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "TLS certificate file {} holds no certificate", cert.display());
    let private = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading TLS key {}", key.display()))?;
    let certified = CertifiedKey::from_der(chain, private, &ring::default_provider())
        .with_context(|| format!("TLS key {} does not fit certificate {}", key.display(), cert.display()))?;
    Ok(certified)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Swaps in the pair when either file's modification time changes.
async fn watch(current: Arc<Current>, cert: PathBuf, key: PathBuf, every: Duration) {
    let mut seen = (modified(&cert), modified(&key));
    loop {
        tokio::time::sleep(every).await;
        let now = (modified(&cert), modified(&key));
        if now == seen {
            continue;
        }
        seen = now;
        match load(&cert, &key) {
            Ok(certified) => {
                *current.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certified);
                tracing::info!(cert = %cert.display(), "TLS certificate reloaded");
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "TLS certificate not reloaded; keeping the old one"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        let only_cert = TlsConfig { cert: Some("c.pem".into()), ..Default::default() };
        assert!(only_cert.files().unwrap_err().to_string().contains("both"));
        assert!(TlsConfig::default().files().unwrap().is_none());
    }

    #[test]
    fn missing_or_empty_files_are_clear_errors() {
        let dir = std::env::temp_dir().join(format!("ferroserve-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = load(&dir.join("none.pem"), &dir.join("none.key")).unwrap_err();
        assert!(format!("{missing:#}").contains("reading TLS certificate"), "{missing:#}");
        std::fs::write(dir.join("empty.pem"), "").unwrap();
        let empty = load(&dir.join("empty.pem"), &dir.join("none.key")).unwrap_err();
        assert!(format!("{empty:#}").contains("holds no certificate"), "{empty:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
