//! The account half of the metadata store: users, organizations, access and
//! refresh tokens, public paths and token signing keys.
//!
//! Kept apart from [`super::MetadataStore`] because it is a different
//! concept (who may do what, not what the registry holds); both traits are
//! implemented by the same per-engine stores over the same pools.

use async_trait::async_trait;

use super::MetadataResult;

#[derive(Debug, Clone)]
pub struct UserRecord {
    pub name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    pub is_admin: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct MemberRecord {
    pub organization: String,
    pub user_name: String,
    /// `read`, `write` or `admin`.
    pub role: String,
}

#[derive(Debug, Clone)]
pub struct AccessTokenRecord {
    pub id: String,
    pub user_name: String,
    pub description: String,
    /// SHA-256 (hex) of the secret; the secret itself is never stored.
    pub secret_hash: String,
    /// Space-separated scope patterns.
    pub scopes: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct RefreshTokenRecord {
    pub user_name: String,
    pub access_token_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SigningKeyRecord {
    pub generation: i64,
    pub kid: String,
    pub private_key_pem: String,
}

/// Why a namespace-creating operation did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The name is already a user or an organization.
    NameTaken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOutcome {
    Set,
    UnknownOrganization,
    UnknownUser,
}

#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn user_count(&self) -> MetadataResult<u64>;

    /// Creates a user owning the namespace `name`.
    async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        is_admin: bool,
    ) -> MetadataResult<Created>;

    async fn user(&self, name: &str) -> MetadataResult<Option<UserRecord>>;

    async fn users(&self) -> MetadataResult<Vec<UserRecord>>;

    /// Replaces the password and forgets the user's refresh tokens (so every
    /// stored `docker login` must log in again). False when there is no such user.
    async fn set_password(&self, name: &str, password_hash: &str) -> MetadataResult<bool>;

    /// Removes the user with their memberships and tokens. False when absent.
    async fn remove_user(&self, name: &str) -> MetadataResult<bool>;

    async fn create_organization(&self, name: &str) -> MetadataResult<Created>;

    async fn organizations(&self) -> MetadataResult<Vec<String>>;

    /// Adds a member or changes their role.
    async fn set_member(
        &self,
        organization: &str,
        user: &str,
        role: &str,
    ) -> MetadataResult<MemberOutcome>;

    /// False when the user was not a member.
    async fn remove_member(&self, organization: &str, user: &str) -> MetadataResult<bool>;

    /// Members of one organization, or every membership of one user.
    async fn members(
        &self,
        organization: Option<&str>,
        user: Option<&str>,
    ) -> MetadataResult<Vec<MemberRecord>>;

    async fn create_access_token(&self, token: &AccessTokenRecord) -> MetadataResult<()>;

    /// The token with this secret hash, revoked or expired ones included.
    async fn access_token_by_secret(
        &self,
        secret_hash: &str,
    ) -> MetadataResult<Option<AccessTokenRecord>>;

    async fn access_token(&self, id: &str) -> MetadataResult<Option<AccessTokenRecord>>;

    /// Tokens of one user, or of everyone.
    async fn access_tokens(&self, user: Option<&str>) -> MetadataResult<Vec<AccessTokenRecord>>;

    /// Marks a token revoked and forgets refresh tokens derived from it.
    /// False when there is no such token or it was already revoked.
    async fn revoke_access_token(&self, id: &str) -> MetadataResult<bool>;

    async fn store_refresh_token(
        &self,
        secret_hash: &str,
        token: &RefreshTokenRecord,
    ) -> MetadataResult<()>;

    async fn refresh_token(&self, secret_hash: &str) -> MetadataResult<Option<RefreshTokenRecord>>;

    /// Repositories and namespaces anyone may pull.
    async fn public_paths(&self) -> MetadataResult<Vec<String>>;

    /// Makes `path` public or private. Idempotent.
    async fn set_public(&self, path: &str, public: bool) -> MetadataResult<()>;

    /// Every retention policy.
    async fn retention_policies(&self) -> MetadataResult<Vec<crate::retention::RetentionPolicy>>;

    /// Sets or replaces the policy of `policy.path`.
    async fn set_retention_policy(
        &self,
        policy: &crate::retention::RetentionPolicy,
    ) -> MetadataResult<()>;

    /// False when `path` had no policy.
    async fn remove_retention_policy(&self, path: &str) -> MetadataResult<bool>;

    /// Quotas as `(namespace, limit in bytes)`.
    async fn quotas(&self) -> MetadataResult<Vec<(String, u64)>>;

    /// Sets (`Some`) or removes (`None`) a namespace's quota.
    async fn set_quota(&self, namespace: &str, limit: Option<u64>) -> MetadataResult<()>;

    /// Bytes stored in a namespace, each distinct blob counted once.
    async fn namespace_usage(&self, namespace: &str) -> MetadataResult<u64>;

    /// Immutable-tag rules as `(path, pattern)`.
    async fn immutable_tags(&self) -> MetadataResult<Vec<(String, String)>>;

    /// Adds or removes an immutable-tag rule. Idempotent.
    async fn set_immutable_tags(
        &self,
        path: &str,
        pattern: &str,
        immutable: bool,
    ) -> MetadataResult<()>;

    /// Every signing key, oldest generation first.
    async fn signing_keys(&self) -> MetadataResult<Vec<SigningKeyRecord>>;

    /// Stores a key as `generation`; false (and nothing stored) when another
    /// instance stored that generation first.
    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> MetadataResult<bool>;
}
