//! Repositories: found or created by the first push that names one, never
//! deleted (so a repository id, once read, always names the same one), and
//! listed by the catalog.

use super::db::{Conn, Value};
use super::{MetadataResult, RegistryStore, unix_now};
use crate::oci::RepositoryName;

/// One page of names (tags or repositories) in lexical byte order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub names: Vec<String>,
    /// True when names after the last one exist.
    pub more: bool,
}

impl Page {
    /// A page of at most `limit` from `names`, fetched with one extra to tell
    /// whether more follow.
    pub(super) fn of(mut names: Vec<String>, limit: u32) -> Page {
        let more = names.len() > limit as usize;
        names.truncate(limit as usize);
        Page { names, more }
    }
}

/// A repository's tag-list version: the repository's row id and a counter
/// bumped by every change to its tag names (migration 0008's triggers), in
/// the transaction that makes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TagsVersion {
    pub repository_id: i64,
    pub counter: i64,
}

pub(super) async fn repository_id(conn: &mut Conn<'_>, name: &str) -> MetadataResult<Option<i64>> {
    conn.optional_scalar(
        "SELECT id FROM repositories WHERE name = $1",
        &[name.into()],
    )
    .await
}

/// Find-or-create. Looked up first: a push names an existing repository
/// nearly always, and inside SQLite's one write transaction every statement
/// saved counts. A concurrent creator of the same name makes the insert a
/// no-op, and the lookup after it sees that row.
pub(super) async fn ensure_repository(conn: &mut Conn<'_>, name: &str) -> MetadataResult<i64> {
    if let Some(id) = repository_id(conn, name).await? {
        return Ok(id);
    }
    conn.execute(
        "INSERT INTO repositories (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        &[name.into(), unix_now().into()],
    )
    .await?;
    conn.scalar(
        "SELECT id FROM repositories WHERE name = $1",
        &[name.into()],
    )
    .await
}

impl RegistryStore {
    /// Repositories holding at least one manifest, after `last`, at most `limit`.
    pub async fn list_repositories(&self, last: Option<&str>, limit: u32) -> MetadataResult<Page> {
        let last = last.unwrap_or("").to_string();
        self.db
            .read(async move |conn| {
                let names = conn
                    .scalars(
                        "SELECT name FROM repositories r WHERE name > $1 \
                         AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = r.id) \
                         ORDER BY name LIMIT $2",
                        &[Value::Text(&last), (i64::from(limit) + 1).into()],
                    )
                    .await?;
                Ok(Page::of(names, limit))
            })
            .await
    }

    /// Where the repository's set of tag names stands; it changes in the
    /// same transaction as any tag is added or removed. `None` when the
    /// repository is unknown.
    pub async fn tags_version(
        &self,
        repository: &RepositoryName,
    ) -> MetadataResult<Option<TagsVersion>> {
        let repository = repository.to_string();
        self.db
            .lookup(async move |conn| {
                conn.query_optional(
                    "SELECT id, tags_version FROM repositories WHERE name = $1",
                    &[Value::Text(&repository)],
                    |row| {
                        Ok(TagsVersion {
                            repository_id: row.get(0)?,
                            counter: row.get(1)?,
                        })
                    },
                )
                .await
            })
            .await
    }
}
