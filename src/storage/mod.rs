//! The blob store: committed blobs under keys the store chooses per upload
//! (recorded in metadata, never derived from the digest), plus the staging
//! area where uploads are assembled. It knows nothing of repositories or tags.
//!
//! Called by `registry` and `gc` (opened by `server`); calls nothing else in
//! the crate but `oci` (and the leaves `sync`, and `setting` for the
//! `[storage]` and `[s3]` settings in `settings.rs`). The contract every
//! implementation keeps: a blob becomes readable under its key only by an
//! atomic commit of fully received staging data, so a reader never sees a
//! partial blob. One behaviour suite (`tests/api/blob_stores.rs`) holds
//! every store to it.

mod filesystem;
mod memory;
mod metered;
mod s3;
mod settings;

use std::io;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use crate::oci::Digest;
use crate::oci::range::ByteRange;

pub use filesystem::FilesystemBlobStore;
pub use memory::MemoryBlobStore;
pub use metered::MeteredBlobStore;
pub use s3::{S3BlobStore, S3Config};
pub use settings::{S3Settings, StorageConfig, StorageSettings};

/// A stream of body bytes, from a client or from storage.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("blob not found in storage")]
    NotFound,
    #[error(
        "upload staging data is missing or shorter ({found} bytes) than recorded ({expected} bytes)"
    )]
    StagingLost { found: u64, expected: u64 },
    #[error("storage I/O error: {0}")]
    Io(#[from] io::Error),
    /// The store could not be reached or refused the request (after retries).
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
}

/// What a blob store can do, stated up front so that callers choose their
/// way instead of trying a call and matching its failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// The smallest chunk (except the last) the store can take, if any: S3's
    /// multipart part size. Announced to clients as `OCI-Chunk-Min-Length`.
    pub min_chunk_size: Option<u64>,
    /// Whether staged bytes can be read back before the commit
    /// ([`BlobStore::read_upload`]). The filesystem can; S3 cannot, as the
    /// parts of a multipart upload cannot be read before it is completed.
    pub reads_staged_uploads: bool,
}

/// Why appending to an upload stopped.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The client's body ended early or broke; what was written past the
    /// session's recorded offset is discarded on the next append.
    #[error("request body failed: {0}")]
    Body(io::Error),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An upload as the store sees it: its id and the store's own state for it
/// (kept in the metadata store between requests).
#[derive(Debug, Clone)]
pub struct StagedUpload {
    pub id: String,
    pub storage_state: String,
}

#[derive(Debug)]
pub struct Appended {
    pub written: u64,
    pub storage_state: String,
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// What this store can do; the same for the store's whole life.
    fn capabilities(&self) -> Capabilities;

    /// Succeeds when the store can be reached.
    async fn ping(&self) -> Result<(), StorageError>;

    /// Prepares staging for a new upload and returns its initial storage state.
    async fn begin_upload(&self, id: &str) -> Result<String, StorageError>;

    /// Appends `body` to the upload at `offset` (the session's recorded
    /// length). Anything staged beyond `offset` by an earlier, failed append
    /// is discarded first. Every chunk is passed to `observe` before it is
    /// written, so the caller can hash in the same pass.
    async fn append(
        &self,
        upload: &StagedUpload,
        offset: u64,
        body: &mut ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended, AppendError>;

    /// Reads back the first `len` staged bytes (used only to verify a digest
    /// with an algorithm other than the one hashed while streaming).
    ///
    /// Call it only on a store whose [`Capabilities::reads_staged_uploads`]
    /// is set; one that cannot read staging back may fail with any error
    /// (an I/O error saying so).
    async fn read_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
    ) -> Result<ByteStream, StorageError>;

    /// Makes the first `len` staged bytes a committed blob, atomically, and
    /// returns the key it is stored under (recorded in metadata). `digest`
    /// has been verified by the caller. Idempotent: committing again returns
    /// the same key.
    async fn commit_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
        digest: &Digest,
    ) -> Result<String, StorageError>;

    /// Removes an upload's staging data. Succeeds when there is none.
    async fn abort_upload(&self, upload: &StagedUpload) -> Result<(), StorageError>;

    /// Streams the committed blob stored under `key`, or a range of it.
    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StorageError>;

    /// Removes the committed blob under `key`. Succeeds when it is already gone.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;

    /// A short-lived URL from which a client may download the blob directly,
    /// when the store is configured to hand those out; `None` otherwise.
    async fn download_url(&self, _key: &str) -> Result<Option<String>, StorageError> {
        Ok(None)
    }
}
