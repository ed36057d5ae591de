//! SQLite through rusqlite: one writer thread, a few reader threads, each
//! owning its connection, and the migrations.
//!
//! SQLite takes one writer at a time. Giving that writer a thread of its own
//! makes every write transaction one trip there and one back, however many
//! statements it runs, and writers never meet `SQLITE_BUSY` among
//! themselves; another process (an admin command) holding the lock is
//! waited for up to [`BUSY_TIMEOUT`]. Readers, in WAL mode, never wait for
//! the writer; each runs whole jobs too. A database in memory is refused:
//! each connection would see a different one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags};

use super::{Finish, PoolStats, Row, RowOf, Value};
use crate::metadata::{MetadataError, MetadataResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a write waits for another process holding SQLite's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Prepared statements kept per connection: every fixed statement of the
/// push path and the `IN (...)` lists of a few manifest sizes, so a
/// manifest of a new size does not push out what every push runs.
const STATEMENT_CACHE: usize = 64;

/// How long a job may wait in its queue before it is refused as
/// unavailable instead of run: a writer stuck behind another process's lock
/// answers 503 rather than holding requests forever.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(30);

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The SQLite file's path in a `sqlite:` URL (`sqlite:path`,
/// `sqlite://path`, `sqlite:///abs/path`, percent-encoded). Of the query
/// options only `mode=rwc` (the default) is accepted: the registry needs a
/// file it can write and share between its connections.
fn database_path(url: &str) -> MetadataResult<PathBuf> {
    let invalid = |why: String| MetadataError::Internal(format!("`{url}`: {why}"));
    let rest = url.strip_prefix("sqlite:").unwrap_or(url);
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| invalid("the path is not UTF-8".into()))?;
    if path.is_empty() || path == ":memory:" || path.starts_with("file::memory:") {
        return Err(invalid(
            "an in-memory SQLite database cannot be shared by the registry's connections; name a file".into(),
        ));
    }
    if let Some(option) = query.split('&').find(|o| !o.is_empty() && *o != "mode=rwc") {
        return Err(invalid(format!(
            "`{option}` is not supported; give the file's path alone"
        )));
    }
    Ok(PathBuf::from(path.as_ref()))
}

pub(crate) struct SqliteDb {
    writer: Worker,
    readers: Worker,
    reader_count: u32,
    /// Read connections a point lookup uses on its caller's thread (see
    /// [`Self::lookup`]); one per core, taken without waiting.
    lookups: Mutex<Vec<Connection>>,
    lookup_count: u32,
}

impl SqliteDb {
    pub async fn open(url: &str, max_connections: u32) -> MetadataResult<Self> {
        let path = database_path(url)?;
        let reader_count = reader_count(max_connections);
        tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| {
                    MetadataError::Unavailable(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
            let mut writer = open_connection(&path, true)?;
            migrate(&mut writer)?;
            let readers = (0..reader_count)
                .map(|_| open_connection(&path, false))
                .collect::<MetadataResult<Vec<_>>>()?;
            let lookup_count = lookup_count();
            let lookups = (0..lookup_count)
                .map(|_| open_connection(&path, false))
                .collect::<MetadataResult<Vec<_>>>()?;
            Ok(SqliteDb {
                writer: Worker::start("berth-sqlite-write", &path, true, vec![writer])?,
                readers: Worker::start("berth-sqlite-read", &path, false, readers)?,
                reader_count,
                lookups: Mutex::new(lookups),
                lookup_count,
            })
        })
        .await
        .map_err(|e| MetadataError::Internal(format!("opening SQLite failed: {e}")))?
    }

    pub async fn read<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> MetadataResult<T> + Send + 'static,
    ) -> MetadataResult<T> {
        self.readers.run(job).await
    }

    /// Runs `job`, a lookup of a few rows by an index, on the caller's
    /// thread when a lookup connection is free, else as [`Self::read`]. A
    /// trip to a reader thread and back is two thread wake-ups, which on a
    /// small VM cost more than such a query from SQLite's page cache: the
    /// trip was most of a manifest `GET`'s CPU (docs/performance.md). Only
    /// for queries that touch a handful of pages: the caller's thread is a
    /// runtime worker, which nothing else runs on meanwhile.
    pub async fn lookup<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> MetadataResult<T> + Send + 'static,
    ) -> MetadataResult<T> {
        let free = self.lookups.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let Some(mut conn) = free else {
            return self.readers.run(job).await;
        };
        let (outcome, usable) = run_whole(&mut conn, job);
        // One left inside a transaction is dropped: the readers remain.
        if usable {
            self.lookups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
        }
        outcome.unwrap_or_else(|| Err(MetadataError::Internal("a SQLite lookup panicked".into())))
    }

    /// Runs `job` inside `BEGIN IMMEDIATE` ... `COMMIT` (or `ROLLBACK`).
    pub async fn transaction<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> MetadataResult<Finish<T>> + Send + 'static,
    ) -> MetadataResult<T> {
        self.writer
            .run(move |conn| {
                conn.execute_batch("BEGIN IMMEDIATE").map_err(error)?;
                match job(conn) {
                    Ok(Finish::Commit(value)) => match conn.execute_batch("COMMIT") {
                        Ok(()) => Ok(value),
                        Err(e) => {
                            // A failed COMMIT may leave the transaction open.
                            roll_back(conn);
                            Err(error(e))
                        }
                    },
                    Ok(Finish::RollBack(value)) => {
                        roll_back(conn);
                        Ok(value)
                    }
                    // The job's own error, whatever the rollback answers.
                    Err(e) => {
                        roll_back(conn);
                        Err(e)
                    }
                }
            })
            .await
    }

    /// Runs `job` on the write connection with each statement committing on its own.
    pub async fn autocommit<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> MetadataResult<T> + Send + 'static,
    ) -> MetadataResult<T> {
        self.writer.run(job).await
    }

    pub fn stats(&self) -> PoolStats {
        let free_lookups = self.lookups.lock().unwrap_or_else(|p| p.into_inner()).len() as u32;
        let busy_lookups = self.lookup_count.saturating_sub(free_lookups);
        let connections = self.reader_count + self.lookup_count + 1;
        PoolStats {
            connections,
            idle: connections - self.readers.busy() - self.writer.busy() - busy_lookups,
        }
    }

    pub async fn close(&self) {
        self.lookups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        self.writer.close().await;
        self.readers.close().await;
    }
}

/// Ends the connection's open transaction, if any: SQLite has already
/// rolled back by itself after some errors (a full disk, an I/O error).
fn roll_back(conn: &Connection) {
    if !conn.is_autocommit()
        && let Err(e) = conn.execute_batch("ROLLBACK")
    {
        tracing::warn!(error = %e, "SQLite could not roll a transaction back");
    }
}

/// Runs `job` on `conn`, catching a panic (`None`), and ends any
/// transaction it left open. The second value is false when the connection
/// is still inside one: every later `BEGIN` on it would fail.
fn run_whole<T>(
    conn: &mut Connection,
    job: impl FnOnce(&mut Connection) -> T,
) -> (Option<T>, bool) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn))).ok();
    roll_back(conn);
    (outcome, conn.is_autocommit())
}

/// SQLite reads are local CPU work, each connection with its own thread and
/// page cache: beyond two per core they add memory, not throughput.
fn reader_count(max_connections: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get() as u32);
    max_connections.clamp(1, cores.saturating_mul(2).max(2))
}

/// One lookup connection per core: more could only wait for a core.
fn lookup_count() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
}

fn open_connection(path: &Path, writer: bool) -> MetadataResult<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if writer {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(error)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(error)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    if writer {
        // Kept by the file; readers opened after this find it in WAL mode.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(error)?;
        // Checkpoints every 40 MB of WAL, not every 4 MB: a page that many
        // commits change (a busy index's) is copied back once, and each
        // checkpoint's fsync is paid a tenth as often. A collection pass of
        // 100,000 blobs took 20% less time.
        conn.pragma_update(None, "wal_autocheckpoint", 10000)
            .map_err(error)?;
    }
    // WAL with NORMAL survives a crash of Berth whole; a power loss may roll
    // back the last commits, never leaving a row that names a missing blob
    // when blobs are flushed before their rows are written.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(error)?;
    conn.pragma_update(None, "foreign_keys", true)
        .map_err(error)?;
    if !writer {
        // A read connection that was asked to write would be a bug here.
        conn.pragma_update(None, "query_only", true)
            .map_err(error)?;
    }
    Ok(conn)
}

/// Threads that each own a connection and take jobs from one queue.
struct Worker {
    /// `None` once closed. Read-locked by every job sent, so senders never wait on each other.
    jobs: RwLock<Option<crossbeam_channel::Sender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    busy: Arc<AtomicU32>,
}

impl Worker {
    /// Threads for `connections`, each replaced by a new connection to
    /// `path` should it ever be left inside a transaction.
    fn start(
        name: &str,
        path: &Path,
        writer: bool,
        connections: Vec<Connection>,
    ) -> MetadataResult<Self> {
        // A queue many threads take from, waking one of them per job.
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let busy = Arc::new(AtomicU32::new(0));
        let threads = connections
            .into_iter()
            .map(|mut conn| {
                let (queue, busy, path) = (queue.clone(), busy.clone(), path.to_path_buf());
                std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || {
                        // Ends when the queue is closed and empty.
                        for job in queue {
                            busy.fetch_add(1, Ordering::Relaxed);
                            // A panicking job drops its reply (its caller
                            // sees an internal error).
                            let (_, usable) = run_whole(&mut conn, job);
                            if !usable {
                                // Stuck in a transaction: every later BEGIN
                                // would fail, so start over on a new connection.
                                match open_connection(&path, writer) {
                                    Ok(fresh) => conn = fresh,
                                    Err(e) => tracing::error!(error = %e, "cannot reopen SQLite"),
                                }
                            }
                            busy.fetch_sub(1, Ordering::Relaxed);
                        }
                    })
                    .map_err(|e| {
                        MetadataError::Internal(format!("cannot start a SQLite thread: {e}"))
                    })
            })
            .collect::<MetadataResult<Vec<_>>>()?;
        Ok(Self {
            jobs: RwLock::new(Some(jobs)),
            threads: Mutex::new(threads),
            busy,
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Connection) -> MetadataResult<T> + Send + 'static,
    ) -> MetadataResult<T> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let queued = std::time::Instant::now();
        let job: Job = Box::new(move |conn| {
            // A caller that gave up (its client went away) or waited past
            // the timeout is not answered by running its job late.
            if reply.is_closed() {
                return;
            }
            let outcome = if queued.elapsed() > QUEUE_TIMEOUT {
                Err(MetadataError::Unavailable(format!(
                    "the database was busy for more than {} s",
                    QUEUE_TIMEOUT.as_secs()
                )))
            } else {
                job(conn)
            };
            let _ = reply.send(outcome);
        });
        let sent = match self.jobs.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(MetadataError::Unavailable("the database is closed".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(MetadataError::Internal("a SQLite job panicked".into())))
    }

    fn busy(&self) -> u32 {
        self.busy.load(Ordering::Relaxed)
    }

    /// Lets queued jobs finish, then ends the threads (closing their connections).
    async fn close(&self) {
        self.jobs.write().unwrap_or_else(|p| p.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Value::Int(n) => ValueRef::Integer(n),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
            Value::Bytes(bytes) => ValueRef::Blob(bytes),
            Value::Bool(b) => ValueRef::Integer(i64::from(b)),
            Value::NullInt | Value::NullText => ValueRef::Null,
        }))
    }
}

/// A cached statement with `params` bound to its `$N` placeholders. They
/// are rewritten as `?N`, which SQLite numbers by their digits (it numbers
/// `$N` names in order of appearance, and finding a name's number walks a
/// list, which made binding quadratic in the placeholders).
fn statement<'c>(
    conn: &'c Connection,
    sql: &str,
    params: &[Value<'_>],
) -> MetadataResult<rusqlite::CachedStatement<'c>> {
    let mut statement = conn.prepare_cached(&numbered(sql)).map_err(error)?;
    for index in 1..=statement.parameter_count() {
        let value = params.get(index - 1).ok_or_else(|| {
            MetadataError::Internal(format!("placeholder ${index} of `{sql}` has no value"))
        })?;
        statement.raw_bind_parameter(index, value).map_err(error)?;
    }
    Ok(statement)
}

/// `sql` with each `$N` placeholder written `?N`. The SQL of this crate
/// has no `$` but in placeholders.
fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        let placeholder = c == '$' && chars.peek().is_some_and(char::is_ascii_digit);
        out.push(if placeholder { '?' } else { c });
    }
    out
}

pub(super) fn execute(conn: &Connection, sql: &str, params: &[Value<'_>]) -> MetadataResult<u64> {
    let mut statement = statement(conn, sql, params)?;
    Ok(statement.raw_execute().map_err(error)? as u64)
}

/// The rows of a query (at most `limit`), each made into a value by `each`.
pub(super) fn query<T>(
    conn: &Connection,
    sql: &str,
    params: &[Value<'_>],
    limit: Option<usize>,
    mut each: impl FnMut(&Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Vec<T>> {
    let mut statement = statement(conn, sql, params)?;
    let mut rows = statement.raw_query();
    let mut values = Vec::new();
    while limit.is_none_or(|limit| values.len() < limit) {
        let Some(row) = rows.next().map_err(error)? else {
            break;
        };
        values.push(each(&Row(RowOf::Sqlite(row)))?);
    }
    Ok(values)
}

/// A rusqlite error in the store's own terms.
fn error(e: rusqlite::Error) -> MetadataError {
    use rusqlite::ErrorCode as Code;
    match &e {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            // Another process (an admin command) held the write lock past
            // the busy timeout, or the disk is full or failing: worth a retry.
            Code::DatabaseBusy
            | Code::DatabaseLocked
            | Code::DiskFull
            | Code::SystemIoFailure
            | Code::CannotOpen
            | Code::OutOfMemory => MetadataError::Unavailable(e.to_string()),
            Code::ConstraintViolation => MetadataError::Conflict(e.to_string()),
            Code::DatabaseCorrupt | Code::NotADatabase => MetadataError::Corrupt(e.to_string()),
            _ => MetadataError::Internal(e.to_string()),
        },
        rusqlite::Error::QueryReturnedNoRows => MetadataError::NotFound(e.to_string()),
        rusqlite::Error::InvalidColumnType(..) | rusqlite::Error::FromSqlConversionFailure(..) => {
            MetadataError::Corrupt(e.to_string())
        }
        _ => MetadataError::Internal(e.to_string()),
    }
}

/// Applies the migrations under `migrations/sqlite` that the database has
/// not seen, each in its own transaction, recording them in the table sqlx
/// kept when it ran them (so a database migrated by earlier versions of
/// Berth carries on). The files are embedded by `sqlx::migrate!`, which only
/// reads them at build time. Two processes starting together take turns on
/// the write lock, and the second finds the work done.
fn migrate(conn: &mut Connection) -> MetadataResult<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
            version BIGINT PRIMARY KEY,
            description TEXT NOT NULL,
            installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
            success BOOLEAN NOT NULL,
            checksum BLOB NOT NULL,
            execution_time BIGINT NOT NULL
        )",
    )
    .map_err(error)?;
    let known: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    let mut applied = conn
        .prepare("SELECT version FROM _sqlx_migrations ORDER BY version")
        .map_err(error)?;
    let unknown = applied
        .query_map([], |row| row.get::<_, i64>(0))
        .map_err(error)?
        .collect::<rusqlite::Result<Vec<i64>>>()
        .map_err(error)?
        .into_iter()
        .find(|version| !known.contains(version));
    drop(applied);
    if let Some(version) = unknown {
        return Err(MetadataError::Corrupt(format!(
            "the database has migration {version}, which this build of Berth does not know: it was written by a newer version"
        )));
    }
    for migration in MIGRATOR.iter() {
        let started = std::time::Instant::now();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(error)?;
        let applied: Option<(Vec<u8>, bool)> = tx
            .query_row(
                "SELECT checksum, success FROM _sqlx_migrations WHERE version = ?1",
                [migration.version],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map(Some)
            .or_else(|e| match e {
                rusqlite::Error::QueryReturnedNoRows => Ok(None),
                e => Err(e),
            })
            .map_err(error)?;
        match applied {
            Some((_, false)) => {
                return Err(MetadataError::Corrupt(format!(
                    "migration {} was left half applied",
                    migration.version
                )));
            }
            Some((checksum, true)) if checksum != *migration.checksum => {
                return Err(MetadataError::Corrupt(format!(
                    "migration {} was applied from a different file than this build carries",
                    migration.version
                )));
            }
            Some(_) => continue,
            None => {}
        }
        tx.execute_batch(&migration.sql).map_err(|e| {
            MetadataError::Internal(format!("migration {} failed: {e}", migration.version))
        })?;
        tx.execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (?1, ?2, TRUE, ?3, ?4)",
            rusqlite::params![
                migration.version,
                migration.description.as_ref(),
                migration.checksum.as_ref(),
                started.elapsed().as_nanos() as i64
            ],
        )
        .map_err(error)?;
        tx.commit().map_err(error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("t.db").display());
        (dir, url)
    }

    #[test]
    fn urls_name_a_file_and_memory_is_refused() {
        assert_eq!(
            database_path("sqlite:./data/b.db").unwrap(),
            PathBuf::from("./data/b.db")
        );
        assert_eq!(
            database_path("sqlite:///srv/b.db").unwrap(),
            PathBuf::from("/srv/b.db")
        );
        assert_eq!(
            database_path("sqlite:b.db?mode=rwc").unwrap(),
            PathBuf::from("b.db")
        );
        assert_eq!(
            database_path("sqlite:/srv/a%20b.db").unwrap(),
            PathBuf::from("/srv/a b.db")
        );
        assert!(database_path("sqlite::memory:").is_err());
        assert!(database_path("sqlite:file::memory:").is_err());
        assert!(database_path("sqlite:b.db?mode=memory").is_err());
        assert!(database_path("sqlite:b.db?mode=ro").is_err());
    }

    #[tokio::test]
    async fn placeholders_bind_by_number_whatever_their_order() {
        let (_dir, url) = database();
        let db = SqliteDb::open(&url, 2).await.unwrap();
        let row = db
            .read(|conn| {
                let rows = query(
                    conn,
                    "SELECT $2, $1, $2 || $1",
                    &[Value::Text("a"), Value::Text("b")],
                    None,
                    |row| {
                        Ok((
                            row.get::<String>(0)?,
                            row.get::<String>(1)?,
                            row.get::<String>(2)?,
                        ))
                    },
                )?;
                Ok(rows)
            })
            .await
            .unwrap();
        assert_eq!(row, [("b".to_string(), "a".to_string(), "ba".to_string())]);
    }

    #[tokio::test]
    async fn a_placeholder_without_a_value_is_refused() {
        let (_dir, url) = database();
        let db = SqliteDb::open(&url, 2).await.unwrap();
        let refused = db
            .read(|conn| {
                query(
                    conn,
                    "SELECT $1, $3",
                    &[Value::Int(1), Value::Int(2)],
                    None,
                    |_| Ok(()),
                )
            })
            .await;
        assert!(
            matches!(refused, Err(MetadataError::Internal(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_or_refused_transaction_leaves_nothing_and_readers_cannot_write() {
        let (_dir, url) = database();
        let db = SqliteDb::open(&url, 2).await.unwrap();
        db.transaction(|conn| {
            execute(conn, "CREATE TABLE t (n INTEGER PRIMARY KEY)", &[])?;
            Ok(Finish::Commit(()))
        })
        .await
        .unwrap();
        let insert = |n: i64| {
            move |conn: &mut Connection| {
                execute(conn, "INSERT INTO t (n) VALUES ($1)", &[Value::Int(n)])
            }
        };
        let refused = db
            .transaction(move |conn| {
                insert(1)(conn)?;
                Ok(Finish::RollBack("refused"))
            })
            .await
            .unwrap();
        assert_eq!(refused, "refused");
        let failed = db
            .transaction(move |conn| {
                insert(2)(conn)?;
                insert(2)(conn)?;
                Ok(Finish::Commit(()))
            })
            .await;
        assert!(
            matches!(failed, Err(MetadataError::Conflict(_))),
            "{failed:?}"
        );
        let panicked = db
            .transaction(move |conn| -> MetadataResult<Finish<()>> {
                insert(3)(conn)?;
                panic!("a bug in a transaction")
            })
            .await;
        assert!(
            matches!(panicked, Err(MetadataError::Internal(_))),
            "{panicked:?}"
        );
        db.transaction(move |conn| Ok(Finish::Commit(insert(4)(conn)?)))
            .await
            .unwrap();
        let count = db
            .read(|conn| {
                query(conn, "SELECT COUNT(*) FROM t", &[], None, |row| {
                    row.get::<i64>(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(count, [1]);
        let write_on_reader = db.read(insert(5)).await;
        assert!(write_on_reader.is_err());
        db.close().await;
        assert!(matches!(
            db.read(|_| Ok(())).await,
            Err(MetadataError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn a_database_from_a_newer_berth_is_refused() {
        let (_dir, url) = database();
        let db = SqliteDb::open(&url, 1).await.unwrap();
        db.transaction(|conn| {
            execute(
                conn,
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (9999, 'from the future', TRUE, X'00', 0)",
                &[],
            )?;
            Ok(Finish::Commit(()))
        })
        .await
        .unwrap();
        db.close().await;
        let refused = SqliteDb::open(&url, 1).await.err().expect("refused");
        assert!(refused.to_string().contains("9999"), "{refused}");
    }

    #[tokio::test]
    async fn lookups_run_on_the_callers_thread_while_a_connection_is_free() {
        let (_dir, url) = database();
        let db = SqliteDb::open(&url, 1).await.unwrap();
        db.transaction(|conn| {
            execute(conn, "CREATE TABLE t (n INTEGER)", &[])?;
            execute(conn, "INSERT INTO t VALUES (7)", &[])?;
            Ok(Finish::Commit(()))
        })
        .await
        .unwrap();
        let here = std::thread::current().id();
        let (thread, n) = db
            .lookup(|conn| {
                let n = query(conn, "SELECT n FROM t", &[], None, |row| row.get::<i64>(0))?;
                Ok((std::thread::current().id(), n))
            })
            .await
            .unwrap();
        assert_eq!((thread, n), (here, vec![7]));
        // With every lookup connection taken, a lookup goes to the readers.
        let taken = std::mem::take(&mut *db.lookups.lock().unwrap());
        let thread = db
            .lookup(|_| Ok(std::thread::current().id()))
            .await
            .unwrap();
        assert_ne!(thread, here);
        *db.lookups.lock().unwrap() = taken;
        // A lookup cannot write, and a panicking one answers an error.
        assert!(
            db.lookup(|conn| execute(conn, "INSERT INTO t VALUES (8)", &[]))
                .await
                .is_err()
        );
        assert!(
            db.lookup(|_| -> MetadataResult<()> { panic!("boom") })
                .await
                .is_err()
        );
        assert_eq!(db.lookups.lock().unwrap().len() as u32, db.lookup_count);
        db.close().await;
    }

    #[tokio::test]
    async fn a_job_whose_caller_gave_up_does_not_run() {
        let (_dir, url) = database();
        let db = std::sync::Arc::new(SqliteDb::open(&url, 1).await.unwrap());
        db.transaction(|conn| {
            execute(conn, "CREATE TABLE t (n INTEGER)", &[])?;
            Ok(Finish::Commit(()))
        })
        .await
        .unwrap();
        // The writer is busy while a second write queues; its caller gives up.
        let (started, wait) = std::sync::mpsc::channel::<()>();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let db = db.clone();
            async move {
                db.transaction(move |_| {
                    started.send(()).unwrap();
                    hold.recv().unwrap();
                    Ok(Finish::Commit(()))
                })
                .await
            }
        });
        tokio::task::spawn_blocking(move || wait.recv().unwrap())
            .await
            .unwrap();
        let abandoned = db.transaction(|conn| {
            execute(conn, "INSERT INTO t (n) VALUES (1)", &[])?;
            Ok(Finish::Commit(()))
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(50), abandoned)
                .await
                .is_err()
        );
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        let count = db
            .read(|conn| {
                query(conn, "SELECT COUNT(*) FROM t", &[], None, |row| {
                    row.get::<i64>(0)
                })
            })
            .await
            .unwrap();
        assert_eq!(count, [0]);
    }

    #[tokio::test]
    async fn migrations_run_once_and_a_second_opening_finds_them_done() {
        let (_dir, url) = database();
        let first = SqliteDb::open(&url, 1).await.unwrap();
        let versions = |conn: &mut Connection| {
            query(
                conn,
                "SELECT version FROM _sqlx_migrations ORDER BY version",
                &[],
                None,
                |row| row.get::<i64>(0),
            )
        };
        let applied = first.read(versions).await.unwrap();
        assert_eq!(applied.len(), MIGRATOR.iter().count());
        first.close().await;
        let second = SqliteDb::open(&url, 1).await.unwrap();
        assert_eq!(second.read(versions).await.unwrap(), applied);
    }
}
