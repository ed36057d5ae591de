//! `[events]` (how deliveries are retried and kept), `[[webhooks]]` (the
//! config file's endpoints, which hear every namespace) and `[audit]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metadata::{EndpointSpec, EventFormat};
use crate::setting::Invalid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    /// The wait before the first retry; each retry doubles it, with jitter.
    #[serde(with = "humantime_serde")]
    pub retry_initial: Duration,
    /// The longest wait between two attempts.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// How long an event is retried before it goes to the dead-letter list.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// How long delivered deliveries stay listed before they are pruned.
    #[serde(with = "humantime_serde")]
    pub keep_delivered: Duration,
    /// How long dead deliveries stay, to be redelivered.
    #[serde(with = "humantime_serde")]
    pub keep_dead: Duration,
    /// How often each instance looks for due work (new events wake it sooner).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Deliveries one instance sends at once.
    pub concurrency: u32,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(600),
            max_age: Duration::from_secs(3 * 24 * 3600),
            keep_delivered: Duration::from_secs(24 * 3600),
            keep_dead: Duration::from_secs(30 * 24 * 3600),
            poll_interval: Duration::from_secs(1),
            concurrency: 8,
        }
    }
}

impl EventSettings {
    pub fn check(self) -> Result<EventSettings, Invalid> {
        for (key, value) in [
            ("retry_initial", self.retry_initial),
            ("retry_max", self.retry_max),
            ("max_age", self.max_age),
            ("poll_interval", self.poll_interval),
        ] {
            if value.is_zero() {
                return Err(Invalid::new(key, "use a positive duration"));
            }
        }
        if self.retry_max < self.retry_initial {
            return Err(Invalid::new(
                "retry_max",
                "must not be shorter than retry_initial",
            ));
        }
        if !(1..=256).contains(&self.concurrency) {
            return Err(Invalid::new("concurrency", "use 1 to 256"));
        }
        Ok(self)
    }
}

/// One `[[webhooks]]` entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub name: String,
    pub url: String,
    /// The signing secret itself, or where to read it from (one of the three).
    pub secret: Option<String>,
    pub secret_file: Option<PathBuf>,
    pub secret_env: Option<String>,
    #[serde(default)]
    pub format: EventFormat,
    /// `*` patterns of repositories (`team/*`); every repository when empty.
    #[serde(default)]
    pub repositories: Vec<String>,
    /// Events (`push`, `delete`, `mount`, `pull`, `create`, or Berth's own
    /// names); all but pulls when empty.
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub ignore_media_types: Vec<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Names the endpoint and its URL only: never the secret or the headers
/// (which may carry credentials).
impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl WebhookSettings {
    /// The endpoint as stored, its secret read from where it is kept.
    pub fn check(&self) -> Result<EndpointSpec, Invalid> {
        let secret = match (&self.secret, &self.secret_file, &self.secret_env) {
            (Some(secret), None, None) => secret.clone(),
            (None, Some(path), None) => std::fs::read_to_string(path)
                .map_err(|e| {
                    Invalid::new(
                        "secret_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?
                .trim()
                .to_string(),
            (None, None, Some(name)) => std::env::var(name)
                .map_err(|_| Invalid::new("secret_env", format!("`{name}` is not set")))?,
            _ => {
                return Err(Invalid::new(
                    "secret",
                    "give exactly one of secret, secret_file and secret_env",
                ));
            }
        };
        let mut spec = EndpointSpec {
            namespace: String::new(),
            name: self.name.clone(),
            url: self.url.clone(),
            secret,
            format: self.format,
            repositories: self.repositories.clone(),
            actions: self.actions.clone(),
            ignore_media_types: self.ignore_media_types.clone(),
            headers: self.headers.clone().into_iter().collect(),
            timeout_ms: self.timeout.as_millis().min(i64::MAX as u128) as i64,
        };
        super::endpoint::check(&mut spec)
            .map_err(|message| Invalid::new("webhooks", format!("`{}`: {message}", self.name)))?;
        Ok(spec)
    }
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// How long audit rows are kept.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// Also write each row as a JSON line: `stdout`, or a file to append to.
    pub output: Option<String>,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            retention: Duration::from_secs(90 * 24 * 3600),
            output: None,
        }
    }
}

impl AuditSettings {
    pub fn check(self) -> Result<AuditSettings, Invalid> {
        if self.retention.is_zero() {
            return Err(Invalid::new("retention", "use a positive duration"));
        }
        if self.output.as_deref() == Some("") {
            return Err(Invalid::new("output", "use `stdout` or a file path"));
        }
        Ok(self)
    }
}

/// The checked settings the events worker runs with.
#[derive(Debug, Clone, Default)]
pub struct EventsConfig {
    pub settings: EventSettings,
    pub webhooks: Vec<EndpointSpec>,
    pub audit: AuditSettings,
}
