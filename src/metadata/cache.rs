//! The pull-through cache's records (on [`CacheStore`]): manifests fetched
//! from an upstream with their exact bytes (`cache_manifests`), what each tag
//! named when last asked (`cache_tags`), which linked blobs are cached and
//! when they were last pulled (`cache_blobs`), and who is fetching a blob
//! now (`cache_fills`). Blobs themselves are ordinary `blobs` rows linked
//! through `repository_blobs`, recorded within the namespace's quota.

use super::blobs::{link_blob, upsert_blob};
use super::collector::queue_link_review;
use super::db::{Conn, Finish, Value};
use super::policy::{QuotaExceeded, check_quota};
use super::repositories::{ensure_repository, repository_id};
use super::{MetadataResult, size, unix_now};
use crate::oci::{Digest, RepositoryName, Tag};

/// The cache's handle on the database.
#[derive(Clone)]
pub struct CacheStore {
    pub(super) db: super::db::Db,
}

/// A manifest as the upstream served it.
#[derive(Debug, Clone)]
pub struct CachedManifest {
    pub digest: String,
    pub media_type: String,
    pub payload: Vec<u8>,
    pub last_pulled_at: i64,
}

/// What a tag named when the upstream was last asked.
#[derive(Debug, Clone)]
pub struct CachedTag {
    pub digest: String,
    pub checked_at: i64,
    /// The manifest it names, unless evicted meanwhile.
    pub manifest: Option<CachedManifest>,
}

/// A cached blob of a repository.
#[derive(Debug, Clone, Copy)]
pub struct CachedBlob {
    pub size: u64,
    /// `None` when linked but no longer marked cached (evicted, the link
    /// not yet collected): a pull marks it again.
    pub last_pulled_at: Option<i64>,
}

/// What recording a fetched blob did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheCommit {
    /// Recorded; the storage key the blob is kept under (an earlier copy's
    /// when the content was already there: the caller removes its own).
    Recorded(String),
    QuotaExceeded(QuotaExceeded),
}

/// What linking a blob the database already holds did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLink {
    Linked(u64),
    /// No blob of that digest is recorded (any more).
    Absent,
    QuotaExceeded(QuotaExceeded),
}

/// What an eviction removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evicted {
    pub manifests: u64,
    pub blobs: u64,
}

const MANIFEST_COLUMNS: &str = "m.digest, m.media_type, m.payload, m.last_pulled_at";

fn cached_manifest(row: &super::db::Row<'_>, at: usize) -> MetadataResult<CachedManifest> {
    Ok(CachedManifest {
        digest: row.get(at)?,
        media_type: row.get(at + 1)?,
        payload: row.get(at + 2)?,
        last_pulled_at: row.get(at + 3)?,
    })
}

/// `name` starts with `prefix` (`hub/`), written without `LIKE`, whose `_`
/// is a wildcard and a valid name character.
const UNDER_PREFIX: &str = "substr(r.name, 1, length($1)) = $1";

async fn record_blob(
    conn: &mut Conn<'_>,
    repository: &str,
    digest: &str,
    blob_size: u64,
    storage_key: &str,
    upload_id: &str,
) -> MetadataResult<Finish<CacheCommit>> {
    if let Some(exceeded) = check_quota(conn, repository, digest, blob_size).await? {
        return Ok(Finish::RollBack(CacheCommit::QuotaExceeded(exceeded)));
    }
    let recorded = upsert_blob(conn, digest, blob_size, storage_key).await?;
    let repository_id = ensure_repository(conn, repository).await?;
    link_blob(conn, repository_id, digest).await?;
    mark_cached(conn, repository_id, digest).await?;
    conn.execute("DELETE FROM uploads WHERE id = $1", &[upload_id.into()])
        .await?;
    Ok(Finish::Commit(CacheCommit::Recorded(recorded)))
}

async fn mark_cached(conn: &mut Conn<'_>, repository_id: i64, digest: &str) -> MetadataResult<()> {
    conn.execute(
        "INSERT INTO cache_blobs (repository_id, blob_digest, last_pulled_at) VALUES ($1, $2, $3) \
         ON CONFLICT (repository_id, blob_digest) DO UPDATE SET last_pulled_at = excluded.last_pulled_at",
        &[repository_id.into(), digest.into(), unix_now().into()],
    )
    .await?;
    Ok(())
}

async fn link_recorded(
    conn: &mut Conn<'_>,
    repository: &str,
    digest: &str,
) -> MetadataResult<Finish<CacheLink>> {
    let sql = conn.locked(
        "SELECT size FROM blobs WHERE digest = $1",
        super::db::Lock::Share,
    );
    let Some(blob_size) = conn.optional_scalar::<i64>(&sql, &[digest.into()]).await? else {
        return Ok(Finish::RollBack(CacheLink::Absent));
    };
    let blob_size = size(blob_size);
    if let Some(exceeded) = check_quota(conn, repository, digest, blob_size).await? {
        return Ok(Finish::RollBack(CacheLink::QuotaExceeded(exceeded)));
    }
    let repository_id = ensure_repository(conn, repository).await?;
    link_blob(conn, repository_id, digest).await?;
    mark_cached(conn, repository_id, digest).await?;
    Ok(Finish::Commit(CacheLink::Linked(blob_size)))
}

async fn evict(
    conn: &mut Conn<'_>,
    prefix: &str,
    pulled_before: i64,
    limit: u32,
) -> MetadataResult<Evicted> {
    let manifests = conn
        .query(
            &format!(
                "SELECT m.repository_id, m.digest FROM cache_manifests m \
                 JOIN repositories r ON r.id = m.repository_id \
                 WHERE {UNDER_PREFIX} AND m.last_pulled_at < $2 LIMIT $3"
            ),
            &[prefix.into(), pulled_before.into(), i64::from(limit).into()],
            |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)),
        )
        .await?;
    for (repository_id, digest) in &manifests {
        let key = [Value::Int(*repository_id), Value::Text(digest)];
        conn.execute(
            "DELETE FROM cache_tags WHERE repository_id = $1 AND digest = $2",
            &key,
        )
        .await?;
        conn.execute(
            "DELETE FROM cache_manifests WHERE repository_id = $1 AND digest = $2",
            &key,
        )
        .await?;
    }
    let blobs = conn
        .query(
            &format!(
                "SELECT c.repository_id, c.blob_digest FROM cache_blobs c \
                 JOIN repositories r ON r.id = c.repository_id \
                 WHERE {UNDER_PREFIX} AND c.last_pulled_at < $2 LIMIT $3"
            ),
            &[prefix.into(), pulled_before.into(), i64::from(limit).into()],
            |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)),
        )
        .await?;
    for (repository_id, digest) in &blobs {
        conn.execute(
            "DELETE FROM cache_blobs WHERE repository_id = $1 AND blob_digest = $2",
            &[Value::Int(*repository_id), Value::Text(digest)],
        )
        .await?;
        // The collector takes the link (after its grace), then the blob.
        queue_link_review(conn, *repository_id, digest).await?;
    }
    Ok(Evicted {
        manifests: manifests.len() as u64,
        blobs: blobs.len() as u64,
    })
}

impl CacheStore {
    /// The manifest `digest` cached for `repository`.
    pub async fn manifest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<Option<CachedManifest>> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .read(async move |conn| {
                conn.query_optional(
                    &format!(
                        "SELECT {MANIFEST_COLUMNS} FROM cache_manifests m \
                         JOIN repositories r ON r.id = m.repository_id \
                         WHERE r.name = $1 AND m.digest = $2"
                    ),
                    &[Value::Text(&repository), Value::Text(&digest)],
                    |row| cached_manifest(row, 0),
                )
                .await
            })
            .await
    }

    /// What `tag` of `repository` named when last asked, with its manifest.
    pub async fn tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> MetadataResult<Option<CachedTag>> {
        let (repository, tag) = (repository.to_string(), tag.to_string());
        self.db
            .read(async move |conn| {
                conn.query_optional(
                    &format!(
                        "SELECT t.digest, t.checked_at, {MANIFEST_COLUMNS} FROM cache_tags t \
                         JOIN repositories r ON r.id = t.repository_id \
                         LEFT JOIN cache_manifests m \
                           ON m.repository_id = t.repository_id AND m.digest = t.digest \
                         WHERE r.name = $1 AND t.name = $2"
                    ),
                    &[Value::Text(&repository), Value::Text(&tag)],
                    |row| {
                        let manifest = match row.get::<Option<String>>(2)? {
                            Some(_) => Some(cached_manifest(row, 2)?),
                            None => None,
                        };
                        Ok(CachedTag {
                            digest: row.get(0)?,
                            checked_at: row.get(1)?,
                            manifest,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// The names of `repository`'s cached tags, in order: the tag list when
    /// the upstream cannot be asked.
    pub async fn tag_names(&self, repository: &RepositoryName) -> MetadataResult<Vec<String>> {
        let repository = repository.to_string();
        self.db
            .read(async move |conn| {
                conn.scalars(
                    "SELECT t.name FROM cache_tags t JOIN repositories r ON r.id = t.repository_id \
                     WHERE r.name = $1 ORDER BY t.name",
                    &[Value::Text(&repository)],
                )
                .await
            })
            .await
    }

    /// Records a manifest fetched from upstream (its bytes exactly as
    /// served) and, when fetched by tag, what the tag names now.
    pub async fn store_manifest(
        &self,
        repository: &RepositoryName,
        manifest: CachedManifest,
        tag: Option<&Tag>,
    ) -> MetadataResult<()> {
        let repository = repository.to_string();
        let tag = tag.map(Tag::to_string);
        self.db
            .write(async move |conn| {
                let repository_id = ensure_repository(conn, &repository).await?;
                let now = unix_now();
                conn.execute(
                    "INSERT INTO cache_manifests \
                     (repository_id, digest, media_type, payload, fetched_at, last_pulled_at) \
                     VALUES ($1, $2, $3, $4, $5, $5) \
                     ON CONFLICT (repository_id, digest) DO UPDATE SET last_pulled_at = excluded.last_pulled_at",
                    &[
                        repository_id.into(),
                        Value::Text(&manifest.digest),
                        Value::Text(&manifest.media_type),
                        Value::Bytes(&manifest.payload),
                        now.into(),
                    ],
                )
                .await?;
                if let Some(tag) = &tag {
                    conn.execute(
                        "INSERT INTO cache_tags (repository_id, name, digest, checked_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (repository_id, name) \
                         DO UPDATE SET digest = excluded.digest, checked_at = excluded.checked_at",
                        &[
                            repository_id.into(),
                            Value::Text(tag),
                            Value::Text(&manifest.digest),
                            now.into(),
                        ],
                    )
                    .await?;
                }
                Ok(())
            })
            .await
    }

    /// The upstream confirmed that `tag` still names what the cache holds.
    pub async fn tag_confirmed(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> MetadataResult<()> {
        let (repository, tag) = (repository.to_string(), tag.to_string());
        self.db
            .autocommit(async move |conn| {
                conn.execute(
                    "UPDATE cache_tags SET checked_at = $3 WHERE name = $2 \
                     AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
                    &[
                        Value::Text(&repository),
                        Value::Text(&tag),
                        unix_now().into(),
                    ],
                )
                .await?;
                Ok(())
            })
            .await
    }

    /// Notes a pull of a cached manifest (for eviction).
    pub async fn manifest_pulled(
        &self,
        repository: &RepositoryName,
        digest: &str,
    ) -> MetadataResult<()> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .autocommit(async move |conn| {
                conn.execute(
                    "UPDATE cache_manifests SET last_pulled_at = $3 WHERE digest = $2 \
                     AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
                    &[
                        Value::Text(&repository),
                        Value::Text(&digest),
                        unix_now().into(),
                    ],
                )
                .await?;
                Ok(())
            })
            .await
    }

    /// The blob `digest` if linked to `repository`, with when it was last pulled.
    pub async fn blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<Option<CachedBlob>> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .read(async move |conn| {
                conn.query_optional(
                    "SELECT b.size, c.last_pulled_at FROM repository_blobs rb \
                     JOIN repositories r ON r.id = rb.repository_id \
                     JOIN blobs b ON b.digest = rb.blob_digest \
                     LEFT JOIN cache_blobs c \
                       ON c.repository_id = rb.repository_id AND c.blob_digest = rb.blob_digest \
                     WHERE r.name = $1 AND rb.blob_digest = $2",
                    &[Value::Text(&repository), Value::Text(&digest)],
                    |row| {
                        Ok(CachedBlob {
                            size: size(row.get(0)?),
                            last_pulled_at: row.get(1)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Whether any repository holds blob `digest` (so its bytes are here).
    pub async fn blob_recorded(&self, digest: &Digest) -> MetadataResult<bool> {
        let digest = digest.to_string();
        self.db
            .read(async move |conn| {
                conn.scalar(
                    "SELECT EXISTS (SELECT 1 FROM blobs WHERE digest = $1)",
                    &[Value::Text(&digest)],
                )
                .await
            })
            .await
    }

    /// Notes a pull of a cached blob (for eviction), marking it cached again
    /// if eviction had unmarked it.
    pub async fn blob_pulled(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<()> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .write(async move |conn| {
                if let Some(id) = repository_id(conn, &repository).await? {
                    mark_cached(conn, id, &digest).await?;
                }
                Ok(())
            })
            .await
    }

    /// Whether caching `blob_size` more bytes of `digest` in `repository`
    /// stays within its namespace's quota (checked again at the commit).
    pub async fn quota_allows(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        blob_size: u64,
    ) -> MetadataResult<Option<QuotaExceeded>> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .transaction(async move |conn| {
                let exceeded = check_quota(conn, &repository, &digest, blob_size).await?;
                Ok(Finish::RollBack(exceeded))
            })
            .await
    }

    /// Records a blob fetched from upstream, its bytes committed to storage
    /// under `storage_key`, and links it to `repository` as cached, within
    /// the namespace's quota; ends the fill's upload session `upload_id`
    /// (whose row let the collector clean up after a crash).
    pub async fn record_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        blob_size: u64,
        storage_key: &str,
        upload_id: &str,
    ) -> MetadataResult<CacheCommit> {
        let (repository, digest, key, upload_id) = (
            repository.to_string(),
            digest.to_string(),
            storage_key.to_string(),
            upload_id.to_string(),
        );
        self.db
            .transaction(async move |conn| {
                record_blob(conn, &repository, &digest, blob_size, &key, &upload_id).await
            })
            .await
    }

    /// Links blob `digest`, already held for another repository, into
    /// `repository` as cached: the upstream confirmed it has it there.
    pub async fn link_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<CacheLink> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .transaction(async move |conn| link_recorded(conn, &repository, &digest).await)
            .await
    }

    /// Takes the fill of blob `digest` for `holder` for `lease` seconds,
    /// unless another holder's lease is still running. True when taken.
    pub async fn claim_fill(
        &self,
        digest: &Digest,
        holder: &str,
        lease: i64,
    ) -> MetadataResult<bool> {
        let (digest, holder) = (digest.to_string(), holder.to_string());
        self.db
            .autocommit(async move |conn| {
                let now = unix_now();
                let taken = conn
                    .execute(
                        "INSERT INTO cache_fills (digest, holder, expires_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (digest) DO UPDATE \
                         SET holder = excluded.holder, expires_at = excluded.expires_at \
                         WHERE cache_fills.expires_at < $4 OR cache_fills.holder = excluded.holder",
                        &[
                            Value::Text(&digest),
                            Value::Text(&holder),
                            (now + lease).into(),
                            now.into(),
                        ],
                    )
                    .await?;
                Ok(taken > 0)
            })
            .await
    }

    /// Ends `holder`'s fill of blob `digest`.
    pub async fn release_fill(&self, digest: &Digest, holder: &str) -> MetadataResult<()> {
        let (digest, holder) = (digest.to_string(), holder.to_string());
        self.db
            .autocommit(async move |conn| {
                conn.execute(
                    "DELETE FROM cache_fills WHERE digest = $1 AND holder = $2",
                    &[Value::Text(&digest), Value::Text(&holder)],
                )
                .await?;
                Ok(())
            })
            .await
    }
}

/// Eviction is the collector's, which runs it at the start of every pass.
impl super::CollectorStore {
    /// Forgets up to `limit` manifests and up to `limit` blobs of the
    /// repositories under `prefix` (`hub/`) last pulled before
    /// `pulled_before`; the collector then takes the blobs' links and bytes.
    pub async fn evict(
        &self,
        prefix: &str,
        pulled_before: i64,
        limit: u32,
    ) -> MetadataResult<Evicted> {
        let prefix = prefix.to_string();
        self.db
            .write(async move |conn| evict(conn, &prefix, pulled_before, limit).await)
            .await
    }
}

impl CacheStore {
    /// Whether `name` is the registry's own: a repository of that name
    /// exists, or its namespace is a user's or an organization's. Such
    /// names are never served from a mirror.
    pub async fn is_local(&self, name: &RepositoryName) -> MetadataResult<bool> {
        let name = name.to_string();
        self.db
            .read(async move |conn| {
                let namespace = crate::oci::name::namespace_of(&name).to_string();
                conn.scalar(
                    "SELECT EXISTS (SELECT 1 FROM repositories WHERE name = $1) \
                     OR EXISTS (SELECT 1 FROM namespaces WHERE name = $2)",
                    &[Value::Text(&name), Value::Text(&namespace)],
                )
                .await
            })
            .await
    }
}
