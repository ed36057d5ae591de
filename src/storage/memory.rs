//! Blobs in memory, meant for tests: the whole [`BlobStore`] contract kept
//! with two maps, so code above the store (and the contract suite itself)
//! can run without a disk or a bucket.
//!
//! Bounded by nothing but memory: every staged and committed byte is held
//! until it is deleted, and nothing survives the process.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use futures_util::StreamExt;

use super::*;

#[derive(Default)]
pub struct MemoryBlobStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Staged bytes by upload id.
    staging: HashMap<String, Vec<u8>>,
    /// Committed blobs by key.
    blobs: HashMap<String, Bytes>,
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a single map operation, consistent
        // after any panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Per upload, like the other stores: two uploads of one digest never
    /// share a blob, so deleting one leaves the other.
    fn blob_key(digest: &Digest, upload_id: &str) -> String {
        format!(
            "blobs/{}/{}.{upload_id}",
            digest.algorithm().name(),
            digest.hex()
        )
    }
}

impl State {
    /// The staged bytes of `id`, if at least `len` are staged.
    fn staged(&mut self, id: &str, len: u64) -> Result<&mut Vec<u8>, StorageError> {
        match self.staging.get_mut(id) {
            Some(staged) if staged.len() as u64 >= len => Ok(staged),
            staged => Err(StorageError::StagingLost {
                found: staged.map_or(0, |s| s.len() as u64),
                expected: len,
            }),
        }
    }
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            min_chunk_size: None,
            reads_staged_uploads: true,
        }
    }

    async fn ping(&self) -> Result<(), StorageError> {
        Ok(())
    }

    async fn begin_upload(&self, id: &str) -> Result<String, StorageError> {
        self.state().staging.insert(id.to_string(), Vec::new());
        Ok(String::new())
    }

    async fn append(
        &self,
        upload: &StagedUpload,
        offset: u64,
        body: &mut ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended, AppendError> {
        // What a failed append left past `offset` goes first.
        self.state()
            .staged(&upload.id, offset)?
            .truncate(offset as usize);
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            // A failed body leaves what came before in staging, as a disk
            // would; the next append cuts it off.
            let chunk = chunk.map_err(AppendError::Body)?;
            observe(&chunk);
            // Staging aborted meanwhile is lost, like a removed file.
            self.state()
                .staged(&upload.id, offset + written)?
                .extend_from_slice(&chunk);
            written += chunk.len() as u64;
        }
        Ok(Appended {
            written,
            storage_state: upload.storage_state.clone(),
        })
    }

    async fn read_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        let bytes = Bytes::copy_from_slice(&self.state().staged(&upload.id, len)?[..len as usize]);
        Ok(one_chunk(bytes))
    }

    async fn commit_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
        digest: &Digest,
    ) -> Result<String, StorageError> {
        let key = Self::blob_key(digest, &upload.id);
        let mut state = self.state();
        // Committed before: the staging is gone and the blob is there.
        if !state.staging.contains_key(&upload.id)
            && state.blobs.get(&key).is_some_and(|b| b.len() as u64 == len)
        {
            return Ok(key);
        }
        state.staged(&upload.id, len)?;
        let mut staged = state.staging.remove(&upload.id).expect("checked above");
        staged.truncate(len as usize);
        state.blobs.insert(key.clone(), Bytes::from(staged));
        Ok(key)
    }

    async fn abort_upload(&self, upload: &StagedUpload) -> Result<(), StorageError> {
        self.state().staging.remove(&upload.id);
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let blob = self
            .state()
            .blobs
            .get(key)
            .cloned()
            .ok_or(StorageError::NotFound)?;
        let bytes = match range {
            None => blob,
            Some(range) if range.start <= range.end && range.end < blob.len() as u64 => {
                blob.slice(range.start as usize..=range.end as usize)
            }
            Some(_) => {
                return Err(StorageError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the range is not within the blob",
                )));
            }
        };
        Ok(one_chunk(bytes))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.state().blobs.remove(key);
        Ok(())
    }
}

/// A stream of `bytes` (nothing at all when it is empty, as from a file).
fn one_chunk(bytes: Bytes) -> ByteStream {
    let chunk = (!bytes.is_empty()).then_some(Ok(bytes));
    Box::pin(futures_util::stream::iter(chunk))
}
