//! What can go wrong in the metadata store, in its own terms: each engine
//! classifies its binding's errors into these kinds (`db/sqlite.rs`,
//! `db/postgres.rs`), so no caller ever names sqlx or rusqlite.

pub type MetadataResult<T> = Result<T, MetadataError>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum MetadataError {
    /// The database cannot be reached, is shutting down or restarting, is
    /// out of connections, or another process held its lock too long:
    /// retrying later may succeed.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A constraint refused the change (a unique key or a reference), which
    /// only a concurrent writer or a bug can cause.
    #[error("database conflict: {0}")]
    Conflict(String),
    /// A row that had to exist does not.
    #[error("database row missing: {0}")]
    NotFound(String),
    /// A stored value is not what the schema promises.
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    /// A value the database cannot hold (PostgreSQL refuses a NUL in text),
    /// refused before it was sent: the request's fault, not the database's.
    #[error("value cannot be stored: {0}")]
    Unstorable(String),
    /// Anything else: a bug in a query, a failed migration.
    #[error("database error: {0}")]
    Internal(String),
}

impl MetadataError {
    /// Whether a client may succeed by trying again later (503, not 500).
    pub fn is_retryable(&self) -> bool {
        matches!(self, MetadataError::Unavailable(_))
    }
}
