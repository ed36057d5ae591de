//! PostgreSQL, for several instances sharing one database.
//!
//! Migrations take PostgreSQL's advisory lock (sqlx does this), so instances
//! starting together apply them once. Concurrent writers are ordered by row
//! locks and unique constraints, never by anything held in one process.

use std::time::Duration;

use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgPool, Postgres, Transaction};

use super::accounts_sql::sql_account_store;
use super::collector_sql::sql_collector_store;
use super::sql::{sql_metadata_store, sql_push_writes};
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A pooled connection idle this long is pinged before it is handed out.
const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

pub struct PostgresMetadataStore {
    read: PgPool,
    write: PgPool,
}

impl PostgresMetadataStore {
    pub async fn connect(url: &str, max_connections: u32) -> MetadataResult<Self> {
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
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self {
            read: pool.clone(),
            write: pool,
        })
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.write.begin().await
    }

    async fn read_connection(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.read.acquire().await
    }

    fn read_stats(&self) -> PoolStats {
        if self.read.is_closed() {
            return PoolStats::default();
        }
        PoolStats {
            connections: self.read.size(),
            idle: self.read.num_idle() as u32,
        }
    }

    /// For a single write statement, which needs no transaction around it.
    async fn write_connection(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        self.write.acquire().await
    }

    async fn close_connections(&self) {
        self.write.close().await;
        self.read.close().await;
    }
}

sql_metadata_store!(
    PostgresMetadataStore,
    Postgres,
    share = " FOR SHARE",
    lock = " FOR UPDATE"
);
sql_push_writes!(PostgresMetadataStore, Postgres, share = " FOR SHARE");
sql_account_store!(PostgresMetadataStore, Postgres);
sql_collector_store!(
    PostgresMetadataStore,
    Postgres,
    claim = " FOR UPDATE SKIP LOCKED"
);
