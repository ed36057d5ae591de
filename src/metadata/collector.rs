//! The garbage-collection half of the metadata store: claiming due review
//! items, re-checking references inside the claiming transaction, deleting
//! what is unreferenced, and handing blob-store objects to delete after
//! commit. The SQL is in `collector_sql.rs`; why it is safe against
//! concurrent pushes is in ARCHITECTURE.md.

use async_trait::async_trait;

use super::MetadataResult;

/// What one collection step removed from metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Review items taken off the queues (alive or not); zero means nothing is due.
    pub reviewed: u64,
    pub manifests: u64,
    pub blob_links: u64,
    pub blobs: u64,
    /// Size of the blobs removed.
    pub bytes: u64,
    pub uploads: u64,
}

impl std::ops::AddAssign for Collected {
    fn add_assign(&mut self, other: Collected) {
        self.reviewed += other.reviewed;
        self.manifests += other.manifests;
        self.blob_links += other.blob_links;
        self.blobs += other.blobs;
        self.bytes += other.bytes;
        self.uploads += other.uploads;
    }
}

/// A blob-store object whose metadata is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Garbage {
    Blob {
        id: String,
        key: String,
    },
    Upload {
        id: String,
        upload_id: String,
        storage_state: String,
    },
}

#[async_trait]
pub trait CollectorStore: Send + Sync + 'static {
    /// Reviews up to `limit` due items of each queue (manifests that have
    /// been candidates for at least `grace` seconds, then blob links, then
    /// blobs) and expires up to `limit` uploads idle for `upload_expiry`
    /// seconds, in one transaction. "Now" is read at each round, so what a
    /// round queues (a deleted index's children) is due in the next one when
    /// the grace is zero. Items locked by a concurrent writer are skipped
    /// for a later pass. With `dry_run` the transaction is rolled back after
    /// repeating the steps until nothing more is due, so the report says
    /// what a real pass would remove, cascades included.
    async fn collect(
        &self,
        grace: i64,
        upload_expiry: i64,
        limit: u32,
        dry_run: bool,
    ) -> MetadataResult<Collected>;

    /// Tags of every repository that is `path` or lies under it, as
    /// `(repository, tag, pushed_at)`.
    async fn tags_under(&self, path: &str) -> MetadataResult<Vec<(String, String, i64)>>;

    /// Removes a tag if it still points where it did at `pushed_at` (a tag
    /// pushed again meanwhile stays) and no immutable-tag rule covers it;
    /// queues its manifest for review. True when removed.
    async fn untag_if_unchanged(
        &self,
        repository: &str,
        tag: &str,
        pushed_at: i64,
    ) -> MetadataResult<bool>;

    /// Blob-store objects to delete, oldest first.
    async fn garbage(&self, limit: u32) -> MetadataResult<Vec<Garbage>>;

    /// Forgets garbage whose objects are deleted.
    async fn forget_garbage(&self, ids: &[String]) -> MetadataResult<()>;
}
