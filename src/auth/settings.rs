//! The `[auth]` settings: whether requests are checked, and the tokens.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::AuthConfig;
use crate::setting::{Invalid, non_empty};

/// `[auth]` as a file or the environment spell it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `token` (logins and tokens, the default) or `none` (no checks at all).
    pub mode: AuthMode,
    /// How long a registry token lives (1m to 24h).
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// The token audience; default: the host of `public_url`, else `berth`.
    pub token_service: Option<String>,
    /// PEM (PKCS#8, P-256) key that signs tokens; keys kept in the database otherwise.
    pub signing_key_file: Option<PathBuf>,
    /// Password of the `admin` user created on first start (random and printed once when unset).
    pub admin_password: Option<String>,
    /// Whether a login asking for offline access (`docker login`'s
    /// `offline_token=true`, OAuth2's `access_type=offline`) gets a refresh
    /// token. Off by default, as on Docker Hub, Harbor and GitLab: given
    /// one, Docker stores it instead of the password, and podman, buildah
    /// and skopeo then refuse that login. Refresh tokens issued earlier
    /// keep working either way.
    pub refresh_tokens: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Logins and registry tokens.
    Token,
    /// Every request is allowed: for a registry behind another gate.
    #[serde(rename = "none")]
    Off,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            mode: AuthMode::Token,
            token_lifetime: Duration::from_secs(5 * 60),
            token_service: None,
            signing_key_file: None,
            admin_password: None,
            refresh_tokens: false,
        }
    }
}

impl AuthSettings {
    /// `public_url` (checked already) names the default token service.
    pub fn check(self, public_url: Option<&str>) -> Result<AuthConfig, Invalid> {
        if !(60..=24 * 3600).contains(&self.token_lifetime.as_secs()) {
            return Err(Invalid::new(
                "token_lifetime",
                format!(
                    "`{}` is not a duration between 1m and 24h, such as 5m",
                    humantime::format_duration(self.token_lifetime)
                ),
            ));
        }
        let service = match non_empty(self.token_service) {
            Some(service) => service,
            None => public_url
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
            return Err(Invalid::new(
                "signing_key_file",
                format!("{} is not a file", path.display()),
            ));
        }
        Ok(AuthConfig {
            enabled: self.mode == AuthMode::Token,
            token_lifetime: self.token_lifetime,
            signing_key_file: self.signing_key_file,
            service,
            issuer: "berth".into(),
            admin_password: non_empty(self.admin_password),
            refresh_tokens: self.refresh_tokens,
            login_limits: Default::default(),
            // `[ui]`'s, set by `config`.
            session_lifetime: Duration::from_secs(12 * 3600),
        })
    }
}

/// Never prints the admin password.
impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("mode", &self.mode)
            .field("token_lifetime", &self.token_lifetime)
            .field("token_service", &self.token_service)
            .field("signing_key_file", &self.signing_key_file)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "***"),
            )
            .field("refresh_tokens", &self.refresh_tokens)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_tokens_for_five_minutes() {
        let config = AuthSettings::default().check(None).unwrap();
        assert!(config.enabled);
        assert_eq!(config.token_lifetime, Duration::from_secs(300));
        assert_eq!(config.service, "berth");
        assert_eq!(config.admin_password, None);
        assert!(!config.refresh_tokens, "no refresh tokens unless asked for");
        let off = AuthSettings {
            mode: AuthMode::Off,
            ..AuthSettings::default()
        };
        assert!(!off.check(None).unwrap().enabled);
    }

    #[test]
    fn the_service_defaults_to_the_public_host() {
        let check = |public_url| {
            AuthSettings::default()
                .check(Some(public_url))
                .unwrap()
                .service
        };
        assert_eq!(check("https://registry.example"), "registry.example");
        assert_eq!(check("http://localhost:5000/"), "localhost:5000");
        let named = AuthSettings {
            token_service: Some("berth-test".into()),
            ..AuthSettings::default()
        };
        assert_eq!(
            named
                .check(Some("https://registry.example"))
                .unwrap()
                .service,
            "berth-test"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        let check = |settings: AuthSettings| settings.check(None).unwrap_err();
        for seconds in [59, 24 * 3600 + 1] {
            let e = check(AuthSettings {
                token_lifetime: Duration::from_secs(seconds),
                ..AuthSettings::default()
            });
            assert_eq!(e.key, "token_lifetime");
            assert!(e.reason.contains("between 1m and 24h"), "{}", e.reason);
        }
        let e = check(AuthSettings {
            signing_key_file: Some("/nonexistent/key.pem".into()),
            ..AuthSettings::default()
        });
        assert_eq!(e.key, "signing_key_file");
    }

    #[test]
    fn no_password_in_debug() {
        let settings = AuthSettings {
            admin_password: Some("hunter22".into()),
            ..AuthSettings::default()
        };
        assert!(!format!("{settings:?}").contains("hunter22"));
        let config = settings.check(None).unwrap();
        assert_eq!(config.admin_password.as_deref(), Some("hunter22"));
        assert!(!format!("{config:?}").contains("hunter22"));
    }
}
