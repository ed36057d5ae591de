//! Repository policy: who may pull a repository without logging in
//! (visibility), which tags may never move (immutable tags), how much a
//! namespace may store (quotas) and which tags the collector lets go
//! (retention). Each rule is a pure function here, unit-tested beside it;
//! [`Policies`] reads and writes them through the metadata store's
//! [`PolicyStore`], checking every value before it is stored.
//!
//! Called by `auth` (public paths in grants), `admin` (changing policies),
//! `gc` (retention), and `http` and `cli` (sizes, errors); calls `metadata`
//! and `oci`. Two rules are enforced by the metadata store itself, inside
//! the transactions they guard (a tag never moves past an immutable rule, a
//! blob is never recorded past a quota), so no concurrent change can slip
//! between the check and the write; the matching they use is
//! `oci::pattern::TagRule`. Who may change a policy is decided by `admin`.

pub mod quotas;
pub mod retention;
pub mod visibility;

use crate::metadata::{MetadataError, PolicyStore, RetentionPolicy};
use crate::oci::pattern::TagRule;

pub use quotas::{QuotaView, parse_size};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A value that no rule may hold (a bad pattern, an empty policy).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

pub type PolicyResult<T> = Result<T, PolicyError>;

/// A tag pattern for immutable-tag rules and retention exclusions: tag
/// characters and `*` wildcards.
pub fn check_tag_pattern(pattern: &str) -> PolicyResult<()> {
    let valid = !pattern.is_empty()
        && pattern.len() <= 128
        && pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(PolicyError::Invalid(format!(
            "`{pattern}` is not a tag pattern: tag characters and `*`, e.g. v*"
        )))
    }
}

/// A repository (`team/app`) or namespace (`team`) a policy may name.
pub fn check_path(path: &str) -> PolicyResult<()> {
    path.parse::<crate::oci::RepositoryName>()
        .map(drop)
        .map_err(|_| {
            PolicyError::Invalid(format!("`{path}` is not a repository or namespace name"))
        })
}

/// The policies of one registry, read and written through its database.
#[derive(Clone)]
pub struct Policies {
    store: PolicyStore,
}

impl Policies {
    pub fn new(store: PolicyStore) -> Self {
        Self { store }
    }

    /// Repositories and namespaces anyone may pull.
    pub async fn public_paths(&self) -> Result<Vec<String>, MetadataError> {
        self.store.public_paths().await
    }

    /// The public path that makes `path` public, if any.
    pub async fn public_via(&self, path: &str) -> PolicyResult<Option<String>> {
        Ok(visibility::public_via(path, &self.store.public_paths().await?).map(str::to_string))
    }

    /// Makes a repository (`alice/app`) or a namespace (`alice`) public or private.
    pub async fn set_public(&self, path: &str, public: bool) -> PolicyResult<()> {
        check_path(path)?;
        Ok(self.store.set_public(path, public).await?)
    }

    /// Immutable-tag rules, by path then pattern.
    pub async fn immutable_tags(&self) -> PolicyResult<Vec<TagRule>> {
        Ok(self.store.immutable_tags().await?)
    }

    /// Protects tags matching `rule.pattern` (e.g. `v*`) in a repository or
    /// namespace from being moved or deleted, or lifts that protection.
    pub async fn set_immutable_tags(&self, rule: &TagRule, immutable: bool) -> PolicyResult<()> {
        check_path(&rule.path)?;
        check_tag_pattern(&rule.pattern)?;
        Ok(self.store.set_immutable_tags(rule, immutable).await?)
    }

    /// A namespace's quota and usage.
    pub async fn quota(&self, namespace: &str) -> PolicyResult<QuotaView> {
        let usage = self.store.quota_usage(namespace).await?;
        Ok(QuotaView::new(namespace, usage))
    }

    /// Every namespace that has a quota, with its usage.
    pub async fn quotas(&self) -> PolicyResult<Vec<QuotaView>> {
        let mut views = Vec::new();
        for (namespace, _) in self.store.quotas().await? {
            views.push(self.quota(&namespace).await?);
        }
        Ok(views)
    }

    /// Sets (`Some`) or removes (`None`) a namespace's storage quota.
    pub async fn set_quota(&self, namespace: &str, limit: Option<u64>) -> PolicyResult<()> {
        quotas::check_namespace(namespace)?;
        Ok(self.store.set_quota(namespace, limit).await?)
    }

    pub async fn retention_policies(&self) -> PolicyResult<Vec<RetentionPolicy>> {
        Ok(self.store.retention_policies().await?)
    }

    /// Sets or replaces the retention policy of a repository or namespace.
    pub async fn set_retention(&self, policy: &RetentionPolicy) -> PolicyResult<()> {
        retention::check(policy)?;
        Ok(self.store.set_retention_policy(policy).await?)
    }

    pub async fn remove_retention(&self, path: &str) -> PolicyResult<()> {
        check_path(path)?;
        if self.store.remove_retention_policy(path).await? {
            Ok(())
        } else {
            Err(PolicyError::NotFound(format!(
                "`{path}` has no retention policy"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_patterns_are_tag_characters_and_stars() {
        assert!(check_tag_pattern("v*").is_ok());
        assert!(check_tag_pattern("release-1.*_rc").is_ok());
        for bad in ["", "v/1", "a b", "ü*", &"x".repeat(129)] {
            assert!(check_tag_pattern(bad).is_err(), "{bad}");
        }
        assert!(check_path("team").is_ok());
        assert!(check_path("team/app").is_ok());
        assert!(check_path("Team").is_err());
    }
}
