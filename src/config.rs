//! Settings: built-in defaults, then a TOML file, then `BERTH_*` environment
//! variables, then command-line flags, each overriding the one before.
//! Everything is checked here, so the server never starts half-configured:
//! a bad value stops start-up with one line naming the setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;
use crate::storage::S3Config;

/// The settings as a file or the environment spell them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port to listen on.
    pub listen: String,
    /// Where the embedded defaults keep their data.
    pub data_dir: PathBuf,
    /// `sqlite:<path>` or `postgres://...`; default `sqlite:<data_dir>/berth.db`.
    pub database_url: Option<String>,
    /// A filesystem path; default `<data_dir>/blobs`.
    pub storage: Option<String>,
    /// Filesystem storage: flush each blob to disk before its upload is
    /// acknowledged (the default). `false` leaves that to the kernel, as the
    /// reference registry and zot do: faster on slow disks, and safe against
    /// a crash of Berth, but a power loss can corrupt blobs pushed in the
    /// last seconds.
    pub fsync: bool,
    /// External base URL used in `Location` headers, e.g. `https://registry.example`.
    pub public_url: Option<String>,
    /// Size of the database connection pool.
    pub database_max_connections: u32,
    /// `token` (logins and tokens, the default) or `none` (no checks at all).
    pub auth: String,
    /// How long a registry token lives, e.g. `5m`.
    pub token_lifetime: String,
    /// PEM (PKCS#8, P-256) key that signs tokens; keys kept in the database otherwise.
    pub signing_key_file: Option<PathBuf>,
    /// The token audience; default: the host of `public_url`, else `berth`.
    pub token_service: Option<String>,
    /// Password of the `admin` user created on first start (random and printed once when unset).
    pub admin_password: Option<String>,
    /// S3 endpoint for S3-compatible servers; `AWS_ENDPOINT` otherwise.
    pub s3_endpoint: Option<String>,
    /// `AWS_REGION` otherwise.
    pub s3_region: Option<String>,
    /// `AWS_ACCESS_KEY_ID` otherwise.
    pub s3_access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY` otherwise.
    pub s3_secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint; `AWS_ALLOW_HTTP` otherwise.
    pub s3_allow_http: Option<bool>,
    /// Bucket-in-host-name addressing; path style (what S3-compatible servers expect) by default.
    pub s3_virtual_hosted_style: bool,
    /// Multipart part size in MiB (at least 5), announced as `OCI-Chunk-Min-Length`.
    pub s3_part_size_mib: u64,
    /// Redirect blob downloads to presigned S3 URLs valid this long (e.g. `5m`); off when unset.
    pub s3_redirect: Option<String>,
    /// `text` (human-readable, the default) or `json` (one object per line).
    pub log_format: String,
    /// How often each instance collects garbage (e.g. `10m`), or `off`.
    pub gc_interval: String,
    /// How long something stays unreferenced before it is collected (e.g. `24h`; `0s` is safe).
    pub gc_grace: String,
    /// How long an upload may stay idle before it expires (e.g. `24h`).
    pub upload_expiry: String,
    /// How long shutdown waits for requests in flight, e.g. `30s`.
    pub shutdown_timeout: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:5000".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            storage: None,
            fsync: true,
            public_url: None,
            database_max_connections: 16,
            auth: "token".into(),
            token_lifetime: "5m".into(),
            signing_key_file: None,
            token_service: None,
            admin_password: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: None,
            s3_virtual_hosted_style: false,
            s3_part_size_mib: 8,
            s3_redirect: None,
            log_format: "text".into(),
            gc_interval: "10m".into(),
            gc_grace: "24h".into(),
            upload_expiry: "24h".into(),
            shutdown_timeout: "30s".into(),
        }
    }
}

const SETTING_NAMES: [&str; 25] = [
    "fsync",
    "gc_interval",
    "gc_grace",
    "upload_expiry",
    "s3_redirect",
    "log_format",
    "shutdown_timeout",
    "s3_endpoint",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_allow_http",
    "s3_virtual_hosted_style",
    "s3_part_size_mib",
    "listen",
    "data_dir",
    "database_url",
    "storage",
    "public_url",
    "database_max_connections",
    "auth",
    "token_lifetime",
    "signing_key_file",
    "token_service",
    "admin_password",
];

/// Values given as command-line flags; unset ones leave lower layers alone.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Filesystem(PathBuf),
    S3(S3Config),
}

/// Settings after checking: what the server runs with.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    pub storage: StorageConfig,
    pub fsync: bool,
    pub public_url: Option<String>,
    pub database_max_connections: u32,
    pub auth: AuthConfig,
    pub log_format: LogFormat,
    pub shutdown_timeout: std::time::Duration,
    pub gc: crate::gc::GcConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `Debug` that never prints credentials embedded in the database URL.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("storage", &self.storage)
            .field("fsync", &self.fsync)
            .field("public_url", &self.public_url)
            .field("database_max_connections", &self.database_max_connections)
            .field("auth", &self.auth)
            .field("log_format", &self.log_format)
            .field("gc", &self.gc)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .finish()
    }
}

/// Replaces a URL's password with `***`.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => raw.to_string(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid setting `{setting}`: {reason}")]
pub struct ConfigError {
    pub setting: String,
    pub reason: String,
}

fn bad(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// Loads settings from every layer. `file` is the `--config`/`BERTH_CONFIG` path.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(bad(
                    "config",
                    format!("file {} does not exist", file.display()),
                ));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let figment = figment
            .merge(Env::prefixed("BERTH_").only(&SETTING_NAMES))
            .merge(Serialized::defaults(overrides));
        let settings: Settings = figment.extract().map_err(|e| {
            let setting = if e.path.is_empty() {
                "config".to_string()
            } else {
                e.path.join(".")
            };
            let source = e
                .metadata
                .as_ref()
                .map(|m| format!(" (from {})", m.name))
                .unwrap_or_default();
            bad(&setting, format!("{}{source}", e.kind))
        })?;
        settings.check()
    }
}

impl Settings {
    pub fn check(self) -> Result<Config, ConfigError> {
        let listen = self.listen.parse::<SocketAddr>().map_err(|_| {
            bad(
                "listen",
                format!("`{}` is not an address such as 0.0.0.0:5000", self.listen),
            )
        })?;
        let database_url = self
            .database_url
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("berth.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(bad(
                "database_url",
                format!(
                    "`{}` must start with sqlite: or postgres://",
                    redact_url(&database_url)
                ),
            ));
        }
        let storage = match self.storage {
            None => StorageConfig::Filesystem(self.data_dir.join("blobs")),
            Some(s) if s.starts_with("s3://") => {
                let rest = &s["s3://".len()..];
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let valid_bucket = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                    });
                if !valid_bucket {
                    return Err(bad(
                        "storage",
                        format!("`{s}`: `{bucket}` is not an S3 bucket name"),
                    ));
                }
                if !(5..=5 * 1024).contains(&self.s3_part_size_mib) {
                    return Err(bad("s3_part_size_mib", "must be between 5 and 5120 (MiB)"));
                }
                StorageConfig::S3(S3Config {
                    bucket: bucket.to_string(),
                    prefix: prefix.trim_matches('/').to_string(),
                    endpoint: self.s3_endpoint.filter(|e| !e.is_empty()),
                    region: self.s3_region.filter(|r| !r.is_empty()),
                    access_key_id: self.s3_access_key_id.filter(|k| !k.is_empty()),
                    secret_access_key: self.s3_secret_access_key.filter(|k| !k.is_empty()),
                    allow_http: self.s3_allow_http,
                    virtual_hosted_style: self.s3_virtual_hosted_style,
                    part_size: self.s3_part_size_mib * 1024 * 1024,
                    redirect: match self.s3_redirect.as_deref().filter(|r| !r.is_empty()) {
                        None => None,
                        Some(text) => Some(
                            humantime::parse_duration(text)
                                .ok()
                                .filter(|d| (1..=7 * 24 * 3600).contains(&d.as_secs()))
                                .ok_or_else(|| {
                                    bad("s3_redirect", format!("`{text}` is not a duration between 1s and 7d, such as 5m"))
                                })?,
                        ),
                    },
                })
            }
            Some(s) if s.contains("://") => {
                return Err(bad(
                    "storage",
                    format!("`{s}`: use a filesystem path or s3://bucket/prefix"),
                ));
            }
            Some(s) if s.trim().is_empty() => return Err(bad("storage", "is empty")),
            Some(s) => StorageConfig::Filesystem(PathBuf::from(s)),
        };
        let public_url = match self.public_url.filter(|u| !u.is_empty()) {
            None => None,
            Some(raw) => {
                let url = url::Url::parse(&raw)
                    .map_err(|e| bad("public_url", format!("`{raw}`: {e}")))?;
                if !matches!(url.scheme(), "http" | "https")
                    || url.query().is_some()
                    || url.host().is_none()
                {
                    return Err(bad(
                        "public_url",
                        format!("`{raw}` must be an http(s) URL without a query"),
                    ));
                }
                Some(raw.trim_end_matches('/').to_string())
            }
        };
        if self.database_max_connections == 0 {
            return Err(bad("database_max_connections", "must be at least 1"));
        }
        let enabled = match self.auth.as_str() {
            "token" => true,
            "none" => false,
            other => return Err(bad("auth", format!("`{other}` is not `token` or `none`"))),
        };
        let token_lifetime = humantime::parse_duration(&self.token_lifetime)
            .ok()
            .filter(|d| d.as_secs() >= 60 && d.as_secs() <= 24 * 3600)
            .ok_or_else(|| {
                bad(
                    "token_lifetime",
                    format!(
                        "`{}` is not a duration between 1m and 24h, such as 5m",
                        self.token_lifetime
                    ),
                )
            })?;
        let service = match self.token_service.filter(|s| !s.is_empty()) {
            Some(service) => service,
            None => public_url
                .as_deref()
                .and_then(|u| url::Url::parse(u).ok())
                .and_then(|u| {
                    let host = u.host_str()?.to_string();
                    Some(match u.port() {
                        Some(port) => format!("{host}:{port}"),
                        None => host,
                    })
                })
                .unwrap_or_else(|| "berth".into()),
        };
        if let Some(path) = &self.signing_key_file
            && !path.is_file()
        {
            return Err(bad(
                "signing_key_file",
                format!("{} is not a file", path.display()),
            ));
        }
        let log_format = match self.log_format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(bad(
                    "log_format",
                    format!("`{other}` is not `text` or `json`"),
                ));
            }
        };
        let shutdown_timeout = humantime::parse_duration(&self.shutdown_timeout).map_err(|_| {
            bad(
                "shutdown_timeout",
                format!("`{}` is not a duration such as 30s", self.shutdown_timeout),
            )
        })?;
        let duration = |setting: &str, text: &str| {
            humantime::parse_duration(text).map_err(|_| {
                bad(
                    setting,
                    format!("`{text}` is not a duration such as 10m or 24h"),
                )
            })
        };
        let gc = crate::gc::GcConfig {
            interval: match self.gc_interval.as_str() {
                "off" => None,
                text => Some(duration("gc_interval", text)?).filter(|d| !d.is_zero()),
            },
            grace: duration("gc_grace", &self.gc_grace)?,
            upload_expiry: duration("upload_expiry", &self.upload_expiry)?,
        };
        if gc.interval.is_none() && self.gc_interval != "off" {
            return Err(bad("gc_interval", "use a positive duration, or `off`"));
        }
        Ok(Config {
            gc,
            log_format,
            shutdown_timeout,
            listen,
            database_url,
            storage,
            fsync: self.fsync,
            public_url,
            database_max_connections: self.database_max_connections,
            auth: AuthConfig {
                enabled,
                token_lifetime,
                signing_key_file: self.signing_key_file,
                service,
                issuer: "berth".into(),
                admin_password: self.admin_password.filter(|p| !p.is_empty()),
                login_limits: Default::default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_use_the_data_dir() {
        let config = Settings::default().check().unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:5000");
        assert_eq!(config.database_url, "sqlite:./data/berth.db");
        assert_eq!(
            config.storage,
            StorageConfig::Filesystem(PathBuf::from("./data/blobs"))
        );
        assert_eq!(config.public_url, None);
    }

    #[test]
    fn bad_values_name_the_setting() {
        type Change = fn(&mut Settings);
        let cases: [(Change, &str); 5] = [
            (|s| s.listen = "nope".into(), "listen"),
            (
                |s| s.database_url = Some("mysql://x".into()),
                "database_url",
            ),
            (|s| s.storage = Some("ftp://x".into()), "storage"),
            (
                |s| s.public_url = Some("registry.example".into()),
                "public_url",
            ),
            (
                |s| s.database_max_connections = 0,
                "database_max_connections",
            ),
        ];
        for (change, setting) in cases {
            let mut settings = Settings::default();
            change(&mut settings);
            assert_eq!(settings.check().unwrap_err().setting, setting);
        }
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        let config = Settings {
            database_url: Some("postgres://u:secret@h/db".into()),
            ..Settings::default()
        }
        .check()
        .unwrap();
        assert!(!format!("{config:?}").contains("secret"));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the error type
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("berth.toml", "listen = \"127.0.0.1:6000\"\npublic_url = \"https://file.example\"\ndata_dir = \"/srv\"")?;
            jail.set_env("BERTH_PUBLIC_URL", "https://env.example/");
            let config = Config::load(
                Some(Path::new("berth.toml")),
                Overrides {
                    listen: Some("127.0.0.1:7000".into()),
                    ..Overrides::default()
                },
            )
            .unwrap();
            assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
            assert_eq!(config.public_url.as_deref(), Some("https://env.example"));
            assert_eq!(config.database_url, "sqlite:/srv/berth.db");
            jail.create_file("typo.toml", "lisen = \"x\"")?;
            let err = Config::load(Some(Path::new("typo.toml")), Overrides::default()).unwrap_err();
            assert!(err.to_string().contains("lisen"), "{err}");
            let err =
                Config::load(Some(Path::new("missing.toml")), Overrides::default()).unwrap_err();
            assert_eq!(err.setting, "config");
            Ok(())
        });
    }
}
