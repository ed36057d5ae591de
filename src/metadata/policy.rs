//! Repository policies as stored: public paths, immutable-tag rules,
//! namespace quotas and retention policies. What they mean is decided in
//! `crate::policy`; the two the registry must enforce atomically with the
//! change they guard are applied here, inside the transactions that move
//! tags (`manifests.rs`) and record blobs (`blobs.rs`): an immutable-tag rule
//! by `oci::pattern::TagRule::covers`, a quota by [`check_quota`].

use serde::Serialize;

use super::db::{Conn, Lock, Value};
use super::{MetadataResult, size, unix_now};
use crate::oci::name::namespace_of;
use crate::oci::pattern::TagRule;

/// The policy half of the database.
#[derive(Clone)]
pub struct PolicyStore {
    pub(super) db: super::db::Db,
}

/// A retention policy for a repository (`team/app`) or a namespace (`team`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetentionPolicy {
    pub path: String,
    /// Keep the newest N tags by push time.
    pub keep_last: Option<u64>,
    /// Keep tags pushed within D days.
    pub keep_days: Option<u64>,
    /// Tags matching these patterns are always kept.
    pub exclude: Vec<String>,
}

/// A namespace's quota and what is stored in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaUsage {
    /// `None`: no quota.
    pub limit: Option<u64>,
    pub used: u64,
}

/// Why a blob was refused: recording `size` more bytes would take the
/// namespace, which holds `used` bytes of its `limit`, over its quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaExceeded {
    pub namespace: String,
    pub limit: u64,
    pub used: u64,
    pub size: u64,
}

/// The blobs linked anywhere in namespace `$1`, each once.
const NAMESPACE_BLOBS: &str = "SELECT rb.blob_digest FROM repository_blobs rb \
     JOIN repositories r ON r.id = rb.repository_id \
     WHERE (r.name = $1 OR substr(r.name, 1, length($1) + 1) = $1 || '/')";

async fn namespace_usage(conn: &mut Conn<'_>, namespace: &str) -> MetadataResult<u64> {
    let used: i64 = conn
        .scalar(
            &format!(
                "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE digest IN ({NAMESPACE_BLOBS})"
            ),
            &[namespace.into()],
        )
        .await?;
    Ok(size(used))
}

/// Whether linking blob `digest` of `blob_size` bytes into `repository`
/// would take its namespace over its quota. A blob already in the
/// namespace counts once. The quota row is locked, so concurrent pushes
/// into one namespace are checked one after the other.
pub(super) async fn check_quota(
    conn: &mut Conn<'_>,
    repository: &str,
    digest: &str,
    blob_size: u64,
) -> MetadataResult<Option<QuotaExceeded>> {
    let namespace = namespace_of(repository);
    let sql = conn.locked(
        "SELECT limit_bytes FROM namespace_quotas WHERE namespace = $1",
        Lock::Update,
    );
    let Some(limit) = conn
        .optional_scalar::<i64>(&sql, &[namespace.into()])
        .await?
    else {
        return Ok(None);
    };
    let already: bool = conn
        .scalar(
            &format!("SELECT EXISTS ({NAMESPACE_BLOBS} AND rb.blob_digest = $2)"),
            &[namespace.into(), digest.into()],
        )
        .await?;
    if already {
        return Ok(None);
    }
    let (limit, used) = (size(limit), namespace_usage(conn, namespace).await?);
    Ok(
        (used.saturating_add(blob_size) > limit).then(|| QuotaExceeded {
            namespace: namespace.to_string(),
            limit,
            used,
            size: blob_size,
        }),
    )
}

/// Every immutable-tag rule. The table is small: a handful of rules per namespace.
pub(super) async fn immutable_tag_rules(conn: &mut Conn<'_>) -> MetadataResult<Vec<TagRule>> {
    conn.query(
        "SELECT path, pattern FROM immutable_tags ORDER BY path, pattern",
        &[],
        |row| {
            Ok(TagRule {
                path: row.get(0)?,
                pattern: row.get(1)?,
            })
        },
    )
    .await
}

impl PolicyStore {
    /// Repositories and namespaces anyone may pull.
    pub async fn public_paths(&self) -> MetadataResult<Vec<String>> {
        self.db
            .read(async |conn| {
                conn.scalars("SELECT path FROM public_paths ORDER BY path", &[])
                    .await
            })
            .await
    }

    /// Makes `path` public or private. Idempotent.
    pub async fn set_public(&self, path: &str, public: bool) -> MetadataResult<()> {
        let path = path.to_string();
        self.db
            .write(async move |conn| {
                if public {
                    conn.execute(
                        "INSERT INTO public_paths (path, created_at) VALUES ($1, $2) ON CONFLICT (path) DO NOTHING",
                        &[Value::Text(&path), unix_now().into()],
                    )
                    .await?;
                } else {
                    conn.execute("DELETE FROM public_paths WHERE path = $1", &[Value::Text(&path)])
                        .await?;
                }
                Ok(())
            })
            .await
    }

    /// Every immutable-tag rule.
    pub async fn immutable_tags(&self) -> MetadataResult<Vec<TagRule>> {
        self.db
            .read(async |conn| immutable_tag_rules(conn).await)
            .await
    }

    /// Adds or removes an immutable-tag rule. Idempotent.
    pub async fn set_immutable_tags(&self, rule: &TagRule, immutable: bool) -> MetadataResult<()> {
        let rule = rule.clone();
        self.db
            .write(async move |conn| {
                let key = [Value::Text(&rule.path), Value::Text(&rule.pattern)];
                if immutable {
                    conn.execute(
                        "INSERT INTO immutable_tags (path, pattern, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (path, pattern) DO NOTHING",
                        &[key[0], key[1], unix_now().into()],
                    )
                    .await?;
                } else {
                    conn.execute(
                        "DELETE FROM immutable_tags WHERE path = $1 AND pattern = $2",
                        &key,
                    )
                    .await?;
                }
                Ok(())
            })
            .await
    }

    /// Quotas as `(namespace, limit in bytes)`.
    pub async fn quotas(&self) -> MetadataResult<Vec<(String, u64)>> {
        self.db
            .read(async |conn| {
                conn.query(
                    "SELECT namespace, limit_bytes FROM namespace_quotas ORDER BY namespace",
                    &[],
                    |row| Ok((row.get(0)?, size(row.get(1)?))),
                )
                .await
            })
            .await
    }

    /// A namespace's quota (if any) and its usage: the bytes of the distinct
    /// blobs linked in it.
    pub async fn quota_usage(&self, namespace: &str) -> MetadataResult<QuotaUsage> {
        let namespace = namespace.to_string();
        self.db
            .read(async move |conn| {
                let limit: Option<i64> = conn
                    .optional_scalar(
                        "SELECT limit_bytes FROM namespace_quotas WHERE namespace = $1",
                        &[Value::Text(&namespace)],
                    )
                    .await?;
                Ok(QuotaUsage {
                    limit: limit.map(size),
                    used: namespace_usage(conn, &namespace).await?,
                })
            })
            .await
    }

    /// Sets (`Some`) or removes (`None`) a namespace's quota.
    pub async fn set_quota(&self, namespace: &str, limit: Option<u64>) -> MetadataResult<()> {
        let namespace = namespace.to_string();
        self.db
            .write(async move |conn| {
                match limit {
                    Some(limit) => {
                        conn.execute(
                            "INSERT INTO namespace_quotas (namespace, limit_bytes, created_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (namespace) DO UPDATE SET limit_bytes = excluded.limit_bytes",
                            &[
                                Value::Text(&namespace),
                                (limit.min(i64::MAX as u64) as i64).into(),
                                unix_now().into(),
                            ],
                        )
                        .await?;
                    }
                    None => {
                        conn.execute(
                            "DELETE FROM namespace_quotas WHERE namespace = $1",
                            &[Value::Text(&namespace)],
                        )
                        .await?;
                    }
                }
                Ok(())
            })
            .await
    }

    /// Every retention policy.
    pub async fn retention_policies(&self) -> MetadataResult<Vec<RetentionPolicy>> {
        self.db
            .read(async |conn| {
                conn.query(
                    "SELECT path, keep_last, keep_days, exclude FROM retention_policies ORDER BY path",
                    &[],
                    |row| {
                        Ok(RetentionPolicy {
                            path: row.get(0)?,
                            keep_last: row.get::<Option<i64>>(1)?.map(size),
                            keep_days: row.get::<Option<i64>>(2)?.map(size),
                            exclude: row
                                .get::<String>(3)?
                                .split_whitespace()
                                .map(str::to_string)
                                .collect(),
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Sets or replaces the policy of `policy.path`.
    pub async fn set_retention_policy(&self, policy: &RetentionPolicy) -> MetadataResult<()> {
        let policy = policy.clone();
        self.db
            .write(async move |conn| {
                let exclude = policy.exclude.join(" ");
                conn.execute(
                    "INSERT INTO retention_policies (path, keep_last, keep_days, exclude, created_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (path) DO UPDATE SET keep_last = excluded.keep_last, \
                     keep_days = excluded.keep_days, exclude = excluded.exclude",
                    &[
                        Value::Text(&policy.path),
                        policy.keep_last.map(|n| n as i64).into(),
                        policy.keep_days.map(|n| n as i64).into(),
                        Value::Text(&exclude),
                        unix_now().into(),
                    ],
                )
                .await?;
                Ok(())
            })
            .await
    }

    /// False when `path` had no policy.
    pub async fn remove_retention_policy(&self, path: &str) -> MetadataResult<bool> {
        let path = path.to_string();
        self.db
            .write(async move |conn| {
                let deleted = conn
                    .execute(
                        "DELETE FROM retention_policies WHERE path = $1",
                        &[Value::Text(&path)],
                    )
                    .await?;
                Ok(deleted == 1)
            })
            .await
    }
}
