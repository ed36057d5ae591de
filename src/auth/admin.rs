//! Account administration: users, organizations, access tokens and public
//! repositories. The same operations back the `berth user|org|token|repo`
//! commands (acting as the system) and the `/api/v1/` endpoints (acting as
//! the logged-in user, whose rights are checked here).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::scope::ScopePattern;
use super::{Principal, Role, secret};
use crate::metadata::{AccessTokenRecord, AccountStore, Created, MemberOutcome, MetadataError};

/// Who asks for an administrative operation.
#[derive(Debug, Clone)]
pub enum Actor {
    /// The command line, run by whoever holds the configuration.
    System,
    User(Principal),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

pub type AdminResult<T> = Result<T, AdminError>;

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub user: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrganizationView {
    pub name: String,
    pub members: Vec<MemberView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

impl From<AccessTokenRecord> for TokenView {
    fn from(token: AccessTokenRecord) -> Self {
        TokenView {
            id: token.id,
            user: token.user_name,
            description: token.description,
            scopes: token
                .scopes
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked: token.revoked_at.is_some(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QuotaView {
    pub namespace: String,
    /// `None`: no quota.
    pub limit_bytes: Option<u64>,
    pub used_bytes: u64,
}

/// Parses a size such as `10GiB`, `500MB` or `1048576`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size such as 10GiB"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    Ok((number * factor as f64) as u64)
}

/// A new access token: shown once, never stored in the clear.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    pub secret: String,
}

const MIN_PASSWORD_LENGTH: usize = 8;

/// User and organization names are one path component of a repository name.
fn check_namespace_name(name: &str) -> AdminResult<()> {
    let valid = !name.contains('/')
        && name.len() <= 64
        && name.parse::<crate::oci::RepositoryName>().is_ok();
    if valid {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "`{name}` is not a valid name: use lowercase letters, digits and single separators (. _ -), at most 64 characters"
        )))
    }
}

/// A tag pattern for immutable-tag rules and retention exclusions: tag
/// characters and `*` wildcards.
fn check_tag_pattern(pattern: &str) -> AdminResult<()> {
    let valid = !pattern.is_empty()
        && pattern.len() <= 128
        && pattern
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-*".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(AdminError::Invalid(format!(
            "`{pattern}` is not a tag pattern: tag characters and `*`, e.g. v*"
        )))
    }
}

fn check_password(password: &str) -> AdminResult<()> {
    if password.chars().count() < MIN_PASSWORD_LENGTH {
        return Err(AdminError::Invalid(format!(
            "the password must have at least {MIN_PASSWORD_LENGTH} characters"
        )));
    }
    Ok(())
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub struct Admin {
    accounts: Arc<dyn AccountStore>,
}

impl Admin {
    pub fn new(accounts: Arc<dyn AccountStore>) -> Self {
        Self { accounts }
    }

    fn require_admin(actor: &Actor) -> AdminResult<()> {
        match actor {
            Actor::System => Ok(()),
            Actor::User(p) if p.is_admin && p.limits.is_none() => Ok(()),
            Actor::User(_) => Err(AdminError::Forbidden(
                "only an administrator may do this".into(),
            )),
        }
    }

    fn is_self_or_admin(actor: &Actor, user: &str) -> bool {
        match actor {
            Actor::System => true,
            Actor::User(p) => p.limits.is_none() && (p.is_admin || p.name.as_deref() == Some(user)),
        }
    }

    /// Creates `admin` when the registry has no user yet. Returns the
    /// password when one was generated (to be shown once), and nothing when
    /// users already exist or `password` was given.
    pub async fn bootstrap(&self, password: Option<&str>) -> AdminResult<Option<String>> {
        if self.accounts.user_count().await? > 0 {
            return Ok(None);
        }
        let generated = password.is_none().then(|| secret::random_string(18));
        let password = password
            .map(str::to_string)
            .or_else(|| generated.clone())
            .unwrap_or_default();
        let hash = secret::hash_password_queued(password).await;
        match self.accounts.create_user("admin", &hash, true).await? {
            Created::Created => Ok(generated),
            // Another instance starting at the same moment created it.
            Created::NameTaken => Ok(None),
        }
    }

    pub async fn add_user(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
        admin: bool,
    ) -> AdminResult<UserView> {
        Self::require_admin(actor)?;
        check_namespace_name(name)?;
        check_password(password)?;
        let password = password.to_string();
        let hash = secret::hash_password_queued(password).await;
        match self.accounts.create_user(name, &hash, admin).await? {
            Created::Created => Ok(UserView {
                name: name.to_string(),
                admin,
                created_at: now(),
            }),
            Created::NameTaken => Err(AdminError::Conflict(format!(
                "`{name}` is already a user or an organization"
            ))),
        }
    }

    pub async fn users(&self, actor: &Actor) -> AdminResult<Vec<UserView>> {
        Self::require_admin(actor)?;
        Ok(self
            .accounts
            .users()
            .await?
            .into_iter()
            .map(|u| UserView {
                name: u.name,
                admin: u.is_admin,
                created_at: u.created_at,
            })
            .collect())
    }

    pub async fn set_password(&self, actor: &Actor, name: &str, password: &str) -> AdminResult<()> {
        if !Self::is_self_or_admin(actor, name) {
            return Err(AdminError::Forbidden(
                "you may change only your own password".into(),
            ));
        }
        check_password(password)?;
        let password = password.to_string();
        let hash = secret::hash_password_queued(password).await;
        if self.accounts.set_password(name, &hash).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!("no user `{name}`")))
        }
    }

    pub async fn remove_user(&self, actor: &Actor, name: &str) -> AdminResult<()> {
        Self::require_admin(actor)?;
        if self.accounts.remove_user(name).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!("no user `{name}`")))
        }
    }

    /// Creates an organization; a user who creates one becomes its admin.
    pub async fn create_organization(
        &self,
        actor: &Actor,
        name: &str,
    ) -> AdminResult<OrganizationView> {
        let creator = match actor {
            Actor::System => None,
            Actor::User(p) if p.limits.is_none() => p.name.clone(),
            Actor::User(_) => {
                return Err(AdminError::Forbidden(
                    "access tokens cannot create organizations".into(),
                ));
            }
        };
        check_namespace_name(name)?;
        if self.accounts.create_organization(name).await? == Created::NameTaken {
            return Err(AdminError::Conflict(format!(
                "`{name}` is already a user or an organization"
            )));
        }
        if let Some(creator) = creator {
            self.accounts
                .set_member(name, &creator, Role::Admin.as_str())
                .await?;
        }
        self.organization(name).await
    }

    async fn organization(&self, name: &str) -> AdminResult<OrganizationView> {
        let members = self
            .accounts
            .members(Some(name), None)
            .await?
            .into_iter()
            .map(|m| MemberView {
                user: m.user_name,
                role: m.role,
            })
            .collect();
        Ok(OrganizationView {
            name: name.to_string(),
            members,
        })
    }

    /// Every organization for an administrator, the caller's own otherwise.
    pub async fn organizations(&self, actor: &Actor) -> AdminResult<Vec<OrganizationView>> {
        let names = match actor {
            Actor::User(p) if !(p.is_admin && p.limits.is_none()) => {
                p.memberships.iter().map(|(o, _)| o.clone()).collect()
            }
            _ => self.accounts.organizations().await?,
        };
        let mut views = Vec::new();
        for name in names {
            views.push(self.organization(&name).await?);
        }
        Ok(views)
    }

    fn require_org_admin(actor: &Actor, organization: &str) -> AdminResult<()> {
        let allowed = match actor {
            Actor::System => true,
            Actor::User(p) => {
                p.limits.is_none()
                    && (p.is_admin
                        || p.memberships
                            .iter()
                            .any(|(o, role)| o == organization && *role == Role::Admin))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(AdminError::Forbidden(format!(
                "only an admin of `{organization}` may change its members"
            )))
        }
    }

    pub async fn set_member(
        &self,
        actor: &Actor,
        organization: &str,
        user: &str,
        role: &str,
    ) -> AdminResult<()> {
        Self::require_org_admin(actor, organization)?;
        let role = Role::parse(role).ok_or_else(|| {
            AdminError::Invalid(format!("`{role}` is not a role: use read, write or admin"))
        })?;
        match self
            .accounts
            .set_member(organization, user, role.as_str())
            .await?
        {
            MemberOutcome::Set => Ok(()),
            MemberOutcome::UnknownOrganization => Err(AdminError::NotFound(format!(
                "no organization `{organization}`"
            ))),
            MemberOutcome::UnknownUser => Err(AdminError::NotFound(format!("no user `{user}`"))),
        }
    }

    pub async fn remove_member(
        &self,
        actor: &Actor,
        organization: &str,
        user: &str,
    ) -> AdminResult<()> {
        Self::require_org_admin(actor, organization)?;
        if self.accounts.remove_member(organization, user).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!(
                "`{user}` is not a member of `{organization}`"
            )))
        }
    }

    /// Creates an access token for `user`, limited to `scopes`.
    pub async fn create_token(
        &self,
        actor: &Actor,
        user: &str,
        scopes: &[String],
        expires_in: Option<Duration>,
        description: &str,
    ) -> AdminResult<CreatedToken> {
        if !Self::is_self_or_admin(actor, user) {
            return Err(AdminError::Forbidden(
                "you may create tokens only for yourself".into(),
            ));
        }
        if self.accounts.user(user).await?.is_none() {
            return Err(AdminError::NotFound(format!("no user `{user}`")));
        }
        if scopes.is_empty() {
            return Err(AdminError::Invalid(
                "give at least one scope, e.g. repository:team/*:pull,push".into(),
            ));
        }
        let patterns = scopes
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(|s| ScopePattern::parse(s).map(|p| p.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(AdminError::Invalid)?;
        let secret = format!(
            "{}{}",
            secret::ACCESS_TOKEN_PREFIX,
            secret::random_string(32)
        );
        let created_at = now();
        let record = AccessTokenRecord {
            id: format!("tok_{}", secret::random_string(9)),
            user_name: user.to_string(),
            description: description.to_string(),
            secret_hash: secret::secret_hash(&secret),
            scopes: patterns.join(" "),
            created_at,
            expires_at: expires_in.map(|d| created_at + d.as_secs() as i64),
            revoked_at: None,
        };
        self.accounts.create_access_token(&record).await?;
        Ok(CreatedToken {
            token: record.into(),
            secret,
        })
    }

    /// Tokens of `user` (the caller's own when not an administrator), or of everyone.
    pub async fn tokens(&self, actor: &Actor, user: Option<&str>) -> AdminResult<Vec<TokenView>> {
        let user = match actor {
            Actor::User(p) if !(p.is_admin && p.limits.is_none()) => {
                let own = p.name.clone().unwrap_or_default();
                if user.is_some_and(|u| u != own) {
                    return Err(AdminError::Forbidden(
                        "you may list only your own tokens".into(),
                    ));
                }
                Some(own)
            }
            _ => user.map(str::to_string),
        };
        Ok(self
            .accounts
            .access_tokens(user.as_deref())
            .await?
            .into_iter()
            .map(TokenView::from)
            .collect())
    }

    pub async fn revoke_token(&self, actor: &Actor, id: &str) -> AdminResult<()> {
        let token = self
            .accounts
            .access_token(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no token `{id}`")))?;
        if !Self::is_self_or_admin(actor, &token.user_name) {
            return Err(AdminError::NotFound(format!("no token `{id}`")));
        }
        self.accounts.revoke_access_token(id).await?;
        Ok(())
    }

    /// Makes a repository (`alice/app`) or a namespace (`alice`) public or private.
    pub async fn set_visibility(&self, actor: &Actor, path: &str, public: bool) -> AdminResult<()> {
        self.require_namespace_admin(actor, path, "its visibility")?;
        self.accounts.set_public(path, public).await?;
        Ok(())
    }

    /// Protects tags matching `pattern` (e.g. `v*`) in a repository or
    /// namespace from being moved or deleted, or lifts that protection.
    pub async fn set_immutable_tags(
        &self,
        actor: &Actor,
        path: &str,
        pattern: &str,
        immutable: bool,
    ) -> AdminResult<()> {
        self.require_namespace_admin(actor, path, "its rules")?;
        check_tag_pattern(pattern)?;
        self.accounts
            .set_immutable_tags(path, pattern, immutable)
            .await?;
        Ok(())
    }

    /// Sets or removes a namespace's storage quota (administrators only).
    pub async fn set_quota(
        &self,
        actor: &Actor,
        namespace: &str,
        limit: Option<u64>,
    ) -> AdminResult<()> {
        Self::require_admin(actor)?;
        check_namespace_name(namespace)?;
        self.accounts.set_quota(namespace, limit).await?;
        Ok(())
    }

    /// A namespace's quota and usage, for its owner, members and administrators.
    pub async fn quota(&self, actor: &Actor, namespace: &str) -> AdminResult<QuotaView> {
        let allowed = match actor {
            Actor::System => true,
            Actor::User(p) => {
                p.is_admin
                    || p.name.as_deref() == Some(namespace)
                    || p.memberships.iter().any(|(o, _)| o == namespace)
            }
        };
        if !allowed {
            return Err(AdminError::Forbidden(format!(
                "you are not a member of `{namespace}`"
            )));
        }
        let limit = self
            .accounts
            .quotas()
            .await?
            .into_iter()
            .find(|(n, _)| n == namespace)
            .map(|(_, l)| l);
        Ok(QuotaView {
            namespace: namespace.to_string(),
            limit_bytes: limit,
            used_bytes: self.accounts.namespace_usage(namespace).await?,
        })
    }

    /// Every quota with its usage.
    pub async fn quotas(&self, actor: &Actor) -> AdminResult<Vec<QuotaView>> {
        Self::require_admin(actor)?;
        let mut views = Vec::new();
        for (namespace, limit) in self.accounts.quotas().await? {
            views.push(QuotaView {
                used_bytes: self.accounts.namespace_usage(&namespace).await?,
                namespace,
                limit_bytes: Some(limit),
            });
        }
        Ok(views)
    }

    /// Sets or replaces the retention policy of a repository or namespace.
    pub async fn set_retention(
        &self,
        actor: &Actor,
        policy: &crate::retention::RetentionPolicy,
    ) -> AdminResult<()> {
        self.require_namespace_admin(actor, &policy.path, "its rules")?;
        if policy.keep_last.is_none() && policy.keep_days.is_none() {
            return Err(AdminError::Invalid(
                "give keep_last, keep_days or both".into(),
            ));
        }
        for pattern in &policy.exclude {
            check_tag_pattern(pattern)?;
        }
        self.accounts.set_retention_policy(policy).await?;
        Ok(())
    }

    pub async fn remove_retention(&self, actor: &Actor, path: &str) -> AdminResult<()> {
        self.require_namespace_admin(actor, path, "its rules")?;
        if self.accounts.remove_retention_policy(path).await? {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!(
                "`{path}` has no retention policy"
            )))
        }
    }

    pub async fn retention_policies(&self) -> AdminResult<Vec<crate::retention::RetentionPolicy>> {
        Ok(self.accounts.retention_policies().await?)
    }

    /// Immutable-tag rules as `(path, pattern)`.
    pub async fn immutable_tags(&self) -> AdminResult<Vec<(String, String)>> {
        Ok(self.accounts.immutable_tags().await?)
    }

    /// The repository or namespace `path` must be valid and the caller its
    /// owner, an admin of its organization, or an administrator; `what` says
    /// what they were about to change, for the refusal.
    fn require_namespace_admin(&self, actor: &Actor, path: &str, what: &str) -> AdminResult<()> {
        if path.parse::<crate::oci::RepositoryName>().is_err() {
            return Err(AdminError::Invalid(format!(
                "`{path}` is not a repository or namespace name"
            )));
        }
        let namespace = super::namespace_of(path);
        let allowed = match actor {
            Actor::System => true,
            Actor::User(p) => {
                p.limits.is_none()
                    && (p.is_admin
                        || p.name.as_deref() == Some(namespace)
                        || p.memberships
                            .iter()
                            .any(|(o, r)| o == namespace && *r == Role::Admin))
            }
        };
        if allowed {
            Ok(())
        } else {
            Err(AdminError::Forbidden(format!(
                "only the owner of `{namespace}` or an administrator may change {what}"
            )))
        }
    }

    /// Whether `path` is public, and the public path that makes it so.
    pub async fn visibility(&self, path: &str) -> AdminResult<Option<String>> {
        let public = self.accounts.public_paths().await?;
        Ok(public
            .into_iter()
            .find(|p| super::is_public(path, std::slice::from_ref(p))))
    }
}
