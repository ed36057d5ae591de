//! Blobs and their links: a row per distinct blob (`blobs`, with where its
//! bytes are in the blob store) and a row per repository allowed to read it
//! (`repository_blobs`). A blob is recorded only after its bytes are
//! committed to storage, in the transaction that ends its upload session.

use super::collector::{queue_blob_review, queue_link_review};
use super::db::{Conn, Finish, Lock, Value};
use super::events::{EventAction, NewEvent, Origin, record_change};
use super::manifests::{DeleteOutcome, NAMED_USERS};
use super::policy::{QuotaExceeded, check_quota};
use super::repositories::{ensure_repository, repository_id};
use super::{MetadataError, MetadataResult, RegistryStore, parse_digest, size, unix_now};
use crate::oci::{Digest, RepositoryName};

/// A blob readable through a repository, and where its bytes are.
#[derive(Debug, Clone)]
pub struct LinkedBlob {
    pub size: u64,
    pub storage_key: String,
}

/// A verified blob whose bytes are committed to storage, to be recorded by
/// [`RegistryStore::commit_blob`].
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

/// The size and key of blob `$2` if repository `$1` may read it.
const LINKED_BLOB: &str = "SELECT b.size, b.storage_key FROM repository_blobs rb \
     JOIN repositories r ON r.id = rb.repository_id \
     JOIN blobs b ON b.digest = rb.blob_digest \
     WHERE r.name = $1 AND rb.blob_digest = $2";

/// Links blob `digest` into the repository (if not linked yet) and queues a
/// review of the link, which a manifest may never come to use.
pub(super) async fn link_blob(
    conn: &mut Conn<'_>,
    repository_id: i64,
    digest: &str,
) -> MetadataResult<()> {
    conn.execute(
        "INSERT INTO repository_blobs (repository_id, blob_digest, created_at) VALUES ($1, $2, $3) \
         ON CONFLICT (repository_id, blob_digest) DO NOTHING",
        &[repository_id.into(), digest.into(), unix_now().into()],
    )
    .await?;
    queue_link_review(conn, repository_id, digest).await
}

/// Records blob `digest` stored under `storage_key`, or finds it recorded;
/// returns the key it is kept under (an earlier upload's, when there was
/// one). An upsert that locks the row (the no-op update): a collector
/// reviewing this blob skips it until the transaction commits, and if it
/// has just deleted the row, this one is inserted afresh.
pub(super) async fn upsert_blob(
    conn: &mut Conn<'_>,
    digest: &str,
    blob_size: u64,
    storage_key: &str,
) -> MetadataResult<String> {
    let recorded: Option<String> = conn
        .scalar(
            "INSERT INTO blobs (digest, size, created_at, storage_key) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO UPDATE SET size = blobs.size RETURNING storage_key",
            &[
                digest.into(),
                (blob_size as i64).into(),
                unix_now().into(),
                Value::Text(storage_key),
            ],
        )
        .await?;
    Ok(recorded.unwrap_or_else(|| storage_key.to_string()))
}

async fn commit_blob(conn: &mut Conn<'_>, blob: &NewBlob) -> MetadataResult<Finish<BlobCommit>> {
    let digest = blob.digest.as_str();
    if let Some(exceeded) = check_quota(conn, blob.repository.as_str(), digest, blob.size).await? {
        return Ok(Finish::RollBack(BlobCommit::QuotaExceeded(exceeded)));
    }
    let recorded = upsert_blob(conn, digest, blob.size, &blob.storage_key).await?;
    // Ends the session if no one moved it meanwhile; its row names the
    // repository.
    let repository_id: Option<i64> = conn
        .optional_scalar(
            "DELETE FROM uploads WHERE id = $1 AND received = $2 RETURNING repository_id",
            &[
                Value::Text(&blob.upload_id),
                (blob.expected_received as i64).into(),
            ],
        )
        .await?;
    let Some(repository_id) = repository_id else {
        return Ok(Finish::RollBack(BlobCommit::SessionMoved));
    };
    link_blob(conn, repository_id, digest).await?;
    Ok(Finish::Commit(BlobCommit::Recorded(recorded)))
}

async fn mount_blob(
    conn: &mut Conn<'_>,
    origin: &Origin,
    repository: &str,
    from: &str,
    digest: &str,
) -> MetadataResult<Finish<Mounted>> {
    // Locked, so a collector cannot unlink it from the source before this commits.
    let sql = conn.locked(
        "SELECT b.size FROM repository_blobs rb \
         JOIN repositories r ON r.id = rb.repository_id \
         JOIN blobs b ON b.digest = rb.blob_digest \
         WHERE r.name = $1 AND rb.blob_digest = $2",
        Lock::Share,
    );
    let Some(blob_size) = conn
        .optional_scalar::<i64>(&sql, &[from.into(), digest.into()])
        .await?
    else {
        return Ok(Finish::RollBack(Mounted::NotInSource));
    };
    let blob_size = size(blob_size);
    if let Some(exceeded) = check_quota(conn, repository, digest, blob_size).await? {
        return Ok(Finish::RollBack(Mounted::QuotaExceeded(exceeded)));
    }
    let repository_id = ensure_repository(conn, repository).await?;
    link_blob(conn, repository_id, digest).await?;
    let event = NewEvent {
        digest: Some(digest),
        size: Some(blob_size),
        media_type: Some("application/octet-stream"),
        from_repository: Some(from),
        ..NewEvent::new(EventAction::BlobMounted, repository)
    };
    record_change(conn, origin, &event).await?;
    Ok(Finish::Commit(Mounted::Linked(blob_size)))
}

async fn unlink_blob(
    conn: &mut Conn<'_>,
    repository: &str,
    digest: &str,
) -> MetadataResult<DeleteOutcome> {
    let Some(repository_id) = repository_id(conn, repository).await? else {
        return Ok(DeleteOutcome::NotFound);
    };
    let users: Vec<String> = conn
        .scalars(
            "SELECT m.digest FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id \
             WHERE m.repository_id = $1 AND mb.blob_digest = $2 ORDER BY m.digest LIMIT $3",
            &[repository_id.into(), digest.into(), NAMED_USERS.into()],
        )
        .await?;
    if !users.is_empty() {
        let users = users
            .into_iter()
            .map(parse_digest)
            .collect::<Result<_, _>>()?;
        return Ok(DeleteOutcome::ReferencedBy(users));
    }
    let deleted = conn
        .execute(
            "DELETE FROM repository_blobs WHERE repository_id = $1 AND blob_digest = $2",
            &[repository_id.into(), digest.into()],
        )
        .await?;
    if deleted == 0 {
        return Ok(DeleteOutcome::NotFound);
    }
    queue_blob_review(conn, digest).await?;
    Ok(DeleteOutcome::Deleted)
}

impl RegistryStore {
    /// The blob `digest` if it is linked to `repository`; `None` otherwise
    /// (including when the blob exists only in other repositories).
    pub async fn linked_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<Option<LinkedBlob>> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .lookup(async move |conn| {
                let row = conn
                    .query_optional(
                        LINKED_BLOB,
                        &[Value::Text(&repository), Value::Text(&digest)],
                        |row| Ok((row.get::<i64>(0)?, row.get::<Option<String>>(1)?)),
                    )
                    .await?;
                row.map(|(blob_size, key)| {
                    Ok(LinkedBlob {
                        size: size(blob_size),
                        storage_key: key.ok_or_else(|| {
                            MetadataError::Corrupt(format!("blob {digest} has no storage key"))
                        })?,
                    })
                })
                .transpose()
            })
            .await
    }

    /// Repositories that may read blob `digest`, after `last` by name, at
    /// most `limit`: where a mount without `from` may find it.
    pub async fn repositories_with_blob(
        &self,
        digest: &Digest,
        last: Option<&str>,
        limit: u32,
    ) -> MetadataResult<super::Page> {
        let (digest, last) = (digest.to_string(), last.unwrap_or("").to_string());
        self.db
            .read(async move |conn| {
                let names = conn
                    .scalars(
                        "SELECT r.name FROM repository_blobs rb \
                         JOIN repositories r ON r.id = rb.repository_id \
                         WHERE rb.blob_digest = $1 AND r.name > $2 ORDER BY r.name LIMIT $3",
                        &[
                            Value::Text(&digest),
                            Value::Text(&last),
                            (i64::from(limit) + 1).into(),
                        ],
                    )
                    .await?;
                Ok(super::Page::of(names, limit))
            })
            .await
    }

    /// Links a blob readable in `from` into `repository` (a cross-repository
    /// mount), within the namespace's quota. Idempotent.
    pub async fn mount_blob(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<Mounted> {
        let (origin, repository, from, digest) = (
            origin.clone(),
            repository.to_string(),
            from.to_string(),
            digest.to_string(),
        );
        self.db
            .transaction(async move |conn| {
                mount_blob(conn, &origin, &repository, &from, &digest).await
            })
            .await
    }

    /// Removes the link of a blob from a repository, unless a manifest of
    /// that repository still refers to it. The bytes stay in blob storage
    /// until the collector finds the blob linked nowhere.
    pub async fn unlink_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<DeleteOutcome> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .write(async move |conn| unlink_blob(conn, &repository, &digest).await)
            .await
    }

    /// Records a verified blob whose bytes are already committed to storage
    /// under `blob.storage_key`, links it to its repository and ends its
    /// upload session, atomically, if the session is still at
    /// `blob.expected_received` bytes and the namespace's quota allows.
    /// Idempotent: the blob may already exist, globally or in the
    /// repository; the key already recorded then wins and is returned (the
    /// caller removes its now redundant copy).
    pub async fn commit_blob(&self, blob: NewBlob) -> MetadataResult<BlobCommit> {
        self.db
            .transaction(async move |conn| commit_blob(conn, &blob).await)
            .await
    }
}
