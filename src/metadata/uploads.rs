//! Upload sessions: a row per session with the bytes accepted so far, the
//! hash state after them and the blob store's own state, advanced by a
//! compare-and-set on the offset so a racing or replayed chunk changes
//! nothing. A session ends when its blob is recorded (`blobs.rs`), when it
//! is cancelled, or when the collector expires it.

use super::db::Value;
use super::repositories::ensure_repository;
use super::{MetadataResult, RegistryStore, size, unix_now};
use crate::oci::RepositoryName;

/// An upload session as stored: how many bytes have been accepted, the hash
/// state after them, and whatever the blob store needs to continue it.
#[derive(Debug, Clone)]
pub struct UploadSession {
    pub id: String,
    pub received: u64,
    pub hash_state: Vec<u8>,
    pub storage_state: String,
}

/// A new session into the repository named `$2`, when it exists.
const INTO_EXISTING: &str = "INSERT INTO uploads (id, repository_id, received, hash_state, storage_state, created_at, updated_at) \
     SELECT $1, id, $3, $4, $5, $6, $6 FROM repositories WHERE name = $2";
/// A new session into the repository with id `$2`.
const INTO_NEW: &str = "INSERT INTO uploads (id, repository_id, received, hash_state, storage_state, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6)";

impl RegistryStore {
    /// Upload sessions open in the registry (all instances).
    pub async fn upload_count(&self) -> MetadataResult<u64> {
        self.db
            .read(async |conn| {
                let count: i64 = conn.scalar("SELECT COUNT(*) FROM uploads", &[]).await?;
                Ok(size(count))
            })
            .await
    }

    /// Records a new upload session, creating the repository if needed.
    pub async fn create_upload(
        &self,
        repository: &RepositoryName,
        session: &UploadSession,
    ) -> MetadataResult<()> {
        let (repository, session) = (repository.to_string(), session.clone());
        let now = unix_now();
        // Each statement stands alone, so none needs a transaction around
        // it (on PostgreSQL two round trips more): a repository row is never
        // deleted, and one created for an upload that then fails is harmless.
        self.db
            .autocommit(async move |conn| {
                let values = |repository| {
                    [
                        Value::Text(&session.id),
                        repository,
                        (session.received as i64).into(),
                        Value::Bytes(&session.hash_state),
                        Value::Text(&session.storage_state),
                        now.into(),
                    ]
                };
                // Into an existing repository, the usual case: one statement.
                let inserted = conn
                    .execute(INTO_EXISTING, &values(Value::Text(&repository)))
                    .await?;
                if inserted == 0 {
                    let repository_id = ensure_repository(conn, &repository).await?;
                    conn.execute(INTO_NEW, &values(repository_id.into()))
                        .await?;
                }
                Ok(())
            })
            .await
    }

    /// The session `id` if it exists and belongs to `repository`.
    pub async fn upload(
        &self,
        repository: &RepositoryName,
        id: &str,
    ) -> MetadataResult<Option<UploadSession>> {
        let (repository, id) = (repository.to_string(), id.to_string());
        self.db
            .lookup(async move |conn| {
                conn.query_optional(
                    "SELECT u.id, u.received, u.hash_state, u.storage_state FROM uploads u \
                     JOIN repositories r ON r.id = u.repository_id WHERE r.name = $1 AND u.id = $2",
                    &[Value::Text(&repository), Value::Text(&id)],
                    |row| {
                        Ok(UploadSession {
                            id: row.get(0)?,
                            received: size(row.get(1)?),
                            hash_state: row.get(2)?,
                            storage_state: row.get(3)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Moves a session from `expected_received` bytes to `session.received`,
    /// saving its new hash and storage state. Returns false, changing nothing,
    /// when the session is gone or its offset is no longer `expected_received`
    /// (a concurrent or replayed chunk).
    pub async fn advance_upload(
        &self,
        session: &UploadSession,
        expected_received: u64,
    ) -> MetadataResult<bool> {
        let session = session.clone();
        self.db
            .autocommit(async move |conn| {
                let updated = conn
                    .execute(
                        "UPDATE uploads SET received = $1, hash_state = $2, storage_state = $3, updated_at = $4 \
                         WHERE id = $5 AND received = $6",
                        &[
                            (session.received as i64).into(),
                            Value::Bytes(&session.hash_state),
                            Value::Text(&session.storage_state),
                            unix_now().into(),
                            Value::Text(&session.id),
                            (expected_received as i64).into(),
                        ],
                    )
                    .await?;
                Ok(updated == 1)
            })
            .await
    }

    /// Forgets an upload session. Returns false when there was none.
    pub async fn delete_upload(
        &self,
        repository: &RepositoryName,
        id: &str,
    ) -> MetadataResult<bool> {
        let (repository, id) = (repository.to_string(), id.to_string());
        self.db
            .autocommit(async move |conn| {
                let deleted = conn
                    .execute(
                        "DELETE FROM uploads WHERE id = $1 \
                         AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
                        &[Value::Text(&id), Value::Text(&repository)],
                    )
                    .await?;
                Ok(deleted > 0)
            })
            .await
    }
}
