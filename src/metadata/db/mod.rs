//! The two database engines behind one small statement API, so that every
//! query and transaction in `metadata` is written once, as an ordinary
//! async function over [`Conn`].
//!
//! - SQLite (the embedded default) through rusqlite, a synchronous binding:
//!   one writer thread owns the only write connection and a few reader
//!   threads own a read-only connection each ([`sqlite`]). A whole
//!   transaction is sent to the writer thread as one job and runs there
//!   from `BEGIN IMMEDIATE` to `COMMIT` without leaving it: its statements
//!   never wait on anything but SQLite, so the job polls the transaction's
//!   future once and it completes.
//! - PostgreSQL through sqlx's pool ([`postgres`]), where the same future
//!   is awaited and each statement is a round trip to the server.
//!
//! Statements use `$1`, `$2`, ... placeholders, which both engines accept
//! (SQLite binds them by name). The SQL text is shared where the dialects
//! agree, which is nearly everywhere (`ON CONFLICT`, `RETURNING`); row locks
//! are added per engine by [`Conn::locked`], and the rare statement that
//! must differ is chosen with [`Conn::engine`].

pub(crate) mod postgres;
pub(crate) mod sqlite;

use std::borrow::Cow;

use futures_util::FutureExt;

use super::{MetadataError, MetadataResult};

/// Which engine a connection talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// How a transaction ends. A refusal that is not an error (a quota reached,
/// a reference missing) rolls back what the transaction wrote so far and
/// still answers.
pub(crate) enum Finish<T> {
    Commit(T),
    RollBack(T),
}

/// A row lock a statement takes on PostgreSQL. SQLite runs one write
/// transaction at a time, so it needs none.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    /// Keeps the rows from being deleted or changed until commit (`FOR SHARE`).
    Share,
    /// Takes the rows for this transaction (`FOR UPDATE`).
    Update,
    /// Takes the rows no other transaction holds, skipping the rest
    /// (`FOR UPDATE SKIP LOCKED`): a collector never waits for a push.
    SkipLocked,
}

impl Lock {
    fn clause(self) -> &'static str {
        match self {
            Lock::Share => " FOR SHARE",
            Lock::Update => " FOR UPDATE",
            Lock::SkipLocked => " FOR UPDATE SKIP LOCKED",
        }
    }
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Value<'a> {
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
    Bool(bool),
    NullInt,
    NullText,
}

impl From<i64> for Value<'_> {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<bool> for Value<'_> {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(value: &'a str) -> Self {
        Value::Text(value)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(value: &'a String) -> Self {
        Value::Text(value)
    }
}

impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(value: &'a [u8]) -> Self {
        Value::Bytes(value)
    }
}

impl<'a> From<&'a Vec<u8>> for Value<'a> {
    fn from(value: &'a Vec<u8>) -> Self {
        Value::Bytes(value)
    }
}

impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(value: Option<&'a str>) -> Self {
        value.map_or(Value::NullText, Value::Text)
    }
}

impl From<Option<i64>> for Value<'_> {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Value::NullInt, Value::Int)
    }
}

/// A value read from a column: anything both bindings can decode.
pub(crate) trait Column: Sized {
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Self>;
    fn from_postgres(row: &sqlx::postgres::PgRow, index: usize) -> Result<Self, sqlx::Error>;
}

impl<T> Column for T
where
    T: rusqlite::types::FromSql
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>,
{
    fn from_sqlite(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Self> {
        row.get(index)
    }

    fn from_postgres(row: &sqlx::postgres::PgRow, index: usize) -> Result<Self, sqlx::Error> {
        sqlx::Row::try_get(row, index)
    }
}

/// One row of a result, read column by column.
pub(crate) struct Row<'r>(RowOf<'r>);

enum RowOf<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Postgres(&'r sqlx::postgres::PgRow),
}

impl Row<'_> {
    /// The value of column `index` (from 0). A value of another type than
    /// the schema promises is reported as corrupt.
    pub fn get<T: Column>(&self, index: usize) -> MetadataResult<T> {
        match &self.0 {
            RowOf::Sqlite(row) => T::from_sqlite(row, index)
                .map_err(|e| MetadataError::Corrupt(format!("column {index}: {e}"))),
            RowOf::Postgres(row) => T::from_postgres(row, index)
                .map_err(|e| MetadataError::Corrupt(format!("column {index}: {e}"))),
        }
    }
}

/// A connection (or the transaction on it) of either engine.
pub(crate) struct Conn<'c>(ConnOf<'c>);

enum ConnOf<'c> {
    Sqlite(&'c mut rusqlite::Connection),
    Postgres(&'c mut sqlx::PgConnection),
}

impl Conn<'_> {
    pub fn engine(&self) -> Engine {
        match self.0 {
            ConnOf::Sqlite(_) => Engine::Sqlite,
            ConnOf::Postgres(_) => Engine::Postgres,
        }
    }

    /// `sql` with `lock` appended where the engine needs it.
    pub fn locked(&self, sql: &'static str, lock: Lock) -> Cow<'static, str> {
        match self.lock_clause(lock) {
            "" => Cow::Borrowed(sql),
            clause => Cow::Owned(format!("{sql}{clause}")),
        }
    }

    /// The clause (with a leading space) that takes `lock` on this engine;
    /// empty on SQLite.
    pub fn lock_clause(&self, lock: Lock) -> &'static str {
        match self.engine() {
            Engine::Sqlite => "",
            Engine::Postgres => lock.clause(),
        }
    }

    /// Runs a statement; returns how many rows it changed.
    pub async fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> MetadataResult<u64> {
        refuse_unstorable(params)?;
        match &mut self.0 {
            ConnOf::Sqlite(conn) => sqlite::execute(conn, sql, params),
            ConnOf::Postgres(conn) => postgres::execute(conn, sql, params).await,
        }
    }

    /// Every row of a query, each made into a value by `each`.
    pub async fn query<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        each: impl FnMut(&Row<'_>) -> MetadataResult<T>,
    ) -> MetadataResult<Vec<T>> {
        refuse_unstorable(params)?;
        match &mut self.0 {
            ConnOf::Sqlite(conn) => sqlite::query(conn, sql, params, None, each),
            ConnOf::Postgres(conn) => postgres::query(conn, sql, params, each).await,
        }
    }

    /// The first row of a query, if any.
    pub async fn query_optional<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        each: impl FnMut(&Row<'_>) -> MetadataResult<T>,
    ) -> MetadataResult<Option<T>> {
        refuse_unstorable(params)?;
        match &mut self.0 {
            ConnOf::Sqlite(conn) => Ok(sqlite::query(conn, sql, params, Some(1), each)?.pop()),
            ConnOf::Postgres(conn) => postgres::query_optional(conn, sql, params, each).await,
        }
    }

    /// The first row of a query that always has one.
    pub async fn query_one<T>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        each: impl FnMut(&Row<'_>) -> MetadataResult<T>,
    ) -> MetadataResult<T> {
        self.query_optional(sql, params, each)
            .await?
            .ok_or_else(|| MetadataError::NotFound(format!("no row from `{sql}`")))
    }

    /// The first column of every row.
    pub async fn scalars<T: Column>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> MetadataResult<Vec<T>> {
        self.query(sql, params, |row| row.get(0)).await
    }

    /// The first column of the first row, if any.
    pub async fn optional_scalar<T: Column>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> MetadataResult<Option<T>> {
        self.query_optional(sql, params, |row| row.get(0)).await
    }

    /// The first column of the first row of a query that always has one.
    pub async fn scalar<T: Column>(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
    ) -> MetadataResult<T> {
        self.query_one(sql, params, |row| row.get(0)).await
    }
}

/// PostgreSQL refuses text holding a NUL character, failing the statement
/// (and the transaction it is in) with an error that looks like any other.
/// Refused here instead, on both engines alike, as the caller's mistake: the
/// layers above validate what they pass, so this is the last line only.
fn refuse_unstorable(params: &[Value<'_>]) -> MetadataResult<()> {
    for (index, value) in params.iter().enumerate() {
        if let Value::Text(text) = value
            && text.contains('\0')
        {
            return Err(MetadataError::Unstorable(format!(
                "parameter ${} holds a NUL character",
                index + 1
            )));
        }
    }
    Ok(())
}

/// Placeholders `$from, $from+1, ...` for `count` values, as in an `IN (...)`
/// list.
pub(crate) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Connections open and idle, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct PoolStats {
    pub connections: u32,
    pub idle: u32,
}

/// An open database: where every query of `metadata` runs. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Db {
    Sqlite(std::sync::Arc<sqlite::SqliteDb>),
    Postgres(postgres::PostgresDb),
}

impl Db {
    /// Opens the database named by `url` (`sqlite:<path>` or
    /// `postgres://...`) and brings its schema up to date.
    pub async fn open(url: &str, max_connections: u32) -> MetadataResult<Db> {
        if url.starts_with("sqlite:") {
            Ok(Db::Sqlite(std::sync::Arc::new(
                sqlite::SqliteDb::open(url, max_connections).await?,
            )))
        } else {
            Ok(Db::Postgres(
                postgres::PostgresDb::open(url, max_connections).await?,
            ))
        }
    }

    /// Runs `work` on a read connection. Its statements see the database
    /// as each of them starts; nothing it runs may write.
    pub async fn read<T, F>(&self, work: F) -> MetadataResult<T>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut Conn<'_>) -> MetadataResult<T> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => {
                db.read(move |conn| run_now(work(&mut Conn(ConnOf::Sqlite(conn)))))
                    .await
            }
            Db::Postgres(db) => {
                let mut conn = db.acquire().await?;
                work(&mut Conn(ConnOf::Postgres(&mut conn))).await
            }
        }
    }

    /// As [`Self::read`], for a lookup of a few rows by an index (a
    /// manifest by tag, a blob's link): on SQLite it runs on the caller's
    /// thread when it can, without a trip to a reader thread.
    pub async fn lookup<T, F>(&self, work: F) -> MetadataResult<T>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut Conn<'_>) -> MetadataResult<T> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => {
                db.lookup(move |conn| run_now(work(&mut Conn(ConnOf::Sqlite(conn)))))
                    .await
            }
            Db::Postgres(_) => self.read(work).await,
        }
    }

    /// Runs `work` as one transaction that commits when it returns
    /// [`Finish::Commit`] and rolls back when it returns [`Finish::RollBack`]
    /// or fails.
    pub async fn transaction<T, F>(&self, work: F) -> MetadataResult<T>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut Conn<'_>) -> MetadataResult<Finish<T>> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => {
                db.transaction(move |conn| run_now(work(&mut Conn(ConnOf::Sqlite(conn)))))
                    .await
            }
            Db::Postgres(db) => db.transaction(work).await,
        }
    }

    /// A transaction that commits whenever `work` succeeds.
    pub async fn write<T, F>(&self, work: F) -> MetadataResult<T>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut Conn<'_>) -> MetadataResult<T> + Send + 'static,
    {
        self.transaction(async move |conn| work(conn).await.map(Finish::Commit))
            .await
    }

    /// Runs `work`'s statements outside a transaction, each committing on
    /// its own: for work that is one statement, where a transaction around
    /// it would cost PostgreSQL two more round trips and change nothing.
    pub async fn autocommit<T, F>(&self, work: F) -> MetadataResult<T>
    where
        T: Send + 'static,
        F: AsyncFnOnce(&mut Conn<'_>) -> MetadataResult<T> + Send + 'static,
    {
        match self {
            Db::Sqlite(db) => {
                db.autocommit(move |conn| run_now(work(&mut Conn(ConnOf::Sqlite(conn)))))
                    .await
            }
            Db::Postgres(db) => {
                let mut conn = db.acquire().await?;
                work(&mut Conn(ConnOf::Postgres(&mut conn))).await
            }
        }
    }

    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> MetadataResult<()> {
        self.read(async |conn| conn.query_one("SELECT 1", &[], |_| Ok(())).await)
            .await
    }

    pub fn pool_stats(&self) -> PoolStats {
        match self {
            Db::Sqlite(db) => db.stats(),
            Db::Postgres(db) => db.stats(),
        }
    }

    /// Refuses new work, lets work in progress finish, and closes every connection.
    pub async fn close(&self) {
        match self {
            Db::Sqlite(db) => db.close().await,
            Db::Postgres(db) => db.close().await,
        }
    }
}

/// The outcome of a SQLite job's future, which completes on its first poll
/// because every statement runs synchronously. One that waits for anything
/// else (a bug) fails instead of blocking the engine's thread.
fn run_now<T>(future: impl Future<Output = MetadataResult<T>>) -> MetadataResult<T> {
    future.now_or_never().unwrap_or_else(|| {
        Err(MetadataError::Internal(
            "a SQLite job waited for something other than the database".into(),
        ))
    })
}
