//! `berth tls self-signed`: a small CA of one's own and a server certificate
//! it signs, for a registry without a public certificate, and the words that
//! tell each client where to put the CA.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// How long the CA is valid.
const CA_DAYS: i64 = 10 * 365;
/// How long the server certificate is valid: the most Apple's clients accept
/// from any CA, a private one included.
const SERVER_DAYS: i64 = 825;

/// The four files' contents, PEM.
pub struct Generated {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    /// The server certificate, then the CA's: the chain a server sends.
    pub server_chain_pem: String,
    pub server_key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SelfSignedError {
    #[error("name at least one --host or --ip")]
    NoNames,
    #[error("`{0}` is not a host name")]
    BadName(String),
    #[error("cannot make the certificates: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{} already exists; pass --force to replace the CA and the server certificate", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A CA (ECDSA P-256) and a server certificate for `hosts` and `ips`
/// signed by it.
pub fn generate(hosts: &[String], ips: &[IpAddr]) -> Result<Generated, SelfSignedError> {
    if hosts.is_empty() && ips.is_empty() {
        return Err(SelfSignedError::NoNames);
    }
    let now = time::OffsetDateTime::now_utc();
    // Clocks of clients may be a little behind.
    let not_before = now - time::Duration::hours(1);

    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    // A name of its own, so that clients trusting two such CAs (an old and
    // a new one) never take one for the other.
    let tag: u32 = rand::random();
    ca.distinguished_name
        .push(DnType::CommonName, format!("Berth registry CA {tag:08x}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = not_before;
    ca.not_after = now + time::Duration::days(CA_DAYS);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;

    let mut server = CertificateParams::default();
    server.distinguished_name = rcgen::DistinguishedName::new();
    let common_name = hosts.first().cloned().unwrap_or_else(|| ips[0].to_string());
    server
        .distinguished_name
        .push(DnType::CommonName, common_name);
    server.subject_alt_names = hosts
        .iter()
        .map(|host| san(host))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, _>>()?;
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.use_authority_key_identifier_extension = true;
    server.not_before = not_before;
    server.not_after = now + time::Duration::days(SERVER_DAYS);
    let server_key = KeyPair::generate()?;
    let issuer = Issuer::new(ca, &ca_key);
    let server_cert = server.signed_by(&server_key, &issuer)?;

    Ok(Generated {
        ca_cert_pem: ca_cert.pem(),
        ca_key_pem: ca_key.serialize_pem(),
        server_chain_pem: format!("{}{}", server_cert.pem(), ca_cert.pem()),
        server_key_pem: server_key.serialize_pem(),
    })
}

/// A name as a certificate holds it: an address given as `--host` is an
/// address; anything else must be a valid DNS name.
fn san(host: &str) -> Result<SanType, SelfSignedError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let bad = || SelfSignedError::BadName(host.to_string());
    rustls_pki_types::DnsName::try_from(host).map_err(|_| bad())?;
    Ok(SanType::DnsName(
        host.to_string().try_into().map_err(|_| bad())?,
    ))
}

/// Where [`write`] puts each file.
pub struct Paths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl Paths {
    pub fn in_dir(dir: &Path) -> Paths {
        Paths {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }

    fn all(&self) -> [&Path; 4] {
        [
            &self.ca_cert,
            &self.ca_key,
            &self.server_cert,
            &self.server_key,
        ]
    }
}

/// Writes the files (keys readable by the owner only), refusing to replace
/// any unless `force`: clients trust the CA already there.
pub fn write(paths: &Paths, generated: &Generated, force: bool) -> Result<(), SelfSignedError> {
    if !force && let Some(existing) = paths.all().into_iter().find(|p| p.exists()) {
        return Err(SelfSignedError::Exists(existing.to_path_buf()));
    }
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SelfSignedError::Write { path, source }
    };
    if let Some(dir) = paths.ca_cert.parent() {
        std::fs::create_dir_all(dir).map_err(failed(dir))?;
    }
    for (path, text, secret) in [
        (&paths.ca_cert, &generated.ca_cert_pem, false),
        (&paths.ca_key, &generated.ca_key_pem, true),
        (&paths.server_cert, &generated.server_chain_pem, false),
        (&paths.server_key, &generated.server_key_pem, true),
    ] {
        write_file(path, text.as_bytes(), secret).map_err(failed(path))?;
    }
    Ok(())
}

/// Writes by a temporary file and a rename, so a running server polling
/// the files never reads half of one.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// `host:port` as clients name a registry, an IPv6 address in brackets.
fn registry_name(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// What `berth tls self-signed` prints: the files, the two settings, and
/// where each client wants the CA, for every name on the certificate.
pub fn instructions(paths: &Paths, names: &[String], port: u16) -> String {
    let mut out = String::new();
    let shown = |p: &Path| p.display().to_string();
    let _ = writeln!(out, "Wrote:");
    let _ = writeln!(
        out,
        "  {}  the CA certificate: every client needs it",
        shown(&paths.ca_cert)
    );
    let _ = writeln!(
        out,
        "  {}  the CA's private key: keep it secret, or delete it",
        shown(&paths.ca_key)
    );
    let _ = writeln!(
        out,
        "  {}  the server certificate for {}, then the CA (the full chain)",
        shown(&paths.server_cert),
        names.join(", ")
    );
    let _ = writeln!(
        out,
        "  {}  the server's private key",
        shown(&paths.server_key)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Serve HTTPS with these settings in the configuration file (or BERTH_TLS_CERT_FILE and BERTH_TLS_KEY_FILE):"
    );
    let _ = writeln!(out, "  [tls]");
    let _ = writeln!(out, "  cert_file = {:?}", shown(&paths.server_cert));
    let _ = writeln!(out, "  key_file = {:?}", shown(&paths.server_key));
    let _ = writeln!(
        out,
        "Berth reads both files again within seconds of a change; no restart is needed."
    );
    let ca = shown(&paths.ca_cert);
    for name in names {
        let registry = registry_name(name, port);
        let _ = writeln!(out);
        let _ = writeln!(out, "Clients of {registry} trust the CA from:");
        let _ = writeln!(
            out,
            "  Docker:       /etc/docker/certs.d/{registry}/ca.crt  (a copy of {ca}; read at each push and pull)"
        );
        let _ = writeln!(
            out,
            "  podman, skopeo, buildah: /etc/containers/certs.d/{registry}/ca.crt, or a directory holding ca.crt given as --cert-dir DIR"
        );
        let _ = writeln!(
            out,
            "  containerd:   /etc/containerd/certs.d/{registry}/hosts.toml (containerd's config_path; `ctr --hosts-dir /etc/containerd/certs.d`):"
        );
        let _ = writeln!(out, "                  [host.\"https://{registry}\"]");
        let _ = writeln!(
            out,
            "                    ca = \"/etc/containerd/certs.d/{registry}/ca.crt\""
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_certificate_is_signed_by_the_ca() {
        let generated = generate(&["registry.test".into()], &["::1".parse().unwrap()]).unwrap();
        use rustls::client::danger::ServerCertVerifier;
        use rustls_pki_types::pem::PemObject;
        let chain: Vec<_> =
            rustls_pki_types::CertificateDer::pem_slice_iter(generated.server_chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let ca = rustls_pki_types::CertificateDer::from_pem_slice(generated.ca_cert_pem.as_bytes())
            .unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], ca);
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            super::super::provider(),
        )
        .build()
        .unwrap();
        let now = rustls_pki_types::UnixTime::now();
        for name in ["registry.test", "::1"] {
            let name = rustls_pki_types::ServerName::try_from(name).unwrap();
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &name, &[], now)
                .unwrap();
        }
        let other = rustls_pki_types::ServerName::try_from("other.test").unwrap();
        assert!(
            verifier
                .verify_server_cert(&chain[0], &chain[1..], &other, &[], now)
                .is_err()
        );
        assert!(matches!(generate(&[], &[]), Err(SelfSignedError::NoNames)));
        assert!(matches!(
            generate(&["not a name".into()], &[]),
            Err(SelfSignedError::BadName(_))
        ));
    }

    #[test]
    fn files_are_not_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::in_dir(&dir.path().join("tls"));
        let generated = generate(&["registry.test".into()], &[]).unwrap();
        write(&paths, &generated, false).unwrap();
        let e = write(&paths, &generated, false).unwrap_err();
        assert!(e.to_string().contains("ca.crt already exists"), "{e}");
        write(&paths, &generated, true).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&paths.server_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn each_client_is_told_where_the_ca_goes() {
        let paths = Paths::in_dir(Path::new("/srv/berth/tls"));
        let text = instructions(&paths, &["registry.test".into(), "::1".into()], 5000);
        for line in [
            "  cert_file = \"/srv/berth/tls/server.crt\"",
            "  key_file = \"/srv/berth/tls/server.key\"",
            "/etc/docker/certs.d/registry.test:5000/ca.crt",
            "/etc/containers/certs.d/registry.test:5000/ca.crt",
            "--cert-dir DIR",
            "/etc/containerd/certs.d/registry.test:5000/hosts.toml",
            "[host.\"https://registry.test:5000\"]",
            "ca = \"/etc/containerd/certs.d/registry.test:5000/ca.crt\"",
            "/etc/docker/certs.d/[::1]:5000/ca.crt",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }
}
