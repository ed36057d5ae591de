//! `[cache]` (what every proxy shares: timeouts and concurrency)
//! and `[[proxy]]` (one upstream each, served under a local namespace).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::oci::RepositoryName;
use crate::setting::Invalid;

/// `[cache]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// How long connecting to an upstream may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long an upstream may take to answer a request (its headers, and
    /// the whole body of a manifest, token or tag list), and the longest
    /// silence within a blob's body.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Requests one instance sends to one upstream at once; more wait.
    pub upstream_concurrency: u32,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            upstream_concurrency: 16,
        }
    }
}

/// One `[[proxy]]` entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// The local namespace it is served under (`hub`).
    pub namespace: String,
    /// The upstream registry's base URL (`https://registry-1.docker.io`).
    pub upstream: String,
    /// Put before every name upstream: `namespace = "team"` with
    /// `upstream_namespace = "acme/team"` serves `team/web` from `acme/team/web`.
    pub upstream_namespace: Option<String>,
    /// Serve this registry's images (`docker.io`) to engines that use Berth
    /// as their mirror (Docker's `registry-mirrors`, containerd's
    /// `hosts.toml`, which sends `?ns=`).
    pub mirror_of: Option<String>,
    /// Credentials for the upstream; the password itself, or where to read it.
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password_env: Option<String>,
    /// How long a tag's cached manifest is served without asking upstream.
    #[serde(default = "default_tag_ttl", with = "humantime_serde")]
    pub tag_ttl: Duration,
    /// Content not pulled for this long is collected.
    #[serde(default = "default_evict_after", with = "humantime_serde")]
    pub evict_after: Duration,
}

fn default_tag_ttl() -> Duration {
    Duration::from_secs(3600)
}

fn default_evict_after() -> Duration {
    Duration::from_secs(30 * 24 * 3600)
}

/// Names the namespace and upstream only: never the password.
impl std::fmt::Debug for ProxySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySettings")
            .field("namespace", &self.namespace)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// A checked proxy, as the cache runs it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub namespace: String,
    /// Without a trailing slash.
    pub upstream: url::Url,
    pub upstream_namespace: Option<String>,
    pub mirror_of: Option<String>,
    pub credentials: Option<(String, String)>,
    pub tag_ttl: Duration,
    pub evict_after: Duration,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("namespace", &self.namespace)
            .field("upstream", &self.upstream.as_str())
            .field("upstream_namespace", &self.upstream_namespace)
            .field("mirror_of", &self.mirror_of)
            .field("username", &self.credentials.as_ref().map(|(user, _)| user))
            .field("tag_ttl", &self.tag_ttl)
            .field("evict_after", &self.evict_after)
            .finish()
    }
}

/// The checked `[cache]` and `[[proxy]]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheConfig {
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub upstream_concurrency: u32,
    pub proxies: Vec<ProxyConfig>,
}

impl CacheSettings {
    pub fn check(self, proxies: &[ProxySettings]) -> Result<CacheConfig, Invalid> {
        for (key, value) in [
            ("connect_timeout", self.connect_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if value.is_zero() {
                return Err(Invalid::new(key, "use a positive duration"));
            }
        }
        if !(1..=1024).contains(&self.upstream_concurrency) {
            return Err(Invalid::new("upstream_concurrency", "use 1 to 1024"));
        }
        let proxies = proxies
            .iter()
            .map(ProxySettings::check)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.in_section("proxy"))?;
        for (i, proxy) in proxies.iter().enumerate() {
            let earlier = &proxies[..i];
            if earlier.iter().any(|p| p.namespace == proxy.namespace) {
                return Err(Invalid::new(
                    "namespace",
                    format!("`{}` is given to two proxies", proxy.namespace),
                )
                .in_section("proxy"));
            }
            if proxy.mirror_of.is_some() && earlier.iter().any(|p| p.mirror_of == proxy.mirror_of) {
                return Err(Invalid::new(
                    "mirror_of",
                    format!(
                        "two proxies mirror `{}`",
                        proxy.mirror_of.as_deref().unwrap_or_default()
                    ),
                )
                .in_section("proxy"));
            }
        }
        Ok(CacheConfig {
            connect_timeout: self.connect_timeout,
            request_timeout: self.request_timeout,
            upstream_concurrency: self.upstream_concurrency,
            proxies,
        })
    }
}

impl ProxySettings {
    pub fn check(&self) -> Result<ProxyConfig, Invalid> {
        let valid_path = |text: &str| format!("{text}/x").parse::<RepositoryName>().is_ok();
        if self.namespace.contains('/') || !valid_path(&self.namespace) {
            return Err(Invalid::new(
                "namespace",
                format!(
                    "`{}` is not a namespace (one path component of a repository name)",
                    self.namespace
                ),
            ));
        }
        let upstream = url::Url::parse(self.upstream.trim_end_matches('/'))
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .filter(|u| u.query().is_none() && u.username().is_empty())
            .ok_or_else(|| {
                Invalid::new(
                    "upstream",
                    format!(
                        "`{}` is not an http(s) URL without credentials or query",
                        self.upstream
                    ),
                )
            })?;
        if let Some(prefix) = &self.upstream_namespace
            && !valid_path(prefix)
        {
            return Err(Invalid::new(
                "upstream_namespace",
                format!("`{prefix}` is not a repository path"),
            ));
        }
        if let Some(host) = &self.mirror_of
            && (host.is_empty()
                || !host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c)))
        {
            return Err(Invalid::new(
                "mirror_of",
                format!("`{host}` is not a registry host name"),
            ));
        }
        let password = match (&self.password, &self.password_file, &self.password_env) {
            (None, None, None) => None,
            (Some(password), None, None) => Some(password.clone()),
            (None, Some(path), None) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| {
                        Invalid::new(
                            "password_file",
                            format!("cannot read {}: {e}", path.display()),
                        )
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None, Some(name)) => Some(
                std::env::var(name)
                    .map_err(|_| Invalid::new("password_env", format!("`{name}` is not set")))?,
            ),
            _ => {
                return Err(Invalid::new(
                    "password",
                    "give at most one of password, password_file and password_env",
                ));
            }
        };
        let credentials = match (&self.username, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (None, None) => None,
            _ => {
                return Err(Invalid::new(
                    "username",
                    "give both a username and a password, or neither",
                ));
            }
        };
        if self.evict_after.is_zero() {
            return Err(Invalid::new("evict_after", "use a positive duration"));
        }
        Ok(ProxyConfig {
            namespace: self.namespace.clone(),
            upstream,
            upstream_namespace: self.upstream_namespace.clone(),
            mirror_of: self.mirror_of.clone(),
            credentials,
            tag_ttl: self.tag_ttl,
            evict_after: self.evict_after,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy(namespace: &str, upstream: &str) -> ProxySettings {
        ProxySettings {
            namespace: namespace.into(),
            upstream: upstream.into(),
            upstream_namespace: None,
            mirror_of: None,
            username: None,
            password: None,
            password_file: None,
            password_env: None,
            tag_ttl: default_tag_ttl(),
            evict_after: default_evict_after(),
        }
    }

    #[test]
    fn proxies_are_checked() {
        let ok = proxy("hub", "https://registry-1.docker.io/")
            .check()
            .unwrap();
        assert_eq!(ok.upstream.as_str(), "https://registry-1.docker.io/");
        for (bad, key) in [
            (proxy("hub/x", "https://a.example"), "namespace"),
            (proxy("Hub", "https://a.example"), "namespace"),
            (proxy("hub", "ftp://a.example"), "upstream"),
            (proxy("hub", "https://u:p@a.example"), "upstream"),
            (
                ProxySettings {
                    username: Some("u".into()),
                    ..proxy("hub", "https://a.example")
                },
                "username",
            ),
        ] {
            assert_eq!(bad.check().unwrap_err().key, key, "{bad:?}");
        }
        let twice = [
            proxy("hub", "https://a.example"),
            proxy("hub", "https://b.example"),
        ];
        let error = CacheSettings::default().check(&twice).unwrap_err();
        assert_eq!((error.key, error.section), ("namespace", Some("proxy")));
        let debug = format!(
            "{:?}",
            ProxySettings {
                username: Some("u".into()),
                password: Some("hunter2".into()),
                ..proxy("hub", "https://a.example")
            }
            .check()
            .unwrap()
        );
        assert!(!debug.contains("hunter2"), "{debug}");
    }
}
