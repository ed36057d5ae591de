//! The push path's SQLite write transactions (a new upload, its progress
//! after each chunk, a blob's commit, a manifest), each run whole on a
//! thread of its own.
//!
//! Through sqlx every statement is a trip to the connection's thread and
//! back, and each trip wakes two threads. A blob commit is 7 statements and
//! a manifest 8, and on this project's 2-core VM those wake-ups, not the SQL,
//! were most of a small image's server time (docs/performance.md). So these
//! transactions are written here against rusqlite, a synchronous binding,
//! and sent whole to one thread that keeps a connection: one trip there and
//! one back. All of them go here, not only the longer two: SQLite drops a
//! connection's page cache whenever another connection has written, so
//! alternating with sqlx's writer on every push would make both read every
//! page afresh.
//!
//! The statements are the ones `sql.rs` runs on PostgreSQL through sqlx
//! (`sql::push`, bound here by the names `"$N"`); the logic around them
//! is written once per binding, and the API tests run every push against
//! both engines. This connection is a second writer beside sqlx's: the store
//! makes the two take turns on one mutex, and SQLite's own lock
//! (`BEGIN IMMEDIATE`, the busy timeout) keeps them apart even when a caller
//! gives up halfway.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;

use rusqlite::{
    OptionalExtension, Transaction, TransactionBehavior, named_params, params_from_iter,
};

use super::sql::{IN_LIST, first_immutable_tag, push};
use super::{
    BlobCommit, MetadataError, MetadataResult, NewBlob, PutManifestOutcome, QuotaExceeded,
    UploadSession, unix_now,
};
use crate::oci::manifest::ParsedManifest;

type Job = Box<dyn FnOnce(&mut rusqlite::Connection) + Send>;

/// How a transaction ends: committed, or rolled back with an answer that is
/// not an error (a quota reached, a reference missing).
pub(super) enum Finish<T> {
    Commit(T),
    RollBack(T),
}

pub(super) struct DirectWriter {
    /// `None` once closed.
    jobs: std::sync::Mutex<Option<mpsc::Sender<Job>>>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl DirectWriter {
    /// Opens a connection to a database that sqlx has already created and
    /// migrated (and put in WAL mode, which the file keeps).
    pub(super) fn open(path: &Path) -> MetadataResult<Self> {
        let connection = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // As sqlx's connections are set up in `sqlite.rs`.
        connection.busy_timeout(super::sqlite::BUSY_TIMEOUT)?;
        connection.pragma_update(None, "foreign_keys", true)?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        // Room for every fixed statement here and the `IN (...)` and edge
        // lists of a few manifest sizes, so a manifest of a new size does
        // not push out the statements every push runs.
        connection.set_prepared_statement_cache_capacity(64);
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("berth-sqlite-write".into())
            .spawn(move || {
                let mut connection = connection;
                for job in queue {
                    job(&mut connection);
                }
            })
            .map_err(|e| MetadataError::Database(sqlx::Error::Io(e)))?;
        Ok(Self {
            jobs: std::sync::Mutex::new(Some(jobs)),
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Runs `work` in a `BEGIN IMMEDIATE` transaction on the writer's thread.
    /// A panic in `work` rolls back and fails this call only.
    pub(super) async fn transaction<T, F>(&self, work: F) -> MetadataResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> rusqlite::Result<Finish<T>> + Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |connection| {
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| -> rusqlite::Result<T> {
                let transaction =
                    connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
                match work(&transaction)? {
                    Finish::Commit(value) => {
                        transaction.commit()?;
                        Ok(value)
                    }
                    // Dropping the transaction rolls it back.
                    Finish::RollBack(value) => Ok(value),
                }
            }));
            let _ = reply.send(result);
        });
        let sent = match self.jobs.lock().expect("never poisoned").as_ref() {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(MetadataError::Database(sqlx::Error::PoolClosed));
        }
        match answer.await {
            Ok(Ok(result)) => Ok(result?),
            // `work` panicked (and was rolled back), or the thread is gone.
            Ok(Err(_)) | Err(_) => Err(MetadataError::Database(sqlx::Error::WorkerCrashed)),
        }
    }

    /// Lets queued transactions finish, then closes the connection.
    pub(super) async fn close(&self) {
        self.jobs.lock().expect("never poisoned").take();
        let thread = self.thread.lock().expect("never poisoned").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// `record_blob` of `sql.rs`.
pub(super) fn commit_blob(
    tx: &Transaction<'_>,
    blob: NewBlob,
) -> rusqlite::Result<Finish<BlobCommit>> {
    let now = unix_now();
    let (repository, digest) = (blob.repository.as_str(), blob.digest.as_str());
    if let Some(exceeded) = check_quota(tx, repository, digest, blob.size)? {
        return Ok(Finish::RollBack(BlobCommit::QuotaExceeded(exceeded)));
    }
    let recorded: Option<String> = tx.prepare_cached(push::UPSERT_BLOB)?.query_row(
        named_params! {"$1": digest, "$2": blob.size as i64, "$3": now, "$4": blob.storage_key},
        |row| row.get(0),
    )?;
    let repository_id: Option<i64> = tx
        .prepare_cached(push::END_UPLOAD)?
        .query_row(
            named_params! {"$1": blob.upload_id, "$2": blob.expected_received as i64},
            |row| row.get(0),
        )
        .optional()?;
    let Some(repository_id) = repository_id else {
        return Ok(Finish::RollBack(BlobCommit::SessionMoved));
    };
    tx.prepare_cached(push::LINK_BLOB)?
        .execute(named_params! {"$1": repository_id, "$2": digest, "$3": now})?;
    tx.prepare_cached(push::ENQUEUE_LINK_REVIEW)?
        .execute(named_params! {"$1": repository_id, "$2": digest, "$3": now})?;
    Ok(Finish::Commit(BlobCommit::Recorded(
        recorded.unwrap_or(blob.storage_key),
    )))
}

/// `check_quota` of `sql.rs`.
fn check_quota(
    tx: &Transaction<'_>,
    repository: &str,
    digest: &str,
    size: u64,
) -> rusqlite::Result<Option<QuotaExceeded>> {
    let namespace = crate::oci::name::namespace_of(repository);
    let limit: Option<i64> = tx
        .prepare_cached(push::QUOTA_LIMIT)?
        .query_row(named_params! {"$1": namespace}, |row| row.get(0))
        .optional()?;
    let Some(limit) = limit else {
        return Ok(None);
    };
    let already: bool = tx
        .prepare_cached(&push::quota_already_counted())?
        .query_row(named_params! {"$1": namespace, "$2": digest}, |row| {
            row.get(0)
        })?;
    if already {
        return Ok(None);
    }
    let used: i64 = tx
        .prepare_cached(&push::quota_used())?
        .query_row(named_params! {"$1": namespace}, |row| row.get(0))?;
    Ok(QuotaExceeded::check(namespace, limit, used, size))
}

/// `record_upload` of `sql.rs`: into an existing repository one statement,
/// else the repository first, in the same transaction.
pub(super) fn create_upload(
    tx: &Transaction<'_>,
    repository: &str,
    session: &UploadSession,
) -> rusqlite::Result<Finish<()>> {
    let now = unix_now();
    let (received, hash_state, storage_state) = (
        session.received as i64,
        &session.hash_state,
        &session.storage_state,
    );
    let inserted = tx.prepare_cached(push::INSERT_UPLOAD_INTO_EXISTING)?.execute(named_params! {
        "$1": session.id, "$2": repository, "$3": received, "$4": hash_state, "$5": storage_state, "$6": now,
    })?;
    if inserted == 0 {
        let repository_id = ensure_repository(tx, repository, now)?;
        tx.prepare_cached(push::INSERT_UPLOAD)?.execute(named_params! {
            "$1": session.id, "$2": repository_id, "$3": received, "$4": hash_state, "$5": storage_state, "$6": now,
        })?;
    }
    Ok(Finish::Commit(()))
}

/// `record_progress` of `sql.rs`: whether the session still stood at
/// `expected_received` and so moved on to `session`.
pub(super) fn advance_upload(
    tx: &Transaction<'_>,
    session: &UploadSession,
    expected_received: u64,
) -> rusqlite::Result<Finish<bool>> {
    let updated = tx
        .prepare_cached(push::ADVANCE_UPLOAD)?
        .execute(named_params! {
            "$1": session.received as i64,
            "$2": session.hash_state,
            "$3": session.storage_state,
            "$4": unix_now(),
            "$5": session.id,
            "$6": expected_received as i64,
        })?;
    Ok(Finish::Commit(updated == 1))
}

/// What `put_manifest` records, owned, to travel to the writer's thread.
pub(super) struct NewManifestRecord {
    pub repository: String,
    pub digest: String,
    pub payload: Vec<u8>,
    pub parsed: ParsedManifest,
    pub tags: Vec<String>,
}

/// `record_manifest` of `sql.rs`.
pub(super) fn put_manifest(
    tx: &Transaction<'_>,
    manifest: &NewManifestRecord,
) -> rusqlite::Result<Finish<PutManifestOutcome>> {
    let now = unix_now();
    let repository_id = ensure_repository(tx, &manifest.repository, now)?;
    let blob_digests = manifest.parsed.blob_digests();
    let linked: HashSet<String> = select_in(
        tx,
        push::LINKED_BLOBS,
        repository_id,
        &blob_digests,
        |row| row.get(0),
    )?
    .into_iter()
    .collect();
    if let Some(missing) = manifest.parsed.missing_blob(|d| linked.contains(d)) {
        return Ok(Finish::RollBack(PutManifestOutcome::MissingReference(
            missing.clone(),
        )));
    }
    let child_digests = manifest.parsed.child_digests();
    let children: HashMap<String, i64> = select_in(
        tx,
        push::CHILD_MANIFESTS,
        repository_id,
        &child_digests,
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?
    .into_iter()
    .collect();
    if let Some(missing) = manifest.parsed.missing_child(|d| children.contains_key(d)) {
        return Ok(Finish::RollBack(PutManifestOutcome::MissingReference(
            missing.clone(),
        )));
    }
    let parsed = &manifest.parsed;
    let manifest_id: i64 = tx.prepare_cached(push::UPSERT_MANIFEST)?.query_row(
        named_params! {
            "$1": repository_id,
            "$2": manifest.digest,
            "$3": parsed.media_type,
            "$4": parsed.artifact_type,
            "$5": parsed.subject.as_ref().map(|d| d.as_str()),
            "$6": parsed.annotations,
            "$7": manifest.payload,
            "$8": now,
        },
        |row| row.get(0),
    )?;
    let blob_edges: Vec<&str> = linked.iter().map(String::as_str).collect();
    insert_edges(
        tx,
        "manifest_blobs",
        "manifest_id, blob_digest",
        manifest_id,
        &blob_edges,
    )?;
    let child_ids: Vec<i64> = children.into_values().collect();
    insert_edges(
        tx,
        "manifest_references",
        "parent_id, child_id",
        manifest_id,
        &child_ids,
    )?;
    if manifest.tags.is_empty() {
        enqueue_manifest_review(tx, repository_id, &manifest.digest, now)?;
    }
    for tag in &manifest.tags {
        let previous: Option<String> = tx
            .prepare_cached(push::PREVIOUS_TAG)?
            .query_row(
                named_params! {"$1": repository_id, "$2": tag, "$3": manifest_id},
                |row| row.get(0),
            )
            .optional()?;
        if let Some(previous) = previous {
            if let Some(tag) = immutable_tag(tx, &manifest.repository, tag)? {
                return Ok(Finish::RollBack(PutManifestOutcome::ImmutableTag(tag)));
            }
            enqueue_manifest_review(tx, repository_id, &previous, now)?;
        }
        tx.prepare_cached(push::SET_TAG)?.execute(
            named_params! {"$1": repository_id, "$2": tag, "$3": manifest_id, "$4": now},
        )?;
    }
    Ok(Finish::Commit(PutManifestOutcome::Stored))
}

/// `ensure_repository` of `sql.rs`.
fn ensure_repository(tx: &Transaction<'_>, name: &str, now: i64) -> rusqlite::Result<i64> {
    let id = |tx: &Transaction<'_>| {
        tx.prepare_cached(push::REPOSITORY_ID)?
            .query_row(named_params! {"$1": name}, |row| row.get(0))
    };
    if let Some(id) = id(tx).optional()? {
        return Ok(id);
    }
    tx.prepare_cached(push::INSERT_REPOSITORY)?
        .execute(named_params! {"$1": name, "$2": now})?;
    id(tx)
}

/// `select_in` of `sql.rs`: rows of `{query.0}{repository_id}{query.1}(values...)`,
/// one statement per [`IN_LIST`] values; none for none.
fn select_in<T>(
    tx: &Transaction<'_>,
    query: (&str, &str),
    repository_id: i64,
    values: &[&str],
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut rows = Vec::new();
    for values in values.chunks(IN_LIST) {
        // `?` after `?1` numbers on from 2.
        let list = vec!["?"; values.len()].join(", ");
        let mut statement = tx.prepare_cached(&format!("{}?1{}({list})", query.0, query.1))?;
        let arguments = std::iter::once(&repository_id as &dyn rusqlite::ToSql)
            .chain(values.iter().map(|v| v as &dyn rusqlite::ToSql));
        rows.extend(
            statement
                .query_map(params_from_iter(arguments), &row)?
                .collect::<rusqlite::Result<Vec<T>>>()?,
        );
    }
    Ok(rows)
}

/// `insert_edges` of `sql.rs`.
fn insert_edges<T: rusqlite::ToSql>(
    tx: &Transaction<'_>,
    table: &str,
    columns: &str,
    from: i64,
    to: &[T],
) -> rusqlite::Result<()> {
    for edges in to.chunks(IN_LIST) {
        let rows = vec!["(?, ?)"; edges.len()].join(", ");
        let mut statement = tx.prepare_cached(&format!(
            "INSERT INTO {table} ({columns}) VALUES {rows} ON CONFLICT ({columns}) DO NOTHING"
        ))?;
        let arguments = edges
            .iter()
            .flat_map(|edge| [&from as &dyn rusqlite::ToSql, edge as &dyn rusqlite::ToSql]);
        statement.execute(params_from_iter(arguments))?;
    }
    Ok(())
}

/// `immutable_tag` of `sql.rs`, for one tag.
fn immutable_tag(
    tx: &Transaction<'_>,
    repository: &str,
    tag: &str,
) -> rusqlite::Result<Option<String>> {
    let mut statement = tx.prepare_cached(push::IMMUTABLE_TAG_RULES)?;
    let rules = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(String, String)>>>()?;
    Ok(first_immutable_tag(&rules, repository, [tag]))
}

/// `enqueue_manifest_review` of `sql.rs`.
fn enqueue_manifest_review(
    tx: &Transaction<'_>,
    repository_id: i64,
    digest: &str,
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(push::ENQUEUE_MANIFEST_REVIEW)?
        .execute(named_params! {"$1": repository_id, "$2": digest, "$3": now})?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer_on_new_database() -> (tempfile::TempDir, std::path::PathBuf, DirectWriter) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.db");
        let setup = rusqlite::Connection::open(&path).unwrap();
        setup
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER PRIMARY KEY);")
            .unwrap();
        drop(setup);
        let writer = DirectWriter::open(&path).unwrap();
        (dir, path, writer)
    }

    fn count(path: &Path) -> i64 {
        let reader = rusqlite::Connection::open(path).unwrap();
        reader
            .query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0))
            .unwrap()
    }

    fn insert(tx: &Transaction<'_>, n: i64) -> rusqlite::Result<usize> {
        tx.execute("INSERT INTO t (n) VALUES (?1)", [n])
    }

    #[tokio::test]
    async fn a_commit_is_visible_and_a_roll_back_leaves_nothing() {
        let (_dir, path, writer) = writer_on_new_database();
        let committed = writer
            .transaction(|tx| Ok(Finish::Commit(insert(tx, 1)?)))
            .await
            .unwrap();
        assert_eq!(committed, 1);
        let answer = writer
            .transaction(|tx| {
                insert(tx, 2)?;
                Ok(Finish::RollBack("refused"))
            })
            .await
            .unwrap();
        assert_eq!(answer, "refused");
        assert_eq!(count(&path), 1);
    }

    #[tokio::test]
    async fn a_failed_statement_rolls_back_the_whole_transaction() {
        let (_dir, path, writer) = writer_on_new_database();
        let failed = writer
            .transaction(|tx| {
                insert(tx, 1)?;
                insert(tx, 1)?; // the same key again
                Ok(Finish::Commit(()))
            })
            .await;
        assert!(
            matches!(failed, Err(MetadataError::Sqlite(_))),
            "{failed:?}"
        );
        assert_eq!(count(&path), 0);
    }

    #[tokio::test]
    async fn a_panic_fails_its_own_call_only() {
        let (_dir, path, writer) = writer_on_new_database();
        let panicked = writer
            .transaction(|tx| -> rusqlite::Result<Finish<()>> {
                insert(tx, 1)?;
                panic!("a bug in a transaction");
            })
            .await;
        assert!(
            matches!(
                panicked,
                Err(MetadataError::Database(sqlx::Error::WorkerCrashed))
            ),
            "{panicked:?}"
        );
        writer
            .transaction(|tx| Ok(Finish::Commit(insert(tx, 2)?)))
            .await
            .unwrap();
        assert_eq!(count(&path), 1);
    }

    #[tokio::test]
    async fn after_close_transactions_are_refused_as_unavailable() {
        let (_dir, _path, writer) = writer_on_new_database();
        writer.close().await;
        let refused = writer
            .transaction(|tx| Ok(Finish::Commit(insert(tx, 1)?)))
            .await;
        assert!(
            matches!(
                refused,
                Err(MetadataError::Database(sqlx::Error::PoolClosed))
            ),
            "{refused:?}"
        );
    }
}
