//! Garbage collection's tables: the review queues (`gc_manifest_reviews`,
//! `gc_blob_link_reviews`, `gc_blob_reviews`), which pushes and deletes
//! fill with whatever may just have become unreferenced, and
//! `storage_garbage`, the blob-store objects whose metadata is gone; and
//! `gc_passes`, what the last passes did.
//!
//! A collector claims due items, re-checks references inside its
//! transaction, and only then deletes. On PostgreSQL the claims skip rows
//! another transaction holds ([`Lock::SkipLocked`]): review items are never
//! taken by two collectors, and a row a push has locked (a blob link it
//! relies on) is left for a later pass instead of waited for, so the
//! collector never deadlocks with a push. SQLite runs one writer at a time.
//! Why this is safe against concurrent pushes is in ARCHITECTURE.md.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::db::{Conn, Finish, Lock, Value, placeholders};
use super::policy::immutable_tag_rules;
use super::{MetadataResult, size, unix_now};
use crate::oci::pattern::first_covered;

/// The collector's view of the database.
#[derive(Clone)]
pub struct CollectorStore {
    pub(super) db: super::db::Db,
}

/// What one collection step removed from metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    /// Review items taken off the queues (alive or not); zero means nothing is due.
    pub reviewed: u64,
    pub manifests: u64,
    pub blob_links: u64,
    pub blobs: u64,
    /// Size of the blobs removed.
    pub bytes: u64,
    pub uploads: u64,
}

impl std::ops::AddAssign for Collected {
    fn add_assign(&mut self, other: Collected) {
        self.reviewed += other.reviewed;
        self.manifests += other.manifests;
        self.blob_links += other.blob_links;
        self.blobs += other.blobs;
        self.bytes += other.bytes;
        self.uploads += other.uploads;
    }
}

/// A blob-store object whose metadata is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Garbage {
    Blob {
        id: String,
        key: String,
    },
    Upload {
        id: String,
        upload_id: String,
        storage_state: String,
    },
}

/// What one finished pass of the collector did, as the administration
/// page lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPassRecord {
    /// Seconds since the Unix epoch.
    pub finished_at: i64,
    pub duration_ms: u64,
    pub expired_tags: u64,
    pub manifests: u64,
    pub blob_links: u64,
    pub blobs: u64,
    pub uploads: u64,
    /// Size of the blobs collected.
    pub bytes_freed: u64,
    pub objects_deleted: u64,
    pub objects_failed: u64,
}

/// A tag as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedTag {
    pub repository: String,
    pub tag: String,
    /// When the tag last moved (seconds since the Unix epoch).
    pub pushed_at: i64,
}

/// Queues a review of a manifest that may just have become unreferenced (it
/// lost a tag or a parent, or was pushed untagged); a later tag or parent
/// makes the review find it alive.
pub(super) async fn queue_manifest_review(
    conn: &mut Conn<'_>,
    repository_id: i64,
    digest: &str,
) -> MetadataResult<()> {
    conn.execute(
        "INSERT INTO gc_manifest_reviews (repository_id, digest, candidate_since) VALUES ($1, $2, $3) \
         ON CONFLICT (repository_id, digest) DO UPDATE SET candidate_since = excluded.candidate_since",
        &[repository_id.into(), digest.into(), unix_now().into()],
    )
    .await?;
    Ok(())
}

/// Queues a review of a blob link that a manifest may never come to use.
pub(super) async fn queue_link_review(
    conn: &mut Conn<'_>,
    repository_id: i64,
    digest: &str,
) -> MetadataResult<()> {
    conn.execute(
        "INSERT INTO gc_blob_link_reviews (repository_id, digest, candidate_since) VALUES ($1, $2, $3) \
         ON CONFLICT (repository_id, digest) DO UPDATE SET candidate_since = excluded.candidate_since",
        &[repository_id.into(), digest.into(), unix_now().into()],
    )
    .await?;
    Ok(())
}

/// Queues a review, due at once, of a blob that may have lost its last
/// link: the link already waited out its grace period or was deleted on purpose.
pub(super) async fn queue_blob_review(conn: &mut Conn<'_>, digest: &str) -> MetadataResult<()> {
    queue_blob_reviews(conn, &[digest]).await
}

/// [`queue_blob_review`] of each of `digests` (distinct), in one statement.
async fn queue_blob_reviews(conn: &mut Conn<'_>, digests: &[&str]) -> MetadataResult<()> {
    if digests.is_empty() {
        return Ok(());
    }
    let rows: Vec<String> = (1..=digests.len()).map(|n| format!("(${n}, 0)")).collect();
    let sql = format!(
        "INSERT INTO gc_blob_reviews (digest, candidate_since) VALUES {} ON CONFLICT (digest) DO NOTHING",
        rows.join(", ")
    );
    conn.execute(&sql, &texts(digests)).await?;
    Ok(())
}

/// What deleting a manifest may leave unreferenced: its children, its
/// referrers and its blob links. Called before the delete.
pub(super) async fn queue_dependents(
    conn: &mut Conn<'_>,
    repository_id: i64,
    manifest_id: i64,
    digest: &str,
) -> MetadataResult<()> {
    let mut dependents: Vec<String> = conn
        .scalars(
            "SELECT c.digest FROM manifest_references mr JOIN manifests c ON c.id = mr.child_id \
             WHERE mr.parent_id = $1",
            &[manifest_id.into()],
        )
        .await?;
    let referrers: Vec<String> = conn
        .scalars(
            "SELECT digest FROM manifests WHERE repository_id = $1 AND subject_digest = $2",
            &[repository_id.into(), digest.into()],
        )
        .await?;
    dependents.extend(referrers);
    for dependent in dependents {
        queue_manifest_review(conn, repository_id, &dependent).await?;
    }
    let blobs: Vec<String> = conn
        .scalars(
            "SELECT blob_digest FROM manifest_blobs WHERE manifest_id = $1",
            &[manifest_id.into()],
        )
        .await?;
    for blob in blobs {
        queue_link_review(conn, repository_id, &blob).await?;
    }
    Ok(())
}

/// One round of every step, inside one transaction.
async fn collect_round(
    conn: &mut Conn<'_>,
    grace: i64,
    upload_expiry: i64,
    limit: u32,
) -> MetadataResult<Collected> {
    let mut collected = Collected::default();
    let candidates_before = unix_now() - grace;
    review_manifests(conn, candidates_before, limit, &mut collected).await?;
    review_blob_links(conn, candidates_before, limit, &mut collected).await?;
    review_blobs(conn, limit, &mut collected).await?;
    expire_uploads(conn, unix_now() - upload_expiry, limit, &mut collected).await?;
    Ok(collected)
}

/// Claims the due items of a queue, `$1` the due time and `$2` the limit.
async fn claim<T>(
    conn: &mut Conn<'_>,
    sql: &'static str,
    params: &[Value<'_>],
    each: impl FnMut(&super::db::Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Vec<T>> {
    let sql = conn.locked(sql, Lock::SkipLocked);
    conn.query(&sql, params, each).await
}

/// What a review finds of the row it is about.
enum Target<T> {
    /// Locked for this transaction: the review may judge it.
    Held(T),
    /// Held by a concurrent transaction (a push relying on it): the review
    /// stays for a later pass.
    Busy,
    /// Gone: the review is moot.
    Gone,
}

/// Takes the row `sql` selects for this transaction, without waiting.
async fn take<T>(
    conn: &mut Conn<'_>,
    sql: &'static str,
    key: &[Value<'_>],
    each: impl FnMut(&super::db::Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Target<T>> {
    if let Some(row) = claim(conn, sql, key, each).await?.into_iter().next() {
        return Ok(Target::Held(row));
    }
    let there = conn.query_optional(sql, key, |_| Ok(())).await?.is_some();
    Ok(if there { Target::Busy } else { Target::Gone })
}

/// Takes a review item off its queue (`sql` deletes it by `key`).
async fn done(
    conn: &mut Conn<'_>,
    sql: &str,
    key: &[Value<'_>],
    collected: &mut Collected,
) -> MetadataResult<()> {
    conn.execute(sql, key).await?;
    collected.reviewed += 1;
    Ok(())
}

async fn review_manifests(
    conn: &mut Conn<'_>,
    candidates_before: i64,
    limit: u32,
    collected: &mut Collected,
) -> MetadataResult<()> {
    let due = claim(
        conn,
        "SELECT repository_id, digest FROM gc_manifest_reviews WHERE candidate_since <= $1 \
         ORDER BY candidate_since LIMIT $2",
        &[candidates_before.into(), i64::from(limit).into()],
        |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)),
    )
    .await?;
    for (repository_id, digest) in due {
        let key = [Value::Int(repository_id), Value::Text(&digest)];
        let manifest = "SELECT id FROM manifests WHERE repository_id = $1 AND digest = $2";
        match take(conn, manifest, &key, |row| row.get::<i64>(0)).await? {
            Target::Busy => continue,
            Target::Gone => {}
            Target::Held(id) => {
                // A fresh statement after taking the lock, so a tag or a
                // parent committed meanwhile is seen.
                let alive: bool = conn
                    .scalar(
                        "SELECT EXISTS (SELECT 1 FROM tags WHERE manifest_id = $1) \
                         OR EXISTS (SELECT 1 FROM manifest_references WHERE child_id = $1) \
                         OR EXISTS (SELECT 1 FROM manifests m JOIN manifests s \
                                    ON s.repository_id = m.repository_id AND s.digest = m.subject_digest \
                                    WHERE m.id = $1)",
                        &[id.into()],
                    )
                    .await?;
                if !alive {
                    queue_dependents(conn, repository_id, id, &digest).await?;
                    conn.execute("DELETE FROM manifests WHERE id = $1", &[id.into()])
                        .await?;
                    collected.manifests += 1;
                }
            }
        }
        let review = "DELETE FROM gc_manifest_reviews WHERE repository_id = $1 AND digest = $2";
        done(conn, review, &key, collected).await?;
    }
    Ok(())
}

/// Review items judged per statement: every step below handles its due
/// items a chunk at a time in a few statements, not a few per item.
const CHUNK: usize = 200;

/// A key of `repository_blobs` (or of its review queue): repository id and
/// blob digest.
type Link = (i64, String);

const LINK_KEY: (&str, &str) = ("repository_id", "blob_digest");
const LINK_REVIEW_KEY: (&str, &str) = ("repository_id", "digest");

async fn review_blob_links(
    conn: &mut Conn<'_>,
    candidates_before: i64,
    limit: u32,
    collected: &mut Collected,
) -> MetadataResult<()> {
    let due: Vec<Link> = claim(
        conn,
        "SELECT repository_id, digest FROM gc_blob_link_reviews WHERE candidate_since <= $1 \
         ORDER BY candidate_since LIMIT $2",
        &[candidates_before.into(), i64::from(limit).into()],
        |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)),
    )
    .await?;
    for chunk in due.chunks(CHUNK) {
        review_link_chunk(conn, &chunk.iter().collect::<Vec<_>>(), collected).await?;
    }
    Ok(())
}

async fn review_link_chunk(
    conn: &mut Conn<'_>,
    due: &[&Link],
    collected: &mut Collected,
) -> MetadataResult<()> {
    let links = "SELECT repository_id, blob_digest FROM repository_blobs";
    let held = select_pairs(conn, links, LINK_KEY, due, Some(Lock::SkipLocked)).await?;
    let (held, others): (Vec<&Link>, Vec<&Link>) = due.iter().partition(|l| held.contains(**l));
    // A link held by a concurrent transaction (a push relying on it) keeps
    // its review for a later pass; a review of a link that is gone is moot.
    let busy = select_pairs(conn, links, LINK_KEY, &others, None).await?;
    let reviewed: Vec<&Link> = due.iter().copied().filter(|l| !busy.contains(*l)).collect();
    delete_pairs(conn, "gc_blob_link_reviews", LINK_REVIEW_KEY, &reviewed).await?;
    collected.reviewed += reviewed.len() as u64;
    // A fresh statement after taking the locks, so a manifest committed
    // meanwhile is seen. A cached blob's link is kept by its `cache_blobs`
    // row until eviction deletes it.
    let unused = select_batch(
        conn,
        "SELECT b.repository_id, b.digest FROM batch b \
         WHERE NOT EXISTS (SELECT 1 FROM manifest_blobs mb JOIN manifests m ON m.id = mb.manifest_id \
                           WHERE m.repository_id = b.repository_id AND mb.blob_digest = b.digest) \
         AND NOT EXISTS (SELECT 1 FROM cache_blobs c \
                         WHERE c.repository_id = b.repository_id AND c.blob_digest = b.digest)",
        &held,
    )
    .await?;
    let unused: Vec<&Link> = unused.iter().collect();
    delete_pairs(conn, "repository_blobs", LINK_KEY, &unused).await?;
    collected.blob_links += unused.len() as u64;
    // Each blob that lost a link is reviewed now, as a queued review would
    // be in this round, without the queue's row written and deleted again.
    let digests: BTreeSet<&str> = unused.iter().map(|(_, digest)| digest.as_str()).collect();
    let digests: Vec<&str> = digests.into_iter().collect();
    let busy = judge_blobs(conn, &digests, collected).await?;
    queue_blob_reviews(conn, &busy).await
}

async fn review_blobs(
    conn: &mut Conn<'_>,
    limit: u32,
    collected: &mut Collected,
) -> MetadataResult<()> {
    let due: Vec<String> = claim(
        conn,
        "SELECT digest FROM gc_blob_reviews ORDER BY candidate_since LIMIT $1",
        &[i64::from(limit).into()],
        |row| row.get(0),
    )
    .await?;
    for chunk in due.chunks(CHUNK) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        review_blob_chunk(conn, &chunk, collected).await?;
    }
    Ok(())
}

async fn review_blob_chunk(
    conn: &mut Conn<'_>,
    due: &[&str],
    collected: &mut Collected,
) -> MetadataResult<()> {
    let busy: HashSet<&str> = judge_blobs(conn, due, collected)
        .await?
        .into_iter()
        .collect();
    let reviewed: Vec<&str> = due.iter().copied().filter(|d| !busy.contains(d)).collect();
    delete_in(conn, "gc_blob_reviews", "digest", &reviewed).await?;
    collected.reviewed += reviewed.len() as u64;
    Ok(())
}

/// Deletes each blob of `digests` that no link or manifest names, and
/// records its object as garbage; returns those a concurrent transaction
/// holds (a push relying on them), whose review must wait for a later pass.
/// Blobs already gone need nothing.
async fn judge_blobs<'d>(
    conn: &mut Conn<'_>,
    digests: &[&'d str],
    collected: &mut Collected,
) -> MetadataResult<Vec<&'d str>> {
    let lock = conn.lock_clause(Lock::SkipLocked);
    let held: HashMap<String, (i64, Option<String>)> = select_in(
        conn,
        "SELECT digest, size, storage_key FROM blobs WHERE digest IN",
        digests,
        lock,
        |row| Ok((row.get(0)?, (row.get(1)?, row.get(2)?))),
    )
    .await?
    .into_iter()
    .collect();
    let (held_digests, others): (Vec<&str>, Vec<&str>) =
        digests.iter().partition(|d| held.contains_key(**d));
    let busy: HashSet<String> = select_in(
        conn,
        "SELECT digest FROM blobs WHERE digest IN",
        &others,
        "",
        |row| row.get(0),
    )
    .await?
    .into_iter()
    .collect();
    // A fresh statement after taking the locks, so a link committed
    // meanwhile is seen.
    let linked: HashSet<String> = select_in(
        conn,
        "SELECT digest FROM blobs WHERE digest IN",
        &held_digests,
        " AND (EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.blob_digest = blobs.digest) \
         OR EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.blob_digest = blobs.digest))",
        |row| row.get(0),
    )
    .await?
    .into_iter()
    .collect();
    let unlinked: Vec<&str> = held_digests
        .into_iter()
        .filter(|d| !linked.contains(*d))
        .collect();
    delete_in(conn, "blobs", "digest", &unlinked).await?;
    let mut objects = Vec::new();
    for digest in &unlinked {
        let (blob_size, storage_key) = &held[*digest];
        if let Some(storage_key) = storage_key {
            objects.push((storage_key.as_str(), ""));
        }
        collected.bytes += size(*blob_size);
    }
    add_garbage(conn, "blob", &objects).await?;
    collected.blobs += unlinked.len() as u64;
    Ok(others.into_iter().filter(|d| busy.contains(*d)).collect())
}

/// Records blob-store objects (`(key, state)` each) to delete once this
/// transaction commits (so a crash in between leaks nothing).
async fn add_garbage(
    conn: &mut Conn<'_>,
    kind: &str,
    objects: &[(&str, &str)],
) -> MetadataResult<()> {
    for objects in objects.chunks(CHUNK) {
        // Time-ordered ids: rows go in at the end of the table's key and
        // leave from its start, instead of dirtying a random page each.
        let ids: Vec<String> = objects
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let rows: Vec<String> = (0..objects.len())
            .map(|i| format!("(${}, $1, ${}, ${}, $2)", 3 + 3 * i, 4 + 3 * i, 5 + 3 * i))
            .collect();
        let sql = format!(
            "INSERT INTO storage_garbage (id, kind, storage_key, storage_state, created_at) VALUES {}",
            rows.join(", ")
        );
        let now = unix_now();
        let mut params = vec![Value::Text(kind), now.into()];
        for (id, (key, state)) in ids.iter().zip(objects) {
            params.extend([Value::Text(id), Value::Text(key), Value::Text(state)]);
        }
        conn.execute(&sql, &params).await?;
    }
    Ok(())
}

async fn expire_uploads(
    conn: &mut Conn<'_>,
    idle_before: i64,
    limit: u32,
    collected: &mut Collected,
) -> MetadataResult<()> {
    let idle = claim(
        conn,
        "SELECT id, storage_state FROM uploads WHERE updated_at <= $1 ORDER BY updated_at LIMIT $2",
        &[idle_before.into(), i64::from(limit).into()],
        |row| Ok((row.get::<String>(0)?, row.get::<String>(1)?)),
    )
    .await?;
    for chunk in idle.chunks(CHUNK) {
        let ids: Vec<&str> = chunk.iter().map(|(id, _)| id.as_str()).collect();
        delete_in(conn, "uploads", "id", &ids).await?;
        let objects: Vec<(&str, &str)> = chunk
            .iter()
            .map(|(id, state)| (id.as_str(), state.as_str()))
            .collect();
        add_garbage(conn, "upload", &objects).await?;
        collected.uploads += chunk.len() as u64;
        collected.reviewed += chunk.len() as u64;
    }
    Ok(())
}

/// `(a = $n AND b = $n+1) OR ...` for `count` pairs bound from `$from` on:
/// both engines look each pair up in the key's index (SQLite scans the
/// whole table for a row-value `IN (VALUES ...)`).
fn pairs_match((a, b): (&str, &str), from: usize, count: usize) -> String {
    (0..count)
        .map(|i| format!("({a} = ${} AND {b} = ${})", from + 2 * i, from + 2 * i + 1))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn pair_params<'a>(pairs: &[&'a Link]) -> Vec<Value<'a>> {
    pairs
        .iter()
        .flat_map(|(id, digest)| [Value::Int(*id), Value::Text(digest)])
        .collect()
}

/// The rows of `select` (its first two columns a [`Link`]) whose `key`
/// is among `pairs`, taken with `lock`; none for no pairs.
async fn select_pairs(
    conn: &mut Conn<'_>,
    select: &str,
    key: (&str, &str),
    pairs: &[&Link],
    lock: Option<Lock>,
) -> MetadataResult<HashSet<Link>> {
    if pairs.is_empty() {
        return Ok(HashSet::new());
    }
    let lock = lock.map_or("", |lock| conn.lock_clause(lock));
    let sql = format!("{select} WHERE {}{lock}", pairs_match(key, 1, pairs.len()));
    let rows = conn
        .query(&sql, &pair_params(pairs), |row| {
            Ok((row.get::<i64>(0)?, row.get::<String>(1)?))
        })
        .await?;
    Ok(rows.into_iter().collect())
}

/// The rows of `select` over `batch (repository_id, digest)`, a table of
/// `pairs`: for checks that join, where [`pairs_match`] would not be
/// planned as lookups.
async fn select_batch(
    conn: &mut Conn<'_>,
    select: &str,
    pairs: &[&Link],
) -> MetadataResult<Vec<Link>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<String> = (0..pairs.len())
        .map(|i| format!("(${}, ${})", 1 + 2 * i, 2 + 2 * i))
        .collect();
    let sql = format!(
        "WITH batch (repository_id, digest) AS (VALUES {}) {select}",
        rows.join(", ")
    );
    conn.query(&sql, &pair_params(pairs), |row| {
        Ok((row.get::<i64>(0)?, row.get::<String>(1)?))
    })
    .await
}

async fn delete_pairs(
    conn: &mut Conn<'_>,
    table: &str,
    key: (&str, &str),
    pairs: &[&Link],
) -> MetadataResult<()> {
    if !pairs.is_empty() {
        let sql = format!(
            "DELETE FROM {table} WHERE {}",
            pairs_match(key, 1, pairs.len())
        );
        conn.execute(&sql, &pair_params(pairs)).await?;
    }
    Ok(())
}

fn texts<'a>(values: &[&'a str]) -> Vec<Value<'a>> {
    values.iter().map(|v| Value::Text(v)).collect()
}

/// The rows of `{select} ({values}){tail}`; none for no values.
async fn select_in<T>(
    conn: &mut Conn<'_>,
    select: &str,
    values: &[&str],
    tail: &str,
    each: impl FnMut(&super::db::Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Vec<T>> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!("{select} ({}){tail}", placeholders(1, values.len()));
    conn.query(&sql, &texts(values), each).await
}

async fn delete_in(
    conn: &mut Conn<'_>,
    table: &str,
    column: &str,
    values: &[&str],
) -> MetadataResult<()> {
    for values in values.chunks(CHUNK) {
        let sql = format!(
            "DELETE FROM {table} WHERE {column} IN ({})",
            placeholders(1, values.len())
        );
        conn.execute(&sql, &texts(values)).await?;
    }
    Ok(())
}

async fn untag_if_unchanged(
    conn: &mut Conn<'_>,
    repository: &str,
    tag: &str,
    pushed_at: i64,
) -> MetadataResult<bool> {
    let rules = immutable_tag_rules(conn).await?;
    if first_covered(&rules, repository, [tag]).is_some() {
        return Ok(false);
    }
    let row = conn
        .query_optional(
            "SELECT t.repository_id, m.digest FROM tags t JOIN repositories r ON r.id = t.repository_id \
             JOIN manifests m ON m.id = t.manifest_id WHERE r.name = $1 AND t.name = $2 AND t.updated_at = $3",
            &[repository.into(), tag.into(), pushed_at.into()],
            |row| Ok((row.get::<i64>(0)?, row.get::<String>(1)?)),
        )
        .await?;
    let Some((repository_id, digest)) = row else {
        return Ok(false);
    };
    conn.execute(
        "DELETE FROM tags WHERE repository_id = $1 AND name = $2 AND updated_at = $3",
        &[repository_id.into(), tag.into(), pushed_at.into()],
    )
    .await?;
    queue_manifest_review(conn, repository_id, &digest).await?;
    Ok(true)
}

impl CollectorStore {
    /// Reviews up to `limit` due items of each queue (manifests that have
    /// been candidates for at least `grace` seconds, then blob links, then
    /// blobs) and expires up to `limit` uploads idle for `upload_expiry`
    /// seconds, in one transaction. "Now" is read at each round, so what a
    /// round queues (a deleted index's children) is due in the next one when
    /// the grace is zero. Items locked by a concurrent writer are skipped
    /// for a later pass. With `dry_run` the transaction is rolled back after
    /// repeating the steps until nothing more is due, so the report says
    /// what a real pass would remove, cascades included.
    pub async fn collect(
        &self,
        grace: i64,
        upload_expiry: i64,
        limit: u32,
        dry_run: bool,
    ) -> MetadataResult<Collected> {
        self.db
            .transaction(async move |conn| {
                let mut collected = collect_round(conn, grace, upload_expiry, limit).await?;
                if !dry_run {
                    return Ok(Finish::Commit(collected));
                }
                loop {
                    let round = collect_round(conn, grace, upload_expiry, limit).await?;
                    if round.reviewed == 0 {
                        return Ok(Finish::RollBack(collected));
                    }
                    collected += round;
                }
            })
            .await
    }

    /// Tags of every repository that is `path` or lies under it.
    pub async fn tags_under(&self, path: &str) -> MetadataResult<Vec<PushedTag>> {
        let path = path.to_string();
        self.db
            .read(async move |conn| {
                conn.query(
                    "SELECT r.name, t.name, t.updated_at FROM tags t JOIN repositories r ON r.id = t.repository_id \
                     WHERE r.name = $1 OR substr(r.name, 1, length($1) + 1) = $1 || '/' ORDER BY r.name, t.name",
                    &[Value::Text(&path)],
                    |row| {
                        Ok(PushedTag {
                            repository: row.get(0)?,
                            tag: row.get(1)?,
                            pushed_at: row.get(2)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Removes a tag if it still points where it did at `pushed_at` (a tag
    /// pushed again meanwhile stays) and no immutable-tag rule covers it;
    /// queues its manifest for review. True when removed.
    pub async fn untag_if_unchanged(&self, tag: &PushedTag) -> MetadataResult<bool> {
        let tag = tag.clone();
        self.db
            .write(async move |conn| {
                untag_if_unchanged(conn, &tag.repository, &tag.tag, tag.pushed_at).await
            })
            .await
    }

    /// Blob-store objects to delete, oldest first (ids are time-ordered
    /// UUIDs; rows from before they were, in any order).
    pub async fn garbage(&self, limit: u32) -> MetadataResult<Vec<Garbage>> {
        self.db
            .read(async move |conn| {
                conn.query(
                    "SELECT id, kind, storage_key, storage_state FROM storage_garbage ORDER BY id LIMIT $1",
                    &[i64::from(limit).into()],
                    |row| {
                        let (id, kind, key, state): (String, String, String, String) =
                            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?);
                        Ok(match kind.as_str() {
                            "upload" => Garbage::Upload {
                                id,
                                upload_id: key,
                                storage_state: state,
                            },
                            _ => Garbage::Blob { id, key },
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Records a finished pass and forgets all but the newest `keep`.
    pub async fn record_pass(&self, pass: &GcPassRecord, keep: u32) -> MetadataResult<()> {
        let pass = pass.clone();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.db
            .write(async move |conn| {
                conn.execute(
                    "INSERT INTO gc_passes (id, finished_at, duration_ms, expired_tags, manifests, blob_links, \
                     blobs, uploads, bytes_freed, objects_deleted, objects_failed) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    &[
                        Value::Text(&id),
                        pass.finished_at.into(),
                        count(pass.duration_ms).into(),
                        count(pass.expired_tags).into(),
                        count(pass.manifests).into(),
                        count(pass.blob_links).into(),
                        count(pass.blobs).into(),
                        count(pass.uploads).into(),
                        count(pass.bytes_freed).into(),
                        count(pass.objects_deleted).into(),
                        count(pass.objects_failed).into(),
                    ],
                )
                .await?;
                conn.execute(
                    "DELETE FROM gc_passes WHERE id NOT IN \
                     (SELECT id FROM gc_passes ORDER BY finished_at DESC, id DESC LIMIT $1)",
                    &[i64::from(keep).into()],
                )
                .await?;
                Ok(())
            })
            .await
    }

    /// The newest `limit` passes recorded, newest first.
    pub async fn recent_passes(&self, limit: u32) -> MetadataResult<Vec<GcPassRecord>> {
        self.db
            .read(async move |conn| {
                conn.query(
                    "SELECT finished_at, duration_ms, expired_tags, manifests, blob_links, blobs, uploads, \
                     bytes_freed, objects_deleted, objects_failed FROM gc_passes \
                     ORDER BY finished_at DESC, id DESC LIMIT $1",
                    &[i64::from(limit).into()],
                    |row| {
                        Ok(GcPassRecord {
                            finished_at: row.get(0)?,
                            duration_ms: size(row.get(1)?),
                            expired_tags: size(row.get(2)?),
                            manifests: size(row.get(3)?),
                            blob_links: size(row.get(4)?),
                            blobs: size(row.get(5)?),
                            uploads: size(row.get(6)?),
                            bytes_freed: size(row.get(7)?),
                            objects_deleted: size(row.get(8)?),
                            objects_failed: size(row.get(9)?),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Forgets garbage whose objects are deleted.
    pub async fn forget_garbage(&self, ids: &[String]) -> MetadataResult<()> {
        let ids = ids.to_vec();
        self.db
            .write(async move |conn| {
                let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                delete_in(conn, "storage_garbage", "id", &ids).await
            })
            .await
    }
}
