//! The pull-through cache: `[[proxy]]` namespaces whose repositories are
//! another registry's (Docker Hub, ghcr.io, a company registry), fetched
//! the first time a client asks and served from here afterwards, and
//! still served when the upstream fails.
//!
//! - Manifests: a digest's is kept for good; a tag's is served for
//!   `tag_ttl`, then confirmed by a `HEAD` (free on Docker Hub) and fetched
//!   again only when the digest moved. Bytes and media type as served
//!   upstream, so digests match.
//! - Blobs: fetched once per digest however many clients ask (one fill per
//!   instance, `fill.rs`; one instance at a time by a lease in
//!   `cache_fills`), streamed to every waiting client while written to the
//!   blob store, verified against the digest; only what clients ask for.
//! - An upstream that fails (429, 5xx, timeout, unreachable) is answered
//!   from the cache, stale tags included, and logged; only what was never
//!   cached gets an error.
//! - Mirror mode: one proxy may be named the mirror of `docker.io` (or any
//!   registry, chosen by containerd's `?ns=`), serving unprefixed names
//!   that are not the registry's own (see [`Cache::mirrored`]).
//!
//! Called by `http` (a wrapper beside the registry's handlers, chosen by
//! the route's name) and `cli` (`berth proxy list`); calls `registry` to
//! serve what is cached and to record pulls, `metadata` (`CacheStore`,
//! `RegistryStore` for the fill's upload session), `storage`, and the
//! leaves `metrics`, `origin`, `sync` (one manifest fetch at a time) and `oci`. Owns `[cache]` and `[[proxy]]`. Eviction is the
//! collector's (`gc`), with the windows [`Cache::evictions`] names.

mod blobs;
mod fill;
mod manifests;
mod settings;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use fill::FillFailure;
use fill::Fills;
pub use settings::{CacheConfig, CacheSettings, ProxyConfig, ProxySettings};
use upstream::Upstream;
pub use upstream::UpstreamError;

use crate::metadata::{CacheStore, MetadataError, RegistryStore};
use crate::metrics::Metrics;
use crate::oci::range::ByteRange;
use crate::oci::{Digest, RepositoryName, Tag};
use crate::registry::{Registry, RegistryError};
use crate::storage::{BlobStore, ByteStream, StorageError};
use crate::sync::KeyedLocks;

/// A pull marks cached content this much after its last mark at most, so
/// pulls are not writes.
const PULL_MARK_INTERVAL: i64 = 3600;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A write into a proxy namespace.
    #[error(
        "`{namespace}` is a pull-through cache of {upstream}: it cannot be pushed to or deleted from"
    )]
    ReadOnly { namespace: String, upstream: String },
    #[error("manifest unknown upstream")]
    ManifestUnknown,
    #[error("blob unknown upstream")]
    BlobUnknown(Digest),
    /// Nothing cached, and the upstream gave no answer.
    #[error("not cached, and {upstream} failed: {error}")]
    Upstream {
        upstream: String,
        error: UpstreamError,
    },
    #[error("{0}")]
    Quota(String),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Internal(String),
}

pub type CacheResult<T> = Result<T, CacheError>;

struct Proxy {
    config: ProxyConfig,
    upstream: Upstream,
}

/// A repository of a proxy namespace, as a request names it.
#[derive(Debug, Clone)]
pub struct Proxied {
    proxy: usize,
    /// Its name here (`hub/library/alpine`).
    pub local: RepositoryName,
    /// Its name upstream (`library/alpine`).
    upstream_name: String,
}

/// A blob as the cache serves it.
pub enum CachedBlob {
    /// Cached: read as any blob of the registry is.
    Stored(crate::registry::BlobRead),
    /// Arriving from upstream now, streamed as it comes.
    Arriving {
        /// Unknown when the upstream did not say.
        size: Option<u64>,
        range: Option<ByteRange>,
        body: ByteStream,
    },
}

/// A tag list page as the cache serves it: JSON and its `Link`.
pub struct CachedTags {
    pub body: Bytes,
    pub link: Option<String>,
}

pub struct Cache {
    proxies: Vec<Proxy>,
    store: CacheStore,
    uploads: RegistryStore,
    registry: Arc<Registry>,
    blobs: Arc<dyn BlobStore>,
    fills: Fills,
    /// How long a fill waits for its slowest download before dropping it.
    stall: Duration,
    /// Manifest fetches in progress, by repository and reference.
    manifest_fetches: KeyedLocks<tokio::sync::Mutex<()>>,
    metrics: Arc<Metrics>,
    /// This instance, as `cache_fills` names its claims.
    instance: String,
}

impl Cache {
    pub fn new(
        config: &CacheConfig,
        store: CacheStore,
        uploads: RegistryStore,
        registry: Arc<Registry>,
        blobs: Arc<dyn BlobStore>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        let proxies = config
            .proxies
            .iter()
            .map(|proxy| {
                Ok(Proxy {
                    upstream: Upstream::new(proxy.clone(), config)?,
                    config: proxy.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Cache {
            proxies,
            store,
            uploads,
            registry,
            blobs,
            fills: Fills::default(),
            stall: config.request_timeout,
            manifest_fetches: KeyedLocks::default(),
            metrics,
            instance: uuid::Uuid::new_v4().to_string(),
        })
    }

    /// Whether any proxy is configured (else nothing here is ever asked).
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }

    /// The proxy namespaces' eviction windows, as the collector applies
    /// them: the prefix of their repositories (`hub/`) and `evict_after`.
    pub fn evictions(config: &CacheConfig) -> Vec<(String, Duration)> {
        config
            .proxies
            .iter()
            .map(|p| (format!("{}/", p.namespace), p.evict_after))
            .collect()
    }

    fn proxy(&self, proxied: &Proxied) -> &Proxy {
        &self.proxies[proxied.proxy]
    }

    /// `name` when it lies in a proxy namespace (`hub/library/alpine`).
    pub fn proxied(&self, name: &RepositoryName) -> Option<Proxied> {
        let (namespace, rest) = name.as_str().split_once('/')?;
        let index = self
            .proxies
            .iter()
            .position(|p| p.config.namespace == namespace)?;
        Some(Proxied {
            proxy: index,
            local: name.clone(),
            upstream_name: self.proxies[index].upstream.upstream_name(rest),
        })
    }

    /// `name` as a mirror serves it: a name of the registry `ns` names
    /// (`docker.io` when absent, as Docker's `registry-mirrors` sends it)
    /// that is not the registry's own (no repository of that name, no user
    /// or organization of its namespace), read from the proxy that mirrors
    /// that registry. Only reads come here.
    pub async fn mirrored(
        &self,
        name: &RepositoryName,
        ns: Option<&str>,
    ) -> CacheResult<Option<Proxied>> {
        let registry = ns.unwrap_or("docker.io");
        let Some(index) = self
            .proxies
            .iter()
            .position(|p| p.config.mirror_of.as_deref() == Some(registry))
        else {
            return Ok(None);
        };
        if self.proxied(name).is_some() || self.store.is_local(name).await? {
            return Ok(None);
        }
        let proxy = &self.proxies[index];
        let local = format!("{}/{name}", proxy.config.namespace);
        let Ok(local) = local.parse::<RepositoryName>() else {
            return Ok(None);
        };
        Ok(Some(Proxied {
            proxy: index,
            local,
            upstream_name: proxy.upstream.upstream_name(name.as_str()),
        }))
    }

    /// The refusal of a write into a proxy namespace.
    pub fn read_only(&self, proxied: &Proxied) -> CacheError {
        let proxy = self.proxy(proxied);
        CacheError::ReadOnly {
            namespace: proxy.config.namespace.clone(),
            upstream: proxy.upstream.url().to_string(),
        }
    }

    /// The proxies, for `berth proxy list`.
    pub fn describe(config: &CacheConfig) -> Vec<serde_json::Value> {
        config
            .proxies
            .iter()
            .map(|p| {
                serde_json::json!({
                    "namespace": p.namespace,
                    "upstream": p.upstream.as_str().trim_end_matches('/'),
                    "upstream_namespace": p.upstream_namespace,
                    "mirror_of": p.mirror_of,
                    "username": p.credentials.as_ref().map(|(user, _)| user),
                    "tag_ttl": humantime::format_duration(p.tag_ttl).to_string(),
                    "evict_after": humantime::format_duration(p.evict_after).to_string(),
                })
            })
            .collect()
    }

    fn count(&self, proxied: &Proxied, kind: &'static str) {
        self.metrics
            .record_cache(&self.proxy(proxied).config.namespace, kind);
    }

    /// An upstream failure, logged and counted, as the error a client gets
    /// when nothing is cached.
    fn upstream_failed(&self, proxied: &Proxied, what: &str, error: UpstreamError) -> CacheError {
        let proxy = self.proxy(proxied);
        match &error {
            UpstreamError::NotFound => {}
            error => {
                tracing::warn!(
                    upstream = proxy.upstream.url(),
                    repository = %proxied.local,
                    what,
                    %error,
                    "upstream request failed"
                );
                self.metrics
                    .record_upstream_error(&proxy.config.namespace, error.kind());
            }
        }
        CacheError::Upstream {
            upstream: proxy.upstream.url().to_string(),
            error,
        }
    }

    /// A tag list page: the upstream's, or when it fails the cached tags.
    pub async fn tags(&self, proxied: &Proxied, query: Option<&str>) -> CacheResult<CachedTags> {
        let upstream = &self.proxy(proxied).upstream;
        match upstream.tags(&proxied.upstream_name, query).await {
            Ok((body, link)) => {
                #[derive(serde::Deserialize)]
                struct TagList {
                    tags: Option<Vec<String>>,
                }
                let list: TagList = serde_json::from_slice(&body).map_err(|e| {
                    self.upstream_failed(
                        proxied,
                        "tags",
                        UpstreamError::Invalid(format!("tag list: {e}")),
                    )
                })?;
                // Rewritten with the local name, and only valid tags, which
                // are safe to serve; the `Link` names the upstream's path,
                // so the next page is asked with `last` alone.
                let tags: Vec<String> = list
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|t| t.parse::<Tag>().is_ok())
                    .collect();
                let link = link.and_then(|_| {
                    let last = tags.last()?;
                    Some(format!(
                        "</v2/{}/tags/list?last={last}>; rel=\"next\"",
                        proxied.local
                    ))
                });
                let body = serde_json::json!({"name": proxied.local.as_str(), "tags": tags});
                Ok(CachedTags {
                    body: Bytes::from(body.to_string()),
                    link,
                })
            }
            Err(UpstreamError::NotFound) => {
                Err(CacheError::Registry(RegistryError::RepositoryUnknown))
            }
            Err(error) => {
                let tags = self.store.tag_names(&proxied.local).await?;
                if tags.is_empty() {
                    return Err(self.upstream_failed(proxied, "tags", error));
                }
                self.metrics
                    .record_upstream_error(&self.proxy(proxied).config.namespace, error.kind());
                self.count(proxied, "stale");
                let body = serde_json::json!({"name": proxied.local.as_str(), "tags": tags});
                Ok(CachedTags {
                    body: Bytes::from(body.to_string()),
                    link: None,
                })
            }
        }
    }
}

fn upstream_failure(error: UpstreamError) -> FillFailure {
    match error {
        UpstreamError::NotFound => FillFailure::NotFound,
        UpstreamError::Refused { status, .. } => FillFailure::Upstream {
            status: Some(status),
            reason: error.to_string(),
        },
        error => FillFailure::Upstream {
            status: None,
            reason: error.to_string(),
        },
    }
}
