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

mod fill;
mod settings;
mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use fill::FillFailure;
use fill::{Fill, FillState, Fills};
pub use settings::{CacheConfig, CacheSettings, ProxyConfig, ProxySettings};
use upstream::Upstream;
pub use upstream::UpstreamError;

use crate::metadata::{
    CacheCommit, CacheLink, CacheStore, CachedManifest, MetadataError, Origin, RegistryStore,
    UploadSession, unix_now,
};
use crate::metrics::Metrics;
use crate::oci::digest::BlobHasher;
use crate::oci::range::{ByteRange, RangeRequest, parse_download_range};
use crate::oci::{Digest, Reference, RepositoryName, Tag};
use crate::registry::{Registry, RegistryError};
use crate::storage::{BlobStore, ByteStream, StagedUpload, StorageError};
use crate::sync::KeyedLocks;

/// How long one instance's claim on a fill lasts without renewal; renewed
/// every third of it while the fill runs.
const FILL_LEASE: Duration = Duration::from_secs(60);

/// How often an instance waiting for another's fill looks again.
const FILL_POLL: Duration = Duration::from_millis(250);

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
    /// Manifest fetches in progress, by repository and reference.
    manifest_fetches: KeyedLocks<tokio::sync::Mutex<()>>,
    metrics: Arc<Metrics>,
    /// This instance, as `cache_fills` names its claims.
    holder: String,
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
            fills: Fills::new(&config.spool_dir),
            manifest_fetches: KeyedLocks::default(),
            metrics,
            holder: uuid::Uuid::new_v4().to_string(),
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

    /// A manifest by tag or digest, from the cache or the upstream. With
    /// `pulled_by` (a `GET`), recorded as a pull.
    pub async fn manifest(
        &self,
        proxied: &Proxied,
        reference: &Reference,
        pulled_by: Option<&Origin>,
    ) -> CacheResult<CachedManifest> {
        let manifest = match reference {
            Reference::Digest(digest) => self.manifest_by_digest(proxied, digest).await?,
            Reference::Tag(tag) => self.manifest_by_tag(proxied, tag).await?,
        };
        if let Some(origin) = pulled_by
            && let Ok(digest) = manifest.digest.parse::<Digest>()
        {
            let tag = match reference {
                Reference::Tag(tag) => Some(tag),
                Reference::Digest(_) => None,
            };
            self.registry
                .record_pull(
                    origin,
                    &proxied.local,
                    tag,
                    &digest,
                    &manifest.media_type,
                    manifest.payload.len(),
                )
                .await;
        }
        Ok(manifest)
    }

    async fn manifest_by_digest(
        &self,
        proxied: &Proxied,
        digest: &Digest,
    ) -> CacheResult<CachedManifest> {
        if let Some(manifest) = self.cached_by_digest(proxied, digest).await? {
            return Ok(manifest);
        }
        // One fetch per manifest at a time: the others wait and read it.
        let lock = self
            .manifest_fetches
            .get(&format!("{}@{digest}", proxied.local));
        let _turn = lock.lock().await;
        if let Some(manifest) = self.cached_by_digest(proxied, digest).await? {
            return Ok(manifest);
        }
        let manifest = self
            .fetch_manifest(proxied, digest.as_str(), Some(digest))
            .await?;
        self.store
            .store_manifest(&proxied.local, manifest.clone(), None)
            .await?;
        self.count(proxied, "miss");
        Ok(manifest)
    }

    async fn cached_by_digest(
        &self,
        proxied: &Proxied,
        digest: &Digest,
    ) -> CacheResult<Option<CachedManifest>> {
        let Some(manifest) = self.store.manifest(&proxied.local, digest).await? else {
            return Ok(None);
        };
        self.count(proxied, "hit");
        self.mark_manifest_pulled(proxied, &manifest).await;
        Ok(Some(manifest))
    }

    /// The cached manifest of `tag` while the tag is fresh.
    async fn fresh_tag(&self, proxied: &Proxied, tag: &Tag) -> CacheResult<Option<CachedManifest>> {
        let ttl = self.proxy(proxied).config.tag_ttl.as_secs() as i64;
        let Some(cached) = self.store.tag(&proxied.local, tag).await? else {
            return Ok(None);
        };
        match cached.manifest {
            Some(manifest) if unix_now().saturating_sub(cached.checked_at) < ttl => {
                self.count(proxied, "hit");
                self.mark_manifest_pulled(proxied, &manifest).await;
                Ok(Some(manifest))
            }
            _ => Ok(None),
        }
    }

    async fn manifest_by_tag(&self, proxied: &Proxied, tag: &Tag) -> CacheResult<CachedManifest> {
        if let Some(manifest) = self.fresh_tag(proxied, tag).await? {
            return Ok(manifest);
        }
        // One look upstream per tag at a time: the others wait and read
        // what it found.
        let lock = self
            .manifest_fetches
            .get(&format!("{}:{tag}", proxied.local));
        let _turn = lock.lock().await;
        if let Some(manifest) = self.fresh_tag(proxied, tag).await? {
            return Ok(manifest);
        }
        let proxy = self.proxy(proxied);
        let cached = self.store.tag(&proxied.local, tag).await?;
        let Some((digest, Some(manifest))) = cached.map(|c| (c.digest, c.manifest)) else {
            let manifest = self.fetch_manifest(proxied, tag.as_str(), None).await?;
            self.store
                .store_manifest(&proxied.local, manifest.clone(), Some(tag))
                .await?;
            self.count(proxied, "miss");
            return Ok(manifest);
        };
        // Stale: a HEAD says whether the tag moved.
        let now = proxy
            .upstream
            .manifest_digest(&proxied.upstream_name, tag.as_str())
            .await;
        let moved_to = match now {
            Ok(current) if current == digest => {
                self.store.tag_confirmed(&proxied.local, tag).await?;
                self.count(proxied, "hit");
                self.mark_manifest_pulled(proxied, &manifest).await;
                return Ok(manifest);
            }
            Ok(current) => current,
            Err(UpstreamError::NotFound) => return Err(CacheError::ManifestUnknown),
            Err(error) => return Ok(self.serve_stale(proxied, tag, manifest, error)),
        };
        let fetched = match moved_to.parse::<Digest>() {
            Ok(moved_to) => {
                self.fetch_manifest(proxied, moved_to.as_str(), Some(&moved_to))
                    .await
            }
            Err(_) => self.fetch_manifest(proxied, tag.as_str(), None).await,
        };
        match fetched {
            Ok(fresh) => {
                self.store
                    .store_manifest(&proxied.local, fresh.clone(), Some(tag))
                    .await?;
                self.count(proxied, "miss");
                Ok(fresh)
            }
            Err(CacheError::Upstream { error, .. })
                if !matches!(error, UpstreamError::NotFound) =>
            {
                Ok(self.serve_stale(proxied, tag, manifest, error))
            }
            Err(error) => Err(error),
        }
    }

    fn serve_stale(
        &self,
        proxied: &Proxied,
        tag: &Tag,
        manifest: CachedManifest,
        error: UpstreamError,
    ) -> CachedManifest {
        let proxy = self.proxy(proxied);
        tracing::warn!(
            upstream = proxy.upstream.url(),
            repository = %proxied.local,
            %tag,
            %error,
            "the upstream failed: serving the cached manifest, which may be stale"
        );
        self.metrics
            .record_upstream_error(&proxy.config.namespace, error.kind());
        self.count(proxied, "stale");
        manifest
    }

    async fn mark_manifest_pulled(&self, proxied: &Proxied, manifest: &CachedManifest) {
        if unix_now() - manifest.last_pulled_at < PULL_MARK_INTERVAL {
            return;
        }
        if let Err(e) = self
            .store
            .manifest_pulled(&proxied.local, &manifest.digest)
            .await
        {
            tracing::warn!(error = %e, "could not mark a cached manifest as pulled");
        }
    }

    /// A manifest from upstream by `reference`, checked: a type Berth
    /// serves, parsable, and matching `expected` when fetched by digest.
    async fn fetch_manifest(
        &self,
        proxied: &Proxied,
        reference: &str,
        expected: Option<&Digest>,
    ) -> CacheResult<CachedManifest> {
        let upstream = &self.proxy(proxied).upstream;
        let fetched = match upstream.manifest(&proxied.upstream_name, reference).await {
            Ok(fetched) => fetched,
            Err(UpstreamError::NotFound) => return Err(CacheError::ManifestUnknown),
            Err(error) => return Err(self.upstream_failed(proxied, "manifest", error)),
        };
        let invalid = |reason: String| {
            self.upstream_failed(proxied, "manifest", UpstreamError::Invalid(reason))
        };
        let algorithm = expected.map_or(crate::oci::Algorithm::Sha256, Digest::algorithm);
        let digest = Digest::of_bytes(algorithm, &fetched.payload);
        if let Some(expected) = expected
            && &digest != expected
        {
            return Err(invalid(format!(
                "manifest {expected} came with digest {digest}"
            )));
        }
        let content_type = Some(fetched.media_type.as_str()).filter(|t| !t.is_empty());
        let parsed = crate::oci::manifest::parse(&fetched.payload, content_type)
            .map_err(|e| invalid(format!("manifest {digest}: {e}")))?;
        Ok(CachedManifest {
            digest: digest.to_string(),
            media_type: parsed.media_type,
            payload: fetched.payload.to_vec(),
            last_pulled_at: unix_now(),
        })
    }

    /// A blob's size, from the cache or a `HEAD` upstream (nothing fetched).
    pub async fn stat_blob(&self, proxied: &Proxied, digest: &Digest) -> CacheResult<u64> {
        if let Some(blob) = self.store.blob(&proxied.local, digest).await? {
            return Ok(blob.size);
        }
        let upstream = &self.proxy(proxied).upstream;
        match upstream
            .blob_size(&proxied.upstream_name, digest.as_str())
            .await
        {
            Ok(Some(size)) => Ok(size),
            Ok(None) => Err(self.upstream_failed(
                proxied,
                "blob",
                UpstreamError::Invalid("HEAD without Content-Length".into()),
            )),
            Err(UpstreamError::NotFound) => Err(CacheError::BlobUnknown(digest.clone())),
            Err(error) => Err(self.upstream_failed(proxied, "blob", error)),
        }
    }

    /// A blob, from the cache, or fetched once and streamed as it arrives.
    pub async fn blob(
        self: &Arc<Self>,
        proxied: &Proxied,
        digest: &Digest,
        range_header: Option<&str>,
    ) -> CacheResult<CachedBlob> {
        if let Some(blob) = self.store.blob(&proxied.local, digest).await? {
            self.count(proxied, "hit");
            if blob
                .last_pulled_at
                .is_none_or(|at| unix_now() - at >= PULL_MARK_INTERVAL)
                && let Err(e) = self.store.blob_pulled(&proxied.local, digest).await
            {
                tracing::warn!(error = %e, "could not mark a cached blob as pulled");
            }
            let read = self
                .registry
                .read_blob(&proxied.local, digest, range_header)
                .await?;
            return Ok(CachedBlob::Stored(read));
        }
        let (fill, started) = self
            .fills
            .join(digest)
            .map_err(|e| CacheError::Internal(format!("cannot open the cache spool: {e}")))?;
        if started {
            self.count(proxied, "miss");
            let cache = self.clone();
            let (proxied, fill) = (proxied.clone(), fill.clone());
            // Its own task: a client that goes away does not stop the fill.
            tokio::spawn(async move { cache.run_fill(&proxied, &fill).await });
        } else {
            self.count(proxied, "hit");
        }
        let mut state = fill.state();
        loop {
            let current = state.borrow_and_update().clone();
            match current {
                FillState::Starting => {}
                // Served from the spool, from the start or the range's start.
                FillState::Receiving { size, .. } if range_header.is_none() => {
                    return Ok(CachedBlob::Arriving {
                        size,
                        range: None,
                        body: fill.reader(None),
                    });
                }
                FillState::Complete { size } if range_header.is_none() => {
                    return Ok(CachedBlob::Arriving {
                        size: Some(size),
                        range: None,
                        body: fill.reader(None),
                    });
                }
                FillState::Receiving {
                    size: Some(size), ..
                }
                | FillState::Complete { size } => {
                    let range = match parse_download_range(range_header, size) {
                        RangeRequest::Whole => None,
                        RangeRequest::Partial(range) => Some(range),
                        RangeRequest::Unsatisfiable => {
                            return Err(RegistryError::RangeNotSatisfiable { size }.into());
                        }
                    };
                    return Ok(CachedBlob::Arriving {
                        size: Some(size),
                        range,
                        body: fill.reader(range),
                    });
                }
                // A range of a blob of unknown size waits for the whole.
                FillState::Receiving { size: None, .. } => {}
                FillState::Stored => {
                    let read = self
                        .registry
                        .read_blob(&proxied.local, digest, range_header)
                        .await?;
                    return Ok(CachedBlob::Stored(read));
                }
                FillState::Failed(failure) => {
                    return Err(self.fill_failed(proxied, digest, failure));
                }
            }
            if state.changed().await.is_err() {
                return Err(CacheError::Internal("the cache fill was abandoned".into()));
            }
        }
    }

    fn fill_failed(&self, proxied: &Proxied, digest: &Digest, failure: FillFailure) -> CacheError {
        let upstream = self.proxy(proxied).upstream.url().to_string();
        match failure {
            FillFailure::NotFound => CacheError::BlobUnknown(digest.clone()),
            FillFailure::Upstream { status, reason } => CacheError::Upstream {
                upstream,
                error: match status {
                    Some(status) => UpstreamError::Refused {
                        status,
                        retry_after: None,
                    },
                    None => UpstreamError::Unreachable(reason),
                },
            },
            FillFailure::Quota(message) => CacheError::Quota(message),
            FillFailure::Internal(message) => CacheError::Internal(message),
        }
    }

    /// Runs one fill to its end, then takes it off the list. A failure
    /// before the last byte arrived fails the waiting clients; one after
    /// (storing or recording the blob) only means it is not cached.
    async fn run_fill(&self, proxied: &Proxied, fill: &Fill) {
        let outcome = self.fill_blob(proxied, fill).await;
        if let Err(failure) = outcome {
            let complete = matches!(*fill.state().borrow(), FillState::Complete { .. });
            if complete {
                tracing::warn!(digest = %fill.digest, ?failure, "a fetched blob was served but could not be cached");
            } else {
                tracing::warn!(digest = %fill.digest, repository = %proxied.local, ?failure, "could not fetch a blob from upstream");
                fill.set(FillState::Failed(failure));
            }
        }
        self.fills.end(fill);
    }

    /// Waits for any other instance's fill of the digest, then fetches it
    /// under this instance's claim, or links what the other one stored.
    async fn fill_blob(&self, proxied: &Proxied, fill: &Fill) -> Result<(), FillFailure> {
        let internal = |e: &dyn std::fmt::Display| FillFailure::Internal(e.to_string());
        let lease = FILL_LEASE.as_secs() as i64;
        loop {
            if self
                .store
                .blob_recorded(&fill.digest)
                .await
                .map_err(|e| internal(&e))?
            {
                return self.link_recorded(proxied, fill).await;
            }
            if self
                .store
                .claim_fill(&fill.digest, &self.holder, lease)
                .await
                .map_err(|e| internal(&e))?
            {
                break;
            }
            tokio::time::sleep(FILL_POLL).await;
        }
        let outcome = if self
            .store
            .blob_recorded(&fill.digest)
            .await
            .map_err(|e| internal(&e))?
        {
            self.link_recorded(proxied, fill).await
        } else {
            self.fetch_into_store(proxied, fill).await
        };
        if let Err(e) = self.store.release_fill(&fill.digest, &self.holder).await {
            tracing::warn!(error = %e, "could not release a cache fill; its lease lapses");
        }
        outcome
    }

    /// Links a blob the registry already holds (another repository's, or
    /// another instance's fill) once the upstream confirms it has it here.
    async fn link_recorded(&self, proxied: &Proxied, fill: &Fill) -> Result<(), FillFailure> {
        let upstream = &self.proxy(proxied).upstream;
        match upstream
            .blob_size(&proxied.upstream_name, fill.digest.as_str())
            .await
        {
            Ok(_) => {}
            Err(UpstreamError::NotFound) => return Err(FillFailure::NotFound),
            Err(error) => return Err(upstream_failure(error)),
        }
        match self.store.link_blob(&proxied.local, &fill.digest).await {
            Ok(CacheLink::Linked(_)) => {
                fill.set(FillState::Stored);
                Ok(())
            }
            Ok(CacheLink::Absent) => Err(FillFailure::Internal(
                "the blob was collected while being linked; ask again".into(),
            )),
            Ok(CacheLink::QuotaExceeded(exceeded)) => Err(FillFailure::Quota(
                crate::registry::quota_error(&exceeded).to_string(),
            )),
            Err(e) => Err(FillFailure::Internal(e.to_string())),
        }
    }

    /// Fetches the blob into the spool while the blob store's writer reads
    /// it back, then commits and records it.
    async fn fetch_into_store(&self, proxied: &Proxied, fill: &Fill) -> Result<(), FillFailure> {
        let internal = |e: &dyn std::fmt::Display| FillFailure::Internal(e.to_string());
        let upstream = &self.proxy(proxied).upstream;
        let fetched = match upstream
            .blob(&proxied.upstream_name, fill.digest.as_str())
            .await
        {
            Ok(fetched) => fetched,
            Err(UpstreamError::NotFound) => return Err(FillFailure::NotFound),
            Err(error) => {
                self.metrics
                    .record_upstream_error(&self.proxy(proxied).config.namespace, error.kind());
                return Err(upstream_failure(error));
            }
        };
        if let Some(size) = fetched.size
            && let Some(exceeded) = self
                .store
                .quota_allows(&proxied.local, &fill.digest, size)
                .await
                .map_err(|e| internal(&e))?
        {
            return Err(FillFailure::Quota(
                crate::registry::quota_error(&exceeded).to_string(),
            ));
        }
        // A session row like any upload's, so the collector removes what a
        // crash leaves in staging.
        let id = uuid::Uuid::new_v4().to_string();
        let storage_state = self
            .blobs
            .begin_upload(&id)
            .await
            .map_err(|e| internal(&e))?;
        let session = UploadSession {
            id: id.clone(),
            received: 0,
            hash_state: BlobHasher::new(fill.digest.algorithm()).save(),
            storage_state: storage_state.clone(),
        };
        let mut staged = StagedUpload { id, storage_state };
        if let Err(e) = self.uploads.create_upload(&proxied.local, &session).await {
            let _ = self.blobs.abort_upload(&staged).await;
            return Err(internal(&e));
        }
        let permit = fetched.permit;
        let ingest = async {
            let received = fill.receive(fetched.body, fetched.size).await;
            match &received {
                Ok(size) => fill.set(FillState::Complete { size: *size }),
                Err(failure) => fill.set(FillState::Failed(failure.clone())),
            }
            received
        };
        let store = async {
            let mut body = fill.reader(None);
            let staged = &staged;
            self.blobs
                .append(staged, 0, &mut body, &mut |_: &[u8]| {})
                .await
        };
        let (received, stored) = {
            let work = async { tokio::join!(ingest, store) };
            tokio::pin!(work);
            let mut renew = tokio::time::interval(FILL_LEASE / 3);
            renew.tick().await;
            loop {
                tokio::select! {
                    done = &mut work => break done,
                    _ = renew.tick() => {
                        let lease = FILL_LEASE.as_secs() as i64;
                        if let Err(e) = self.store.claim_fill(&fill.digest, &self.holder, lease).await {
                            tracing::warn!(error = %e, "could not renew a cache fill's lease");
                        }
                    }
                }
            }
        };
        drop(permit);
        let size = match (received, stored) {
            (Ok(size), Ok(appended)) => {
                staged.storage_state = appended.storage_state;
                self.metrics.record_upstream_bytes(size);
                size
            }
            (Err(failure), _) => {
                let _ = self.blobs.abort_upload(&staged).await;
                return Err(failure);
            }
            (Ok(size), Err(e)) => {
                self.metrics.record_upstream_bytes(size);
                let _ = self.blobs.abort_upload(&staged).await;
                return Err(internal(&e));
            }
        };
        let key = self
            .blobs
            .commit_upload(&staged, size, &fill.digest)
            .await
            .map_err(|e| internal(&e))?;
        match self
            .store
            .record_blob(&proxied.local, &fill.digest, size, &key, &staged.id)
            .await
        {
            Ok(CacheCommit::Recorded(kept)) if kept == key => Ok(()),
            Ok(CacheCommit::Recorded(_)) => {
                // Another copy was recorded first; this one is redundant.
                let _ = self.blobs.delete(&key).await;
                Ok(())
            }
            Ok(CacheCommit::QuotaExceeded(exceeded)) => {
                let _ = self.blobs.delete(&key).await;
                Err(FillFailure::Quota(
                    crate::registry::quota_error(&exceeded).to_string(),
                ))
            }
            Err(e) => {
                let _ = self.blobs.delete(&key).await;
                Err(internal(&e))
            }
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
