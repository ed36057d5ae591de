//! The metadata store: repositories, blobs and their links, manifests and
//! their edges, tags and upload sessions, kept in SQL.
//!
//! Called by `registry`; calls nothing else in the crate but `oci`. Every
//! method is one atomic operation (its own transaction where it writes more
//! than one row), so callers never hold a transaction across an await on
//! the network or on blob storage.

mod accounts;
pub(crate) mod accounts_sql;
mod collector;
pub(crate) mod collector_sql;
mod postgres;
mod sql;
mod sqlite;
mod sqlite_direct;
mod sqlite_readers;
mod sqlite_writer;

use async_trait::async_trait;

use crate::oci::manifest::ParsedManifest;
use crate::oci::{Digest, RepositoryName, Tag};

pub use accounts::*;
pub use collector::*;
pub use postgres::PostgresMetadataStore;
pub use sqlite::SqliteMetadataStore;

pub type MetadataResult<T> = Result<T, MetadataError>;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite writes that run outside sqlx (`sqlite_direct.rs`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// An upload session as stored: how many bytes have been accepted, the hash
/// state after them, and whatever the blob store needs to continue it.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub id: String,
    pub received: u64,
    pub hash_state: Vec<u8>,
    pub storage_state: String,
}

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub payload: Vec<u8>,
}

/// What recording an uploaded blob did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobCommit {
    /// Recorded; the storage key the blob is kept under (an earlier upload's
    /// when the content was already there).
    Recorded(String),
    /// The namespace's quota would be exceeded; nothing was recorded.
    QuotaExceeded(QuotaExceeded),
    /// The upload session is gone or no longer at the expected offset (it
    /// expired, or a concurrent request moved it); nothing was recorded.
    SessionMoved,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mounted {
    Linked(u64),
    /// The source repository has no such blob.
    NotInSource,
    QuotaExceeded(QuotaExceeded),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub namespace: String,
    pub limit: u64,
    pub used: u64,
    pub size: u64,
}

impl QuotaExceeded {
    /// `Some` when `size` more bytes would take `namespace`, which holds
    /// `used` bytes of its `limit`, over its quota.
    fn check(namespace: &str, limit: i64, used: i64, size: u64) -> Option<Self> {
        (used as u64 + size > limit as u64).then(|| Self {
            namespace: namespace.to_string(),
            limit: limit as u64,
            used: used as u64,
            size,
        })
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    pub connections: u32,
    pub idle: u32,
}

/// A blob readable through a repository, and where its bytes are.
#[derive(Debug, Clone)]
pub struct LinkedBlob {
    pub size: u64,
    pub storage_key: String,
}

/// A manifest whose `subject` is the digest asked about.
#[derive(Debug, Clone)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    /// JSON object text, as parsed from the manifest.
    pub annotations: Option<String>,
}

/// A verified blob whose bytes are committed to storage, to be recorded by
/// [`MetadataStore::commit_blob`]. Owned, so a store may hand it to a thread
/// of its own.
#[derive(Debug, Clone)]
pub struct NewBlob {
    pub repository: RepositoryName,
    /// The upload session it ends.
    pub upload_id: String,
    /// The bytes the session must still be at: what the committing request
    /// read before appending its own body, which it does not save separately.
    pub expected_received: u64,
    pub digest: Digest,
    pub size: u64,
    /// Where the bytes are in the blob store.
    pub storage_key: String,
}

/// A manifest about to be stored: its exact bytes and what was read from them.
pub struct NewManifest<'a> {
    pub digest: &'a Digest,
    pub payload: &'a [u8],
    pub parsed: &'a ParsedManifest,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PutManifestOutcome {
    Stored,
    /// A blob or child manifest it refers to is not in the repository; nothing was written.
    MissingReference(Digest),
    /// This tag exists, points elsewhere and is immutable; nothing was written.
    ImmutableTag(String),
}

#[derive(Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// Still used by this manifest in the repository; nothing was deleted.
    ReferencedBy(Digest),
    /// The tag (or a tag of the manifest) is immutable; nothing was deleted.
    Immutable(String),
}

/// A repository's tag-list version: the repository's row id (a repository
/// deleted and created again is a new one) and a counter bumped by every
/// change to its tag names (migration 0008's triggers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagsVersion {
    pub repository_id: i64,
    pub counter: i64,
}

/// One page of names (tags or repositories) in lexical byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub names: Vec<String>,
    /// True when names after the last one exist.
    pub more: bool,
}

#[async_trait]
pub trait MetadataStore: Send + Sync + 'static {
    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> MetadataResult<()>;

    /// Connections open and idle in the pools, for metrics. Cheap.
    fn pool_stats(&self) -> PoolStats;

    /// Closes the pools, waiting for connections in use to be returned.
    async fn close(&self);

    /// Upload sessions open in the registry (all instances).
    async fn upload_count(&self) -> MetadataResult<u64>;

    /// The blob `digest` if it is linked to `repository`; `None` otherwise
    /// (including when the blob exists only in other repositories).
    async fn linked_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<Option<LinkedBlob>>;

    /// Links a blob readable in `from` into `repository` (a cross-repository
    /// mount). Returns its size, or `None` when `from` has no such blob.
    /// Idempotent.
    async fn mount_blob(
        &self,
        repository: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<Mounted>;

    /// Removes the link of a blob from a repository, unless a manifest of
    /// that repository still refers to it. The bytes stay in blob storage.
    async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<DeleteOutcome>;

    /// Records a new upload session, creating the repository if needed.
    async fn create_upload(
        &self,
        repository: &RepositoryName,
        session: &UploadSession,
    ) -> MetadataResult<()>;

    /// The session `id` if it exists and belongs to `repository`.
    async fn upload(
        &self,
        repository: &RepositoryName,
        id: &str,
    ) -> MetadataResult<Option<UploadSession>>;

    /// Moves a session from `expected_received` bytes to `session.received`,
    /// saving its new hash and storage state. Returns false, changing nothing,
    /// when the session is gone or its offset is no longer `expected_received`
    /// (a concurrent or replayed chunk).
    async fn advance_upload(
        &self,
        session: &UploadSession,
        expected_received: u64,
    ) -> MetadataResult<bool>;

    /// Forgets an upload session. Returns false when there was none.
    async fn delete_upload(&self, repository: &RepositoryName, id: &str) -> MetadataResult<bool>;

    /// Records a verified blob whose bytes are already committed to storage
    /// under `blob.storage_key`, links it to its repository and ends its
    /// upload session, atomically, if the session is still at
    /// `blob.expected_received` bytes. Idempotent: the blob may already
    /// exist, globally or in the repository; the key already recorded then
    /// wins and is returned (the caller removes its now redundant copy).
    async fn commit_blob(&self, blob: NewBlob) -> MetadataResult<BlobCommit>;

    /// Stores a manifest (if not already there) with its edges, and points
    /// `tags` at it, after checking inside the same transaction that every
    /// required blob and child manifest is in the repository.
    async fn put_manifest(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest<'_>,
        tags: &[Tag],
    ) -> MetadataResult<PutManifestOutcome>;

    async fn manifest_by_digest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<Option<StoredManifest>>;

    async fn manifest_by_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> MetadataResult<Option<StoredManifest>>;

    /// Deletes a manifest and every tag pointing at it, unless an index in the
    /// repository still lists it as a child.
    async fn delete_manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<DeleteOutcome>;

    /// Deletes one tag; the manifest stays.
    async fn delete_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> MetadataResult<DeleteOutcome>;

    /// Where the repository's set of tag names stands; it changes in the
    /// same transaction as any tag is added or removed. `None` when the
    /// repository is unknown.
    async fn tags_version(
        &self,
        repository: &RepositoryName,
    ) -> MetadataResult<Option<TagsVersion>>;

    /// Every tag name of the repository whose version was read, in byte order.
    async fn all_tags(&self, version: TagsVersion) -> MetadataResult<Vec<String>>;

    /// Repositories holding at least one manifest, after `last`, at most `limit`.
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> MetadataResult<Page>;

    /// Manifests of `repository` whose subject is `subject`, optionally only
    /// those of one artifact type, ordered by digest.
    async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> MetadataResult<Vec<Referrer>>;
}

/// Connects to the database named by `url` (`sqlite:` or `postgres://`) and
/// brings its schema up to date.
pub async fn connect(url: &str, max_connections: u32) -> MetadataResult<Stores> {
    if url.starts_with("sqlite:") {
        let store = std::sync::Arc::new(SqliteMetadataStore::connect(url, max_connections).await?);
        Ok(Stores {
            registry: store.clone(),
            collector: store.clone(),
            accounts: store,
        })
    } else {
        let store =
            std::sync::Arc::new(PostgresMetadataStore::connect(url, max_connections).await?);
        Ok(Stores {
            registry: store.clone(),
            collector: store.clone(),
            accounts: store,
        })
    }
}

/// One database seen through its three traits.
#[derive(Clone)]
pub struct Stores {
    pub registry: std::sync::Arc<dyn MetadataStore>,
    pub accounts: std::sync::Arc<dyn AccountStore>,
    pub collector: std::sync::Arc<dyn CollectorStore>,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn parse_digest(text: String) -> MetadataResult<Digest> {
    text.parse()
        .map_err(|_| MetadataError::Corrupt(format!("digest `{text}`")))
}
