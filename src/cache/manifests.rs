//! Manifests through the cache: by digest kept for good, by tag fresh for
//! `tag_ttl`, then confirmed by a `HEAD`; one fetch per manifest at a time;
//! the stale copy served when the upstream fails.

use super::upstream::UpstreamError;
use super::{Cache, CacheError, CacheResult, PULL_MARK_INTERVAL, Proxied};
use crate::metadata::{CachedManifest, Origin, unix_now};
use crate::oci::{Digest, Reference, Tag};

impl Cache {
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
}
