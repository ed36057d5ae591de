//! The registry's own logic: upload sessions, blob reads and links,
//! manifest checks, tags and referrers.
//!
//! Called by `http`; calls `metadata`, `storage` and `oci`. Bytes are always
//! written to the blob store before metadata points at them, so metadata
//! never names a blob that storage lacks.

mod blobs;
mod error;
mod manifests;
mod tag_lists;
mod uploads;

use std::sync::Arc;

use crate::metadata::MetadataStore;
use crate::storage::BlobStore;

pub use blobs::{BlobBody, BlobStat};
pub use error::RegistryError;
pub use manifests::{ListPage, PushedManifest};
pub use uploads::{ChunkBody, UploadState};

pub type RegistryResult<T> = Result<T, RegistryError>;

pub struct Registry {
    metadata: Arc<dyn MetadataStore>,
    blobs: Arc<dyn BlobStore>,
    upload_locks: uploads::UploadLocks,
    tag_lists: tag_lists::TagLists,
}

impl Registry {
    pub fn new(metadata: Arc<dyn MetadataStore>, blobs: Arc<dyn BlobStore>) -> Self {
        Self {
            metadata,
            blobs,
            upload_locks: uploads::UploadLocks::default(),
            tag_lists: tag_lists::TagLists::default(),
        }
    }

    /// For metrics: the store's own figures (pool use, open uploads).
    pub fn metadata(&self) -> &dyn MetadataStore {
        self.metadata.as_ref()
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
