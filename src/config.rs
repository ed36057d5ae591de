//! Settings: built-in defaults, then a TOML file, then `BERTH_*` environment
//! variables, then command-line flags, each overriding the one before.
//!
//! A few general settings sit at the top level (`listen`, `data_dir`,
//! `public_url`, `shutdown_timeout`); the rest are in sections
//! (`[database]`, `[storage]`, `[s3]`, `[auth]`, `[gc]`, `[http]`, `[tls]`,
//! `[ui]`, `[log]`), each
//! defined, defaulted and checked by the module that owns it. This module
//! composes them, reads the layers, and names a setting in an error as the
//! user wrote it. The environment variable of a setting is derived from its
//! place: `BERTH_<SECTION>_<KEY>` (`BERTH_AUTH_TOKEN_LIFETIME`), or
//! `BERTH_<KEY>` at the top level; other `BERTH_*` variables are not ours
//! and are ignored. The flat names used before sections existed are still
//! read ([`LEGACY`]), with a warning.
//!
//! Everything is checked here, so the server never starts half-configured:
//! a bad value stops start-up with one line naming the setting.
//!
//! Used by `cli` and `server`; calls only the settings types of `metadata`,
//! `storage`, `auth`, `gc`, `listener`, `tls` and `ui`, and the leaf `setting`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::error::{Actual, Kind};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Provider};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthConfig, AuthSettings};
use crate::cache::{CacheConfig, CacheSettings, ProxySettings};
use crate::events::{AuditSettings, EventSettings, EventsConfig, WebhookSettings};
use crate::gc::GcConfig;
use crate::listener::HttpConfig;
use crate::metadata::DatabaseSettings;
use crate::setting::Invalid;
use crate::storage::{S3Settings, StorageSettings};
use crate::tls::{TlsConfig, TlsSettings};
use crate::ui::UiSettings;

pub use crate::setting::redact_url;
pub use crate::storage::StorageConfig;

/// The settings as a file or the environment spell them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Address and port to listen on.
    pub listen: String,
    /// Where the embedded defaults keep their data.
    pub data_dir: PathBuf,
    /// External base URL used in `Location` headers, e.g. `https://registry.example`.
    pub public_url: Option<String>,
    /// How long shutdown waits for requests in flight, e.g. `30s`.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    pub database: DatabaseSettings,
    pub storage: StorageSettings,
    pub s3: S3Settings,
    pub auth: AuthSettings,
    pub gc: GcConfig,
    pub http: HttpConfig,
    pub tls: TlsSettings,
    pub ui: UiSettings,
    pub log: LogSettings,
    pub events: EventSettings,
    /// The `[[webhooks]]` endpoints, which hear every namespace.
    pub webhooks: Vec<WebhookSettings>,
    pub audit: AuditSettings,
    pub cache: CacheSettings,
    /// The `[[proxy]]` namespaces, each another registry's images.
    pub proxy: Vec<ProxySettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:5000".into(),
            data_dir: PathBuf::from("./data"),
            public_url: None,
            shutdown_timeout: Duration::from_secs(30),
            database: DatabaseSettings::default(),
            storage: StorageSettings::default(),
            s3: S3Settings::default(),
            auth: AuthSettings::default(),
            gc: GcConfig::default(),
            http: HttpConfig::default(),
            tls: TlsSettings::default(),
            ui: UiSettings::default(),
            log: LogSettings::default(),
            events: EventSettings::default(),
            webhooks: Vec::new(),
            audit: AuditSettings::default(),
            cache: CacheSettings::default(),
            proxy: Vec::new(),
        }
    }
}

/// `[log]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (human-readable, the default) or `json` (one object per line).
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The flat names settings had before they were put in sections, each with
/// its place now. Still read, at the top level of the file and as
/// `BERTH_<NAME>` in the environment, with a warning naming the new one.
/// Only for compatibility: a new setting never gets an entry here.
pub const LEGACY: [(&str, &str); 21] = [
    ("database_url", "database.url"),
    ("database_max_connections", "database.max_connections"),
    ("storage", "storage.location"),
    ("fsync", "storage.fsync"),
    ("s3_endpoint", "s3.endpoint"),
    ("s3_region", "s3.region"),
    ("s3_access_key_id", "s3.access_key_id"),
    ("s3_secret_access_key", "s3.secret_access_key"),
    ("s3_allow_http", "s3.allow_http"),
    ("s3_virtual_hosted_style", "s3.virtual_hosted_style"),
    // A number of MiB then, a size (`16MiB`) now.
    ("s3_part_size_mib", "s3.part_size"),
    ("s3_redirect", "s3.redirect"),
    ("auth", "auth.mode"),
    ("token_lifetime", "auth.token_lifetime"),
    ("token_service", "auth.token_service"),
    ("signing_key_file", "auth.signing_key_file"),
    ("admin_password", "auth.admin_password"),
    ("gc_interval", "gc.interval"),
    ("gc_grace", "gc.grace"),
    ("upload_expiry", "gc.upload_expiry"),
    ("log_format", "log.format"),
];

/// Values given as command-line flags; unset ones leave lower layers alone.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub storage: Option<String>,
    pub public_url: Option<String>,
}

/// Settings after checking: what the server runs with.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// Where `berth tls self-signed` writes (the stores' own paths are in
    /// `database_url` and `storage`).
    pub data_dir: PathBuf,
    pub database_url: String,
    pub storage: StorageConfig,
    pub fsync: bool,
    pub public_url: Option<String>,
    pub database_max_connections: u32,
    pub auth: AuthConfig,
    pub log_format: LogFormat,
    pub shutdown_timeout: Duration,
    pub gc: GcConfig,
    pub http: HttpConfig,
    /// `None`: plain HTTP.
    pub tls: Option<TlsConfig>,
    pub events: EventsConfig,
    pub cache: CacheConfig,
    /// Said while loading (old names still in use), for the caller to log
    /// once logging is set up.
    pub warnings: Vec<String>,
}

/// `Debug` that never prints credentials embedded in the database URL.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("storage", &self.storage)
            .field("fsync", &self.fsync)
            .field("public_url", &self.public_url)
            .field("database_max_connections", &self.database_max_connections)
            .field("auth", &self.auth)
            .field("log_format", &self.log_format)
            .field("gc", &self.gc)
            .field("http", &self.http)
            .field("tls", &self.tls)
            .field("events", &self.events)
            .field("cache", &self.cache)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// A setting that stops start-up, named as the user wrote it.
#[derive(Debug)]
pub struct ConfigError {
    /// As written: `auth.token_lifetime`, or the flat name (`token_lifetime`)
    /// when the value came from one, or `config` for the file itself.
    pub setting: String,
    /// Where it is now: `auth.token_lifetime`.
    pub key: String,
    /// The command-line flag the value came from, e.g. `--database-url`.
    pub flag: Option<&'static str>,
    pub reason: String,
}

impl ConfigError {
    fn at(key: &str, reason: impl Into<String>) -> Self {
        Self {
            setting: key.to_string(),
            key: key.to_string(),
            flag: None,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid setting `{}`", self.setting)?;
        match self.flag {
            Some(flag) if self.setting == self.key => write!(f, " (from `{flag}`)")?,
            Some(flag) => write!(f, " (from `{flag}`; `{}` in a file)", self.key)?,
            None if self.setting == self.key => {}
            None => write!(f, " (now `{}`)", self.key)?,
        }
        write!(f, ": {}", self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// A section's error, named from the top: `auth.token_lifetime`.
fn in_section(section: &'static str) -> impl Fn(Invalid) -> ConfigError {
    move |e| {
        ConfigError::at(
            &format!("{}.{}", e.section.unwrap_or(section), e.key),
            e.reason,
        )
    }
}

impl Config {
    /// Loads settings from every layer. `file` is the `--config`/`BERTH_CONFIG` path.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> Result<Config, ConfigError> {
        let environment = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        Self::load_from(file, environment, overrides)
    }

    /// [`Config::load`] with the environment given.
    pub fn load_from(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        overrides: Overrides,
    ) -> Result<Config, ConfigError> {
        let keys = Keys::of_defaults();
        let mut layers = Vec::new();
        if let Some(file) = file {
            layers.push(Layer::file(&keys, file)?);
        }
        layers.push(Layer::environment(&keys, environment)?);
        layers.push(Layer::flags(overrides));

        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let mut written = BTreeMap::new();
        let mut warnings = Vec::new();
        for layer in layers {
            figment = figment.merge(Serialized::defaults(&layer.values));
            for key in layer.set {
                let how = layer.written.get(&key).copied().unwrap_or(Written::Key);
                written.insert(key, how);
            }
            warnings.extend(layer.warnings);
        }
        let named = |e: ConfigError| named_as_written(e, &written);
        let settings: Settings = figment.extract().map_err(|e| named(extraction_error(e)))?;
        let mut config = settings.check().map_err(named)?;
        warnings.append(&mut config.warnings);
        config.warnings = warnings;
        Ok(config)
    }
}

impl Settings {
    /// Checks every section; the same check whether the settings came from
    /// [`Config::load`] or were built in code.
    pub fn check(self) -> Result<Config, ConfigError> {
        let listen = self.listen.parse::<SocketAddr>().map_err(|_| {
            ConfigError::at(
                "listen",
                format!("`{}` is not an address such as 0.0.0.0:5000", self.listen),
            )
        })?;
        let public_url = match crate::setting::non_empty(self.public_url) {
            None => None,
            Some(raw) => {
                let url = url::Url::parse(&raw)
                    .map_err(|e| ConfigError::at("public_url", format!("`{raw}`: {e}")))?;
                if !matches!(url.scheme(), "http" | "https")
                    || url.query().is_some()
                    || url.host().is_none()
                {
                    return Err(ConfigError::at(
                        "public_url",
                        format!("`{raw}` must be an http(s) URL without a query"),
                    ));
                }
                Some(raw.trim_end_matches('/').to_string())
            }
        };
        let database = self
            .database
            .check(&self.data_dir)
            .map_err(in_section("database"))?;
        let fsync = self.storage.fsync;
        let storage = self
            .storage
            .check(&self.data_dir, self.s3)
            .map_err(in_section("storage"))?;
        let mut auth = self
            .auth
            .check(public_url.as_deref())
            .map_err(in_section("auth"))?;
        // Sessions are auth's; how long they last is a web UI setting.
        auth.session_lifetime = self.ui.check().map_err(in_section("ui"))?.session_lifetime;
        let gc = self.gc.check().map_err(in_section("gc"))?;
        let http = self.http.check().map_err(in_section("http"))?;
        let tls = self.tls.check().map_err(in_section("tls"))?;
        let events = EventsConfig {
            settings: self.events.check().map_err(in_section("events"))?,
            webhooks: self
                .webhooks
                .iter()
                .map(|w| w.check())
                .collect::<Result<_, _>>()
                .map_err(in_section("webhooks"))?,
            audit: self.audit.clone().check().map_err(in_section("audit"))?,
        };
        let cache = self
            .cache
            .clone()
            .check(&self.proxy)
            .map_err(in_section("cache"))?;
        let mut warnings = Vec::new();
        if tls.is_some()
            && let Some(url) = public_url.as_deref().filter(|u| u.starts_with("http://"))
        {
            warnings.push(format!(
                "`public_url` is {url} but Berth serves HTTPS: clients will be sent to plain HTTP for tokens and uploads"
            ));
        }
        Ok(Config {
            listen,
            data_dir: self.data_dir,
            database_url: database.url,
            storage,
            fsync,
            public_url,
            database_max_connections: database.max_connections,
            auth,
            log_format: self.log.format,
            shutdown_timeout: self.shutdown_timeout,
            gc,
            http,
            tls,
            events,
            cache,
            warnings,
        })
    }
}

/// How a value was given, so that an error names it as the user wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Written {
    /// Under its own name.
    Key,
    /// Under its flat name from [`LEGACY`].
    Legacy(&'static str),
    /// As a flag, which an error names by the flag's flat setting name
    /// (`database_url` for `--database-url`).
    Flag(&'static str, &'static str),
}

fn named_as_written(mut error: ConfigError, written: &BTreeMap<String, Written>) -> ConfigError {
    match written.get(&error.key) {
        Some(Written::Legacy(old)) => error.setting = old.to_string(),
        Some(Written::Flag(name, flag)) => {
            error.setting = name.to_string();
            error.flag = Some(flag);
        }
        Some(Written::Key) | None => {}
    }
    error
}

/// What the settings look like: every key (`listen`, `auth.token_lifetime`)
/// and section, read from the serialized defaults, so a new field is known
/// (and gets its variable) with nothing else to update.
struct Keys {
    /// Top-level keys and `section.key`s.
    all: BTreeSet<String>,
    sections: BTreeSet<String>,
    /// `BERTH_AUTH_TOKEN_LIFETIME` → `auth.token_lifetime`.
    by_env: BTreeMap<String, String>,
}

impl Keys {
    fn of_defaults() -> Self {
        let defaults = serde_json::to_value(Settings::default()).expect("settings serialize");
        let serde_json::Value::Object(top) = defaults else {
            unreachable!("settings are a struct")
        };
        let mut keys = Keys {
            all: BTreeSet::new(),
            sections: BTreeSet::new(),
            by_env: BTreeMap::new(),
        };
        for (name, value) in top {
            match value {
                serde_json::Value::Object(section) => {
                    keys.all
                        .extend(section.keys().map(|key| format!("{name}.{key}")));
                    keys.sections.insert(name);
                }
                // Lists of tables (`[[webhooks]]`) are written in the file only.
                serde_json::Value::Array(_) => {}
                _ => {
                    keys.all.insert(name);
                }
            }
        }
        keys.by_env = keys.all.iter().map(|k| (env_name(k), k.clone())).collect();
        keys
    }
}

/// `auth.token_lifetime` → `BERTH_AUTH_TOKEN_LIFETIME`; `listen` → `BERTH_LISTEN`.
pub fn env_name(key: &str) -> String {
    format!("BERTH_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Every setting's environment variable, `BERTH_LISTEN` to `BERTH_LOG_FORMAT`.
pub fn env_names() -> Vec<String> {
    Keys::of_defaults().by_env.into_keys().collect()
}

/// One layer's values, under the settings' own key paths.
#[derive(Default)]
struct Layer {
    /// Nested as the settings are: `{"auth": {"token_lifetime": ...}}`.
    values: Dict,
    /// Every key this layer sets.
    set: Vec<String>,
    /// Keys not given under their own name.
    written: BTreeMap<String, Written>,
    warnings: Vec<String>,
}

impl Layer {
    fn insert(&mut self, key: &str, value: Value) {
        match key.split_once('.') {
            Some((section, name)) => {
                let entry = self
                    .values
                    .entry(section.to_string())
                    .or_insert_with(|| Value::from(Dict::new()));
                if let Value::Dict(_, dict) = entry {
                    dict.insert(name.to_string(), value);
                }
            }
            None => {
                self.values.insert(key.to_string(), value);
            }
        }
        self.set.push(key.to_string());
    }

    fn has(&self, key: &str) -> bool {
        self.set.iter().any(|k| k == key)
    }

    /// A value under an old flat name: taken unless the new name is also
    /// in this layer, which wins. `old` and `new` are how this layer spells
    /// the two names, for the warning.
    fn insert_legacy(
        &mut self,
        (old, key): (&'static str, &'static str),
        value: Value,
        spelled: (&str, &str),
    ) -> Result<(), ConfigError> {
        let (old_spelled, new_spelled) = spelled;
        if self.has(key) {
            self.warnings.push(format!(
                "{old_spelled} is ignored: it is the old name of {new_spelled}, which is also set and wins"
            ));
            return Ok(());
        }
        let value = legacy_value(old, value).map_err(|reason| ConfigError {
            setting: old.to_string(),
            key: key.to_string(),
            flag: None,
            reason,
        })?;
        self.warnings.push(format!(
            "{old_spelled} is an old name, still read for now: use {new_spelled} instead"
        ));
        self.insert(key, value);
        self.written.insert(key.to_string(), Written::Legacy(old));
        Ok(())
    }

    /// The TOML file. Unknown keys stay in, for the settings to refuse by name.
    fn file(keys: &Keys, file: &Path) -> Result<Layer, ConfigError> {
        if !file.is_file() {
            return Err(ConfigError::at(
                "config",
                format!("file {} does not exist", file.display()),
            ));
        }
        let read = Toml::file_exact(file).data().map_err(|e| {
            let message = one_line(&e.to_string());
            ConfigError::at("config", format!("{}: {message}", file.display()))
        })?;
        let top = read.into_values().next().unwrap_or_default();
        let mut layer = Layer::default();
        let mut legacy = Vec::new();
        for (name, value) in top {
            if keys.sections.contains(&name) && value.as_dict().is_some() {
                for (key, value) in value.into_dict().unwrap_or_default() {
                    layer.insert(&format!("{name}.{key}"), value);
                }
            } else if let Some(entry) = legacy_entry(&name).filter(|_| !keys.all.contains(&name)) {
                legacy.push((entry, value));
            } else {
                layer.insert(&name, value);
            }
        }
        let at = file.display();
        for ((old, key), value) in legacy {
            let spelled = (format!("{at}: `{old}`"), format!("`{key}`"));
            layer.insert_legacy((old, key), value, (&spelled.0, &spelled.1))?;
        }
        Ok(layer)
    }

    /// `BERTH_*` variables named after a setting, or after an old flat name.
    fn environment(
        keys: &Keys,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layer, ConfigError> {
        let mut layer = Layer::default();
        let mut legacy = Vec::new();
        // Sorted, so the warnings come in the same order every time.
        let environment: BTreeMap<String, String> = environment.into_iter().collect();
        for (name, text) in environment {
            let name = name.to_ascii_uppercase();
            let Some(rest) = name.strip_prefix("BERTH_") else {
                continue;
            };
            let value: Value = text.parse().expect("parsing a value is infallible");
            if let Some(key) = keys.by_env.get(&name) {
                layer.insert(key, value);
            } else if let Some(entry) = legacy_entry(&rest.to_ascii_lowercase()) {
                legacy.push((name.clone(), entry, value));
            }
        }
        for (name, (old, key), value) in legacy {
            let new = format!("{} (`{key}`)", env_name(key));
            layer.insert_legacy((old, key), value, (&name, &new))?;
        }
        Ok(layer)
    }

    /// The flags, under the flat names their errors show, with no warning.
    fn flags(overrides: Overrides) -> Layer {
        let mut layer = Layer::default();
        let Overrides {
            listen,
            data_dir,
            database_url,
            storage,
            public_url,
        } = overrides;
        let flags = [
            ("listen", "listen", "--listen", listen.map(Value::from)),
            (
                "data_dir",
                "data_dir",
                "--data-dir",
                data_dir.map(|d| Value::from(d.to_string_lossy().into_owned())),
            ),
            (
                "database.url",
                "database_url",
                "--database-url",
                database_url.map(Value::from),
            ),
            (
                "storage.location",
                "storage",
                "--storage",
                storage.map(Value::from),
            ),
            (
                "public_url",
                "public_url",
                "--public-url",
                public_url.map(Value::from),
            ),
        ];
        for (key, name, flag, value) in flags {
            if let Some(value) = value {
                layer.insert(key, value);
                layer
                    .written
                    .insert(key.to_string(), Written::Flag(name, flag));
            }
        }
        layer
    }
}

fn legacy_entry(name: &str) -> Option<(&'static str, &'static str)> {
    LEGACY.iter().copied().find(|(old, _)| *old == name)
}

/// An old value in the form its new setting takes.
fn legacy_value(old: &str, value: Value) -> Result<Value, String> {
    if old != "s3_part_size_mib" {
        return Ok(value);
    }
    let mebibytes = value
        .to_u128()
        .or_else(|| value.to_i128().and_then(|n| u128::try_from(n).ok()))
        .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()));
    match mebibytes {
        Some(n) => Ok(Value::from(format!("{n}MiB"))),
        None => Err(format!(
            "{} is not a whole number of MiB",
            shown(&value.to_actual())
        )),
    }
}

/// A figment error, named by its key path, in words.
fn extraction_error(e: figment::Error) -> ConfigError {
    let mut path = e.path.clone();
    let reason = match &e.kind {
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("not a setting (expected {})", one_of(expected))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("{} is not {}", shown(actual), expected_words(expected))
        }
        Kind::UnknownVariant(actual, expected) => {
            format!("`{actual}` is not {}", one_of(expected))
        }
        Kind::Message(message) => message.clone(),
        other => other.to_string(),
    };
    let key = if path.is_empty() {
        "config".to_string()
    } else {
        path.join(".")
    };
    ConfigError::at(&key, reason)
}

fn shown(actual: &Actual) -> String {
    match actual {
        Actual::Str(s) => format!("`{s}`"),
        Actual::Bool(b) => format!("`{b}`"),
        Actual::Unsigned(n) => format!("`{n}`"),
        Actual::Signed(n) => format!("`{n}`"),
        Actual::Float(n) => format!("`{n}`"),
        Actual::Map => "a table".into(),
        Actual::Seq => "a list".into(),
        other => other.to_string(),
    }
}

/// serde's names of what it expected, as a sentence needs them.
fn expected_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number".into(),
        "a boolean" => "`true` or `false`".into(),
        "a duration" => "a duration such as 30s, 5m or 24h".into(),
        other if other.starts_with("struct ") => "a table (a section)".into(),
        other => other.into(),
    }
}

/// `` `token` or `none` ``.
fn one_of(names: &[&str]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match names.split_last() {
        None => "nothing".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// A multi-line message (a TOML parse error draws the line) as one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        // Not the drawing: `  |`, `1 | listen = = 1`, `  ^`.
        .filter(|l| {
            let drawn = l
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !l.is_empty() && !drawn.starts_with('|') && !l.chars().all(|c| c == '^')
        })
        .collect::<Vec<_>>()
        .join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    type Env<'a> = &'a [(&'a str, &'a str)];

    fn load(file: Option<&str>, env: Env, overrides: Overrides) -> Result<Config, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load_from(file.map(Path::new), env, overrides)
    }

    fn load_env(env: Env) -> Result<Config, ConfigError> {
        load(None, env, Overrides::default())
    }

    #[test]
    fn defaults_use_the_data_dir() {
        let config = Settings::default().check().unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:5000");
        assert_eq!(config.database_url, "sqlite:./data/berth.db");
        assert_eq!(config.database_max_connections, 16);
        assert_eq!(
            config.storage,
            StorageConfig::Filesystem(PathBuf::from("./data/blobs"))
        );
        assert!(config.fsync);
        assert_eq!(config.public_url, None);
        assert!(config.auth.enabled);
        assert_eq!(config.auth.token_lifetime, Duration::from_secs(300));
        assert_eq!(config.auth.session_lifetime, Duration::from_secs(12 * 3600));
        assert_eq!(config.gc, GcConfig::default());
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(config.http, HttpConfig::default());
        assert_eq!(config.tls, None);
        assert!(config.warnings.is_empty());
    }

    #[test]
    fn bad_values_name_the_setting() {
        type Change = fn(&mut Settings);
        let cases: [(Change, &str); 10] = [
            (|s| s.listen = "nope".into(), "listen"),
            (
                |s| s.database.url = Some("mysql://x".into()),
                "database.url",
            ),
            (
                |s| s.storage.location = Some("ftp://x".into()),
                "storage.location",
            ),
            (
                |s| {
                    s.storage.location = Some("s3://bucket".into());
                    s.s3.part_size = bytesize::ByteSize::mib(4);
                },
                "s3.part_size",
            ),
            (
                |s| s.public_url = Some("registry.example".into()),
                "public_url",
            ),
            (
                |s| s.auth.token_lifetime = Duration::from_secs(1),
                "auth.token_lifetime",
            ),
            (|s| s.gc.interval = Some(Duration::ZERO), "gc.interval"),
            (
                |s| s.ui.session_lifetime = Duration::ZERO,
                "ui.session_lifetime",
            ),
            (
                |s| s.http.idle_timeout = Duration::ZERO,
                "http.idle_timeout",
            ),
            (
                |s| s.tls.cert_file = Some("server.crt".into()),
                "tls.key_file",
            ),
        ];
        for (change, setting) in cases {
            let mut settings = Settings::default();
            change(&mut settings);
            let err = settings.check().unwrap_err();
            assert_eq!(err.setting, setting);
            assert_eq!(
                err.to_string().split(':').next().unwrap(),
                format!("invalid setting `{setting}`")
            );
        }
    }

    #[test]
    fn no_password_in_debug() {
        let mut settings = Settings::default();
        settings.database.url = Some("postgres://u:secret@h/db".into());
        settings.auth.admin_password = Some("admin-secret".into());
        settings.s3.secret_access_key = Some("s3-secret".into());
        assert!(!format!("{settings:?}").contains("secret@"));
        assert!(!format!("{settings:?}").contains("admin-secret"));
        assert!(!format!("{settings:?}").contains("s3-secret"));
        let config = settings.check().unwrap();
        assert!(!format!("{config:?}").contains("secret"), "{config:?}");
    }

    #[test]
    fn env_names_come_from_the_settings_shape() {
        let keys = Keys::of_defaults();
        assert_eq!(
            keys.by_env["BERTH_AUTH_TOKEN_LIFETIME"],
            "auth.token_lifetime"
        );
        assert_eq!(keys.by_env["BERTH_S3_PART_SIZE"], "s3.part_size");
        assert_eq!(keys.by_env["BERTH_DATABASE_URL"], "database.url");
        assert_eq!(keys.by_env["BERTH_LISTEN"], "listen");
        assert_eq!(keys.by_env["BERTH_SHUTDOWN_TIMEOUT"], "shutdown_timeout");
        // No two settings share a variable.
        assert_eq!(keys.by_env.len(), keys.all.len());
        let sections: Vec<&str> = keys.sections.iter().map(String::as_str).collect();
        assert_eq!(
            sections,
            [
                "audit", "auth", "cache", "database", "events", "gc", "http", "log", "s3",
                "storage", "tls", "ui"
            ]
        );

        let config = load_env(&[
            ("BERTH_AUTH_TOKEN_LIFETIME", "10m"),
            ("BERTH_LISTEN", "127.0.0.1:6000"),
            ("BERTH_S3_PART_SIZE", "16MiB"),
            ("BERTH_STORAGE_LOCATION", "s3://bucket/prefix"),
            ("BERTH_S3_ALLOW_HTTP", "true"),
            ("BERTH_GC_INTERVAL", "off"),
            ("BERTH_LOG_FORMAT", "json"),
            ("BERTH_TLS_CERT_FILE", "/etc/berth/server.crt"),
            ("BERTH_TLS_KEY_FILE", "/etc/berth/server.key"),
            ("BERTH_HTTP_MAX_CONNECTIONS", "100"),
            ("BERTH_UI_SESSION_LIFETIME", "8h"),
            ("BERTH_HTTP_HEADER_READ_TIMEOUT", "5s"),
        ])
        .unwrap();
        assert_eq!(config.auth.token_lifetime, Duration::from_secs(600));
        assert_eq!(config.listen.to_string(), "127.0.0.1:6000");
        let StorageConfig::S3(s3) = &config.storage else {
            panic!("not S3")
        };
        assert_eq!(
            (s3.bucket.as_str(), s3.prefix.as_str()),
            ("bucket", "prefix")
        );
        assert_eq!(s3.part_size, 16 * 1024 * 1024);
        assert_eq!(s3.allow_http, Some(true));
        assert_eq!(config.gc.interval, None);
        assert_eq!(config.log_format, LogFormat::Json);
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert_file, PathBuf::from("/etc/berth/server.crt"));
        assert_eq!(tls.key_file, PathBuf::from("/etc/berth/server.key"));
        assert_eq!(config.http.max_connections, 100);
        assert_eq!(config.auth.session_lifetime, Duration::from_secs(8 * 3600));
        assert_eq!(config.http.header_read_timeout, Duration::from_secs(5));
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        assert_eq!(
            load_env(&[("BERTH_TLS_KEY_FILE", "/etc/berth/server.key")])
                .unwrap_err()
                .to_string(),
            "invalid setting `tls.cert_file`: is not set, but `tls.key_file` is: set both to serve HTTPS, or neither"
        );
    }

    #[test]
    fn other_berth_variables_are_ignored() {
        let config = load_env(&[
            ("BERTH_CONFIG", "/nowhere.toml"),
            ("BERTH_TEST_POSTGRES_URL", "postgres://x"),
            ("BERTH_BENCH_ROUNDS", "3"),
            ("BERTH_S3_WAIT_SECS", "60"),
            ("BERTH_AUTH_NOT_A_KEY", "x"),
            ("NOT_BERTH_LISTEN", "nope"),
        ])
        .unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:5000");
        assert!(config.warnings.is_empty());
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the error type
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "berth.toml",
                "listen = \"127.0.0.1:6000\"\npublic_url = \"https://file.example\"\ndata_dir = \"/srv\"\n\
                 [auth]\ntoken_lifetime = \"10m\"\ntoken_service = \"file\"\n[gc]\ngrace = \"1h\"\n",
            )?;
            let config = load(
                Some("berth.toml"),
                &[
                    ("BERTH_PUBLIC_URL", "https://env.example/"),
                    ("BERTH_AUTH_TOKEN_LIFETIME", "20m"),
                    ("BERTH_LISTEN", "127.0.0.1:6500"),
                ],
                Overrides {
                    listen: Some("127.0.0.1:7000".into()),
                    ..Overrides::default()
                },
            )
            .unwrap();
            // Flags over the environment over the file over the defaults.
            assert_eq!(config.listen.to_string(), "127.0.0.1:7000");
            assert_eq!(config.public_url.as_deref(), Some("https://env.example"));
            assert_eq!(config.auth.token_lifetime, Duration::from_secs(1200));
            assert_eq!(config.auth.service, "file");
            assert_eq!(config.gc.grace, Duration::from_secs(3600));
            assert_eq!(config.gc.upload_expiry, Duration::from_secs(24 * 3600));
            assert_eq!(config.database_url, "sqlite:/srv/berth.db");
            assert!(config.warnings.is_empty(), "{:?}", config.warnings);

            let err = load(Some("missing.toml"), &[], Overrides::default()).unwrap_err();
            assert_eq!(err.setting, "config");
            jail.create_file("broken.toml", "listen = = 1")?;
            let err = load(Some("broken.toml"), &[], Overrides::default()).unwrap_err();
            assert_eq!(err.setting, "config");
            assert_eq!(err.to_string().lines().count(), 1, "{err}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn unknown_keys_in_the_file_are_refused_by_name() {
        figment::Jail::expect_with(|jail| {
            for (text, setting) in [
                ("lisen = \"x\"", "lisen"),
                ("[auth]\ntokn_lifetime = \"5m\"", "auth.tokn_lifetime"),
                ("[cache]\nsize = 1", "cache.size"),
                ("[mirror]\nsize = 1", "mirror"),
                ("log = \"json\"", "log"),
            ] {
                jail.create_file("typo.toml", text)?;
                let err = load(Some("typo.toml"), &[], Overrides::default()).unwrap_err();
                assert_eq!(err.setting, setting, "{err}");
                assert_eq!(err.to_string().lines().count(), 1, "{err}");
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn old_flat_names_still_work_with_a_warning() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "old.toml",
                "token_lifetime = \"10m\"\nstorage = \"/srv/blobs\"\nauth = \"none\"\n\
                 s3_part_size_mib = 16\nupload_expiry = \"1h\"\nfsync = false\nlog_format = \"json\"\n\
                 database_max_connections = 4\ndatabase_url = \"sqlite:/srv/old.db\"\n",
            )?;
            let config = load(Some("old.toml"), &[], Overrides::default()).unwrap();
            assert_eq!(config.auth.token_lifetime, Duration::from_secs(600));
            assert_eq!(
                config.storage,
                StorageConfig::Filesystem(PathBuf::from("/srv/blobs"))
            );
            assert!(!config.auth.enabled);
            assert_eq!(config.gc.upload_expiry, Duration::from_secs(3600));
            assert!(!config.fsync);
            assert_eq!(config.log_format, LogFormat::Json);
            assert_eq!(config.database_max_connections, 4);
            assert_eq!(config.database_url, "sqlite:/srv/old.db");
            assert_eq!(config.warnings.len(), 9, "{:#?}", config.warnings);
            assert!(
                config
                    .warnings
                    .contains(&"old.toml: `token_lifetime` is an old name, still read for now: use `auth.token_lifetime` instead".to_string()),
                "{:#?}",
                config.warnings
            );

            jail.create_file(
                "part.toml",
                "storage = \"s3://bucket\"\ns3_part_size_mib = 16\n",
            )?;
            let config = load(Some("part.toml"), &[], Overrides::default()).unwrap();
            let StorageConfig::S3(s3) = &config.storage else {
                panic!("not S3")
            };
            assert_eq!(s3.part_size, 16 * 1024 * 1024);
            Ok(())
        });

        let config = load_env(&[
            ("BERTH_TOKEN_LIFETIME", "10m"),
            ("BERTH_AUTH", "none"),
            ("BERTH_STORAGE", "s3://bucket/old"),
            ("BERTH_S3_PART_SIZE_MIB", "32"),
            ("BERTH_UPLOAD_EXPIRY", "2h"),
            ("BERTH_FSYNC", "false"),
            ("BERTH_ADMIN_PASSWORD", "pw"),
            // The same name then and now: nothing to warn about.
            ("BERTH_DATABASE_URL", "sqlite:/tmp/x.db"),
            ("BERTH_GC_INTERVAL", "1h"),
            ("BERTH_S3_ENDPOINT", "http://127.0.0.1:9000"),
        ])
        .unwrap();
        assert_eq!(config.auth.token_lifetime, Duration::from_secs(600));
        assert!(!config.auth.enabled);
        assert_eq!(config.auth.admin_password.as_deref(), Some("pw"));
        let StorageConfig::S3(s3) = &config.storage else {
            panic!("not S3")
        };
        assert_eq!(s3.prefix, "old");
        assert_eq!(s3.part_size, 32 * 1024 * 1024);
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(config.gc.upload_expiry, Duration::from_secs(7200));
        assert_eq!(config.gc.interval, Some(Duration::from_secs(3600)));
        assert!(!config.fsync);
        assert_eq!(config.database_url, "sqlite:/tmp/x.db");
        assert_eq!(config.warnings.len(), 7, "{:#?}", config.warnings);
        assert!(config.warnings.contains(
            &"BERTH_TOKEN_LIFETIME is an old name, still read for now: use BERTH_AUTH_TOKEN_LIFETIME (`auth.token_lifetime`) instead"
                .to_string()
        ));
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn the_new_name_wins_over_the_old_one() {
        let config = load_env(&[
            ("BERTH_TOKEN_LIFETIME", "10m"),
            ("BERTH_AUTH_TOKEN_LIFETIME", "20m"),
            ("BERTH_STORAGE_LOCATION", "/new"),
            ("BERTH_STORAGE", "/old"),
        ])
        .unwrap();
        assert_eq!(config.auth.token_lifetime, Duration::from_secs(1200));
        assert_eq!(
            config.storage,
            StorageConfig::Filesystem(PathBuf::from("/new"))
        );
        assert_eq!(
            config.warnings,
            [
                "BERTH_STORAGE is ignored: it is the old name of BERTH_STORAGE_LOCATION (`storage.location`), which is also set and wins",
                "BERTH_TOKEN_LIFETIME is ignored: it is the old name of BERTH_AUTH_TOKEN_LIFETIME (`auth.token_lifetime`), which is also set and wins",
            ]
        );
        figment::Jail::expect_with(|jail| {
            jail.create_file("both.toml", "gc_grace = \"1h\"\n[gc]\ngrace = \"2h\"\n")?;
            let config = load(Some("both.toml"), &[], Overrides::default()).unwrap();
            assert_eq!(config.gc.grace, Duration::from_secs(7200));
            assert_eq!(
                config.warnings,
                [
                    "both.toml: `gc_grace` is ignored: it is the old name of `gc.grace`, which is also set and wins"
                ]
            );
            Ok(())
        });
    }

    #[test]
    fn errors_name_the_setting_as_written() {
        let message = |result: Result<Config, ConfigError>| result.unwrap_err().to_string();
        assert_eq!(
            message(load_env(&[("BERTH_TOKEN_LIFETIME", "forever")])),
            "invalid setting `token_lifetime` (now `auth.token_lifetime`): `forever` is not a duration such as 30s, 5m or 24h"
        );
        assert_eq!(
            message(load_env(&[("BERTH_AUTH_TOKEN_LIFETIME", "2d")])),
            "invalid setting `auth.token_lifetime`: `2days` is not a duration between 1m and 24h, such as 5m"
        );
        assert_eq!(
            message(load_env(&[("BERTH_AUTH", "maybe")])),
            "invalid setting `auth` (now `auth.mode`): `maybe` is not `token` or `none`"
        );
        assert_eq!(
            message(load_env(&[("BERTH_S3_PART_SIZE", "huge")])),
            "invalid setting `s3.part_size`: `huge` is not a size such as 8MiB"
        );
        assert_eq!(
            message(load_env(&[("BERTH_S3_PART_SIZE_MIB", "lots")])),
            "invalid setting `s3_part_size_mib` (now `s3.part_size`): `lots` is not a whole number of MiB"
        );
        assert_eq!(
            message(load_env(&[
                ("BERTH_STORAGE", "s3://bucket"),
                ("BERTH_S3_PART_SIZE_MIB", "2")
            ])),
            "invalid setting `s3_part_size_mib` (now `s3.part_size`): `2.0 MiB` is not between 5 MiB and 5 GiB"
        );
        assert_eq!(
            message(load_env(&[("BERTH_STORAGE_FSYNC", "sometimes")])),
            "invalid setting `storage.fsync`: `sometimes` is not `true` or `false`"
        );
        assert_eq!(
            message(load_env(&[("BERTH_DATABASE_MAX_CONNECTIONS", "many")])),
            "invalid setting `database.max_connections`: `many` is not a whole number"
        );
        let flag = load(
            None,
            &[],
            Overrides {
                database_url: Some("mysql://db".into()),
                ..Overrides::default()
            },
        );
        assert_eq!(
            message(flag),
            "invalid setting `database_url` (from `--database-url`; `database.url` in a file): `mysql://db` must start with sqlite: or postgres://"
        );
        let flag = load(
            None,
            &[],
            Overrides {
                listen: Some("nowhere".into()),
                ..Overrides::default()
            },
        );
        assert_eq!(
            message(flag),
            "invalid setting `listen` (from `--listen`): `nowhere` is not an address such as 0.0.0.0:5000"
        );
    }

    #[test]
    fn the_legacy_table_points_at_real_settings() {
        let keys = Keys::of_defaults();
        for (old, new) in LEGACY {
            assert!(keys.all.contains(new), "{new}");
            // An old name is never a setting today, though two are sections
            // (`storage`, `auth`): a string there is the old setting.
            assert!(!keys.all.contains(old), "{old}");
        }
    }

    /// README's configuration table lists every variable, and only those
    /// (deploy/check_deploy.py checks deployment files against it).
    #[test]
    fn the_readme_lists_every_variable() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md is readable");
        let table = readme
            .split("| setting | env | flag | default |")
            .nth(1)
            .expect("README has the settings table");
        let mut listed: Vec<String> = table
            .lines()
            .skip(2)
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.split('|').nth(2))
            .flat_map(|env| {
                env.split('`')
                    .filter(|w| w.starts_with("BERTH_"))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|name| name != "BERTH_CONFIG")
            .collect();
        listed.sort();
        assert_eq!(listed, env_names());
    }
}
