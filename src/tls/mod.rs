//! TLS: the `[tls]` settings; the server certificate, read from PEM files
//! and read again whenever they change, so a renewed certificate is served
//! without a restart; the rustls configuration (HTTP/2 and HTTP/1.1 offered
//! by ALPN). `self_signed` makes a CA and a server certificate for
//! `berth tls self-signed`.
//!
//! Connections already open keep the certificate they were made with: a
//! certificate is chosen once, at the handshake, from whatever [`Reloading`]
//! holds at that moment.
//!
//! A leaf beside `setting`, which it uses; used by `config` (the settings),
//! `listener` (the handshakes) and `cli`.

pub mod self_signed;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::setting::Invalid;

/// How often the certificate files are looked at for a change.
const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The protocols offered by ALPN, preferred first.
pub const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// `[tls]` as a file or the environment spell it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, the server's certificate first; serving HTTPS when set.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of that certificate (PKCS#8, RSA or SEC1 EC).
    pub key_file: Option<PathBuf>,
    /// How long a client may take to finish its TLS handshake.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            cert_file: None,
            key_file: None,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Checked `[tls]`: both files named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub handshake_timeout: Duration,
}

impl TlsSettings {
    /// `None` when neither file is set: plain HTTP.
    pub fn check(self) -> Result<Option<TlsConfig>, Invalid> {
        // An empty value is unset, as an empty variable is.
        let named = |path: Option<PathBuf>| path.filter(|p| !p.as_os_str().is_empty());
        let (cert_file, key_file) = match (named(self.cert_file), named(self.key_file)) {
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(Invalid::new(
                    "key_file",
                    "is not set, but `tls.cert_file` is: set both to serve HTTPS, or neither",
                ));
            }
            (None, Some(_)) => {
                return Err(Invalid::new(
                    "cert_file",
                    "is not set, but `tls.key_file` is: set both to serve HTTPS, or neither",
                ));
            }
            (Some(cert), Some(key)) => (cert, key),
        };
        // The files are read when the server starts, not here: `berth tls
        // self-signed` runs with these settings before the files exist.
        if self.handshake_timeout.is_zero() {
            return Err(Invalid::new("handshake_timeout", "use a positive duration"));
        }
        Ok(Some(TlsConfig {
            cert_file,
            key_file,
            handshake_timeout: self.handshake_timeout,
        }))
    }
}

/// Why the certificate files cannot be served; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no PEM certificate in it")]
    NoCertificate { path: PathBuf },
    #[error("{path}: no PEM private key in it (PKCS#8, RSA or SEC1 EC)")]
    NoKey { path: PathBuf },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("the key in {key} is not the key of the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// The crypto rustls uses: `ring`, which the S3 client already builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The two files' contents, read together.
struct Files {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Files {
    fn read(config: &TlsConfig) -> Result<Files, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Unreadable {
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(Files {
            cert: read(&config.cert_file)?,
            key: read(&config.key_file)?,
        })
    }

    /// What tells one version of the files from another.
    fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(Sha256::digest(&self.cert));
        hash.update(Sha256::digest(&self.key));
        hash.finalize().into()
    }

    fn parse(&self, config: &TlsConfig) -> Result<CertifiedKey, TlsError> {
        let invalid = |path: &Path, reason: String| TlsError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let chain = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&config.cert_file, e.to_string()))?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: config.cert_file.clone(),
            });
        }
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
                path: config.key_file.clone(),
            },
            e => invalid(&config.key_file, e.to_string()),
        })?;
        CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: config.cert_file.clone(),
                key: config.key_file.clone(),
            },
            e => invalid(&config.key_file, e.to_string()),
        })
    }
}

/// The SHA-256 fingerprint of the server's certificate, as `openssl x509
/// -fingerprint -sha256` shows it, for the logs.
fn leaf_fingerprint(key: &CertifiedKey) -> String {
    let der = key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    let hex = hex::encode_upper(Sha256::digest(der));
    hex.as_bytes()
        .chunks(2)
        .map(|pair| std::str::from_utf8(pair).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(":")
}

/// The certificate served to new connections, swapped when the files change.
#[derive(Debug)]
pub struct Reloading {
    config: TlsConfig,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Reloading {
    /// Reads the files (an error names the file at fault) and starts
    /// looking at them every 2 s; that stops once the returned value, and
    /// every rustls configuration holding it, is gone.
    pub fn start(config: &TlsConfig) -> Result<Arc<Reloading>, TlsError> {
        let files = Files::read(config)?;
        let key = files.parse(config)?;
        tracing::info!(
            cert_file = %config.cert_file.display(),
            sha256 = %leaf_fingerprint(&key),
            "serving HTTPS"
        );
        let reloading = Arc::new(Reloading {
            config: config.clone(),
            current: RwLock::new(Arc::new(key)),
        });
        tokio::spawn(watch(Arc::downgrade(&reloading), files.fingerprint()));
        Ok(reloading)
    }

    /// The certificate a handshake starting now gets.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn replace(&self, key: CertifiedKey) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(key);
    }

    /// The rustls configuration of the server: this certificate, HTTP/2 and
    /// HTTP/1.1 by ALPN, no client certificates.
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring offers the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// What the last look at the files found, so each change is acted on (and
/// a bad state warned about) once.
#[derive(PartialEq, Eq)]
enum Seen {
    Files([u8; 32]),
    Unreadable(String),
}

/// Reads the files every [`RELOAD_INTERVAL`]; a new version that parses is
/// served from then on, one that does not is logged and the old certificate
/// stays. Content, not mtime, tells versions apart: cert-manager swaps a
/// symlink (the file's own mtime may not change) and certbot rewrites in
/// place; both files are read each time, as they may change one at a time.
async fn watch(reloading: Weak<Reloading>, fingerprint: [u8; 32]) {
    let mut seen = Seen::Files(fingerprint);
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        let Some(reloading) = reloading.upgrade() else {
            return;
        };
        let config = reloading.config.clone();
        let read = tokio::task::spawn_blocking(move || {
            let files = Files::read(&config)?;
            let fingerprint = files.fingerprint();
            Ok::<_, TlsError>((fingerprint, files, config))
        })
        .await;
        let Ok(read) = read else { continue };
        match read {
            Err(e) => {
                let now = Seen::Unreadable(e.to_string());
                if now != seen {
                    tracing::warn!(error = %e, "cannot read the TLS files; the certificate in use stays");
                    seen = now;
                }
            }
            Ok((fingerprint, files, config)) => {
                let now = Seen::Files(fingerprint);
                if now == seen {
                    continue;
                }
                seen = now;
                match files.parse(&config) {
                    Ok(key) => {
                        tracing::info!(
                            cert_file = %config.cert_file.display(),
                            sha256 = %leaf_fingerprint(&key),
                            "TLS certificate reloaded: new connections get it"
                        );
                        reloading.replace(key);
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "the TLS files changed but cannot be used; the certificate in use stays"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(cert: Option<&Path>, key: Option<&Path>) -> TlsSettings {
        TlsSettings {
            cert_file: cert.map(Path::to_path_buf),
            key_file: key.map(Path::to_path_buf),
            ..TlsSettings::default()
        }
    }

    #[test]
    fn both_files_or_neither() {
        let file = Path::new("server.crt");
        assert_eq!(TlsSettings::default().check().unwrap(), None);
        assert_eq!(
            settings(Some(Path::new("")), Some(Path::new("")))
                .check()
                .unwrap(),
            None
        );
        let e = settings(Some(file), None).check().unwrap_err();
        assert_eq!(e.key, "key_file");
        assert!(e.reason.contains("`tls.cert_file`"), "{}", e.reason);
        assert_eq!(
            settings(None, Some(file)).check().unwrap_err().key,
            "cert_file"
        );
        let config = settings(Some(file), Some(file)).check().unwrap().unwrap();
        assert_eq!(config.handshake_timeout, Duration::from_secs(10));
    }

    fn write_pair(dir: &Path, name: &str) -> TlsConfig {
        let pair = self_signed::generate(&["berth.test".into()], &[]).unwrap();
        let config = TlsConfig {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
            handshake_timeout: Duration::from_secs(10),
        };
        std::fs::write(&config.cert_file, &pair.server_chain_pem).unwrap();
        std::fs::write(&config.key_file, &pair.server_key_pem).unwrap();
        config
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_pair(dir.path(), "a");
        let parse = |config: &TlsConfig| Files::read(config).and_then(|f| f.parse(config));
        let key = parse(&config).unwrap();
        // The chain: server certificate, then the CA.
        assert_eq!(key.cert.len(), 2);

        let other = write_pair(dir.path(), "b");
        let crossed = TlsConfig {
            key_file: other.key_file.clone(),
            ..config.clone()
        };
        let e = parse(&crossed).unwrap_err();
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("b.key"), "{e}");

        std::fs::write(&config.key_file, "not a key").unwrap();
        let e = parse(&config).unwrap_err();
        assert!(e.to_string().contains("a.key: no PEM private key"), "{e}");
        std::fs::write(&config.cert_file, "").unwrap();
        let e = parse(&config).unwrap_err();
        assert!(e.to_string().contains("a.crt: no PEM certificate"), "{e}");
        let gone = TlsConfig {
            cert_file: dir.path().join("gone.crt"),
            ..config
        };
        let e = parse(&gone).unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
        assert!(e.to_string().contains("gone.crt"), "{e}");
    }

    #[test]
    fn fingerprints_look_like_openssl_s() {
        let dir = tempfile::tempdir().unwrap();
        let config = write_pair(dir.path(), "a");
        let key = Files::read(&config).unwrap().parse(&config).unwrap();
        let shown = leaf_fingerprint(&key);
        assert_eq!(shown.len(), 32 * 3 - 1);
        assert!(shown.split(':').all(|b| b.len() == 2), "{shown}");
    }
}
