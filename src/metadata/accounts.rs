//! Accounts: users and organizations (sharing one table of namespace
//! names, so `alice/*` belongs to whichever holds `alice`, claimed by one
//! function that also checks whether the namespace is already in use),
//! memberships,
//! access and refresh tokens (only a SHA-256 of their secret is kept), and
//! the keys that sign registry tokens, shared by every instance. Web
//! sessions, on the same store, are in `sessions.rs`.

use super::db::{Conn, Row, Value};
use super::{MetadataResult, size, unix_now};

/// Users, organizations, tokens and signing keys.
#[derive(Clone)]
pub struct AccountStore {
    pub(super) db: super::db::Db,
}

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

/// Whether a namespace-creating operation did anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The name is already a user or an organization.
    NameTaken,
    /// The name is no one's, but repositories (or upload sessions) lie
    /// under it or policies name it, and the claimant is not an
    /// administrator; nothing was created.
    InUse,
}

/// Who claims a namespace, which decides whether it may already be in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimant {
    /// May take a namespace that repositories or policies already use,
    /// handing what is there to the new user or organization: an
    /// administrator creating `library` for what they pushed to `library/*`,
    /// or re-creating a removed user for their repositories.
    Administrator,
    /// Anyone else: only a namespace nothing uses, so no one gains pull,
    /// push and delete over content they did not put there.
    User,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberOutcome {
    Set,
    UnknownOrganization,
    UnknownUser,
}

/// Whether anything lies under namespace `$1` or names it: a repository
/// (an upload session always has one; repositories are never deleted, so a
/// removed user's stay), a quota, or a visibility, immutable-tag or
/// retention rule on it or on a repository under it. Repository names are
/// compared as bytes (`COLLATE "C"` on PostgreSQL), so `ns/` up to `ns0`
/// is exactly what starts with `ns/`, read from the index.
const NAMESPACE_IN_USE: &str = "SELECT      EXISTS (SELECT 1 FROM repositories WHERE name = $1 OR (name >= $1 || '/' AND name < $1 || '0'))      OR EXISTS (SELECT 1 FROM namespace_quotas WHERE namespace = $1)      OR EXISTS (SELECT 1 FROM public_paths WHERE path = $1 OR substr(path, 1, length($1) + 1) = $1 || '/')      OR EXISTS (SELECT 1 FROM immutable_tags WHERE path = $1 OR substr(path, 1, length($1) + 1) = $1 || '/')      OR EXISTS (SELECT 1 FROM retention_policies WHERE path = $1 OR substr(path, 1, length($1) + 1) = $1 || '/')";

/// Claims `name` in the shared namespace table for a user or organization
/// (`kind`), in the transaction that then inserts its row. For a
/// [`Claimant::User`] the namespace must also be unused. Checking inside
/// the claiming transaction is enough: what makes a namespace used
/// (a push creating a repository, a rule) never reads the namespace
/// table, so a use committed after this check is one made after the
/// namespace was claimed, into a namespace with an owner, as if it came
/// later; and two claims of one name meet at its primary key.
async fn claim_namespace(
    conn: &mut Conn<'_>,
    name: &str,
    kind: &str,
    claimant: Claimant,
) -> MetadataResult<Created> {
    if claimant == Claimant::User {
        let in_use: bool = conn.scalar(NAMESPACE_IN_USE, &[name.into()]).await?;
        if in_use {
            // Taken or in use: a taken name's namespace is in use too, so
            // look which, for the right answer.
            let taken: Option<String> = conn
                .optional_scalar(
                    "SELECT name FROM namespaces WHERE name = $1",
                    &[name.into()],
                )
                .await?;
            return Ok(if taken.is_some() {
                Created::NameTaken
            } else {
                Created::InUse
            });
        }
    }
    let inserted = conn
        .execute(
            "INSERT INTO namespaces (name, kind, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            &[name.into(), kind.into(), unix_now().into()],
        )
        .await?;
    Ok(if inserted == 1 {
        Created::Created
    } else {
        Created::NameTaken
    })
}

const USER: &str = "SELECT name, password_hash, is_admin, created_at FROM users";

fn user(row: &Row<'_>) -> MetadataResult<UserRecord> {
    Ok(UserRecord {
        name: row.get(0)?,
        password_hash: row.get(1)?,
        is_admin: row.get(2)?,
        created_at: row.get(3)?,
    })
}

const ACCESS_TOKEN: &str = "SELECT id, user_name, description, secret_hash, scopes, created_at, expires_at, revoked_at \
     FROM access_tokens";

fn access_token(row: &Row<'_>) -> MetadataResult<AccessTokenRecord> {
    Ok(AccessTokenRecord {
        id: row.get(0)?,
        user_name: row.get(1)?,
        description: row.get(2)?,
        secret_hash: row.get(3)?,
        scopes: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        revoked_at: row.get(7)?,
    })
}

impl AccountStore {
    pub async fn user_count(&self) -> MetadataResult<u64> {
        self.db
            .read(async |conn| Ok(size(conn.scalar("SELECT COUNT(*) FROM users", &[]).await?)))
            .await
    }

    /// Creates a user owning the namespace `name`, if `claimant` may claim it.
    pub async fn create_user(
        &self,
        name: &str,
        password_hash: &str,
        is_admin: bool,
        claimant: Claimant,
    ) -> MetadataResult<Created> {
        let (name, password_hash) = (name.to_string(), password_hash.to_string());
        self.db
            .write(async move |conn| {
                let claimed = claim_namespace(conn, &name, "user", claimant).await?;
                if claimed != Created::Created {
                    return Ok(claimed);
                }
                conn.execute(
                    "INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4)",
                    &[
                        Value::Text(&name),
                        Value::Text(&password_hash),
                        is_admin.into(),
                        unix_now().into(),
                    ],
                )
                .await?;
                Ok(Created::Created)
            })
            .await
    }

    pub async fn user(&self, name: &str) -> MetadataResult<Option<UserRecord>> {
        let name = name.to_string();
        self.db
            .read(async move |conn| {
                conn.query_optional(
                    &format!("{USER} WHERE name = $1"),
                    &[Value::Text(&name)],
                    user,
                )
                .await
            })
            .await
    }

    pub async fn users(&self) -> MetadataResult<Vec<UserRecord>> {
        self.db
            .read(async |conn| {
                conn.query(&format!("{USER} ORDER BY name"), &[], user)
                    .await
            })
            .await
    }

    /// Replaces the password and forgets the user's refresh tokens (so every
    /// stored `docker login` must log in again) and web sessions (so every
    /// browser signs in again). False when there is no such user.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> MetadataResult<bool> {
        let (name, password_hash) = (name.to_string(), password_hash.to_string());
        self.db
            .write(async move |conn| {
                let updated = conn
                    .execute(
                        "UPDATE users SET password_hash = $1 WHERE name = $2",
                        &[Value::Text(&password_hash), Value::Text(&name)],
                    )
                    .await?;
                conn.execute(
                    "DELETE FROM refresh_tokens WHERE user_name = $1 AND access_token_id IS NULL",
                    &[Value::Text(&name)],
                )
                .await?;
                super::sessions::delete_user_sessions(conn, &name).await?;
                Ok(updated == 1)
            })
            .await
    }

    /// Removes the user with their memberships and tokens. False when absent.
    pub async fn remove_user(&self, name: &str) -> MetadataResult<bool> {
        let name = name.to_string();
        self.db
            .write(async move |conn| {
                let exists: Option<String> = conn
                    .optional_scalar(
                        "SELECT name FROM users WHERE name = $1",
                        &[Value::Text(&name)],
                    )
                    .await?;
                if exists.is_none() {
                    return Ok(false);
                }
                // The namespace row owns the user's rows (ON DELETE CASCADE).
                conn.execute(
                    "DELETE FROM namespaces WHERE name = $1",
                    &[Value::Text(&name)],
                )
                .await?;
                Ok(true)
            })
            .await
    }

    /// Creates the organization `name`, if `claimant` may claim it.
    pub async fn create_organization(
        &self,
        name: &str,
        claimant: Claimant,
    ) -> MetadataResult<Created> {
        let name = name.to_string();
        self.db
            .write(async move |conn| {
                let claimed = claim_namespace(conn, &name, "organization", claimant).await?;
                if claimed != Created::Created {
                    return Ok(claimed);
                }
                conn.execute(
                    "INSERT INTO organizations (name, created_at) VALUES ($1, $2)",
                    &[Value::Text(&name), unix_now().into()],
                )
                .await?;
                Ok(Created::Created)
            })
            .await
    }

    pub async fn organizations(&self) -> MetadataResult<Vec<String>> {
        self.db
            .read(async |conn| {
                conn.scalars("SELECT name FROM organizations ORDER BY name", &[])
                    .await
            })
            .await
    }

    /// Adds a member or changes their role.
    pub async fn set_member(
        &self,
        organization: &str,
        user: &str,
        role: &str,
    ) -> MetadataResult<MemberOutcome> {
        let (organization, user, role) =
            (organization.to_string(), user.to_string(), role.to_string());
        self.db
            .write(async move |conn| {
                let org: Option<String> = conn
                    .optional_scalar(
                        "SELECT name FROM organizations WHERE name = $1",
                        &[Value::Text(&organization)],
                    )
                    .await?;
                if org.is_none() {
                    return Ok(MemberOutcome::UnknownOrganization);
                }
                let found: Option<String> = conn
                    .optional_scalar("SELECT name FROM users WHERE name = $1", &[Value::Text(&user)])
                    .await?;
                if found.is_none() {
                    return Ok(MemberOutcome::UnknownUser);
                }
                conn.execute(
                    "INSERT INTO organization_members (organization, user_name, role) VALUES ($1, $2, $3) \
                     ON CONFLICT (organization, user_name) DO UPDATE SET role = excluded.role",
                    &[Value::Text(&organization), Value::Text(&user), Value::Text(&role)],
                )
                .await?;
                Ok(MemberOutcome::Set)
            })
            .await
    }

    /// False when the user was not a member.
    pub async fn remove_member(&self, organization: &str, user: &str) -> MetadataResult<bool> {
        let (organization, user) = (organization.to_string(), user.to_string());
        self.db
            .write(async move |conn| {
                let deleted = conn
                    .execute(
                        "DELETE FROM organization_members WHERE organization = $1 AND user_name = $2",
                        &[Value::Text(&organization), Value::Text(&user)],
                    )
                    .await?;
                Ok(deleted == 1)
            })
            .await
    }

    /// Members of one organization, or every membership of one user.
    pub async fn members(
        &self,
        organization: Option<&str>,
        user: Option<&str>,
    ) -> MetadataResult<Vec<MemberRecord>> {
        let (organization, user) = (organization.map(str::to_string), user.map(str::to_string));
        self.db
            .read(async move |conn| {
                conn.query(
                    "SELECT organization, user_name, role FROM organization_members \
                     WHERE ($1 IS NULL OR organization = $1) AND ($2 IS NULL OR user_name = $2) \
                     ORDER BY organization, user_name",
                    &[organization.as_deref().into(), user.as_deref().into()],
                    |row| {
                        Ok(MemberRecord {
                            organization: row.get(0)?,
                            user_name: row.get(1)?,
                            role: row.get(2)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    pub async fn create_access_token(&self, token: &AccessTokenRecord) -> MetadataResult<()> {
        let token = token.clone();
        self.db
            .write(async move |conn| {
                conn.execute(
                    "INSERT INTO access_tokens (id, user_name, description, secret_hash, scopes, created_at, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        Value::Text(&token.id),
                        Value::Text(&token.user_name),
                        Value::Text(&token.description),
                        Value::Text(&token.secret_hash),
                        Value::Text(&token.scopes),
                        token.created_at.into(),
                        token.expires_at.into(),
                        token.revoked_at.into(),
                    ],
                )
                .await?;
                Ok(())
            })
            .await
    }

    /// The token with this secret hash, revoked or expired ones included.
    pub async fn access_token_by_secret(
        &self,
        secret_hash: &str,
    ) -> MetadataResult<Option<AccessTokenRecord>> {
        let secret_hash = secret_hash.to_string();
        self.db
            .read(async move |conn| {
                conn.query_optional(
                    &format!("{ACCESS_TOKEN} WHERE secret_hash = $1"),
                    &[Value::Text(&secret_hash)],
                    access_token,
                )
                .await
            })
            .await
    }

    pub async fn access_token(&self, id: &str) -> MetadataResult<Option<AccessTokenRecord>> {
        let id = id.to_string();
        self.db
            .read(async move |conn| {
                conn.query_optional(
                    &format!("{ACCESS_TOKEN} WHERE id = $1"),
                    &[Value::Text(&id)],
                    access_token,
                )
                .await
            })
            .await
    }

    /// Tokens of one user, or of everyone.
    pub async fn access_tokens(
        &self,
        user: Option<&str>,
    ) -> MetadataResult<Vec<AccessTokenRecord>> {
        let user = user.map(str::to_string);
        self.db
            .read(async move |conn| {
                conn.query(
                    &format!("{ACCESS_TOKEN} WHERE ($1 IS NULL OR user_name = $1) ORDER BY created_at, id"),
                    &[user.as_deref().into()],
                    access_token,
                )
                .await
            })
            .await
    }

    /// Marks a token revoked and forgets refresh tokens derived from it.
    /// False when there is no such token or it was already revoked.
    pub async fn revoke_access_token(&self, id: &str) -> MetadataResult<bool> {
        let id = id.to_string();
        self.db
            .write(async move |conn| {
                let revoked = conn
                    .execute(
                        "UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                        &[unix_now().into(), Value::Text(&id)],
                    )
                    .await?;
                conn.execute(
                    "DELETE FROM refresh_tokens WHERE access_token_id = $1",
                    &[Value::Text(&id)],
                )
                .await?;
                Ok(revoked == 1)
            })
            .await
    }

    pub async fn store_refresh_token(
        &self,
        secret_hash: &str,
        token: &RefreshTokenRecord,
    ) -> MetadataResult<()> {
        let (secret_hash, token) = (secret_hash.to_string(), token.clone());
        self.db
            .write(async move |conn| {
                conn.execute(
                    "INSERT INTO refresh_tokens (secret_hash, user_name, access_token_id, created_at) \
                     VALUES ($1, $2, $3, $4)",
                    &[
                        Value::Text(&secret_hash),
                        Value::Text(&token.user_name),
                        token.access_token_id.as_deref().into(),
                        unix_now().into(),
                    ],
                )
                .await?;
                Ok(())
            })
            .await
    }

    pub async fn refresh_token(
        &self,
        secret_hash: &str,
    ) -> MetadataResult<Option<RefreshTokenRecord>> {
        let secret_hash = secret_hash.to_string();
        self.db
            .read(async move |conn| {
                conn.query_optional(
                    "SELECT user_name, access_token_id FROM refresh_tokens WHERE secret_hash = $1",
                    &[Value::Text(&secret_hash)],
                    |row| {
                        Ok(RefreshTokenRecord {
                            user_name: row.get(0)?,
                            access_token_id: row.get(1)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Every signing key, oldest generation first.
    pub async fn signing_keys(&self) -> MetadataResult<Vec<SigningKeyRecord>> {
        self.db
            .read(async |conn| {
                conn.query(
                    "SELECT generation, kid, private_key_pem FROM signing_keys ORDER BY generation",
                    &[],
                    |row| {
                        Ok(SigningKeyRecord {
                            generation: row.get(0)?,
                            kid: row.get(1)?,
                            private_key_pem: row.get(2)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Stores a key as `generation`; false (and nothing stored) when another
    /// instance stored that generation first.
    pub async fn insert_signing_key(&self, key: &SigningKeyRecord) -> MetadataResult<bool> {
        let key = key.clone();
        self.db
            .write(async move |conn| {
                let inserted = conn
                    .execute(
                        "INSERT INTO signing_keys (generation, kid, private_key_pem, created_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                        &[
                            key.generation.into(),
                            Value::Text(&key.kid),
                            Value::Text(&key.private_key_pem),
                            unix_now().into(),
                        ],
                    )
                    .await?;
                Ok(inserted == 1)
            })
            .await
    }
}
