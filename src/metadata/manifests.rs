//! Manifests, kept byte for byte with what was read from them, their edges
//! (`manifest_blobs` to the config and layers, `manifest_references` from
//! an index to its children), tags, and referrers (manifests whose
//! `subject` names another). Every blob and child a manifest names must be
//! in the repository; that is checked in the transaction that stores it,
//! with the rows it relies on locked, so the collector cannot take them
//! away before it commits.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

use super::collector::{queue_dependents, queue_manifest_review};
use super::db::{Conn, Finish, Lock, Value, placeholders};
use super::events::{EventAction, NewEvent, Origin, record_change};
use super::policy::immutable_tag_rules;
use super::repositories::{TagsVersion, ensure_repository};
use super::{MetadataResult, RegistryStore, parse_digest, size, unix_now};
use crate::oci::image::ImageSummary;
use crate::oci::manifest::ParsedManifest;
use crate::oci::pattern::{TagRule, first_covered};
use crate::oci::{Digest, Reference, RepositoryName, Tag};

/// Values per `IN (...)` list or multi-row insert: far below either
/// engine's limit on bound parameters (SQLite's is 32,766, PostgreSQL's 65,535).
const IN_LIST: usize = 500;

#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub payload: Vec<u8>,
}

/// A manifest about to be stored: its exact bytes and what was read from them.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub digest: Digest,
    pub payload: Bytes,
    pub parsed: ParsedManifest,
    pub facts: ImageFacts,
}

/// Whether an image's config has been read into its row (`summary_state`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SummaryState {
    /// Not yet: the background fill reads it.
    #[default]
    Pending = 0,
    Recorded = 1,
    /// Nothing to record: an index, an artifact, a config too large or unreadable.
    Nothing = 2,
}

/// What pages show of a manifest without reading blob storage, recorded with it.
#[derive(Debug, Clone, Default)]
pub struct ImageFacts {
    pub state: SummaryState,
    pub summary: Option<ImageSummary>,
    /// Config and layers, for an image.
    pub content_size: Option<u64>,
}

/// An [`ImageFacts`]' summary as the columns that hold it.
pub(super) struct SummaryColumns<'a> {
    pub os: Option<&'a str>,
    pub architecture: Option<&'a str>,
    pub variant: Option<&'a str>,
    pub created: Option<i64>,
    pub json: Option<String>,
}

impl ImageFacts {
    pub(super) fn columns(&self) -> SummaryColumns<'_> {
        let summary = self.summary.as_ref();
        let platform = summary.and_then(|s| s.platform.as_ref());
        SummaryColumns {
            os: platform.map(|p| p.os.as_str()),
            architecture: platform.map(|p| p.architecture.as_str()),
            variant: platform.and_then(|p| p.variant.as_deref()),
            created: summary.and_then(|s| s.created),
            json: summary.and_then(|s| serde_json::to_string(&s.config).ok()),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum PutManifestOutcome {
    Stored,
    /// A blob or child manifest it refers to is not in the repository; nothing was written.
    MissingReference(Digest),
    /// This tag exists, points elsewhere and `rule` makes it immutable; nothing was written.
    ImmutableTag {
        tag: String,
        rule: TagRule,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    NotFound,
    /// Still used by these manifests of the repository (the first few, in
    /// digest order); nothing was deleted.
    ReferencedBy(Vec<Digest>),
    /// The tag (or a tag of the manifest) is immutable by `rule`; nothing was deleted.
    Immutable {
        tag: String,
        rule: TagRule,
    },
}

/// How many of the manifests that still use something a refused delete names.
pub(super) const NAMED_USERS: i64 = 3;

/// What deleting a manifest, or one of its tags, would touch: what a page
/// shows before it asks to confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionPreview {
    pub digest: Digest,
    /// The manifest's tags in byte order, the first [`PREVIEW_TAGS`].
    pub tags: Vec<String>,
    /// How many tags it has in all.
    pub tag_count: u64,
    /// Indexes of the repository that list it (the first few, by digest):
    /// while there are any, deleting it by digest is refused.
    pub listed_by: Vec<Digest>,
}

/// How many of a manifest's tags a [`DeletionPreview`] names.
pub const PREVIEW_TAGS: i64 = 100;

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

/// Rows of `{select}{IN list of values}{lock}` with `$1` the repository id,
/// one statement per [`IN_LIST`] values; none for no values.
async fn select_in<T>(
    conn: &mut Conn<'_>,
    select: &str,
    repository_id: i64,
    values: &[&str],
    each: impl Fn(&super::db::Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Vec<T>> {
    let mut rows = Vec::new();
    for values in values.chunks(IN_LIST) {
        // Locked: the rows a manifest relies on must outlive its transaction.
        let sql = format!(
            "{select} ({}){}",
            placeholders(2, values.len()),
            conn.lock_clause(Lock::Share)
        );
        let mut params = Vec::with_capacity(values.len() + 1);
        params.push(Value::Int(repository_id));
        params.extend(values.iter().map(|v| Value::Text(v)));
        rows.extend(conn.query(&sql, &params, &each).await?);
    }
    Ok(rows)
}

/// A row `(from, to)` in `table` for each of `to`, one statement per
/// [`IN_LIST`] rows; an edge already there (a conflict on `columns`, the
/// table's key) is left as it is.
async fn insert_edges(
    conn: &mut Conn<'_>,
    table: &str,
    columns: &str,
    from: i64,
    to: &[Value<'_>],
) -> MetadataResult<()> {
    for edges in to.chunks(IN_LIST) {
        let rows: Vec<String> = (0..edges.len())
            .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({columns}) VALUES {} ON CONFLICT ({columns}) DO NOTHING",
            rows.join(", ")
        );
        let params: Vec<Value<'_>> = edges
            .iter()
            .flat_map(|edge| [Value::Int(from), *edge])
            .collect();
        conn.execute(&sql, &params).await?;
    }
    Ok(())
}

async fn put_manifest(
    conn: &mut Conn<'_>,
    origin: &Origin,
    repository: &str,
    manifest: &NewManifest,
    tags: &[String],
) -> MetadataResult<Finish<PutManifestOutcome>> {
    let repository_id = ensure_repository(conn, repository).await?;
    // A repository appears (in the catalog, to users) with its first
    // manifest; blobs uploaded before it made its row without showing it.
    let created = conn
        .optional_scalar::<i64>(
            "SELECT id FROM manifests WHERE repository_id = $1 LIMIT 1",
            &[repository_id.into()],
        )
        .await?
        .is_none();
    let parsed = &manifest.parsed;
    // Every reference is looked up in one statement per [`IN_LIST`] names,
    // not one per layer: on PostgreSQL each statement is a round trip while
    // the transaction holds its locks.
    let linked: HashSet<String> = select_in(
        conn,
        "SELECT blob_digest FROM repository_blobs WHERE repository_id = $1 AND blob_digest IN",
        repository_id,
        &parsed.blob_digests(),
        |row| row.get(0),
    )
    .await?
    .into_iter()
    .collect();
    if let Some(missing) = parsed.missing_blob(|d| linked.contains(d)) {
        return Ok(Finish::RollBack(PutManifestOutcome::MissingReference(
            missing.clone(),
        )));
    }
    let children: HashMap<String, i64> = select_in(
        conn,
        "SELECT digest, id FROM manifests WHERE repository_id = $1 AND digest IN",
        repository_id,
        &parsed.child_digests(),
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .await?
    .into_iter()
    .collect();
    if let Some(missing) = parsed.missing_child(|d| children.contains_key(d)) {
        return Ok(Finish::RollBack(PutManifestOutcome::MissingReference(
            missing.clone(),
        )));
    }
    let now = unix_now();
    let summary = manifest.facts.columns();
    // The no-op update makes RETURNING yield the id of an existing row too.
    let manifest_id: i64 = conn
        .scalar(
            "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject_digest, annotations, payload, created_at, \
                 image_os, image_architecture, image_variant, image_created, image_summary, content_size, summary_state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
             ON CONFLICT (repository_id, digest) DO UPDATE SET media_type = manifests.media_type RETURNING id",
            &[
                repository_id.into(),
                manifest.digest.as_str().into(),
                Value::Text(&parsed.media_type),
                parsed.artifact_type.as_deref().into(),
                parsed.subject.as_ref().map(|d| d.as_str()).into(),
                parsed.annotations.as_deref().into(),
                Value::Bytes(&manifest.payload),
                now.into(),
                summary.os.into(),
                summary.architecture.into(),
                summary.variant.into(),
                summary.created.into(),
                summary.json.as_deref().into(),
                manifest.facts.content_size.map(|s| s as i64).into(),
                (manifest.facts.state as i64).into(),
            ],
        )
        .await?;
    let blob_edges: Vec<Value<'_>> = linked.iter().map(|d| Value::Text(d)).collect();
    insert_edges(
        conn,
        "manifest_blobs",
        "manifest_id, blob_digest",
        manifest_id,
        &blob_edges,
    )
    .await?;
    let child_edges: Vec<Value<'_>> = children.values().map(|id| Value::Int(*id)).collect();
    insert_edges(
        conn,
        "manifest_references",
        "parent_id, child_id",
        manifest_id,
        &child_edges,
    )
    .await?;
    if tags.is_empty() {
        queue_manifest_review(conn, repository_id, manifest.digest.as_str()).await?;
    }
    if created {
        let event = NewEvent::new(EventAction::RepositoryCreated, repository);
        record_change(conn, origin, &event).await?;
    }
    let pushed = |action, tag| NewEvent {
        digest: Some(manifest.digest.as_str()),
        media_type: Some(&parsed.media_type),
        size: Some(manifest.payload.len() as u64),
        tag,
        ..NewEvent::new(action, repository)
    };
    if tags.is_empty() {
        record_change(conn, origin, &pushed(EventAction::ManifestPushed, None)).await?;
    }
    let mut rules = None;
    for tag in tags {
        let previous: Option<String> = conn
            .optional_scalar(
                "SELECT m.digest FROM tags t JOIN manifests m ON m.id = t.manifest_id \
                 WHERE t.repository_id = $1 AND t.name = $2 AND t.manifest_id <> $3",
                &[repository_id.into(), Value::Text(tag), manifest_id.into()],
            )
            .await?;
        let moved = previous.is_some();
        if let Some(previous) = previous {
            // Read once, only when a tag moves.
            if rules.is_none() {
                rules = Some(immutable_tag_rules(conn).await?);
            }
            let rules = rules.as_deref().unwrap_or_default();
            if let Some((tag, rule)) = first_covered(rules, repository, [tag.as_str()]) {
                return Ok(Finish::RollBack(PutManifestOutcome::ImmutableTag {
                    tag: tag.to_string(),
                    rule: rule.clone(),
                }));
            }
            queue_manifest_review(conn, repository_id, &previous).await?;
        }
        // The WHERE skips rewriting a tag that already points here.
        conn.execute(
            "INSERT INTO tags (repository_id, name, manifest_id, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (repository_id, name) DO UPDATE \
             SET manifest_id = excluded.manifest_id, updated_at = excluded.updated_at \
             WHERE tags.manifest_id <> excluded.manifest_id",
            &[repository_id.into(), Value::Text(tag), manifest_id.into(), now.into()],
        )
        .await?;
        let action = if moved {
            EventAction::TagMoved
        } else {
            EventAction::ManifestPushed
        };
        record_change(conn, origin, &pushed(action, Some(tag))).await?;
    }
    Ok(Finish::Commit(PutManifestOutcome::Stored))
}

async fn delete_manifest(
    conn: &mut Conn<'_>,
    origin: &Origin,
    repository: &str,
    digest: &str,
) -> MetadataResult<DeleteOutcome> {
    let row = conn
        .query_optional(
            "SELECT m.id, m.repository_id FROM manifests m JOIN repositories r ON r.id = m.repository_id \
             WHERE r.name = $1 AND m.digest = $2",
            &[repository.into(), digest.into()],
            |row| Ok((row.get::<i64>(0)?, row.get::<i64>(1)?)),
        )
        .await?;
    let Some((id, repository_id)) = row else {
        return Ok(DeleteOutcome::NotFound);
    };
    let parents: Vec<String> = conn
        .scalars(
            "SELECT p.digest FROM manifest_references mr JOIN manifests p ON p.id = mr.parent_id \
             WHERE mr.child_id = $1 ORDER BY p.digest LIMIT $2",
            &[id.into(), NAMED_USERS.into()],
        )
        .await?;
    if !parents.is_empty() {
        let parents = parents
            .into_iter()
            .map(parse_digest)
            .collect::<Result<_, _>>()?;
        return Ok(DeleteOutcome::ReferencedBy(parents));
    }
    let tags: Vec<String> = conn
        .scalars(
            "SELECT name FROM tags WHERE manifest_id = $1 ORDER BY name",
            &[id.into()],
        )
        .await?;
    if !tags.is_empty() {
        let rules = immutable_tag_rules(conn).await?;
        if let Some((tag, rule)) =
            first_covered(&rules, repository, tags.iter().map(String::as_str))
        {
            return Ok(DeleteOutcome::Immutable {
                tag: tag.to_string(),
                rule: rule.clone(),
            });
        }
    }
    queue_dependents(conn, repository_id, id, digest).await?;
    conn.execute("DELETE FROM manifests WHERE id = $1", &[id.into()])
        .await?;
    let event = NewEvent {
        digest: Some(digest),
        ..NewEvent::new(EventAction::ManifestDeleted, repository)
    };
    record_change(conn, origin, &event).await?;
    Ok(DeleteOutcome::Deleted)
}

async fn delete_tag(
    conn: &mut Conn<'_>,
    origin: &Origin,
    repository: &str,
    tag: &str,
) -> MetadataResult<DeleteOutcome> {
    let row = conn
        .query_optional(
            "SELECT t.repository_id, m.digest FROM tags t \
             JOIN repositories r ON r.id = t.repository_id \
             JOIN manifests m ON m.id = t.manifest_id WHERE r.name = $1 AND t.name = $2",
            &[repository.into(), tag.into()],
            |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)),
        )
        .await?;
    let Some((repository_id, digest)) = row else {
        return Ok(DeleteOutcome::NotFound);
    };
    let rules = immutable_tag_rules(conn).await?;
    if let Some((tag, rule)) = first_covered(&rules, repository, [tag]) {
        return Ok(DeleteOutcome::Immutable {
            tag: tag.to_string(),
            rule: rule.clone(),
        });
    }
    conn.execute(
        "DELETE FROM tags WHERE repository_id = $1 AND name = $2",
        &[repository_id.into(), tag.into()],
    )
    .await?;
    queue_manifest_review(conn, repository_id, &digest).await?;
    let event = NewEvent {
        digest: Some(&digest),
        tag: Some(tag),
        ..NewEvent::new(EventAction::TagDeleted, repository)
    };
    record_change(conn, origin, &event).await?;
    Ok(DeleteOutcome::Deleted)
}

async fn deletion_preview(
    conn: &mut Conn<'_>,
    repository: &str,
    reference: &Reference,
) -> MetadataResult<Option<DeletionPreview>> {
    let id_and_digest = |row: &super::db::Row<'_>| Ok((row.get::<i64>(0)?, row.get::<String>(1)?));
    let found = match reference {
        Reference::Digest(digest) => {
            conn.query_optional(
                "SELECT m.id, m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                 WHERE r.name = $1 AND m.digest = $2",
                &[repository.into(), digest.as_str().into()],
                id_and_digest,
            )
            .await?
        }
        Reference::Tag(tag) => {
            conn.query_optional(
                "SELECT m.id, m.digest FROM tags t JOIN repositories r ON r.id = t.repository_id \
                 JOIN manifests m ON m.id = t.manifest_id WHERE r.name = $1 AND t.name = $2",
                &[repository.into(), tag.as_str().into()],
                id_and_digest,
            )
            .await?
        }
    };
    let Some((id, digest)) = found else {
        return Ok(None);
    };
    // The count is taken before the limit, so one statement gives both.
    let tags: Vec<(String, i64)> = conn
        .query(
            "SELECT name, COUNT(*) OVER () FROM tags WHERE manifest_id = $1 ORDER BY name LIMIT $2",
            &[id.into(), PREVIEW_TAGS.into()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .await?;
    let tag_count = tags.first().map_or(0, |(_, count)| size(*count));
    let listed_by: Vec<String> = conn
        .scalars(
            "SELECT p.digest FROM manifest_references mr JOIN manifests p ON p.id = mr.parent_id \
             WHERE mr.child_id = $1 ORDER BY p.digest LIMIT $2",
            &[id.into(), NAMED_USERS.into()],
        )
        .await?;
    Ok(Some(DeletionPreview {
        digest: parse_digest(digest)?,
        tags: tags.into_iter().map(|(name, _)| name).collect(),
        tag_count,
        listed_by: listed_by
            .into_iter()
            .map(parse_digest)
            .collect::<Result<_, _>>()?,
    }))
}

fn stored_manifest(row: &super::db::Row<'_>) -> MetadataResult<StoredManifest> {
    Ok(StoredManifest {
        digest: parse_digest(row.get(0)?)?,
        media_type: row.get(1)?,
        payload: row.get(2)?,
    })
}

impl RegistryStore {
    /// Stores a manifest (if not already there) with its edges, and points
    /// `tags` at it, after checking inside the same transaction that every
    /// blob and child manifest it names is in the repository and that no
    /// immutable tag would move.
    pub async fn put_manifest(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        manifest: NewManifest,
        tags: &[Tag],
    ) -> MetadataResult<PutManifestOutcome> {
        let (origin, repository) = (origin.clone(), repository.to_string());
        let tags: Vec<String> = tags.iter().map(|t| t.as_str().to_string()).collect();
        self.db
            .transaction(async move |conn| {
                put_manifest(conn, &origin, &repository, &manifest, &tags).await
            })
            .await
    }

    pub async fn manifest_by_digest(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<Option<StoredManifest>> {
        let (repository, digest) = (repository.to_string(), digest.to_string());
        self.db
            .lookup(async move |conn| {
                conn.query_optional(
                    "SELECT m.digest, m.media_type, m.payload FROM manifests m \
                     JOIN repositories r ON r.id = m.repository_id WHERE r.name = $1 AND m.digest = $2",
                    &[Value::Text(&repository), Value::Text(&digest)],
                    stored_manifest,
                )
                .await
            })
            .await
    }

    pub async fn manifest_by_tag(
        &self,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> MetadataResult<Option<StoredManifest>> {
        let (repository, tag) = (repository.to_string(), tag.to_string());
        self.db
            .lookup(async move |conn| {
                conn.query_optional(
                    "SELECT m.digest, m.media_type, m.payload FROM tags t \
                     JOIN repositories r ON r.id = t.repository_id \
                     JOIN manifests m ON m.id = t.manifest_id WHERE r.name = $1 AND t.name = $2",
                    &[Value::Text(&repository), Value::Text(&tag)],
                    stored_manifest,
                )
                .await
            })
            .await
    }

    /// Deletes a manifest and every tag pointing at it, unless an index in
    /// the repository still lists it as a child or one of its tags is immutable.
    pub async fn delete_manifest(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> MetadataResult<DeleteOutcome> {
        let (origin, repository, digest) =
            (origin.clone(), repository.to_string(), digest.to_string());
        self.db
            .write(async move |conn| delete_manifest(conn, &origin, &repository, &digest).await)
            .await
    }

    /// What deleting `reference` (a tag, or a manifest by digest) would
    /// touch; `None` when there is no such tag or manifest. Only a
    /// preview: the delete checks everything again in its transaction.
    pub async fn deletion_preview(
        &self,
        repository: &RepositoryName,
        reference: &Reference,
    ) -> MetadataResult<Option<DeletionPreview>> {
        let (repository, reference) = (repository.to_string(), reference.clone());
        self.db
            .read(async move |conn| deletion_preview(conn, &repository, &reference).await)
            .await
    }

    /// Deletes one tag, unless it is immutable; the manifest stays.
    pub async fn delete_tag(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        tag: &Tag,
    ) -> MetadataResult<DeleteOutcome> {
        let (origin, repository, tag) = (origin.clone(), repository.to_string(), tag.to_string());
        self.db
            .write(async move |conn| delete_tag(conn, &origin, &repository, &tag).await)
            .await
    }

    /// Every tag name of the repository whose version was read, in byte order.
    pub async fn all_tags(&self, version: TagsVersion) -> MetadataResult<Vec<String>> {
        self.db
            .read(async move |conn| {
                conn.scalars(
                    "SELECT name FROM tags WHERE repository_id = $1 ORDER BY name",
                    &[version.repository_id.into()],
                )
                .await
            })
            .await
    }

    /// Manifests of `repository` whose subject is `subject`, optionally only
    /// those of one artifact type, ordered by digest.
    pub async fn referrers(
        &self,
        repository: &RepositoryName,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> MetadataResult<Vec<Referrer>> {
        let (repository, subject) = (repository.to_string(), subject.to_string());
        let artifact_type = artifact_type.map(str::to_string);
        self.db
            .read(async move |conn| {
                conn.query(
                    "SELECT m.digest, m.media_type, CAST(LENGTH(m.payload) AS BIGINT), m.artifact_type, m.annotations \
                     FROM manifests m JOIN repositories r ON r.id = m.repository_id \
                     WHERE r.name = $1 AND m.subject_digest = $2 AND ($3 IS NULL OR m.artifact_type = $3) \
                     ORDER BY m.digest",
                    &[
                        Value::Text(&repository),
                        Value::Text(&subject),
                        artifact_type.as_deref().into(),
                    ],
                    |row| {
                        Ok(Referrer {
                            digest: parse_digest(row.get(0)?)?,
                            media_type: row.get(1)?,
                            size: size(row.get(2)?),
                            artifact_type: row.get(3)?,
                            annotations: row.get(4)?,
                        })
                    },
                )
                .await
            })
            .await
    }
}
