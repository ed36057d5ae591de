//! The metadata store: everything the registry knows about its content
//! (repositories, blobs and their links, manifests and their edges, tags,
//! upload sessions), its accounts (users, organizations, tokens, signing
//! keys), its repository policies (visibility, immutable tags, quotas,
//! retention) and the garbage collector's queues, kept in SQL.
//!
//! Called by `registry`, `auth`, `policy`, `admin`, `gc`, `events` and `cache` (opened by
//! `server`, and by `cli` for the admin commands); calls nothing else in
//! the crate but `oci` (and `setting`, for the `[database]` settings in
//! `settings.rs`). Each store below is a handle on one database offering
//! whole operations, each atomic by itself (its own transaction where it
//! writes more than one row), so callers never hold a transaction across an
//! await on the network or on blob storage.
//!
//! Every query and transaction is an ordinary async function over
//! [`db::Conn`], written once for both engines (`db/`). Adding one: write
//! the function beside the others on the same tables, and a method on the
//! store that runs it with `Db::read`, `Db::write` or `Db::transaction`.
//!
//! | file | tables |
//! | --- | --- |
//! | `repositories.rs` | `repositories`; the catalog |
//! | `uploads.rs` | `uploads` |
//! | `blobs.rs` | `blobs`, `repository_blobs` |
//! | `manifests.rs` | `manifests`, `manifest_blobs`, `manifest_references`, `tags`; referrers |
//! | `accounts.rs` | `namespaces`, `users`, `organizations`, `organization_members`, `access_tokens`, `refresh_tokens`, `signing_keys` |
//! | `sessions.rs` | `sessions` (web UI sign-ins, on `AccountStore`) |
//! | `policy.rs` | `public_paths`, `immutable_tags`, `namespace_quotas`, `retention_policies` |
//! | `browse.rs` | reads of `repositories`, `tags`, `manifests` for pages; image summaries |
//! | `collector.rs` | the `gc_*` review queues, `storage_garbage`, `gc_passes` |
//! | `bulk.rs` | bulk loads of all the content tables at once, for the `scale` benchmark |
//! | `cache.rs` | `cache_manifests`, `cache_tags`, `cache_blobs`, `cache_fills` (on `CacheStore`) |
//! | `events.rs` | `events` (the outbox), `webhook_endpoints`, `webhook_deliveries`, `audit_log` (on `EventStore`) |
//!
//! Migrations are in `migrations/{sqlite,postgres}`, one set per engine.

mod accounts;
mod blobs;
mod browse;
mod bulk;
mod cache;
mod collector;
pub(crate) mod db;
mod error;
mod events;
mod manifests;
mod policy;
mod repositories;
mod sessions;
mod settings;
mod uploads;

pub use accounts::*;
pub use blobs::*;
pub use browse::*;
pub use bulk::*;
pub use cache::*;
pub use collector::*;
pub use db::PoolStats;
pub use error::{MetadataError, MetadataResult};
pub use events::*;
pub use manifests::*;
pub use policy::*;
pub use repositories::*;
pub use sessions::*;
pub use settings::{DatabaseConfig, DatabaseSettings};
pub use uploads::*;

use db::Db;

/// The registry's content: what `registry` reads and writes.
#[derive(Clone)]
pub struct RegistryStore {
    db: Db,
}

impl RegistryStore {
    /// Succeeds when the database answers a trivial query.
    pub async fn ping(&self) -> MetadataResult<()> {
        self.db.ping().await
    }

    /// Connections open and idle, for metrics. Cheap.
    pub fn pool_stats(&self) -> PoolStats {
        self.db.pool_stats()
    }
}

/// One database seen through its stores, one per concern.
#[derive(Clone)]
pub struct Metadata {
    pub registry: RegistryStore,
    pub accounts: AccountStore,
    pub policy: PolicyStore,
    pub collector: CollectorStore,
    pub events: EventStore,
    pub cache: CacheStore,
    db: Db,
}

/// Connects to the database named by `url` (`sqlite:<path>` or
/// `postgres://...`) and brings its schema up to date.
pub async fn connect(url: &str, max_connections: u32) -> MetadataResult<Metadata> {
    let db = Db::open(url, max_connections).await?;
    Ok(Metadata {
        registry: RegistryStore { db: db.clone() },
        accounts: AccountStore { db: db.clone() },
        policy: PolicyStore { db: db.clone() },
        collector: CollectorStore { db: db.clone() },
        events: EventStore { db: db.clone() },
        cache: CacheStore { db: db.clone() },
        db,
    })
}

impl Metadata {
    /// Refuses new work, lets work in progress finish, and closes every connection.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// Seconds since the Unix epoch, as every `*_at` column keeps time.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub(crate) fn parse_digest(text: String) -> MetadataResult<crate::oci::Digest> {
    text.parse()
        .map_err(|_| MetadataError::Corrupt(format!("digest `{text}`")))
}

/// Sizes are `BIGINT`; a negative one can only come from a corrupt row.
pub(crate) fn size(value: i64) -> u64 {
    value.max(0) as u64
}
