//! PostgreSQL through sqlx's pool, for several instances sharing one
//! database.
//!
//! Migrations take PostgreSQL's advisory lock (sqlx does this), so instances
//! starting together apply them once. Concurrent writers are ordered by row
//! locks and unique constraints, never by anything held in one process.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgArguments, PgPoolOptions, PgRow};
use sqlx::query::Query;
use sqlx::{Connection, PgConnection, PgPool, Postgres};

use super::{Conn, ConnOf, Finish, PoolStats, Row, RowOf, Value};
use crate::metadata::{MetadataError, MetadataResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A pooled connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub(crate) struct PostgresDb {
    pool: PgPool,
}

impl PostgresDb {
    pub async fn open(url: &str, max_connections: u32) -> MetadataResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection it hands out by default: a second
            // round trip to the server for every query. A connection in use
            // moments ago is alive; one that sat idle may have been cut (a
            // database restart, a proxy's idle timeout), so only those are
            // checked, and a dead one is replaced before anyone sees it.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_WHEN_IDLE_FOR {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await
            .map_err(error)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| MetadataError::Internal(format!("database migration failed: {e}")))?;
        Ok(Self { pool })
    }

    pub async fn acquire(&self) -> MetadataResult<PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(error)
    }

    pub async fn transaction<T, F>(&self, work: F) -> MetadataResult<T>
    where
        F: AsyncFnOnce(&mut Conn<'_>) -> MetadataResult<Finish<T>>,
    {
        let mut tx = self.pool.begin().await.map_err(error)?;
        // Dropped on failure, which rolls the transaction back.
        let outcome = work(&mut Conn(ConnOf::Postgres(&mut tx))).await?;
        match outcome {
            Finish::Commit(value) => {
                tx.commit().await.map_err(error)?;
                Ok(value)
            }
            Finish::RollBack(value) => {
                // The refusal stands whatever the rollback answers: a
                // connection that failed it is closed, which aborts the
                // transaction on the server all the same.
                if let Err(e) = tx.rollback().await {
                    tracing::warn!(error = %e, "PostgreSQL could not roll a transaction back");
                }
                Ok(value)
            }
        }
    }

    pub fn stats(&self) -> PoolStats {
        if self.pool.is_closed() {
            return PoolStats::default();
        }
        PoolStats {
            connections: self.pool.size(),
            idle: self.pool.num_idle() as u32,
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn bound<'q>(sql: &'q str, params: &'q [Value<'q>]) -> Query<'q, Postgres, PgArguments> {
    params
        .iter()
        .fold(sqlx::query(sql), |query, value| match *value {
            Value::Int(n) => query.bind(n),
            Value::Text(text) => query.bind(text),
            Value::Bytes(bytes) => query.bind(bytes),
            Value::Bool(b) => query.bind(b),
            Value::NullInt => query.bind(None::<i64>),
            Value::NullText => query.bind(None::<&str>),
        })
}

pub(super) async fn execute(
    conn: &mut PgConnection,
    sql: &str,
    params: &[Value<'_>],
) -> MetadataResult<u64> {
    Ok(bound(sql, params)
        .execute(conn)
        .await
        .map_err(error)?
        .rows_affected())
}

pub(super) async fn query<T>(
    conn: &mut PgConnection,
    sql: &str,
    params: &[Value<'_>],
    mut each: impl FnMut(&Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Vec<T>> {
    let rows: Vec<PgRow> = bound(sql, params).fetch_all(conn).await.map_err(error)?;
    rows.iter()
        .map(|row| each(&Row(RowOf::Postgres(row))))
        .collect()
}

pub(super) async fn query_optional<T>(
    conn: &mut PgConnection,
    sql: &str,
    params: &[Value<'_>],
    mut each: impl FnMut(&Row<'_>) -> MetadataResult<T>,
) -> MetadataResult<Option<T>> {
    let row = bound(sql, params)
        .fetch_optional(conn)
        .await
        .map_err(error)?;
    row.map(|row| each(&Row(RowOf::Postgres(&row)))).transpose()
}

/// A sqlx error in the store's own terms.
fn error(e: sqlx::Error) -> MetadataError {
    match &e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => MetadataError::Unavailable(e.to_string()),
        sqlx::Error::Database(db) => {
            classify_sqlstate(db.code().as_deref().unwrap_or(""), e.to_string())
        }
        sqlx::Error::RowNotFound => MetadataError::NotFound(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            MetadataError::Corrupt(e.to_string())
        }
        _ => MetadataError::Internal(e.to_string()),
    }
}

/// By SQLSTATE class: 08 (connection exception), 53 (insufficient
/// resources), 57 (operator intervention: the server shutting down or
/// restarting) and 40 (a serialization failure or deadlock, which a retry
/// resolves) are transient; 23 (integrity constraint) is a conflict with
/// another writer; the rest are our own bugs.
fn classify_sqlstate(code: &str, message: String) -> MetadataError {
    match code.get(..2) {
        Some("08" | "53" | "57" | "40") => MetadataError::Unavailable(message),
        Some("23") => MetadataError::Conflict(message),
        _ => MetadataError::Internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarting_or_unreachable_database_is_unavailable_not_a_bug() {
        // admin_shutdown, crash_shutdown, connection_failure, too_many_connections
        for code in ["57P01", "57P02", "08006", "53300"] {
            assert!(
                matches!(
                    classify_sqlstate(code, code.into()),
                    MetadataError::Unavailable(_)
                ),
                "{code}"
            );
        }
        assert!(matches!(
            classify_sqlstate("23505", String::new()),
            MetadataError::Conflict(_)
        ));
        // undefined_table: our own bug
        assert!(matches!(
            classify_sqlstate("42P01", String::new()),
            MetadataError::Internal(_)
        ));
        assert!(matches!(
            error(sqlx::Error::PoolTimedOut),
            MetadataError::Unavailable(_)
        ));
    }
}
