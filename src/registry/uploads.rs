//! Upload sessions: start, append chunks, finish with a digest check, cancel.
//!
//! A session's offset, hash state and storage state live in the metadata
//! store and advance with a compare-and-set on the offset, so a chunk that
//! arrives out of order, twice, or after a restart is refused or resumed
//! correctly. The digest is computed while the bytes stream to storage and
//! never by reading the blob back (except to check an algorithm other than
//! the one the session hashed with).

use futures_util::StreamExt;

use super::{BlobStat, Registry, RegistryError, RegistryResult};
use crate::metadata::{BlobCommit, NewBlob, QuotaExceeded, UploadSession};
use crate::oci::range::ByteRange;
use crate::oci::{Algorithm, BlobHasher, Digest, RepositoryName};
use crate::storage::{AppendError, ByteStream, StagedUpload, StorageError};
use crate::sync::KeyedLocks;

/// Where an upload stands, as reported to the client.
#[derive(Debug, Clone)]
pub struct UploadState {
    pub id: String,
    pub received: u64,
}

/// One request body of an upload, with what the client announced about it.
pub struct ChunkBody {
    pub range: Option<ByteRange>,
    pub content_length: Option<u64>,
    pub stream: ByteStream,
}

/// Serializes requests on one session within this process, so two racing
/// chunks never write the same staging bytes; across processes the offset
/// compare-and-set in the metadata store decides.
pub(super) type UploadLocks = KeyedLocks<tokio::sync::Mutex<()>>;

fn staged(session: &UploadSession) -> StagedUpload {
    StagedUpload {
        id: session.id.clone(),
        storage_state: session.storage_state.clone(),
    }
}

fn state(session: &UploadSession) -> UploadState {
    UploadState {
        id: session.id.clone(),
        received: session.received,
    }
}

impl Registry {
    pub async fn start_upload(&self, repository: &RepositoryName) -> RegistryResult<UploadState> {
        let session = self.new_session(repository, Algorithm::Sha256).await?;
        Ok(state(&session))
    }

    async fn new_session(
        &self,
        repository: &RepositoryName,
        algorithm: Algorithm,
    ) -> RegistryResult<UploadSession> {
        let id = uuid::Uuid::new_v4().to_string();
        let storage_state = self.blobs.begin_upload(&id).await?;
        let session = UploadSession {
            id,
            received: 0,
            hash_state: BlobHasher::new(algorithm).save(),
            storage_state,
        };
        if let Err(e) = self.metadata.create_upload(repository, &session).await {
            let _ = self.blobs.abort_upload(&staged(&session)).await;
            return Err(e.into());
        }
        Ok(session)
    }

    async fn session(
        &self,
        repository: &RepositoryName,
        id: &str,
    ) -> RegistryResult<UploadSession> {
        self.metadata
            .upload(repository, id)
            .await?
            .ok_or(RegistryError::UploadUnknown)
    }

    pub async fn upload_status(
        &self,
        repository: &RepositoryName,
        id: &str,
    ) -> RegistryResult<UploadState> {
        Ok(state(&self.session(repository, id).await?))
    }

    pub async fn append_chunk(
        &self,
        repository: &RepositoryName,
        id: &str,
        chunk: ChunkBody,
    ) -> RegistryResult<UploadState> {
        let lock = self.upload_locks.get(id);
        let _guard = lock.lock().await;
        let session = self.session(repository, id).await?;
        let session = self.append_locked(repository, session, chunk).await?;
        Ok(state(&session))
    }

    /// Completes an upload, with an optional last chunk, if its content has `digest`.
    pub async fn finish_upload(
        &self,
        repository: &RepositoryName,
        id: &str,
        digest: &Digest,
        last_chunk: Option<ChunkBody>,
    ) -> RegistryResult<BlobStat> {
        let lock = self.upload_locks.get(id);
        let _guard = lock.lock().await;
        let mut session = self.session(repository, id).await?;
        let saved_offset = session.received;
        if let Some(chunk) = last_chunk {
            session = self.append_unrecorded(session, chunk).await?;
        }
        self.commit_session(repository, session, saved_offset, digest)
            .await
    }

    /// A whole blob in one request (`POST ...?digest=`).
    pub async fn upload_monolithic(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        body: ChunkBody,
    ) -> RegistryResult<BlobStat> {
        let session = self.new_session(repository, digest.algorithm()).await?;
        let result = match self.append_unrecorded(session.clone(), body).await {
            Ok(appended) => {
                self.commit_session(repository, appended, session.received, digest)
                    .await
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.discard(repository, &session).await;
        }
        result
    }

    pub async fn cancel_upload(&self, repository: &RepositoryName, id: &str) -> RegistryResult<()> {
        let lock = self.upload_locks.get(id);
        let _guard = lock.lock().await;
        let session = self.session(repository, id).await?;
        self.discard(repository, &session).await;
        Ok(())
    }

    /// Forgets a session and its staging data. Best effort on storage: an
    /// unreferenced staging file is harmless and collected later.
    async fn discard(&self, repository: &RepositoryName, session: &UploadSession) {
        if let Err(e) = self.metadata.delete_upload(repository, &session.id).await {
            tracing::warn!(upload = %session.id, error = %e, "could not delete upload session");
        }
        if let Err(e) = self.blobs.abort_upload(&staged(session)).await {
            tracing::warn!(upload = %session.id, error = %e, "could not remove upload staging data");
        }
    }

    /// Appends a chunk and saves the session's new offset and state, for a
    /// request that leaves the upload open.
    async fn append_locked(
        &self,
        repository: &RepositoryName,
        session: UploadSession,
        chunk: ChunkBody,
    ) -> RegistryResult<UploadSession> {
        let expected = session.received;
        let session = self.append_unrecorded(session, chunk).await?;
        if session.received != expected && !self.metadata.advance_upload(&session, expected).await?
        {
            return Err(self.session_moved(repository, &session.id).await);
        }
        Ok(session)
    }

    /// The answer to a request whose session another request moved
    /// meanwhile: where the session now stands, or that it is gone.
    async fn session_moved(&self, repository: &RepositoryName, id: &str) -> RegistryError {
        match self.session(repository, id).await {
            Ok(current) => RegistryError::ChunkOutOfOrder {
                received: current.received,
            },
            Err(e) => e,
        }
    }

    /// Appends a chunk to staging and returns the session as it now stands,
    /// without saving it: a request that commits right after saves a write
    /// to the metadata store, and the commit checks the offset it started
    /// from instead.
    async fn append_unrecorded(
        &self,
        mut session: UploadSession,
        mut chunk: ChunkBody,
    ) -> RegistryResult<UploadSession> {
        if let Some(range) = chunk.range {
            if range.start != session.received {
                return Err(RegistryError::ChunkOutOfOrder {
                    received: session.received,
                });
            }
            if let Some(length) = chunk.content_length.filter(|l| *l != range.len()) {
                return Err(RegistryError::SizeInvalid(format!(
                    "Content-Length is {length} but Content-Range covers {} bytes",
                    range.len()
                )));
            }
        }
        if chunk.content_length == Some(0) {
            return Ok(session);
        }
        let mut hasher = BlobHasher::restore(&session.hash_state).map_err(|_| {
            RegistryError::Internal(format!("hash state of upload {} is corrupt", session.id))
        })?;
        let appended = self
            .blobs
            .append(
                &staged(&session),
                session.received,
                &mut chunk.stream,
                &mut |bytes| hasher.update(bytes),
            )
            .await
            .map_err(|e| match e {
                AppendError::Body(e) => RegistryError::UploadInvalid(format!(
                    "the request body ended before it was complete: {e}"
                )),
                AppendError::Storage(e) => e.into(),
            })?;
        if let Some(range) = chunk.range.filter(|r| r.len() != appended.written) {
            return Err(RegistryError::SizeInvalid(format!(
                "received {} bytes but Content-Range announced {}",
                appended.written,
                range.len()
            )));
        }
        if appended.written == 0 {
            return Ok(session);
        }
        session.received += appended.written;
        session.hash_state = hasher.save();
        session.storage_state = appended.storage_state;
        Ok(session)
    }

    /// Verifies and commits a session whose metadata row still says
    /// `saved_offset` bytes (less than `session.received` when this request
    /// appended a last chunk).
    async fn commit_session(
        &self,
        repository: &RepositoryName,
        session: UploadSession,
        saved_offset: u64,
        digest: &Digest,
    ) -> RegistryResult<BlobStat> {
        let hasher = BlobHasher::restore(&session.hash_state).map_err(|_| {
            RegistryError::Internal(format!("hash state of upload {} is corrupt", session.id))
        })?;
        if hasher.algorithm() != digest.algorithm() {
            return self
                .commit_rehashed(repository, session, saved_offset, digest)
                .await;
        }
        let actual = hasher.finish();
        self.commit_if_verified(repository, session, saved_offset, digest, actual)
            .await
    }

    /// Commits and records the session's blob when its content hashed to
    /// `digest` (`actual`); otherwise discards the session.
    async fn commit_if_verified(
        &self,
        repository: &RepositoryName,
        session: UploadSession,
        saved_offset: u64,
        digest: &Digest,
        actual: Digest,
    ) -> RegistryResult<BlobStat> {
        if actual != *digest {
            self.discard(repository, &session).await;
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let key = self
            .blobs
            .commit_upload(&staged(&session), session.received, digest)
            .await?;
        self.record_blob(repository, &session, saved_offset, digest, key)
            .await
    }

    /// Records a committed blob; removes our copy when the same content was
    /// committed earlier under another key (two uploads of one blob racing on
    /// an object store: the first stays).
    async fn record_blob(
        &self,
        repository: &RepositoryName,
        session: &UploadSession,
        saved_offset: u64,
        digest: &Digest,
        key: String,
    ) -> RegistryResult<BlobStat> {
        let recorded = match self
            .metadata
            .commit_blob(NewBlob {
                repository: repository.clone(),
                upload_id: session.id.clone(),
                expected_received: saved_offset,
                digest: digest.clone(),
                size: session.received,
                storage_key: key.clone(),
            })
            .await?
        {
            BlobCommit::Recorded(recorded) => recorded,
            BlobCommit::QuotaExceeded(exceeded) => {
                // Nothing refers to our copy: it goes with the session.
                if let Err(e) = self.blobs.delete(&key).await {
                    tracing::warn!(%digest, key, error = %e, "could not remove a blob refused by a quota");
                }
                self.discard(repository, session).await;
                return Err(quota_error(&exceeded));
            }
            BlobCommit::SessionMoved => {
                // Our copy stays: a request racing on this session from
                // another instance commits to the same key and may have
                // recorded it, so deleting could lose its blob. At worst an
                // expired session leaves one unreferenced object.
                tracing::warn!(upload = %session.id, key, "upload session moved while its blob was committed");
                return Err(self.session_moved(repository, &session.id).await);
            }
        };
        if recorded != key
            && let Err(e) = self.blobs.delete(&key).await
        {
            tracing::warn!(%digest, key, error = %e, "could not remove a duplicate copy of a blob");
        }
        Ok(BlobStat {
            digest: digest.clone(),
            size: session.received,
        })
    }

    /// The client names a digest of another algorithm than the session
    /// hashed with: hash the content again. From staging where the store can
    /// read it back; otherwise (S3 parts are unreadable before completion)
    /// by committing to the upload's own key, reading that, and deleting it
    /// on a mismatch. Either way nothing unverified is ever recorded.
    async fn commit_rehashed(
        &self,
        repository: &RepositoryName,
        session: UploadSession,
        saved_offset: u64,
        digest: &Digest,
    ) -> RegistryResult<BlobStat> {
        if self.blobs.capabilities().reads_staged_uploads {
            let actual = self.rehash_staged(&session, digest.algorithm()).await?;
            return self
                .commit_if_verified(repository, session, saved_offset, digest, actual)
                .await;
        }
        let key = self
            .blobs
            .commit_upload(&staged(&session), session.received, digest)
            .await?;
        let mut hasher = BlobHasher::new(digest.algorithm());
        let mut stream = self.blobs.get(&key, None).await?;
        while let Some(bytes) = stream.next().await {
            hasher.update(&bytes.map_err(StorageError::Io)?);
        }
        let actual = hasher.finish();
        if actual == *digest {
            return self
                .record_blob(repository, &session, saved_offset, digest, key)
                .await;
        }
        if let Err(e) = self.blobs.delete(&key).await {
            tracing::warn!(key, error = %e, "could not remove a blob that failed verification");
        }
        self.discard(repository, &session).await;
        Err(RegistryError::DigestMismatch {
            expected: digest.clone(),
            actual,
        })
    }

    async fn rehash_staged(
        &self,
        session: &UploadSession,
        algorithm: Algorithm,
    ) -> RegistryResult<Digest> {
        let mut hasher = BlobHasher::new(algorithm);
        let mut stream = self
            .blobs
            .read_upload(&staged(session), session.received)
            .await?;
        while let Some(bytes) = stream.next().await {
            hasher.update(&bytes.map_err(StorageError::Io)?);
        }
        Ok(hasher.finish())
    }
}

/// The refusal a client sees when a push would exceed its namespace's quota.
pub fn quota_error(exceeded: &QuotaExceeded) -> RegistryError {
    RegistryError::Denied(format!(
        "the storage quota of namespace `{}` ({} bytes) would be exceeded: {} bytes used, this blob is {} bytes",
        exceeded.namespace, exceeded.limit, exceeded.used, exceeded.size
    ))
}
