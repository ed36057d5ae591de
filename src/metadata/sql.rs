//! The SQL shared by both engines. PostgreSQL and SQLite accept the same
//! statements here (`$N` placeholders, `ON CONFLICT`, `RETURNING`), so one
//! text serves both; the macro only stamps it out for each engine's types.
//! What differs between engines (connecting, pools, how a write transaction
//! begins) lives in `sqlite.rs` and `postgres.rs`, each store providing
//! `read_connection`, `read_stats`, `begin_write`, `write_connection` and
//! `close_connections` methods. The push path's write transactions
//! (`sql_push_writes!`) are stamped for PostgreSQL only: SQLite runs the
//! same statements through rusqlite in `sqlite_direct.rs`, where they cost
//! one trip to the writer's thread instead of one per statement.

/// Values per `IN (...)` list or multi-row insert: far below either
/// engine's limit on bound parameters (SQLite's is 32,766, PostgreSQL's 65,535).
pub(super) const IN_LIST: usize = 500;

/// The statements of the push path's write transactions (a new upload, its
/// progress, a blob's commit, a manifest), which run on both bindings:
/// through sqlx on PostgreSQL (`sql_push_writes!`) and through rusqlite on
/// SQLite (`sqlite_direct.rs`). sqlx binds `$N` by number and rusqlite by the name
/// `"$N"`, so one text serves both.
pub(super) mod push {
    pub const INSERT_UPLOAD_INTO_EXISTING: &str = "INSERT INTO uploads (id, repository_id, received, hash_state, storage_state, created_at, updated_at) \
     SELECT $1, id, $3, $4, $5, $6, $6 FROM repositories WHERE name = $2";
    pub const INSERT_UPLOAD: &str = "INSERT INTO uploads (id, repository_id, received, hash_state, storage_state, created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $6)";
    pub const REPOSITORY_ID: &str = "SELECT id FROM repositories WHERE name = $1";
    pub const INSERT_REPOSITORY: &str =
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
    pub const UPSERT_BLOB: &str = "INSERT INTO blobs (digest, size, created_at, storage_key) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (digest) DO UPDATE SET size = blobs.size RETURNING storage_key";
    pub const ADVANCE_UPLOAD: &str = "UPDATE uploads SET received = $1, hash_state = $2, storage_state = $3, updated_at = $4 \
     WHERE id = $5 AND received = $6";
    pub const END_UPLOAD: &str =
        "DELETE FROM uploads WHERE id = $1 AND received = $2 RETURNING repository_id";
    pub const LINK_BLOB: &str = "INSERT INTO repository_blobs (repository_id, blob_digest, created_at) VALUES ($1, $2, $3) \
     ON CONFLICT (repository_id, blob_digest) DO NOTHING";
    pub const ENQUEUE_LINK_REVIEW: &str = "INSERT INTO gc_blob_link_reviews (repository_id, digest, candidate_since) VALUES ($1, $2, $3) \
     ON CONFLICT (repository_id, digest) DO UPDATE SET candidate_since = excluded.candidate_since";
    pub const ENQUEUE_MANIFEST_REVIEW: &str = "INSERT INTO gc_manifest_reviews (repository_id, digest, candidate_since) VALUES ($1, $2, $3) \
     ON CONFLICT (repository_id, digest) DO UPDATE SET candidate_since = excluded.candidate_since";
    pub const UPSERT_MANIFEST: &str = "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, annotations, payload, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
     ON CONFLICT (repository_id, digest) DO UPDATE SET media_type = manifests.media_type RETURNING id";
    pub const PREVIOUS_TAG: &str = "SELECT m.digest FROM tags t JOIN manifests m ON m.id = t.manifest_id \
     WHERE t.repository_id = $1 AND t.name = $2 AND t.manifest_id <> $3";
    pub const SET_TAG: &str = "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (repository_id, name) DO UPDATE \
     SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at \
     WHERE tags.manifest_id <> excluded.manifest_id";
    pub const IMMUTABLE_TAG_RULES: &str = "SELECT path, pattern FROM immutable_tags";
    /// `{.0}{repository id}{.1}(digests...)`: the blobs of a manifest
    /// linked in its repository, and the manifests an index names there.
    pub const LINKED_BLOBS: (&str, &str) = (
        "SELECT blob_digest FROM repository_blobs WHERE repository_id = ",
        " AND blob_digest IN ",
    );
    pub const CHILD_MANIFESTS: (&str, &str) = (
        "SELECT digest, id FROM manifests WHERE repository_id = ",
        " AND digest IN ",
    );
    pub const QUOTA_LIMIT: &str = "SELECT limit_bytes FROM namespace_quotas WHERE namespace = $1";
    /// The blobs linked anywhere in namespace `$1`.
    const NAMESPACE_BLOBS: &str = "SELECT rb.blob_digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id \
     WHERE (r.name = $1 OR substr(r.name, 1, length($1) + 1) = $1 || '/')";

    /// Whether blob `$2` is already linked in namespace `$1` (and so counted).
    pub fn quota_already_counted() -> String {
        format!("SELECT EXISTS ({NAMESPACE_BLOBS} AND rb.blob_digest = $2)")
    }

    /// The bytes of the blobs linked in namespace `$1`, each counted once.
    pub fn quota_used() -> String {
        format!(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE digest IN ({NAMESPACE_BLOBS})"
        )
    }
}

/// The first of `tags` that an immutable-tag rule (`(path, pattern)`, rows
/// of `immutable_tags`) of `repository` or of one of its namespaces covers.
pub(super) fn first_immutable_tag<'t>(
    rules: &[(String, String)],
    repository: &str,
    tags: impl IntoIterator<Item = &'t str>,
) -> Option<String> {
    let applicable: Vec<&str> = rules
        .iter()
        .filter(|(path, _)| crate::oci::name::lies_within(repository, path))
        .map(|(_, pattern)| pattern.as_str())
        .collect();
    if applicable.is_empty() {
        return None;
    }
    tags.into_iter()
        .find(|tag| {
            applicable
                .iter()
                .any(|p| crate::oci::pattern::glob_matches(p, tag))
        })
        .map(str::to_string)
}

macro_rules! sql_metadata_store {
    // `$share` locks rows a transaction relies on against a concurrent delete
    // (`FOR SHARE` on PostgreSQL; nothing on SQLite, whose writers are serialized).
    ($store:ty, $db:ty, share = $share:literal, lock = $lock:literal) => {
        impl $store {
            /// Whether linking a blob of `size` into `repository` would take
            /// its namespace over its quota. Blobs already in the namespace
            /// count once. The quota row is locked, so concurrent pushes into
            /// one namespace are checked one after the other.
            async fn check_quota(
                conn: &mut <$db as sqlx::Database>::Connection,
                repository: &str,
                digest: &str,
                size: u64,
            ) -> Result<Option<QuotaExceeded>, sqlx::Error> {
                let namespace = crate::oci::name::namespace_of(repository);
                let limit: Option<i64> = sqlx::query_scalar(&format!("{}{}", crate::metadata::sql::push::QUOTA_LIMIT, $lock))
                .bind(namespace)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(limit) = limit else {
                    return Ok(None);
                };
                let already: bool = sqlx::query_scalar(&crate::metadata::sql::push::quota_already_counted())
                    .bind(namespace)
                    .bind(digest)
                    .fetch_one(&mut *conn)
                    .await?;
                if already {
                    return Ok(None);
                }
                let used: i64 = sqlx::query_scalar(&crate::metadata::sql::push::quota_used())
                .bind(namespace)
                .fetch_one(&mut *conn)
                .await?;
                Ok(QuotaExceeded::check(namespace, limit, used, size))
            }

            /// Runs one of the statements that take a repository id, a
            /// digest and the time (`$1`, `$2`, `$3`): a link, or a review queued.
            async fn execute_stamped(
                conn: &mut <$db as sqlx::Database>::Connection,
                statement: &'static str,
                repository_id: i64,
                digest: &str,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(statement)
                    .bind(repository_id)
                    .bind(digest)
                    .bind(unix_now())
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// Queues a review of a manifest that may just have become
            /// unreferenced (see `collector_sql.rs`); a later push or tag
            /// makes the review find it alive.
            async fn enqueue_manifest_review(
                conn: &mut <$db as sqlx::Database>::Connection,
                repository_id: i64,
                digest: &str,
            ) -> Result<(), sqlx::Error> {
                Self::execute_stamped(conn, crate::metadata::sql::push::ENQUEUE_MANIFEST_REVIEW, repository_id, digest).await
            }

            /// The first of `tags` that an immutable-tag rule of `repository`
            /// (or of one of its namespaces) covers.
            async fn immutable_tag<'t>(
                conn: &mut <$db as sqlx::Database>::Connection,
                repository: &str,
                tags: impl IntoIterator<Item = &'t str>,
            ) -> Result<Option<String>, sqlx::Error> {
                let rules: Vec<(String, String)> = sqlx::query_as(crate::metadata::sql::push::IMMUTABLE_TAG_RULES)
                    .fetch_all(&mut *conn)
                    .await?;
                Ok(crate::metadata::sql::first_immutable_tag(&rules, repository, tags))
            }

            /// Queues a review of a blob link that may be unused.
            async fn enqueue_link_review(
                conn: &mut <$db as sqlx::Database>::Connection,
                repository_id: i64,
                digest: &str,
            ) -> Result<(), sqlx::Error> {
                Self::execute_stamped(conn, crate::metadata::sql::push::ENQUEUE_LINK_REVIEW, repository_id, digest).await
            }

            /// Links blob `digest` into the repository (if not linked yet)
            /// and queues a review of the link, which a manifest may never
            /// come to use.
            async fn link_blob(
                conn: &mut <$db as sqlx::Database>::Connection,
                repository_id: i64,
                digest: &str,
            ) -> Result<(), sqlx::Error> {
                Self::execute_stamped(conn, crate::metadata::sql::push::LINK_BLOB, repository_id, digest).await?;
                Self::enqueue_link_review(conn, repository_id, digest).await
            }

            /// What deleting a manifest may leave unreferenced: its children,
            /// its referrers and its blob links. Called before the delete.
            async fn enqueue_dependents(
                conn: &mut <$db as sqlx::Database>::Connection,
                repository_id: i64,
                manifest_id: i64,
                digest: &str,
            ) -> Result<(), sqlx::Error> {
                let mut dependents: Vec<String> = sqlx::query_scalar(
                    "SELECT c.digest FROM manifest_references mr JOIN manifests c ON c.id = mr.child_id WHERE mr.parent_id = $1",
                )
                .bind(manifest_id)
                .fetch_all(&mut *conn)
                .await?;
                let referrers: Vec<String> = sqlx::query_scalar(
                    "SELECT digest FROM manifests WHERE repository_id = $1 AND subject_digest = $2",
                )
                .bind(repository_id)
                .bind(digest)
                .fetch_all(&mut *conn)
                .await?;
                dependents.extend(referrers);
                for dependent in dependents {
                    Self::enqueue_manifest_review(conn, repository_id, &dependent).await?;
                }
                let blobs: Vec<String> = sqlx::query_scalar("SELECT blob_digest FROM manifest_blobs WHERE manifest_id = $1")
                    .bind(manifest_id)
                    .fetch_all(&mut *conn)
                    .await?;
                for blob in blobs {
                    Self::enqueue_link_review(conn, repository_id, &blob).await?;
                }
                Ok(())
            }

            async fn repository_id<'e, E>(executor: E, name: &RepositoryName) -> Result<Option<i64>, sqlx::Error>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                sqlx::query_scalar(crate::metadata::sql::push::REPOSITORY_ID)
                    .bind(name.as_str())
                    .fetch_optional(executor)
                    .await
            }

            /// Find-or-create. Looked up first: a push names an existing
            /// repository nearly always, and inside the single SQLite writer's
            /// transaction every statement saved is a round trip saved. A
            /// concurrent creator of the same name makes the insert a no-op,
            /// and the select then sees its row.
            async fn ensure_repository(
                conn: &mut <$db as sqlx::Database>::Connection,
                name: &RepositoryName,
            ) -> Result<i64, sqlx::Error> {
                if let Some(id) = Self::repository_id(&mut *conn, name).await? {
                    return Ok(id);
                }
                sqlx::query(crate::metadata::sql::push::INSERT_REPOSITORY)
                    .bind(name.as_str())
                    .bind(unix_now())
                    .execute(&mut *conn)
                    .await?;
                sqlx::query_scalar(crate::metadata::sql::push::REPOSITORY_ID)
                    .bind(name.as_str())
                    .fetch_one(&mut *conn)
                    .await
            }

            fn manifest_from_row(row: (String, String, Vec<u8>)) -> MetadataResult<StoredManifest> {
                let (digest, media_type, payload) = row;
                Ok(StoredManifest {
                    digest: parse_digest(digest)?,
                    media_type,
                    payload,
                })
            }

            fn page(mut names: Vec<String>, limit: u32) -> Page {
                let more = names.len() > limit as usize;
                names.truncate(limit as usize);
                Page { names, more }
            }
        }

        #[async_trait::async_trait]
        impl MetadataStore for $store {
            async fn ping(&self) -> MetadataResult<()> {
                sqlx::query("SELECT 1").execute(&mut *self.read_connection().await?).await?;
                Ok(())
            }

            fn pool_stats(&self) -> PoolStats {
                self.read_stats()
            }

            async fn close(&self) {
                self.close_connections().await;
            }

            async fn upload_count(&self) -> MetadataResult<u64> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads").fetch_one(&mut *self.read_connection().await?).await?;
                Ok(count as u64)
            }

            async fn linked_blob(&self, repository: &RepositoryName, digest: &Digest) -> MetadataResult<Option<LinkedBlob>> {
                let row: Option<(i64, Option<String>)> = sqlx::query_as(
                    "SELECT b.size, b.storage_key FROM repository_blobs rb \
                     JOIN repositories r ON r.id = rb.repository_id \
                     JOIN blobs b ON b.digest = rb.blob_digest \
                     WHERE r.name = $1 AND rb.blob_digest = $2",
                )
                .bind(repository.as_str())
                .bind(digest.as_str())
                .fetch_optional(&mut *self.read_connection().await?)
                .await?;
                row.map(|(size, key)| {
                    Ok(LinkedBlob {
                        size: size as u64,
                        storage_key: key.ok_or_else(|| MetadataError::Corrupt(format!("blob {digest} has no storage key")))?,
                    })
                })
                .transpose()
            }

            async fn mount_blob(
                &self,
                repository: &RepositoryName,
                from: &RepositoryName,
                digest: &Digest,
            ) -> MetadataResult<Mounted> {
                let mut tx = self.begin_write().await?;
                let size: Option<i64> = sqlx::query_scalar(concat!(
                    "SELECT b.size FROM repository_blobs rb \
                     JOIN repositories r ON r.id = rb.repository_id \
                     JOIN blobs b ON b.digest = rb.blob_digest \
                     WHERE r.name = $1 AND rb.blob_digest = $2",
                    $share
                ))
                .bind(from.as_str())
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(size) = size else {
                    return Ok(Mounted::NotInSource);
                };
                if let Some(exceeded) = Self::check_quota(&mut tx, repository.as_str(), digest.as_str(), size as u64).await? {
                    return Ok(Mounted::QuotaExceeded(exceeded));
                }
                let repository_id = Self::ensure_repository(&mut tx, repository).await?;
                Self::link_blob(&mut tx, repository_id, digest.as_str()).await?;
                tx.commit().await?;
                Ok(Mounted::Linked(size as u64))
            }

            async fn unlink_blob(&self, repository: &RepositoryName, digest: &Digest) -> MetadataResult<DeleteOutcome> {
                let mut tx = self.begin_write().await?;
                let Some(repository_id) = Self::repository_id(&mut *tx, repository).await? else {
                    return Ok(DeleteOutcome::NotFound);
                };
                let user: Option<String> = sqlx::query_scalar(
                    "SELECT m.digest FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id \
                     WHERE m.repository_id = $1 AND mb.blob_digest = $2 ORDER BY m.digest LIMIT 1",
                )
                .bind(repository_id)
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(user) = user {
                    return Ok(DeleteOutcome::ReferencedBy(parse_digest(user)?));
                }
                let deleted = sqlx::query("DELETE FROM repository_blobs WHERE repository_id = $1 AND blob_digest = $2")
                    .bind(repository_id)
                    .bind(digest.as_str())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if deleted > 0 {
                    sqlx::query(
                        "INSERT INTO gc_blob_reviews (digest, candidate_since) VALUES ($1, 0) ON CONFLICT (digest) DO NOTHING",
                    )
                    .bind(digest.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(if deleted > 0 { DeleteOutcome::Deleted } else { DeleteOutcome::NotFound })
            }

            async fn create_upload(&self, repository: &RepositoryName, session: &UploadSession) -> MetadataResult<()> {
                self.record_upload(repository, session).await
            }

            async fn upload(&self, repository: &RepositoryName, id: &str) -> MetadataResult<Option<UploadSession>> {
                let row: Option<(String, i64, Vec<u8>, String)> = sqlx::query_as(
                    "SELECT u.id, u.received, u.hash_state, u.storage_state FROM uploads u \
                     JOIN repositories r ON r.id = u.repository_id WHERE r.name = $1 AND u.id = $2",
                )
                .bind(repository.as_str())
                .bind(id)
                .fetch_optional(&mut *self.read_connection().await?)
                .await?;
                Ok(row.map(|(id, received, hash_state, storage_state)| UploadSession {
                    id,
                    received: received as u64,
                    hash_state,
                    storage_state,
                }))
            }

            async fn advance_upload(&self, session: &UploadSession, expected_received: u64) -> MetadataResult<bool> {
                self.record_progress(session, expected_received).await
            }

            async fn delete_upload(&self, repository: &RepositoryName, id: &str) -> MetadataResult<bool> {
                let deleted = sqlx::query(
                    "DELETE FROM uploads WHERE id = $1 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
                )
                .bind(id)
                .bind(repository.as_str())
                .execute(&mut *self.write_connection().await?)
                .await?
                .rows_affected();
                Ok(deleted > 0)
            }

            async fn commit_blob(&self, blob: NewBlob) -> MetadataResult<BlobCommit> {
                self.record_blob(blob).await
            }

            async fn put_manifest(
                &self,
                repository: &RepositoryName,
                manifest: &NewManifest<'_>,
                tags: &[Tag],
            ) -> MetadataResult<PutManifestOutcome> {
                self.record_manifest(repository, manifest, tags).await
            }

            async fn manifest_by_digest(
                &self,
                repository: &RepositoryName,
                digest: &Digest,
            ) -> MetadataResult<Option<StoredManifest>> {
                let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT m.digest, m.media_type, m.payload FROM manifests m \
                     JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2",
                )
                .bind(repository.as_str())
                .bind(digest.as_str())
                .fetch_optional(&mut *self.read_connection().await?)
                .await?;
                row.map(Self::manifest_from_row).transpose()
            }

            async fn manifest_by_tag(&self, repository: &RepositoryName, tag: &Tag) -> MetadataResult<Option<StoredManifest>> {
                let row: Option<(String, String, Vec<u8>)> = sqlx::query_as(
                    "SELECT m.digest, m.media_type, m.payload FROM tags t \
                     JOIN repositories r ON r.id = t.repository_id \
                     JOIN manifests m ON m.id = t.manifest_id WHERE r.name = $1 AND t.name = $2",
                )
                .bind(repository.as_str())
                .bind(tag.as_str())
                .fetch_optional(&mut *self.read_connection().await?)
                .await?;
                row.map(Self::manifest_from_row).transpose()
            }

            async fn delete_manifest(&self, repository: &RepositoryName, digest: &Digest) -> MetadataResult<DeleteOutcome> {
                let mut tx = self.begin_write().await?;
                let id: Option<i64> = sqlx::query_scalar(
                    "SELECT m.id FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                     WHERE r.name = $1 AND m.digest = $2",
                )
                .bind(repository.as_str())
                .bind(digest.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(id) = id else {
                    return Ok(DeleteOutcome::NotFound);
                };
                let parent: Option<String> = sqlx::query_scalar(
                    "SELECT p.digest FROM manifest_references mr JOIN manifests p ON p.id = mr.parent_id \
                     WHERE mr.child_id = $1 ORDER BY p.digest LIMIT 1",
                )
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(parent) = parent {
                    return Ok(DeleteOutcome::ReferencedBy(parse_digest(parent)?));
                }
                let tags: Vec<String> = sqlx::query_scalar("SELECT name FROM tags WHERE manifest_id = $1 ORDER BY name")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
                if let Some(tag) = Self::immutable_tag(&mut tx, repository.as_str(), tags.iter().map(String::as_str)).await? {
                    return Ok(DeleteOutcome::Immutable(tag));
                }
                let repository_id: i64 = sqlx::query_scalar("SELECT repository_id FROM manifests WHERE id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                Self::enqueue_dependents(&mut tx, repository_id, id, digest.as_str()).await?;
                sqlx::query("DELETE FROM manifests WHERE id = $1").bind(id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(DeleteOutcome::Deleted)
            }

            async fn delete_tag(&self, repository: &RepositoryName, tag: &Tag) -> MetadataResult<DeleteOutcome> {
                let mut tx = self.begin_write().await?;
                let row: Option<(i64, String)> = sqlx::query_as(
                    "SELECT t.repository_id, m.digest FROM tags t \
                     JOIN repositories r ON r.id = t.repository_id \
                     JOIN manifests m ON m.id = t.manifest_id WHERE r.name = $1 AND t.name = $2",
                )
                .bind(repository.as_str())
                .bind(tag.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some((repository_id, digest)) = row else {
                    return Ok(DeleteOutcome::NotFound);
                };
                if let Some(tag) = Self::immutable_tag(&mut tx, repository.as_str(), [tag.as_str()]).await? {
                    return Ok(DeleteOutcome::Immutable(tag));
                }
                sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND name = $2")
                    .bind(repository_id)
                    .bind(tag.as_str())
                    .execute(&mut *tx)
                    .await?;
                Self::enqueue_manifest_review(&mut tx, repository_id, &digest).await?;
                tx.commit().await?;
                Ok(DeleteOutcome::Deleted)
            }

            async fn tags_version(
                &self,
                repository: &RepositoryName,
            ) -> MetadataResult<Option<TagsVersion>> {
                let row: Option<(i64, i64)> =
                    sqlx::query_as("SELECT id, tags_version FROM repositories WHERE name = $1")
                        .bind(repository.as_str())
                        .fetch_optional(&mut *self.read_connection().await?)
                        .await?;
                Ok(row.map(|(repository_id, counter)| TagsVersion {
                    repository_id,
                    counter,
                }))
            }

            async fn all_tags(&self, version: TagsVersion) -> MetadataResult<Vec<String>> {
                Ok(
                    sqlx::query_scalar("SELECT name FROM tags WHERE repository_id = $1 ORDER BY name")
                        .bind(version.repository_id)
                        .fetch_all(&mut *self.read_connection().await?)
                        .await?,
                )
            }

            async fn list_repositories(&self, last: Option<&str>, limit: u32) -> MetadataResult<Page> {
                let names: Vec<String> = sqlx::query_scalar(
                    "SELECT name FROM repositories r WHERE name > $1 \
                     AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
                     ORDER BY name LIMIT $2",
                )
                .bind(last.unwrap_or(""))
                .bind(i64::from(limit) + 1)
                .fetch_all(&mut *self.read_connection().await?)
                .await?;
                Ok(Self::page(names, limit))
            }

            async fn referrers(
                &self,
                repository: &RepositoryName,
                subject: &Digest,
                artifact_type: Option<&str>,
            ) -> MetadataResult<Vec<Referrer>> {
                let rows: Vec<(String, String, i64, Option<String>, Option<String>)> = sqlx::query_as(
                    "SELECT m.digest, m.media_type, CAST(LENGTH(m.payload) AS BIGINT), m.artifact_type, m.annotations FROM manifests m \
                     JOIN repositories r ON r.id = m.repository_id \
                     WHERE r.name = $1 AND m.subject_digest = $2 AND ($3 IS NULL OR m.artifact_type = $3) \
                     ORDER BY m.digest",
                )
                .bind(repository.as_str())
                .bind(subject.as_str())
                .bind(artifact_type)
                .fetch_all(&mut *self.read_connection().await?)
                .await?;
                rows.into_iter()
                    .map(|(digest, media_type, size, artifact_type, annotations)| {
                        Ok(Referrer {
                            digest: parse_digest(digest)?,
                            media_type,
                            size: size as u64,
                            artifact_type,
                            annotations,
                        })
                    })
                    .collect()
            }
        }
    };
}

pub(crate) use sql_metadata_store;

/// The push path's write transactions as sqlx runs them (PostgreSQL);
/// SQLite runs the same statements off sqlx, in `sqlite_direct.rs`.
macro_rules! sql_push_writes {
    ($store:ty, $db:ty, share = $share:literal) => {
        impl $store {
            /// Rows of `{select}{repository_id}{filter}(values...){lock}`, one
            /// statement per [`IN_LIST`] values; none for no values.
            async fn select_in<T>(
                conn: &mut <$db as sqlx::Database>::Connection,
                select: &str,
                repository_id: i64,
                filter: &str,
                lock: &str,
                values: &[&str],
            ) -> Result<Vec<T>, sqlx::Error>
            where
                T: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                let mut rows = Vec::new();
                for values in values.chunks(crate::metadata::sql::IN_LIST) {
                    let mut query = sqlx::QueryBuilder::<$db>::new(select);
                    query.push_bind(repository_id).push(filter).push("(");
                    let mut list = query.separated(", ");
                    for value in values {
                        list.push_bind(*value);
                    }
                    query.push(")").push(lock);
                    rows.extend(query.build_query_as::<T>().fetch_all(&mut *conn).await?);
                }
                Ok(rows)
            }

            /// A row `(from, to)` in `table` for each of `to`, one statement
            /// per [`IN_LIST`] rows; an edge already there (a conflict on
            /// `columns`, the table's key) is left as it is.
            async fn insert_edges<'t, T>(
                conn: &mut <$db as sqlx::Database>::Connection,
                table: &str,
                columns: &str,
                from: i64,
                to: &'t [T],
            ) -> Result<(), sqlx::Error>
            where
                T: sqlx::Encode<'t, $db> + sqlx::Type<$db> + Copy + Send + 't,
            {
                for edges in to.chunks(crate::metadata::sql::IN_LIST) {
                    let mut insert =
                        sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO {table} ({columns}) "));
                    insert.push_values(edges, |mut row, edge| {
                        row.push_bind(from).push_bind(*edge);
                    });
                    insert.push(format!(" ON CONFLICT ({columns}) DO NOTHING"));
                    insert.build().execute(&mut *conn).await?;
                }
                Ok(())
            }

            async fn record_upload(
                &self,
                repository: &RepositoryName,
                session: &UploadSession,
            ) -> MetadataResult<()> {
                let now = unix_now();
                // Into an existing repository, the usual case: one statement,
                // no transaction around it.
                let inserted = sqlx::query(crate::metadata::sql::push::INSERT_UPLOAD_INTO_EXISTING)
                    .bind(&session.id)
                    .bind(repository.as_str())
                    .bind(session.received as i64)
                    .bind(&session.hash_state)
                    .bind(&session.storage_state)
                    .bind(now)
                    .execute(&mut *self.write_connection().await?)
                    .await?
                    .rows_affected();
                if inserted == 1 {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                let repository_id = Self::ensure_repository(&mut tx, repository).await?;
                sqlx::query(crate::metadata::sql::push::INSERT_UPLOAD)
                    .bind(&session.id)
                    .bind(repository_id)
                    .bind(session.received as i64)
                    .bind(&session.hash_state)
                    .bind(&session.storage_state)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn record_manifest(
                &self,
                repository: &RepositoryName,
                manifest: &NewManifest<'_>,
                tags: &[Tag],
            ) -> MetadataResult<PutManifestOutcome> {
                let mut tx = self.begin_write().await?;
                let repository_id = Self::ensure_repository(&mut tx, repository).await?;
                // Every reference is looked up in one statement per
                // [`IN_LIST`] names, not one per layer: each statement is a
                // round trip to the server while the transaction holds its locks.
                let blob_digests = manifest.parsed.blob_digests();
                // Locked, so a collector cannot unlink them before this commits.
                let linked: Vec<(String,)> = Self::select_in(
                    &mut tx,
                    crate::metadata::sql::push::LINKED_BLOBS.0,
                    repository_id,
                    crate::metadata::sql::push::LINKED_BLOBS.1,
                    $share,
                    &blob_digests,
                )
                .await?;
                let linked: std::collections::HashSet<&str> =
                    linked.iter().map(|(d,)| d.as_str()).collect();
                if let Some(missing) = manifest.parsed.missing_blob(|d| linked.contains(d)) {
                    return Ok(PutManifestOutcome::MissingReference(missing.clone()));
                }
                let blob_edges: Vec<&str> = linked.into_iter().collect();
                let child_digests = manifest.parsed.child_digests();
                let children: Vec<(String, i64)> = Self::select_in(
                    &mut tx,
                    crate::metadata::sql::push::CHILD_MANIFESTS.0,
                    repository_id,
                    crate::metadata::sql::push::CHILD_MANIFESTS.1,
                    $share,
                    &child_digests,
                )
                .await?;
                let children: std::collections::HashMap<&str, i64> = children
                    .iter()
                    .map(|(digest, id)| (digest.as_str(), *id))
                    .collect();
                if let Some(missing) = manifest.parsed.missing_child(|d| children.contains_key(d)) {
                    return Ok(PutManifestOutcome::MissingReference(missing.clone()));
                }
                let child_ids: Vec<i64> = children.into_values().collect();

                let now = unix_now();
                // The no-op update makes RETURNING yield the id of an existing row too.
                let manifest_id: i64 =
                    sqlx::query_scalar(crate::metadata::sql::push::UPSERT_MANIFEST)
                        .bind(repository_id)
                        .bind(manifest.digest.as_str())
                        .bind(&manifest.parsed.media_type)
                        .bind(manifest.parsed.artifact_type.as_deref())
                        .bind(manifest.parsed.subject.as_ref().map(|d| d.as_str()))
                        .bind(manifest.parsed.annotations.as_deref())
                        .bind(manifest.payload)
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                Self::insert_edges(
                    &mut tx,
                    "manifest_blobs",
                    "manifest_id, blob_digest",
                    manifest_id,
                    &blob_edges,
                )
                .await?;
                Self::insert_edges(
                    &mut tx,
                    "manifest_references",
                    "parent_id, child_id",
                    manifest_id,
                    &child_ids,
                )
                .await?;
                if tags.is_empty() {
                    Self::enqueue_manifest_review(&mut tx, repository_id, manifest.digest.as_str())
                        .await?;
                }
                for tag in tags {
                    let previous: Option<String> =
                        sqlx::query_scalar(crate::metadata::sql::push::PREVIOUS_TAG)
                            .bind(repository_id)
                            .bind(tag.as_str())
                            .bind(manifest_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    if let Some(previous) = previous {
                        if let Some(tag) =
                            Self::immutable_tag(&mut tx, repository.as_str(), [tag.as_str()])
                                .await?
                        {
                            return Ok(PutManifestOutcome::ImmutableTag(tag));
                        }
                        Self::enqueue_manifest_review(&mut tx, repository_id, &previous).await?;
                    }
                    // The WHERE skips rewriting a tag that already points here.
                    sqlx::query(crate::metadata::sql::push::SET_TAG)
                        .bind(repository_id)
                        .bind(tag.as_str())
                        .bind(manifest_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(PutManifestOutcome::Stored)
            }

            async fn record_progress(
                &self,
                session: &UploadSession,
                expected_received: u64,
            ) -> MetadataResult<bool> {
                let updated = sqlx::query(crate::metadata::sql::push::ADVANCE_UPLOAD)
                    .bind(session.received as i64)
                    .bind(&session.hash_state)
                    .bind(&session.storage_state)
                    .bind(unix_now())
                    .bind(&session.id)
                    .bind(expected_received as i64)
                    .execute(&mut *self.write_connection().await?)
                    .await?
                    .rows_affected();
                Ok(updated == 1)
            }

            async fn record_blob(&self, blob: NewBlob) -> MetadataResult<BlobCommit> {
                let NewBlob {
                    repository,
                    upload_id,
                    expected_received,
                    digest,
                    size,
                    storage_key,
                } = blob;
                let mut tx = self.begin_write().await?;
                let now = unix_now();
                if let Some(exceeded) =
                    Self::check_quota(&mut tx, repository.as_str(), digest.as_str(), size).await?
                {
                    return Ok(BlobCommit::QuotaExceeded(exceeded));
                }
                // An upsert that locks the row (the no-op update): a collector
                // reviewing this blob skips it until we commit, and if it has
                // just deleted the row, ours is inserted afresh.
                let recorded: Option<String> =
                    sqlx::query_scalar(crate::metadata::sql::push::UPSERT_BLOB)
                        .bind(digest.as_str())
                        .bind(size as i64)
                        .bind(now)
                        .bind(&storage_key)
                        .fetch_one(&mut *tx)
                        .await?;
                // Ends the session if no one moved it meanwhile; its row names
                // the repository. On a miss the transaction rolls back.
                let repository_id: Option<i64> =
                    sqlx::query_scalar(crate::metadata::sql::push::END_UPLOAD)
                        .bind(&upload_id)
                        .bind(expected_received as i64)
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(repository_id) = repository_id else {
                    return Ok(BlobCommit::SessionMoved);
                };
                Self::link_blob(&mut tx, repository_id, digest.as_str()).await?;
                tx.commit().await?;
                Ok(BlobCommit::Recorded(recorded.unwrap_or(storage_key)))
            }
        }
    };
}

pub(crate) use sql_push_writes;

#[cfg(test)]
mod tests {
    use super::first_immutable_tag;

    #[test]
    fn immutable_tag_rules_cover_their_path_and_what_lies_under_it() {
        let rules = vec![("team".to_string(), "v*".to_string())];
        assert_eq!(
            first_immutable_tag(&rules, "team/app", ["latest", "v1"]),
            Some("v1".to_string())
        );
        assert_eq!(
            first_immutable_tag(&rules, "team", ["v2"]),
            Some("v2".to_string())
        );
        assert_eq!(first_immutable_tag(&rules, "teamx/app", ["v1"]), None);
        assert_eq!(first_immutable_tag(&rules, "team/app", ["latest"]), None);
        assert_eq!(first_immutable_tag(&[], "team/app", ["v1"]), None);
    }
}
