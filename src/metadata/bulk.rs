//! Bulk loading, for measuring Berth at scale (`berth bench-load`, the
//! `scale` benchmark profile): a registry of many repositories, tags and
//! blobs written in multi-row inserts, in transactions of thousands of rows,
//! where pushing them one by one would take hours.
//!
//! The rows are those pushes leave once the collector has reviewed them:
//! `repositories` (their `tags_version` and `last_pushed_at` kept by the
//! same triggers as a push's), `blobs`, `repository_blobs`, `manifests`
//! (the payload, its parsed columns and the image summary a push records),
//! `manifest_blobs` and `tags`, and no review queued for any of them. What a
//! push also writes to the outbox and the audit log (`events`,
//! `audit_log`) is left out: nothing the registry serves reads it.
//!
//! Every repository holds one image of its own: the shared config and its
//! share of the layers, tagged by all its tags. The config's bytes must
//! already be in the blob store (the caller wrote them); the layers' bytes
//! are not written anywhere, as reading a layer is not what a registry's
//! size makes slower. Dangling blobs (uploaded, linked, never used by a
//! manifest) are recorded with a link review as old as the caller says, so
//! the collector's next pass takes them; their bytes too are the caller's.

use std::collections::HashMap;

use super::db::{Conn, Engine, Value};
use super::{MetadataResult, RegistryStore, SummaryState, unix_now};
use crate::oci::image::summarize_config;
use crate::oci::manifest::{DOCKER_MANIFEST, parse};
use crate::oci::{Algorithm, Digest};

/// Bound parameters per statement on PostgreSQL: under its limit (65,535).
const POSTGRES_PARAMETERS: usize = 30_000;
/// Bound parameters per statement on SQLite. Far under its limit (32,766):
/// binding by name looks each placeholder's name up in a list, so a
/// statement's binding takes time in the square of its parameters (30,000
/// made a 10,000-repository load take 48 s, nearly all of it binding).
const SQLITE_PARAMETERS: usize = 1_000;
/// Repositories per transaction: a few tens of thousands of rows each, so
/// the database never holds one transaction of millions of rows.
const REPOSITORIES_PER_TRANSACTION: usize = 1_000;
/// Tags per transaction in the repository with many. Each insert's trigger
/// updates that repository's row; PostgreSQL keeps every version of it
/// until commit, so one huge transaction would slow down as it grows.
const TAGS_PER_TRANSACTION: usize = 2_000;
/// Dangling blobs per transaction.
const DANGLING_PER_TRANSACTION: usize = 10_000;
/// The config's media type in each manifest.
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
/// The layers' media type in each manifest.
const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// A blob whose bytes the caller has stored.
#[derive(Debug, Clone)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    pub storage_key: String,
}

/// What [`RegistryStore::bulk_load`] writes.
#[derive(Debug, Clone)]
pub struct BulkPlan {
    /// The namespace every repository is under: see [`bulk_repository_name`].
    pub namespace: String,
    /// Repositories, the one with many tags among them.
    pub repositories: u64,
    /// Tags in all, at least one per repository.
    pub tags: u64,
    /// Of them, the tags of the one repository with many
    /// ([`bulk_big_repository`]).
    pub big_repository_tags: u64,
    /// Layers in all, shared out among the repositories (unique to each).
    pub layers: u64,
    /// The image config every manifest names, and its bytes.
    pub config: StoredBlob,
    pub config_bytes: Vec<u8>,
    /// Where the layers' keys point (`<prefix><hex>`); no object is there.
    pub layer_key_prefix: String,
    /// Blobs no manifest uses, linked one each into the repositories in
    /// turn, their link reviews queued at `dangling_since`.
    pub dangling: Vec<StoredBlob>,
    /// Seconds since the Unix epoch.
    pub dangling_since: i64,
}

/// How many rows of each kind [`RegistryStore::bulk_load`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkLoaded {
    pub repositories: u64,
    pub manifests: u64,
    pub tags: u64,
    pub blobs: u64,
    pub dangling: u64,
}

/// The name of repository `index` of a bulk load under `namespace`: index
/// 0 is the one with many tags (`<namespace>/big`), the others are
/// `<namespace>/r000001` and on, so their byte order is their index order.
pub fn bulk_repository_name(namespace: &str, index: u64) -> String {
    if index == 0 {
        bulk_big_repository(namespace)
    } else {
        format!("{namespace}/r{index:06}")
    }
}

/// The repository with many tags.
pub fn bulk_big_repository(namespace: &str) -> String {
    format!("{namespace}/big")
}

/// The name of a repository's tag `index`, in byte order as in index order.
pub fn bulk_tag_name(index: u64) -> String {
    format!("t{index:06}")
}

/// The bytes of layer `index`: small, and each its own digest.
pub fn bulk_layer_bytes(index: u64) -> Vec<u8> {
    format!("berth bulk layer {index}\n").into_bytes()
}

/// `count` items shared out over `among` as evenly as can be: how many the
/// `index`th gets, and how many the ones before it got in all.
fn share(count: u64, among: u64, index: u64) -> (u64, u64) {
    if among == 0 {
        return (0, 0);
    }
    let (each, rest) = (count / among, count % among);
    (
        each + u64::from(index < rest),
        index * each + index.min(rest),
    )
}

impl BulkPlan {
    /// Tags of repository `index`: the many of the big one, the rest
    /// shared out among the others, at least one each.
    fn tags_of(&self, index: u64) -> u64 {
        if index == 0 {
            return self.big_repository_tags.max(1);
        }
        let others = self.repositories.saturating_sub(1);
        let rest = self.tags.saturating_sub(self.big_repository_tags);
        share(rest, others, index - 1).0.max(1)
    }
}

/// One repository's image, as a push of it would have left its rows.
struct Image {
    name: String,
    layers: Vec<(Digest, u64)>,
    digest: Digest,
    payload: Vec<u8>,
    media_type: String,
    artifact_type: Option<String>,
    content_size: i64,
}

fn image(plan: &BulkPlan, index: u64) -> Image {
    let (count, first) = share(plan.layers, plan.repositories, index);
    let layers: Vec<(Digest, u64)> = (first..first + count)
        .map(|n| {
            let bytes = bulk_layer_bytes(n);
            (
                Digest::of_bytes(Algorithm::Sha256, &bytes),
                bytes.len() as u64,
            )
        })
        .collect();
    let descriptor = |media_type: &str, digest: &Digest, size: u64| serde_json::json!({"mediaType": media_type, "digest": digest.as_str(), "size": size});
    let payload = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(CONFIG_TYPE, &plan.config.digest, plan.config.size),
        "layers": layers.iter().map(|(d, s)| descriptor(LAYER_TYPE, d, *s)).collect::<Vec<_>>(),
    }))
    .expect("JSON values serialize");
    let parsed = parse(&payload, Some(DOCKER_MANIFEST)).expect("the bulk manifest parses");
    Image {
        name: bulk_repository_name(&plan.namespace, index),
        digest: Digest::of_bytes(Algorithm::Sha256, &payload),
        content_size: (plan.config.size + layers.iter().map(|(_, s)| s).sum::<u64>()) as i64,
        layers,
        payload,
        media_type: parsed.media_type,
        artifact_type: parsed.artifact_type,
    }
}

/// `INSERT INTO {into} VALUES (...), ... {tail}` for `rows` of `width`
/// values each, as few statements as the parameter limit allows; the rows
/// `RETURNING` in `tail` are read by `each`.
async fn insert_rows<T>(
    conn: &mut Conn<'_>,
    into: &str,
    tail: &str,
    width: usize,
    rows: &[Value<'_>],
    mut each: impl FnMut(&super::db::Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Vec<T>> {
    let mut returned = Vec::new();
    let parameters = match conn.engine() {
        Engine::Sqlite => SQLITE_PARAMETERS,
        Engine::Postgres => POSTGRES_PARAMETERS,
    };
    for batch in rows.chunks(parameters / width * width) {
        let tuples: Vec<String> = (0..batch.len() / width)
            .map(|row| {
                let columns: Vec<String> = (1..=width)
                    .map(|column| format!("${}", row * width + column))
                    .collect();
                format!("({})", columns.join(", "))
            })
            .collect();
        let sql = format!("INSERT INTO {into} VALUES {} {tail}", tuples.join(", "));
        if tail.contains("RETURNING") {
            returned.extend(conn.query(&sql, batch, &mut each).await?);
        } else {
            conn.execute(&sql, batch).await?;
        }
    }
    Ok(returned)
}

/// Repositories `indexes` with their images and, for all but the big one,
/// their tags; returns the big one's ids (repository, manifest) if it was
/// among them.
async fn load_repositories(
    conn: &mut Conn<'_>,
    plan: &BulkPlan,
    indexes: std::ops::Range<u64>,
    now: i64,
) -> MetadataResult<Option<(i64, i64)>> {
    let images: Vec<Image> = indexes.clone().map(|index| image(plan, index)).collect();
    let mut rows = Vec::new();
    for image in &images {
        rows.extend([Value::Text(&image.name), now.into()]);
    }
    let ids: HashMap<String, i64> = insert_rows(
        conn,
        "repositories (name, created_at)",
        "RETURNING name, id",
        2,
        &rows,
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .await?
    .into_iter()
    .collect();
    let repository_id = |image: &Image| ids[&image.name];
    let layer_keys: Vec<Vec<String>> = images
        .iter()
        .map(|image| {
            let prefix = &plan.layer_key_prefix;
            image
                .layers
                .iter()
                .map(|(d, _)| format!("{prefix}{}", d.hex()))
                .collect()
        })
        .collect();
    let mut rows = Vec::new();
    for (image, keys) in images.iter().zip(&layer_keys) {
        for ((digest, size), key) in image.layers.iter().zip(keys) {
            let size = *size as i64;
            rows.extend([
                Value::Text(digest.as_str()),
                size.into(),
                now.into(),
                key.into(),
            ]);
        }
    }
    insert_rows::<()>(
        conn,
        "blobs (digest, size, created_at, storage_key)",
        "",
        4,
        &rows,
        |_| Ok(()),
    )
    .await?;
    let mut rows = Vec::new();
    for image in &images {
        let id = repository_id(image);
        rows.extend([
            Value::Int(id),
            plan.config.digest.as_str().into(),
            now.into(),
        ]);
        for (digest, _) in &image.layers {
            rows.extend([Value::Int(id), digest.as_str().into(), now.into()]);
        }
    }
    insert_rows::<()>(
        conn,
        "repository_blobs (repository_id, blob_digest, created_at)",
        "",
        3,
        &rows,
        |_| Ok(()),
    )
    .await?;
    let summary = summarize_config(&plan.config_bytes);
    let state = if summary.is_some() {
        SummaryState::Recorded
    } else {
        SummaryState::Nothing
    };
    let facts = super::ImageFacts {
        state,
        summary,
        content_size: None,
    };
    let columns = facts.columns();
    let mut rows = Vec::new();
    for image in &images {
        rows.extend([
            repository_id(image).into(),
            image.digest.as_str().into(),
            Value::Text(&image.media_type),
            image.artifact_type.as_deref().into(),
            Value::NullText,
            Value::NullText,
            Value::Bytes(&image.payload),
            now.into(),
            columns.os.into(),
            columns.architecture.into(),
            columns.variant.into(),
            columns.created.into(),
            columns.json.as_deref().into(),
            image.content_size.into(),
            (state as i64).into(),
        ]);
    }
    let manifests: HashMap<i64, i64> = insert_rows(
        conn,
        "manifests (repository_id, digest, media_type, artifact_type, subject_digest, annotations, payload, created_at, \
         image_os, image_architecture, image_variant, image_created, image_summary, content_size, summary_state)",
        "RETURNING repository_id, id",
        15,
        &rows,
        |row| Ok((row.get(0)?, row.get(1)?)),
    )
    .await?
    .into_iter()
    .collect();
    let manifest_id = |image: &Image| manifests[&repository_id(image)];
    let mut rows = Vec::new();
    for image in &images {
        let id = manifest_id(image);
        rows.extend([Value::Int(id), plan.config.digest.as_str().into()]);
        for (digest, _) in &image.layers {
            rows.extend([Value::Int(id), digest.as_str().into()]);
        }
    }
    insert_rows::<()>(
        conn,
        "manifest_blobs (manifest_id, blob_digest)",
        "",
        2,
        &rows,
        |_| Ok(()),
    )
    .await?;
    let mut big = None;
    let mut names = Vec::new();
    let mut owners = Vec::new();
    for (index, image) in indexes.zip(&images) {
        if index == 0 {
            big = Some((repository_id(image), manifest_id(image)));
            continue;
        }
        for tag in 0..plan.tags_of(index) {
            names.push(bulk_tag_name(tag));
            owners.push((repository_id(image), manifest_id(image)));
        }
    }
    let mut rows = Vec::new();
    for (name, (repository, manifest)) in names.iter().zip(&owners) {
        rows.extend([
            (*repository).into(),
            Value::Text(name),
            (*manifest).into(),
            now.into(),
        ]);
    }
    insert_tags(conn, &rows).await?;
    Ok(big)
}

async fn insert_tags(conn: &mut Conn<'_>, rows: &[Value<'_>]) -> MetadataResult<()> {
    insert_rows::<()>(
        conn,
        "tags (repository_id, name, manifest_id, updated_at)",
        "",
        4,
        rows,
        |_| Ok(()),
    )
    .await?;
    Ok(())
}

/// Tags `range` of the big repository.
async fn load_big_tags(
    conn: &mut Conn<'_>,
    (repository, manifest): (i64, i64),
    range: std::ops::Range<u64>,
    now: i64,
) -> MetadataResult<()> {
    let names: Vec<String> = range.map(bulk_tag_name).collect();
    let mut rows = Vec::with_capacity(names.len() * 4);
    for name in &names {
        rows.extend([
            repository.into(),
            Value::Text(name),
            manifest.into(),
            now.into(),
        ]);
    }
    insert_tags(conn, &rows).await
}

/// Dangling blobs, the `first`th of the plan's onwards: a row, a link into
/// repository `(first + n) % repositories` and its due link review each.
async fn load_dangling(
    conn: &mut Conn<'_>,
    plan: &BulkPlan,
    first: usize,
    blobs: &[StoredBlob],
) -> MetadataResult<()> {
    let names: Vec<String> = (first..first + blobs.len())
        .map(|n| bulk_repository_name(&plan.namespace, n as u64 % plan.repositories.max(1)))
        .collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    let mut ids = HashMap::new();
    for chunk in unique.chunks(500) {
        let sql = format!(
            "SELECT name, id FROM repositories WHERE name IN ({})",
            super::db::placeholders(1, chunk.len())
        );
        let params: Vec<Value<'_>> = chunk.iter().map(Value::from).collect();
        ids.extend(
            conn.query(&sql, &params, |row| {
                Ok((row.get::<String>(0)?, row.get::<i64>(1)?))
            })
            .await?,
        );
    }
    let since = plan.dangling_since;
    let sizes: Vec<i64> = blobs.iter().map(|b| b.size as i64).collect();
    let mut rows = Vec::new();
    for (blob, size) in blobs.iter().zip(&sizes) {
        rows.extend([
            blob.digest.as_str().into(),
            (*size).into(),
            since.into(),
            Value::Text(&blob.storage_key),
        ]);
    }
    insert_rows::<()>(
        conn,
        "blobs (digest, size, created_at, storage_key)",
        "",
        4,
        &rows,
        |_| Ok(()),
    )
    .await?;
    let mut rows = Vec::new();
    for (blob, name) in blobs.iter().zip(&names) {
        rows.extend([
            Value::Int(ids[name]),
            blob.digest.as_str().into(),
            since.into(),
        ]);
    }
    insert_rows::<()>(
        conn,
        "repository_blobs (repository_id, blob_digest, created_at)",
        "",
        3,
        &rows,
        |_| Ok(()),
    )
    .await?;
    insert_rows::<()>(
        conn,
        "gc_blob_link_reviews (repository_id, digest, candidate_since)",
        "",
        3,
        &rows,
        |_| Ok(()),
    )
    .await?;
    Ok(())
}

impl RegistryStore {
    /// Writes `plan` into an empty registry, in transactions of a few
    /// thousand repositories or tags each (`progress` is told after each).
    /// Not for a registry in use: it assumes none of the names exist.
    pub async fn bulk_load(
        &self,
        plan: BulkPlan,
        progress: impl Fn(&BulkLoaded) + Send + Sync + 'static,
    ) -> MetadataResult<BulkLoaded> {
        let plan = std::sync::Arc::new(plan);
        let now = unix_now();
        let mut loaded = BulkLoaded::default();
        let config = plan.config.clone();
        self.db
            .write(async move |conn| {
                conn.execute(
                    "INSERT INTO blobs (digest, size, created_at, storage_key) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (digest) DO NOTHING",
                    &[
                        config.digest.as_str().into(),
                        (config.size as i64).into(),
                        now.into(),
                        Value::Text(&config.storage_key),
                    ],
                )
                .await
            })
            .await?;
        let mut big = None;
        let step = REPOSITORIES_PER_TRANSACTION as u64;
        for first in (0..plan.repositories).step_by(REPOSITORIES_PER_TRANSACTION) {
            let range = first..(first + step).min(plan.repositories);
            let plan_ = plan.clone();
            let range_ = range.clone();
            if let Some(ids) = self
                .db
                .write(async move |conn| load_repositories(conn, &plan_, range_, now).await)
                .await?
            {
                big = Some(ids);
            }
            let count = range.end - range.start;
            loaded.repositories += count;
            loaded.manifests += count;
            loaded.blobs += range
                .clone()
                .map(|i| share(plan.layers, plan.repositories, i).0)
                .sum::<u64>();
            loaded.tags += range
                .filter(|&i| i != 0)
                .map(|i| plan.tags_of(i))
                .sum::<u64>();
            progress(&loaded);
        }
        if let Some(ids) = big {
            let tags = plan.tags_of(0);
            for first in (0..tags).step_by(TAGS_PER_TRANSACTION) {
                let range = first..(first + TAGS_PER_TRANSACTION as u64).min(tags);
                let count = range.end - range.start;
                self.db
                    .write(async move |conn| load_big_tags(conn, ids, range, now).await)
                    .await?;
                loaded.tags += count;
                progress(&loaded);
            }
        }
        for first in (0..plan.dangling.len()).step_by(DANGLING_PER_TRANSACTION) {
            let end = (first + DANGLING_PER_TRANSACTION).min(plan.dangling.len());
            let plan_ = plan.clone();
            self.db
                .write(async move |conn| {
                    load_dangling(conn, &plan_, first, &plan_.dangling[first..end]).await
                })
                .await?;
            loaded.dangling += (end - first) as u64;
            progress(&loaded);
        }
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_differ_by_one_at_most() {
        let shares: Vec<(u64, u64)> = (0..7).map(|i| share(100, 7, i)).collect();
        assert_eq!(shares.iter().map(|(n, _)| n).sum::<u64>(), 100);
        assert!(shares.iter().all(|(n, _)| *n == 14 || *n == 15));
        for pair in shares.windows(2) {
            assert_eq!(
                pair[0].1 + pair[0].0,
                pair[1].1,
                "each starts where the last ended"
            );
        }
        assert_eq!(share(5, 0, 0), (0, 0));
    }

    #[test]
    fn names_sort_in_index_order() {
        let names: Vec<String> = (1..30).map(|i| bulk_repository_name("s", i)).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        assert!(bulk_repository_name("s", 0) < names[0]);
    }
}
