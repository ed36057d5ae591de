//! SQLite's one write connection, kept by the store rather than by a pool.
//!
//! sqlx's pool pings every connection it takes back before anyone may take
//! it again. For SQLite that ping is a trip to the connection's thread and
//! back, by a task spawned for it, and finds nothing: the connection lives
//! in this process. With one writer it sat between each write and the next,
//! so every write held SQLite's single writer for one trip more than its own
//! statements. Nothing is lost without it: a connection runs its commands in
//! order, so the rollback a dropped transaction queues runs before the next
//! writer's first statement.

use std::borrow::Cow;
use std::ops::{Deref, DerefMut};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Database, Sqlite, TransactionManager};
use tokio::sync::{Mutex, MutexGuard};

type Manager = <Sqlite as Database>::TransactionManager;

/// How long a write or a read waits for a connection; sqlx's pools wait as long.
pub(super) const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) struct SqliteWriter {
    options: SqliteConnectOptions,
    /// `None` before the first write, after `close`, and after the
    /// connection's thread died (opened again by the next transaction).
    connection: Mutex<Option<SqliteConnection>>,
    closed: std::sync::atomic::AtomicBool,
}

/// The write connection, held until dropped.
pub(super) struct WriteConnection<'a>(MutexGuard<'a, Option<SqliteConnection>>);

impl Deref for WriteConnection<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.0.as_ref().expect("opened when acquired")
    }
}

impl DerefMut for WriteConnection<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.0.as_mut().expect("opened when acquired")
    }
}

impl SqliteWriter {
    pub(super) async fn open(options: SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let connection = SqliteConnection::connect_with(&options).await?;
        Ok(Self {
            options,
            connection: Mutex::new(Some(connection)),
            closed: Default::default(),
        })
    }

    /// Waits for the connection (writers take turns) and opens it if needed.
    /// A write that cannot get it within [`ACQUIRE_TIMEOUT`] fails, as it
    /// would from sqlx's pool, instead of hanging behind a stuck one.
    pub(super) async fn acquire(&self) -> Result<WriteConnection<'_>, sqlx::Error> {
        let mut connection = tokio::time::timeout(ACQUIRE_TIMEOUT, self.connection.lock())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(sqlx::Error::PoolClosed);
        }
        if connection.is_none() {
            *connection = Some(SqliteConnection::connect_with(&self.options).await?);
        }
        Ok(WriteConnection(connection))
    }

    /// Starts a write transaction with `BEGIN IMMEDIATE`. A connection whose
    /// thread has died (which sqlx's pool would have found by its ping) is
    /// replaced here, so writes recover by themselves.
    pub(super) async fn begin(&self) -> Result<WriteTransaction<'_>, sqlx::Error> {
        let begin = || Some(Cow::Borrowed("BEGIN IMMEDIATE"));
        let mut connection = self.acquire().await?;
        if let Err(error) = Manager::begin(&mut connection, begin()).await {
            if !matches!(error, sqlx::Error::WorkerCrashed) {
                return Err(error);
            }
            tracing::warn!("the SQLite write connection's thread died; opening a new connection");
            *connection.0 = Some(SqliteConnection::connect_with(&self.options).await?);
            Manager::begin(&mut connection, begin()).await?;
        }
        Ok(WriteTransaction {
            connection,
            open: true,
        })
    }

    /// Closes the connection once the write in progress, if any, is done.
    pub(super) async fn close(&self) {
        let mut connection = self.connection.lock().await;
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(connection) = connection.take() {
            let _ = connection.close().await;
        }
    }
}

/// A transaction on the write connection. Rolled back when dropped
/// uncommitted, as sqlx's own transactions are.
pub(super) struct WriteTransaction<'a> {
    connection: WriteConnection<'a>,
    open: bool,
}

impl WriteTransaction<'_> {
    pub(super) async fn commit(mut self) -> Result<(), sqlx::Error> {
        Manager::commit(&mut self.connection).await?;
        self.open = false;
        Ok(())
    }

    pub(super) async fn rollback(mut self) -> Result<(), sqlx::Error> {
        Manager::rollback(&mut self.connection).await?;
        self.open = false;
        Ok(())
    }
}

impl Deref for WriteTransaction<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.connection
    }
}

impl DerefMut for WriteTransaction<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.connection
    }
}

impl Drop for WriteTransaction<'_> {
    fn drop(&mut self) {
        if self.open {
            Manager::start_rollback(&mut self.connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn count(writer: &SqliteWriter) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *writer.acquire().await.unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn uncommitted_writes_roll_back_and_a_closed_writer_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let writer = SqliteWriter::open(options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)")
            .execute(&mut *writer.acquire().await.unwrap())
            .await
            .unwrap();

        let mut dropped = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&mut *dropped)
            .await
            .unwrap();
        drop(dropped);
        // The rollback queued by the drop runs before this transaction begins.
        let mut committed = writer.begin().await.unwrap();
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut *committed)
            .await
            .unwrap();
        committed.commit().await.unwrap();
        assert_eq!(count(&writer).await, 1);

        writer.close().await;
        assert!(matches!(writer.begin().await, Err(sqlx::Error::PoolClosed)));
    }
}
