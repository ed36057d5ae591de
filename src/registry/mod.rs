//! The registry's own logic: upload sessions, blob reads and links,
//! manifest checks, tags and referrers.
//!
//! Called by `http`; calls `metadata`, `storage`, `oci` and the leaf `sync`
//! (the per-session locks). Bytes are always written to the blob store
//! before metadata points at them, so metadata never names a blob that
//! storage lacks.

mod blobs;
mod browse;
mod error;
mod manifests;
mod summaries;
mod tag_lists;
mod uploads;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::metadata::{AuditEntry, EventStore, Origin, PoolStats, RegistryStore};
use crate::storage::BlobStore;

pub use blobs::{BlobBody, BlobRead, BlobStat};
pub use browse::{
    BrowsePage, ImageEntry, IndexChild, MAX_BROWSE_PAGE, ManifestDetail, ManifestSummary,
    ReferrerSummary, RepositorySort, RepositorySummary, TagSort, TagSummary,
};
pub use error::RegistryError;
pub use manifests::{ListPage, PushedManifest};
pub use uploads::{ChunkBody, UploadState, quota_error};

pub type RegistryResult<T> = Result<T, RegistryError>;

pub struct Registry {
    metadata: RegistryStore,
    /// Where pulls are recorded as events, when [`Registry::pull_events`] says so.
    events: EventStore,
    /// Set (by `events`) while some webhook endpoint asks for pulls: they
    /// are too many to record for nobody.
    pull_events: Arc<AtomicBool>,
    blobs: Arc<dyn BlobStore>,
    upload_locks: uploads::UploadLocks,
    tag_lists: tag_lists::TagLists,
}

impl Registry {
    pub fn new(metadata: RegistryStore, events: EventStore, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            metadata,
            events,
            pull_events: Arc::default(),
            blobs,
            upload_locks: uploads::UploadLocks::default(),
            tag_lists: tag_lists::TagLists::default(),
        }
    }

    /// The switch that makes manifest pulls events, for `events` to set.
    pub fn pull_events(&self) -> Arc<AtomicBool> {
        self.pull_events.clone()
    }

    /// Appends to the audit log what happened outside a content change (a
    /// refusal); a failure to write it is logged, never the request's.
    pub async fn audit(&self, origin: Origin, entry: AuditEntry) {
        if let Err(e) = self.events.record_audit(origin, entry).await {
            tracing::warn!(error = %e, "could not write to the audit log");
        }
    }

    /// For metrics: the database connections open and idle.
    pub fn pool_stats(&self) -> PoolStats {
        self.metadata.pool_stats()
    }

    /// For metrics: upload sessions open in the registry (all instances).
    pub async fn upload_count(&self) -> RegistryResult<u64> {
        Ok(self.metadata.upload_count().await?)
    }

    pub fn min_chunk_size(&self) -> Option<u64> {
        self.blobs.capabilities().min_chunk_size
    }

    /// Checks that both stores answer.
    pub async fn ready(&self) -> RegistryResult<()> {
        self.metadata.ping().await?;
        self.blobs.ping().await?;
        Ok(())
    }
}
