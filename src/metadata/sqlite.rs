//! SQLite, the embedded default for a single machine.
//!
//! SQLite allows one writer at a time, so writes go through one connection
//! that they take turns on (no `SQLITE_BUSY` between our own writers; see
//! `sqlite_writer.rs` for why it is not in a pool) and start with
//! `BEGIN IMMEDIATE` (another process, such as an admin command, waits on the
//! busy timeout instead of failing mid-transaction). Reads use connections
//! of their own (`sqlite_readers.rs`, also without sqlx's pool) and, in WAL
//! mode, never wait for the writer. The push path's write transactions (a
//! new upload, its progress, a blob's commit, a manifest) run off sqlx,
//! each whole on a thread of its own (`sqlite_direct.rs`), taking turns
//! with the other writes. A database in memory is refused: each connection
//! would see a different one.

use std::str::FromStr;
use std::time::Duration;

use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

use super::accounts_sql::sql_account_store;
use super::collector_sql::sql_collector_store;
use super::sql::sql_metadata_store;
use super::sqlite_direct::{self, DirectWriter, NewManifestRecord};
use super::sqlite_readers::{ReadConnection, SqliteReaders};
use super::sqlite_writer::{SqliteWriter, WriteConnection, WriteTransaction};
use super::*;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteMetadataStore {
    read: SqliteReaders,
    write: SqliteWriter,
    /// Takes its turns on `write`'s mutex.
    direct: DirectWriter,
}

/// How long a write waits for another process (an admin command) holding
/// SQLite's write lock; every write connection uses it.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite reads are local CPU work, each connection with its own thread and
/// page cache: beyond two per core they add memory, not throughput.
fn read_connections(max_connections: u32) -> u32 {
    let cores = std::thread::available_parallelism().map_or(4, |n| n.get() as u32);
    max_connections.clamp(1, cores.saturating_mul(2).max(2))
}

impl SqliteMetadataStore {
    pub async fn connect(url: &str, max_connections: u32) -> MetadataResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        if url.contains(":memory:") || url.contains("mode=memory") {
            return Err(MetadataError::Database(sqlx::Error::Configuration(
                "an in-memory SQLite database cannot be shared by the registry's connections; name a file".into(),
            )));
        }
        if let Some(parent) = options
            .get_filename()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| MetadataError::Database(sqlx::Error::Io(e)))?;
        }
        let write = SqliteWriter::open(options.clone()).await?;
        MIGRATOR.run(&mut *write.acquire().await?).await?;
        let direct = DirectWriter::open(options.get_filename())?;
        let read = SqliteReaders::new(options, read_connections(max_connections));
        Ok(Self {
            read,
            write,
            direct,
        })
    }

    async fn read_connection(&self) -> Result<ReadConnection<'_>, sqlx::Error> {
        self.read.acquire().await
    }

    fn read_stats(&self) -> PoolStats {
        self.read.stats()
    }

    async fn begin_write(&self) -> Result<WriteTransaction<'_>, sqlx::Error> {
        self.write.begin().await
    }

    /// For a single write statement, which needs no transaction around it.
    async fn write_connection(&self) -> Result<WriteConnection<'_>, sqlx::Error> {
        self.write.acquire().await
    }

    async fn record_upload(
        &self,
        repository: &RepositoryName,
        session: &UploadSession,
    ) -> MetadataResult<()> {
        let (repository, session) = (repository.to_string(), session.clone());
        self.direct_transaction(move |tx| sqlite_direct::create_upload(tx, &repository, &session))
            .await
    }

    async fn record_progress(
        &self,
        session: &UploadSession,
        expected_received: u64,
    ) -> MetadataResult<bool> {
        let session = session.clone();
        self.direct_transaction(move |tx| {
            sqlite_direct::advance_upload(tx, &session, expected_received)
        })
        .await
    }

    async fn record_manifest(
        &self,
        repository: &RepositoryName,
        manifest: &NewManifest<'_>,
        tags: &[Tag],
    ) -> MetadataResult<PutManifestOutcome> {
        let manifest = NewManifestRecord {
            repository: repository.to_string(),
            digest: manifest.digest.to_string(),
            payload: manifest.payload.to_vec(),
            parsed: manifest.parsed.clone(),
            tags: tags.iter().map(|t| t.as_str().to_string()).collect(),
        };
        self.direct_transaction(move |tx| sqlite_direct::put_manifest(tx, &manifest))
            .await
    }

    async fn record_blob(&self, blob: NewBlob) -> MetadataResult<BlobCommit> {
        self.direct_transaction(move |tx| sqlite_direct::commit_blob(tx, blob))
            .await
    }

    /// A transaction on the direct writer, in turn with sqlx's writes.
    async fn direct_transaction<T, F>(&self, work: F) -> MetadataResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<sqlite_direct::Finish<T>>
            + Send
            + 'static,
    {
        let _turn = self.write.acquire().await?;
        self.direct.transaction(work).await
    }

    async fn close_connections(&self) {
        // Transactions already queued on the direct writer finish first.
        self.direct.close().await;
        self.write.close().await;
        self.read.close().await;
    }
}

sql_metadata_store!(SqliteMetadataStore, Sqlite, share = "", lock = "");
sql_account_store!(SqliteMetadataStore, Sqlite);
sql_collector_store!(SqliteMetadataStore, Sqlite, claim = "");
