//! The SQL of [`super::CollectorStore`], shared by both engines.
//!
//! `$claim` is what PostgreSQL appends to select a row for this transaction
//! without waiting (`FOR UPDATE SKIP LOCKED`): review items are never taken
//! by two collectors, and a row a client transaction holds (a push locking
//! the blob link it relies on) is left for a later pass instead of waited
//! for, so the collector never deadlocks with a push. SQLite runs one writer
//! at a time and needs nothing.

macro_rules! sql_collector_store {
    ($store:ty, $db:ty, claim = $claim:literal) => {
        impl $store {
            /// One round of every step inside `tx`.
            async fn collect_round(
                tx: &mut <$db as sqlx::Database>::Connection,
                candidates_before: i64,
                idle_before: i64,
                limit: u32,
            ) -> MetadataResult<Collected> {
                let mut collected = Collected::default();
                Self::review_manifests(tx, candidates_before, limit, &mut collected).await?;
                Self::review_blob_links(tx, candidates_before, limit, &mut collected).await?;
                Self::review_blobs(tx, limit, &mut collected).await?;
                Self::expire_uploads(tx, idle_before, limit, &mut collected).await?;
                Ok(collected)
            }

            async fn review_manifests(
                tx: &mut <$db as sqlx::Database>::Connection,
                candidates_before: i64,
                limit: u32,
                collected: &mut Collected,
            ) -> MetadataResult<()> {
                let due: Vec<(i64, String)> = sqlx::query_as(concat!(
                    "SELECT repository_id, digest FROM gc_manifest_reviews WHERE candidate_since <= $1 \
                     ORDER BY candidate_since LIMIT $2",
                    $claim
                ))
                .bind(candidates_before)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                for (repository_id, digest) in due {
                    let locked: Option<i64> = sqlx::query_scalar(concat!(
                        "SELECT id FROM manifests WHERE repository_id = $1 AND digest = $2",
                        $claim
                    ))
                    .bind(repository_id)
                    .bind(&digest)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some(id) = locked else {
                        let exists: Option<i64> =
                            sqlx::query_scalar("SELECT id FROM manifests WHERE repository_id = $1 AND digest = $2")
                                .bind(repository_id)
                                .bind(&digest)
                                .fetch_optional(&mut *tx)
                                .await?;
                        if exists.is_none() {
                            Self::drop_manifest_review(tx, repository_id, &digest).await?;
                            collected.reviewed += 1;
                        }
                        // Otherwise a push holds it: leave the review for a later pass.
                        continue;
                    };
                    // A fresh statement after taking the lock, so a tag or a
                    // parent committed meanwhile is seen.
                    let alive: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM tags WHERE manifest_id = $1) \
                         OR EXISTS (SELECT 1 FROM manifest_references WHERE child_id = $1) \
                         OR EXISTS (SELECT 1 FROM manifests m JOIN manifests s \
                                    ON s.repository_id = m.repository_id AND s.digest = m.subject_digest \
                                    WHERE m.id = $1)",
                    )
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    if !alive {
                        Self::enqueue_dependents(tx, repository_id, id, &digest).await?;
                        sqlx::query("DELETE FROM manifests WHERE id = $1").bind(id).execute(&mut *tx).await?;
                        collected.manifests += 1;
                    }
                    Self::drop_manifest_review(tx, repository_id, &digest).await?;
                    collected.reviewed += 1;
                }
                Ok(())
            }

            async fn drop_manifest_review(
                tx: &mut <$db as sqlx::Database>::Connection,
                repository_id: i64,
                digest: &str,
            ) -> Result<(), sqlx::Error> {
                sqlx::query("DELETE FROM gc_manifest_reviews WHERE repository_id = $1 AND digest = $2")
                    .bind(repository_id)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            }

            async fn review_blob_links(
                tx: &mut <$db as sqlx::Database>::Connection,
                candidates_before: i64,
                limit: u32,
                collected: &mut Collected,
            ) -> MetadataResult<()> {
                let due: Vec<(i64, String)> = sqlx::query_as(concat!(
                    "SELECT repository_id, digest FROM gc_blob_link_reviews WHERE candidate_since <= $1 \
                     ORDER BY candidate_since LIMIT $2",
                    $claim
                ))
                .bind(candidates_before)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                for (repository_id, digest) in due {
                    let locked: Option<String> = sqlx::query_scalar(concat!(
                        "SELECT blob_digest FROM repository_blobs WHERE repository_id = $1 AND blob_digest = $2",
                        $claim
                    ))
                    .bind(repository_id)
                    .bind(&digest)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if locked.is_none() {
                        let exists: Option<String> = sqlx::query_scalar(
                            "SELECT blob_digest FROM repository_blobs WHERE repository_id = $1 AND blob_digest = $2",
                        )
                        .bind(repository_id)
                        .bind(&digest)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if exists.is_none() {
                            Self::drop_link_review(tx, repository_id, &digest).await?;
                            collected.reviewed += 1;
                        }
                        continue;
                    }
                    let used: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id \
                         WHERE m.repository_id = $1 AND mb.blob_digest = $2)",
                    )
                    .bind(repository_id)
                    .bind(&digest)
                    .fetch_one(&mut *tx)
                    .await?;
                    if !used {
                        sqlx::query("DELETE FROM repository_blobs WHERE repository_id = $1 AND blob_digest = $2")
                            .bind(repository_id)
                            .bind(&digest)
                            .execute(&mut *tx)
                            .await?;
                        // The link waited out the grace period; the blob
                        // itself is reviewed at once.
                        sqlx::query(
                            "INSERT INTO gc_blob_reviews (digest, candidate_since) VALUES ($1, 0) \
                             ON CONFLICT (digest) DO NOTHING",
                        )
                        .bind(&digest)
                        .execute(&mut *tx)
                        .await?;
                        collected.blob_links += 1;
                    }
                    Self::drop_link_review(tx, repository_id, &digest).await?;
                    collected.reviewed += 1;
                }
                Ok(())
            }

            async fn drop_link_review(
                tx: &mut <$db as sqlx::Database>::Connection,
                repository_id: i64,
                digest: &str,
            ) -> Result<(), sqlx::Error> {
                sqlx::query("DELETE FROM gc_blob_link_reviews WHERE repository_id = $1 AND digest = $2")
                    .bind(repository_id)
                    .bind(digest)
                    .execute(&mut *tx)
                    .await?;
                Ok(())
            }

            async fn review_blobs(
                tx: &mut <$db as sqlx::Database>::Connection,
                limit: u32,
                collected: &mut Collected,
            ) -> MetadataResult<()> {
                let due: Vec<String> = sqlx::query_scalar(concat!(
                    "SELECT digest FROM gc_blob_reviews ORDER BY candidate_since LIMIT $1",
                    $claim
                ))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                for digest in due {
                    let locked: Option<(i64, Option<String>)> = sqlx::query_as(concat!(
                        "SELECT size, storage_key FROM blobs WHERE digest = $1",
                        $claim
                    ))
                    .bind(&digest)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let Some((size, key)) = locked else {
                        let exists: Option<i64> = sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1")
                            .bind(&digest)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if exists.is_none() {
                            Self::drop_blob_review(tx, &digest).await?;
                            collected.reviewed += 1;
                        }
                        continue;
                    };
                    let linked: bool = sqlx::query_scalar(
                        "SELECT EXISTS (SELECT 1 FROM repository_blobs WHERE blob_digest = $1) \
                         OR EXISTS (SELECT 1 FROM manifest_blobs WHERE blob_digest = $1)",
                    )
                    .bind(&digest)
                    .fetch_one(&mut *tx)
                    .await?;
                    if !linked {
                        sqlx::query("DELETE FROM blobs WHERE digest = $1").bind(&digest).execute(&mut *tx).await?;
                        if let Some(key) = key {
                            Self::add_garbage(tx, "blob", &key, "").await?;
                        }
                        collected.blobs += 1;
                        collected.bytes += size as u64;
                    }
                    Self::drop_blob_review(tx, &digest).await?;
                    collected.reviewed += 1;
                }
                Ok(())
            }

            async fn drop_blob_review(
                tx: &mut <$db as sqlx::Database>::Connection,
                digest: &str,
            ) -> Result<(), sqlx::Error> {
                sqlx::query("DELETE FROM gc_blob_reviews WHERE digest = $1").bind(digest).execute(&mut *tx).await?;
                Ok(())
            }

            async fn add_garbage(
                tx: &mut <$db as sqlx::Database>::Connection,
                kind: &str,
                key: &str,
                state: &str,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(
                    "INSERT INTO storage_garbage (id, kind, storage_key, storage_state, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(kind)
                .bind(key)
                .bind(state)
                .bind(unix_now())
                .execute(&mut *tx)
                .await?;
                Ok(())
            }

            async fn expire_uploads(
                tx: &mut <$db as sqlx::Database>::Connection,
                idle_before: i64,
                limit: u32,
                collected: &mut Collected,
            ) -> MetadataResult<()> {
                let idle: Vec<(String, String)> = sqlx::query_as(concat!(
                    "SELECT id, storage_state FROM uploads WHERE updated_at <= $1 ORDER BY updated_at LIMIT $2",
                    $claim
                ))
                .bind(idle_before)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                for (id, state) in idle {
                    sqlx::query("DELETE FROM uploads WHERE id = $1").bind(&id).execute(&mut *tx).await?;
                    Self::add_garbage(tx, "upload", &id, &state).await?;
                    collected.uploads += 1;
                    collected.reviewed += 1;
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl CollectorStore for $store {
            async fn collect(&self, grace: i64, upload_expiry: i64, limit: u32, dry_run: bool) -> MetadataResult<Collected> {
                let mut tx = self.begin_write().await?;
                let mut collected = Self::collect_round(&mut tx, unix_now() - grace, unix_now() - upload_expiry, limit).await?;
                if dry_run {
                    loop {
                        let round = Self::collect_round(&mut tx, unix_now() - grace, unix_now() - upload_expiry, limit).await?;
                        if round.reviewed == 0 {
                            break;
                        }
                        collected += round;
                    }
                    tx.rollback().await?;
                } else {
                    tx.commit().await?;
                }
                Ok(collected)
            }

            async fn tags_under(&self, path: &str) -> MetadataResult<Vec<(String, String, i64)>> {
                Ok(sqlx::query_as(
                    "SELECT r.name, t.name, t.updated_at FROM tags t JOIN repositories r ON r.id = t.repository_id \
                     WHERE r.name = $1 OR substr(r.name, 1, length($1) + 1) = $1 || '/' ORDER BY r.name, t.name",
                )
                .bind(path)
                .fetch_all(&mut *self.read_connection().await?)
                .await?)
            }

            async fn untag_if_unchanged(&self, repository: &str, tag: &str, pushed_at: i64) -> MetadataResult<bool> {
                let mut tx = self.begin_write().await?;
                if Self::immutable_tag(&mut tx, repository, [tag]).await?.is_some() {
                    return Ok(false);
                }
                let row: Option<(i64, String)> = sqlx::query_as(
                    "SELECT t.repository_id, m.digest FROM tags t JOIN repositories r ON r.id = t.repository_id \
                     JOIN manifests m ON m.id = t.manifest_id WHERE r.name = $1 AND t.name = $2 AND t.updated_at = $3",
                )
                .bind(repository)
                .bind(tag)
                .bind(pushed_at)
                .fetch_optional(&mut *tx)
                .await?;
                let Some((repository_id, digest)) = row else {
                    return Ok(false);
                };
                sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND name = $2 AND updated_at = $3")
                    .bind(repository_id)
                    .bind(tag)
                    .bind(pushed_at)
                    .execute(&mut *tx)
                    .await?;
                Self::enqueue_manifest_review(&mut tx, repository_id, &digest).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn garbage(&self, limit: u32) -> MetadataResult<Vec<Garbage>> {
                let rows: Vec<(String, String, String, String)> = sqlx::query_as(
                    "SELECT id, kind, storage_key, storage_state FROM storage_garbage ORDER BY created_at LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&mut *self.read_connection().await?)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, kind, key, state)| match kind.as_str() {
                        "upload" => Garbage::Upload { id, upload_id: key, storage_state: state },
                        _ => Garbage::Blob { id, key },
                    })
                    .collect())
            }

            async fn forget_garbage(&self, ids: &[String]) -> MetadataResult<()> {
                let mut tx = self.begin_write().await?;
                for id in ids {
                    sqlx::query("DELETE FROM storage_garbage WHERE id = $1").bind(id).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(crate) use sql_collector_store;
