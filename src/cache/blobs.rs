//! Blobs through the cache: served when linked here, else fetched once per
//! digest (`fill.rs`) while every waiting client streams it, across
//! instances one at a time by a lease in `cache_fills`.

use std::sync::Arc;
use std::time::Duration;

use super::fill::{Fill, FillFailure, FillState};
use super::upstream::UpstreamError;
use super::{
    Cache, CacheError, CacheResult, CachedBlob, PULL_MARK_INTERVAL, Proxied, upstream_failure,
};
use crate::metadata::{CacheCommit, CacheLink, UploadSession, unix_now};
use crate::oci::Digest;
use crate::oci::digest::BlobHasher;
use crate::oci::range::{RangeRequest, parse_download_range};
use crate::registry::RegistryError;
use crate::storage::StagedUpload;

/// How long one instance's claim on a fill lasts without renewal; renewed
/// every third of it while the fill runs.
const FILL_LEASE: Duration = Duration::from_secs(60);

/// How often an instance waiting for another's fill looks again.
const FILL_POLL: Duration = Duration::from_millis(250);

impl Cache {
    /// Who a fill's claim names: this instance, for this repository. A fill
    /// of the same digest for another repository waits for it, then links
    /// the blob once its own upstream repository confirms it.
    fn holder(&self, proxied: &Proxied) -> String {
        format!("{} {}", self.instance, proxied.local)
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
        let (fill, started) = self.fills.join(proxied.local.as_str(), digest);
        // Taken at once, so the start is held for this download while the
        // fill begins (`None` when it is gone already).
        let mut whole = match range_header {
            None => fill.reader(None),
            Some(_) => None,
        };
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
            let size = match current {
                FillState::Starting => None,
                FillState::Receiving { size, .. } => Some(size),
                FillState::Complete { size } => Some(Some(size)),
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
            };
            // Bytes are arriving: streamed from the fill, whole or the range
            // asked (which needs the size). Else wait for the stored blob.
            match (size, range_header) {
                (Some(size), None) => {
                    if let Some(body) = whole.take() {
                        return Ok(CachedBlob::Arriving {
                            size,
                            range: None,
                            body,
                        });
                    }
                }
                (Some(Some(size)), Some(_)) => {
                    let range = match parse_download_range(range_header, size) {
                        RangeRequest::Whole => None,
                        RangeRequest::Partial(range) => Some(range),
                        RangeRequest::Unsatisfiable => {
                            return Err(RegistryError::RangeNotSatisfiable { size }.into());
                        }
                    };
                    if let Some(body) = fill.reader(range) {
                        return Ok(CachedBlob::Arriving {
                            size: Some(size),
                            range,
                            body,
                        });
                    }
                }
                _ => {}
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
    /// before the last byte arrived fails the downloads; one after (storing
    /// or recording the blob) only means it is not cached.
    async fn run_fill(&self, proxied: &Proxied, fill: &Arc<Fill>) {
        match self.fill_blob(proxied, fill).await {
            Ok(()) => fill.set(FillState::Stored),
            Err(failure) => {
                if matches!(*fill.state().borrow(), FillState::Complete { .. }) {
                    tracing::warn!(digest = %fill.digest, ?failure, "a fetched blob was served but could not be cached");
                } else {
                    tracing::warn!(digest = %fill.digest, repository = %proxied.local, ?failure, "could not fetch a blob from upstream");
                }
                // Downloads that have every byte finish; those waiting fail.
                fill.set(FillState::Failed(failure));
            }
        }
        self.fills.end(fill);
    }

    /// Waits for any other instance's fill of the digest, then fetches it
    /// under this instance's claim, or links what the other one stored.
    async fn fill_blob(&self, proxied: &Proxied, fill: &Arc<Fill>) -> Result<(), FillFailure> {
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
                .claim_fill(&fill.digest, &self.holder(proxied), lease)
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
        if let Err(e) = self
            .store
            .release_fill(&fill.digest, &self.holder(proxied))
            .await
        {
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
            Ok(CacheLink::Linked(_)) => Ok(()),
            Ok(CacheLink::Absent) => Err(FillFailure::Internal(
                "the blob was collected while being linked; ask again".into(),
            )),
            Ok(CacheLink::QuotaExceeded(exceeded)) => Err(FillFailure::Quota(
                crate::registry::quota_error(&exceeded).to_string(),
            )),
            Err(e) => Err(FillFailure::Internal(e.to_string())),
        }
    }

    /// Fetches the blob, handing each batch to the waiting clients and to
    /// the blob store's writer, then commits and records it.
    async fn fetch_into_store(
        &self,
        proxied: &Proxied,
        fill: &Arc<Fill>,
    ) -> Result<(), FillFailure> {
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
            let received = fill.receive(fetched.body, fetched.size, self.stall).await;
            match &received {
                Ok(size) => fill.set(FillState::Complete { size: *size }),
                Err(failure) => fill.set(FillState::Failed(failure.clone())),
            }
            received
        };
        // Taken before the first byte arrives, so it starts at the start.
        let mut body = fill.reader(None).expect("a new fill holds its start");
        let store = async {
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
                        let holder = self.holder(proxied);
                        if let Err(e) = self.store.claim_fill(&fill.digest, &holder, lease).await {
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
}
