//! What the web UI and `/api/v1`'s browsing endpoints read: pages of
//! repositories with their statistics, a repository's tags and untagged
//! manifests with their platforms and sizes, one manifest with what it
//! names, and the pending image summaries the background fill records.
//! Every page is keyset-paginated (never an `OFFSET`) over an index, and
//! the statistics of a page's rows are read for the whole page in one
//! statement per figure, never per row.

use std::collections::HashMap;

use super::db::{Conn, Value, placeholders};
use super::{ImageFacts, MetadataResult, RegistryStore, size};
use crate::oci::image::Platform;
use crate::oci::manifest::is_index_type;

/// Ids per `IN (...)` list.
const IN_LIST: usize = 500;

/// How a page of repositories is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepositoryOrder {
    Name,
    /// Most recently pushed first; pushed in the same second, by name descending.
    Recent,
}

/// Where a page of repositories starts: after this row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositoryAfter {
    Start,
    Name(String),
    Recent { pushed_at: i64, name: String },
}

/// A repository on a page, before statistics (`id` is for [`RegistryStore::repository_stats`]).
#[derive(Debug, Clone)]
pub struct RepositoryListing {
    pub id: i64,
    pub name: String,
    pub last_pushed_at: Option<i64>,
}

/// A repository's statistics.
#[derive(Debug, Clone, Default)]
pub struct RepositoryStats {
    pub tag_count: u64,
    /// Distinct blobs of the repository, each counted once.
    pub size: u64,
    pub platforms: Vec<Platform>,
}

/// A manifest as pages list it.
#[derive(Debug, Clone)]
pub struct ManifestListing {
    pub id: i64,
    pub digest: String,
    pub media_type: String,
    pub platform: Option<Platform>,
    /// Config and layers, for an image.
    pub size: Option<u64>,
    pub pushed_at: i64,
}

/// A tag and the manifest it points at.
#[derive(Debug, Clone)]
pub struct TagListing {
    pub name: String,
    pub pushed_at: i64,
    pub manifest: ManifestListing,
}

/// How a page of tags is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagOrder {
    Name,
    Recent,
}

/// Where a page of tags starts: after this row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagAfter {
    Start,
    Name(String),
    Recent { pushed_at: i64, name: String },
}

/// One stored manifest with its recorded facts and its tags.
#[derive(Debug, Clone)]
pub struct ManifestRecord {
    pub listing: ManifestListing,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
    pub payload: Vec<u8>,
    pub created: Option<i64>,
    /// `oci::image::ConfigSummary` as JSON.
    pub summary: Option<String>,
    /// The first 100 of its tags, by name.
    pub tags: Vec<String>,
    /// The children stored here (an index's), by digest.
    pub children: Vec<ManifestListing>,
}

/// A manifest whose image summary is not recorded yet.
#[derive(Debug, Clone)]
pub struct PendingSummary {
    pub id: i64,
    pub repository: String,
    pub media_type: String,
    pub payload: Vec<u8>,
}

/// `text` as a `LIKE` pattern matching it anywhere, its wildcards escaped.
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

fn platform(
    os: Option<String>,
    architecture: Option<String>,
    variant: Option<String>,
) -> Option<Platform> {
    Some(Platform {
        os: os?,
        architecture: architecture?,
        variant,
    })
}

/// The columns [`manifest_listing`] reads, from `manifests m`.
const LISTING: &str = "m.id, m.digest, m.media_type, m.image_os, m.image_architecture, \
     m.image_variant, m.content_size, m.created_at";

fn manifest_listing(row: &super::db::Row<'_>, first: usize) -> MetadataResult<ManifestListing> {
    Ok(ManifestListing {
        id: row.get(first)?,
        digest: row.get(first + 1)?,
        media_type: row.get(first + 2)?,
        platform: platform(
            row.get(first + 3)?,
            row.get(first + 4)?,
            row.get(first + 5)?,
        ),
        size: row.get::<Option<i64>>(first + 6)?.map(size),
        pushed_at: row.get(first + 7)?,
    })
}

async fn repository_id(conn: &mut Conn<'_>, name: &str) -> MetadataResult<Option<i64>> {
    conn.optional_scalar(
        "SELECT id FROM repositories WHERE name = $1",
        &[Value::Text(name)],
    )
    .await
}

/// The repository `name` as pages list it, if it holds a manifest.
async fn repository_listing(
    conn: &mut Conn<'_>,
    name: &str,
) -> MetadataResult<Option<RepositoryListing>> {
    let rows = conn
        .query(
            "SELECT r.id, r.name, r.last_pushed_at FROM repositories r WHERE r.name = $1 \
             AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)",
            &[Value::Text(name)],
            repository_row,
        )
        .await?;
    Ok(rows.into_iter().next())
}

/// A row of `SELECT r.id, r.name, r.last_pushed_at`.
fn repository_row(row: &super::db::Row<'_>) -> MetadataResult<RepositoryListing> {
    Ok(RepositoryListing {
        id: row.get(0)?,
        name: row.get(1)?,
        last_pushed_at: row.get(2)?,
    })
}

async fn list_repositories(
    conn: &mut Conn<'_>,
    search: &str,
    order: RepositoryOrder,
    after: &RepositoryAfter,
    limit: u32,
) -> MetadataResult<Vec<RepositoryListing>> {
    let pattern = contains_pattern(&search.to_ascii_lowercase());
    let holds_manifest = "EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id)";
    match order {
        RepositoryOrder::Name => {
            let after = match after {
                RepositoryAfter::Name(name) => name.as_str(),
                _ => "",
            };
            let sql = format!(
                "SELECT r.id, r.name, r.last_pushed_at FROM repositories r \
                 WHERE r.name > $1 AND r.name LIKE $2 ESCAPE '\\' AND {holds_manifest} \
                 ORDER BY r.name LIMIT $3"
            );
            conn.query(
                &sql,
                &[
                    Value::Text(after),
                    Value::Text(&pattern),
                    i64::from(limit).into(),
                ],
                repository_row,
            )
            .await
        }
        RepositoryOrder::Recent => {
            let (pushed_at, name) = match after {
                RepositoryAfter::Recent { pushed_at, name } => (*pushed_at, name.as_str()),
                // No push is at i64::MAX, so the name never decides.
                _ => (i64::MAX, ""),
            };
            let sql = format!(
                "SELECT r.id, r.name, r.last_pushed_at FROM repositories r \
                 WHERE r.last_pushed_at IS NOT NULL AND (r.last_pushed_at, r.name) < ($1, $2) \
                 AND r.name LIKE $3 ESCAPE '\\' AND {holds_manifest} \
                 ORDER BY r.last_pushed_at DESC, r.name DESC LIMIT $4"
            );
            conn.query(
                &sql,
                &[
                    pushed_at.into(),
                    Value::Text(name),
                    Value::Text(&pattern),
                    i64::from(limit).into(),
                ],
                repository_row,
            )
            .await
        }
    }
}

/// `{select} (ids...) {tail}` for each [`IN_LIST`] of `ids`.
async fn select_for_ids<T>(
    conn: &mut Conn<'_>,
    select: &str,
    tail: &str,
    ids: &[i64],
    each: impl Fn(&super::db::Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Vec<T>> {
    let mut rows = Vec::new();
    for ids in ids.chunks(IN_LIST) {
        let sql = format!("{select} ({}) {tail}", placeholders(1, ids.len()));
        let params: Vec<Value<'_>> = ids.iter().map(|id| Value::Int(*id)).collect();
        rows.extend(conn.query(&sql, &params, &each).await?);
    }
    Ok(rows)
}

async fn repository_stats(
    conn: &mut Conn<'_>,
    ids: &[i64],
) -> MetadataResult<HashMap<i64, RepositoryStats>> {
    let mut stats: HashMap<i64, RepositoryStats> = ids
        .iter()
        .map(|id| (*id, RepositoryStats::default()))
        .collect();
    let counts = select_for_ids(
        conn,
        "SELECT repository_id, COUNT(*) FROM tags WHERE repository_id IN",
        "GROUP BY repository_id",
        ids,
        |row| Ok((row.get::<i64>(0)?, row.get::<i64>(1)?)),
    )
    .await?;
    for (id, count) in counts {
        stats.entry(id).or_default().tag_count = size(count);
    }
    let sizes = select_for_ids(
        conn,
        "SELECT rb.repository_id, CAST(SUM(b.size) AS BIGINT) FROM repository_blobs rb \
         JOIN blobs b ON b.digest = rb.blob_digest WHERE rb.repository_id IN",
        "GROUP BY rb.repository_id",
        ids,
        |row| Ok((row.get::<i64>(0)?, row.get::<Option<i64>>(1)?)),
    )
    .await?;
    for (id, total) in sizes {
        stats.entry(id).or_default().size = total.map_or(0, size);
    }
    let platforms = select_for_ids(
        conn,
        "SELECT DISTINCT repository_id, image_os, image_architecture, image_variant FROM manifests \
         WHERE image_os IS NOT NULL AND repository_id IN",
        "",
        ids,
        |row| {
            Ok((
                row.get::<i64>(0)?,
                platform(row.get(1)?, row.get(2)?, row.get(3)?),
            ))
        },
    )
    .await?;
    for (id, found) in platforms {
        if let Some(found) = found {
            stats.entry(id).or_default().platforms.push(found);
        }
    }
    for entry in stats.values_mut() {
        entry.platforms.sort();
        entry.platforms.dedup();
    }
    Ok(stats)
}

async fn list_tags(
    conn: &mut Conn<'_>,
    repository_id: i64,
    search: &str,
    order: TagOrder,
    after: &TagAfter,
    limit: u32,
) -> MetadataResult<Vec<TagListing>> {
    let pattern = contains_pattern(search);
    let each = |row: &super::db::Row<'_>| {
        Ok(TagListing {
            name: row.get(0)?,
            pushed_at: row.get(1)?,
            manifest: manifest_listing(row, 2)?,
        })
    };
    let from = format!(
        "SELECT t.name, t.updated_at, {LISTING} FROM tags t JOIN manifests m ON m.id = t.manifest_id \
         WHERE t.repository_id = $1 AND t.name LIKE $2 ESCAPE '\\'"
    );
    match order {
        TagOrder::Name => {
            let after = match after {
                TagAfter::Name(name) => name.as_str(),
                _ => "",
            };
            conn.query(
                &format!("{from} AND t.name > $3 ORDER BY t.name LIMIT $4"),
                &[
                    repository_id.into(),
                    Value::Text(&pattern),
                    Value::Text(after),
                    i64::from(limit).into(),
                ],
                each,
            )
            .await
        }
        TagOrder::Recent => {
            let (pushed_at, name) = match after {
                TagAfter::Recent { pushed_at, name } => (*pushed_at, name.as_str()),
                // No push is at i64::MAX, so the name never decides.
                _ => (i64::MAX, ""),
            };
            conn.query(
                &format!(
                    "{from} AND (t.updated_at, t.name) < ($3, $4) \
                     ORDER BY t.updated_at DESC, t.name DESC LIMIT $5"
                ),
                &[
                    repository_id.into(),
                    Value::Text(&pattern),
                    pushed_at.into(),
                    Value::Text(name),
                    i64::from(limit).into(),
                ],
                each,
            )
            .await
        }
    }
}

/// The stored children of each of `parents`, by parent id.
async fn children_of(
    conn: &mut Conn<'_>,
    parents: &[i64],
) -> MetadataResult<HashMap<i64, Vec<ManifestListing>>> {
    let rows = select_for_ids(
        conn,
        &format!(
            "SELECT mr.parent_id, {LISTING} FROM manifest_references mr \
             JOIN manifests m ON m.id = mr.child_id WHERE mr.parent_id IN"
        ),
        "",
        parents,
        |row| Ok((row.get::<i64>(0)?, manifest_listing(row, 1)?)),
    )
    .await?;
    let mut children: HashMap<i64, Vec<ManifestListing>> = HashMap::new();
    for (parent, child) in rows {
        children.entry(parent).or_default().push(child);
    }
    Ok(children)
}

async fn list_untagged(
    conn: &mut Conn<'_>,
    repository_id: i64,
    after: Option<(i64, i64)>,
    limit: u32,
) -> MetadataResult<Vec<ManifestListing>> {
    let (pushed_at, id) = after.unwrap_or((i64::MAX, i64::MAX));
    conn.query(
        &format!(
            "SELECT {LISTING} FROM manifests m WHERE m.repository_id = $1 AND m.subject_digest IS NULL \
             AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.manifest_id = m.id) \
             AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.child_id = m.id) \
             AND (m.created_at, m.id) < ($2, $3) \
             ORDER BY m.created_at DESC, m.id DESC LIMIT $4"
        ),
        &[
            repository_id.into(),
            pushed_at.into(),
            id.into(),
            i64::from(limit).into(),
        ],
        |row| manifest_listing(row, 0),
    )
    .await
}

async fn manifest_record(
    conn: &mut Conn<'_>,
    repository_id: i64,
    digest: Option<&str>,
    tag: Option<&str>,
) -> MetadataResult<Option<ManifestRecord>> {
    let columns = format!(
        "{LISTING}, m.artifact_type, m.annotations, m.payload, m.image_created, m.image_summary"
    );
    let each = |row: &super::db::Row<'_>| {
        Ok(ManifestRecord {
            listing: manifest_listing(row, 0)?,
            artifact_type: row.get(8)?,
            annotations: row.get(9)?,
            payload: row.get(10)?,
            created: row.get(11)?,
            summary: row.get(12)?,
            tags: Vec::new(),
            children: Vec::new(),
        })
    };
    let found = match (digest, tag) {
        (Some(digest), _) => {
            conn.query_optional(
                &format!(
                    "SELECT {columns} FROM manifests m WHERE m.repository_id = $1 AND m.digest = $2"
                ),
                &[repository_id.into(), Value::Text(digest)],
                each,
            )
            .await?
        }
        (None, Some(tag)) => {
            conn.query_optional(
                &format!(
                    "SELECT {columns} FROM tags t JOIN manifests m ON m.id = t.manifest_id \
                     WHERE t.repository_id = $1 AND t.name = $2"
                ),
                &[repository_id.into(), Value::Text(tag)],
                each,
            )
            .await?
        }
        (None, None) => None,
    };
    let Some(mut record) = found else {
        return Ok(None);
    };
    record.tags = conn
        .scalars(
            "SELECT name FROM tags WHERE manifest_id = $1 ORDER BY name LIMIT 100",
            &[record.listing.id.into()],
        )
        .await?;
    if is_index_type(&record.listing.media_type) {
        record.children = children_of(conn, &[record.listing.id])
            .await?
            .remove(&record.listing.id)
            .unwrap_or_default();
    }
    Ok(Some(record))
}

impl RegistryStore {
    /// Up to `limit` repositories holding a manifest whose name contains
    /// `search`, in `order`, after `after`.
    pub async fn list_repository_page(
        &self,
        search: &str,
        order: RepositoryOrder,
        after: RepositoryAfter,
        limit: u32,
    ) -> MetadataResult<Vec<RepositoryListing>> {
        let search = search.to_string();
        self.db
            .read(async move |conn| list_repositories(conn, &search, order, &after, limit).await)
            .await
    }

    /// The statistics of the repositories `ids`, by id.
    pub async fn repository_stats(
        &self,
        ids: Vec<i64>,
    ) -> MetadataResult<HashMap<i64, RepositoryStats>> {
        self.db
            .read(async move |conn| repository_stats(conn, &ids).await)
            .await
    }

    /// The repository `name` as pages list it, if it holds a manifest.
    pub async fn repository_listing(
        &self,
        name: &str,
    ) -> MetadataResult<Option<RepositoryListing>> {
        let name = name.to_string();
        self.db
            .read(async move |conn| repository_listing(conn, &name).await)
            .await
    }

    /// The id of the repository `name`, if it exists.
    pub async fn repository_id(&self, name: &str) -> MetadataResult<Option<i64>> {
        let name = name.to_string();
        self.db
            .read(async move |conn| repository_id(conn, &name).await)
            .await
    }

    /// A page of a repository's tags, with the stored children of the
    /// indexes among them (for the whole page at once).
    pub async fn list_tag_page(
        &self,
        repository_id: i64,
        search: &str,
        order: TagOrder,
        after: TagAfter,
        limit: u32,
    ) -> MetadataResult<(Vec<TagListing>, HashMap<i64, Vec<ManifestListing>>)> {
        let search = search.to_string();
        self.db
            .read(async move |conn| {
                let tags = list_tags(conn, repository_id, &search, order, &after, limit).await?;
                // Only an index has children: no statement for a page of images.
                let mut ids: Vec<i64> = tags
                    .iter()
                    .filter(|t| is_index_type(&t.manifest.media_type))
                    .map(|t| t.manifest.id)
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                let children = children_of(conn, &ids).await?;
                Ok((tags, children))
            })
            .await
    }

    /// A page of a repository's untagged manifests (not tagged, not listed
    /// by an index, not a referrer), newest first, after `(pushed_at, id)`,
    /// with the stored children of the indexes among them.
    pub async fn list_untagged_page(
        &self,
        repository_id: i64,
        after: Option<(i64, i64)>,
        limit: u32,
    ) -> MetadataResult<(Vec<ManifestListing>, HashMap<i64, Vec<ManifestListing>>)> {
        self.db
            .read(async move |conn| {
                let manifests = list_untagged(conn, repository_id, after, limit).await?;
                let ids: Vec<i64> = manifests
                    .iter()
                    .filter(|m| is_index_type(&m.media_type))
                    .map(|m| m.id)
                    .collect();
                let children = children_of(conn, &ids).await?;
                Ok((manifests, children))
            })
            .await
    }

    /// One manifest of a repository, by digest or else by tag.
    pub async fn manifest_record(
        &self,
        repository_id: i64,
        digest: Option<String>,
        tag: Option<String>,
    ) -> MetadataResult<Option<ManifestRecord>> {
        self.db
            .read(async move |conn| {
                manifest_record(conn, repository_id, digest.as_deref(), tag.as_deref()).await
            })
            .await
    }

    /// How many manifests have no image summary recorded yet.
    pub async fn pending_summary_count(&self) -> MetadataResult<u64> {
        self.db
            .read(async move |conn| {
                conn.scalar::<i64>(
                    "SELECT COUNT(*) FROM manifests WHERE summary_state = 0",
                    &[],
                )
                .await
                .map(size)
            })
            .await
    }

    /// Up to `limit` pending manifests with ids above `after`, by id.
    pub async fn pending_summaries(
        &self,
        after: i64,
        limit: u32,
    ) -> MetadataResult<Vec<PendingSummary>> {
        self.db
            .read(async move |conn| {
                conn.query(
                    "SELECT m.id, r.name, m.media_type, m.payload FROM manifests m \
                     JOIN repositories r ON r.id = m.repository_id \
                     WHERE m.summary_state = 0 AND m.id > $1 ORDER BY m.id LIMIT $2",
                    &[after.into(), i64::from(limit).into()],
                    |row| {
                        Ok(PendingSummary {
                            id: row.get(0)?,
                            repository: row.get(1)?,
                            media_type: row.get(2)?,
                            payload: row.get(3)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Records `facts` for manifest `id` if it is still pending; whether it was.
    pub async fn record_summary(&self, id: i64, facts: &ImageFacts) -> MetadataResult<bool> {
        let facts = facts.clone();
        self.db
            .write(async move |conn| {
                let summary = facts.columns();
                let changed = conn
                    .execute(
                        "UPDATE manifests SET image_os = $2, image_architecture = $3, image_variant = $4, \
                         image_created = $5, image_summary = $6, content_size = $7, summary_state = $8 \
                         WHERE id = $1 AND summary_state = 0",
                        &[
                            id.into(),
                            summary.os.into(),
                            summary.architecture.into(),
                            summary.variant.into(),
                            summary.created.into(),
                            summary.json.as_deref().into(),
                            facts.content_size.map(|s| s as i64).into(),
                            (facts.state as i64).into(),
                        ],
                    )
                    .await?;
                Ok(changed > 0)
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_matched_literally() {
        assert_eq!(contains_pattern("web"), "%web%");
        assert_eq!(contains_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
