//! SQLite's read connections, pooled by the store rather than by sqlx.
//!
//! sqlx's pool pings every connection it takes back (see `sqlite_writer.rs`):
//! after each read, a spawned task and a trip to the connection's thread and
//! back, which for an in-process connection finds nothing. Here a connection
//! goes straight back to the idle list. What the ping would catch, a
//! connection whose thread has died, can only come from a bug in the driver;
//! such a connection would fail every query, so connections are retired
//! after [`RETIRE_AFTER`] and a broken one fails for at most that long.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

use super::PoolStats;
use super::sqlite_writer::ACQUIRE_TIMEOUT;

/// How long a read connection is used before it is closed and replaced.
const RETIRE_AFTER: Duration = Duration::from_secs(60);

pub(super) struct SqliteReaders {
    options: SqliteConnectOptions,
    idle: Mutex<Vec<(SqliteConnection, Instant)>>,
    permits: Semaphore,
    max_connections: u32,
    open: AtomicU32,
}

/// A read connection, back in the idle list when dropped.
pub(super) struct ReadConnection<'a> {
    connection: Option<(SqliteConnection, Instant)>,
    readers: &'a SqliteReaders,
    _permit: SemaphorePermit<'a>,
}

impl SqliteReaders {
    pub(super) fn new(options: SqliteConnectOptions, max_connections: u32) -> Self {
        Self {
            options,
            idle: Mutex::default(),
            permits: Semaphore::new(max_connections as usize),
            max_connections,
            open: AtomicU32::new(0),
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(SqliteConnection, Instant)>> {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for a free connection, opening one if none is idle.
    pub(super) async fn acquire(&self) -> Result<ReadConnection<'_>, sqlx::Error> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let idle = self.idle().pop();
        let connection = match idle {
            Some(idle) => idle,
            None => {
                let connection = SqliteConnection::connect_with(&self.options).await?;
                self.open.fetch_add(1, Ordering::Relaxed);
                (connection, Instant::now())
            }
        };
        Ok(ReadConnection {
            connection: Some(connection),
            readers: self,
            _permit: permit,
        })
    }

    pub(super) fn stats(&self) -> PoolStats {
        PoolStats {
            connections: self.open.load(Ordering::Relaxed),
            idle: self.idle().len() as u32,
        }
    }

    /// Refuses new reads, waits for those in progress, and closes every connection.
    pub(super) async fn close(&self) {
        // Every permit held here means no read is in progress.
        let _all = self.permits.acquire_many(self.max_connections).await;
        self.permits.close();
        let idle = std::mem::take(&mut *self.idle());
        for (connection, _) in idle {
            let _ = connection.close().await;
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Deref for ReadConnection<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.connection.as_ref().expect("held until dropped").0
    }
}

impl DerefMut for ReadConnection<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.connection.as_mut().expect("held until dropped").0
    }
}

impl Drop for ReadConnection<'_> {
    fn drop(&mut self) {
        let Some((connection, opened)) = self.connection.take() else {
            return;
        };
        if opened.elapsed() < RETIRE_AFTER && !self.readers.permits.is_closed() {
            self.readers.idle().push((connection, opened));
        } else {
            // Dropping it ends its thread, which closes the database handle.
            drop(connection);
            self.readers.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_reused_and_closed() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("r.db"))
            .create_if_missing(true);
        let readers = SqliteReaders::new(options, 2);
        for _ in 0..3 {
            let one: i64 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut *readers.acquire().await.unwrap())
                .await
                .unwrap();
            assert_eq!(one, 1);
        }
        assert_eq!(readers.stats().connections, 1);
        let (a, b) = (
            readers.acquire().await.unwrap(),
            readers.acquire().await.unwrap(),
        );
        assert_eq!(readers.stats().connections, 2);
        drop((a, b));
        assert_eq!(readers.stats().idle, 2);
        readers.close().await;
        assert_eq!(readers.stats().connections, 0);
        assert!(matches!(
            readers.acquire().await,
            Err(sqlx::Error::PoolClosed)
        ));
    }
}
