//! The SQL of [`super::AccountStore`], shared by both engines the same way as
//! `sql.rs` shares the registry's.

macro_rules! sql_account_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Claims `name` in the shared namespace table; false when taken.
            async fn claim_namespace(
                conn: &mut <$db as sqlx::Database>::Connection,
                name: &str,
                kind: &str,
            ) -> Result<bool, sqlx::Error> {
                let inserted = sqlx::query(
                    "INSERT INTO namespaces (name, kind, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(kind)
                .bind(unix_now())
                .execute(&mut *conn)
                .await?;
                Ok(inserted.rows_affected() == 1)
            }
        }

        #[async_trait::async_trait]
        impl AccountStore for $store {
            async fn user_count(&self) -> MetadataResult<u64> {
                let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *self.read_connection().await?).await?;
                Ok(count as u64)
            }

            async fn create_user(&self, name: &str, password_hash: &str, is_admin: bool) -> MetadataResult<Created> {
                let mut tx = self.begin_write().await?;
                if !Self::claim_namespace(&mut tx, name, "user").await? {
                    return Ok(Created::NameTaken);
                }
                sqlx::query("INSERT INTO users (name, password_hash, is_admin, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(name)
                    .bind(password_hash)
                    .bind(is_admin)
                    .bind(unix_now())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Created::Created)
            }

            async fn user(&self, name: &str) -> MetadataResult<Option<UserRecord>> {
                let row: Option<(String, String, bool, i64)> = sqlx::query_as(
                    "SELECT name, password_hash, is_admin, created_at FROM users WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(&mut *self.read_connection().await?)
                .await?;
                Ok(row.map(|(name, password_hash, is_admin, created_at)| UserRecord { name, password_hash, is_admin, created_at }))
            }

            async fn users(&self) -> MetadataResult<Vec<UserRecord>> {
                let rows: Vec<(String, String, bool, i64)> = sqlx::query_as(
                    "SELECT name, password_hash, is_admin, created_at FROM users ORDER BY name",
                )
                .fetch_all(&mut *self.read_connection().await?)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(name, password_hash, is_admin, created_at)| UserRecord { name, password_hash, is_admin, created_at })
                    .collect())
            }

            async fn set_password(&self, name: &str, password_hash: &str) -> MetadataResult<bool> {
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query("UPDATE users SET password_hash = $1 WHERE name = $2")
                    .bind(password_hash)
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM refresh_tokens WHERE user_name = $1 AND access_token_id IS NULL")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(updated.rows_affected() == 1)
            }

            async fn remove_user(&self, name: &str) -> MetadataResult<bool> {
                let mut tx = self.begin_write().await?;
                let exists: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM namespaces WHERE name = $1").bind(name).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_organization(&self, name: &str) -> MetadataResult<Created> {
                let mut tx = self.begin_write().await?;
                if !Self::claim_namespace(&mut tx, name, "organization").await? {
                    return Ok(Created::NameTaken);
                }
                sqlx::query("INSERT INTO organizations (name, created_at) VALUES ($1, $2)")
                    .bind(name)
                    .bind(unix_now())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Created::Created)
            }

            async fn organizations(&self) -> MetadataResult<Vec<String>> {
                Ok(sqlx::query_scalar("SELECT name FROM organizations ORDER BY name").fetch_all(&mut *self.read_connection().await?).await?)
            }

            async fn set_member(&self, organization: &str, user: &str, role: &str) -> MetadataResult<MemberOutcome> {
                let mut tx = self.begin_write().await?;
                let org: Option<String> = sqlx::query_scalar("SELECT name FROM organizations WHERE name = $1")
                    .bind(organization)
                    .fetch_optional(&mut *tx)
                    .await?;
                if org.is_none() {
                    return Ok(MemberOutcome::UnknownOrganization);
                }
                let found: Option<String> = sqlx::query_scalar("SELECT name FROM users WHERE name = $1")
                    .bind(user)
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Ok(MemberOutcome::UnknownUser);
                }
                sqlx::query(
                    "INSERT INTO organization_members (organization, user_name, role) VALUES ($1, $2, $3) \
                     ON CONFLICT (organization, user_name) DO UPDATE SET role = excluded.role",
                )
                .bind(organization)
                .bind(user)
                .bind(role)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(MemberOutcome::Set)
            }

            async fn remove_member(&self, organization: &str, user: &str) -> MetadataResult<bool> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM organization_members WHERE organization = $1 AND user_name = $2")
                    .bind(organization)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(deleted.rows_affected() == 1)
            }

            async fn members(&self, organization: Option<&str>, user: Option<&str>) -> MetadataResult<Vec<MemberRecord>> {
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT organization, user_name, role FROM organization_members \
                     WHERE ($1 IS NULL OR organization = $1) AND ($2 IS NULL OR user_name = $2) \
                     ORDER BY organization, user_name",
                )
                .bind(organization)
                .bind(user)
                .fetch_all(&mut *self.read_connection().await?)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(organization, user_name, role)| MemberRecord { organization, user_name, role })
                    .collect())
            }

            async fn create_access_token(&self, token: &AccessTokenRecord) -> MetadataResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO access_tokens (id, user_name, description, secret_hash, scopes, created_at, expires_at, revoked_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&token.id)
                .bind(&token.user_name)
                .bind(&token.description)
                .bind(&token.secret_hash)
                .bind(&token.scopes)
                .bind(token.created_at)
                .bind(token.expires_at)
                .bind(token.revoked_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn access_token_by_secret(&self, secret_hash: &str) -> MetadataResult<Option<AccessTokenRecord>> {
                let row: Option<$crate::metadata::accounts_sql::AccessTokenRow> = sqlx::query_as(&format!("{} WHERE secret_hash = $1", $crate::metadata::accounts_sql::ACCESS_TOKEN_SELECT))
                    .bind(secret_hash)
                    .fetch_optional(&mut *self.read_connection().await?)
                    .await?;
                Ok(row.map($crate::metadata::accounts_sql::access_token_from_row))
            }

            async fn access_token(&self, id: &str) -> MetadataResult<Option<AccessTokenRecord>> {
                let row: Option<$crate::metadata::accounts_sql::AccessTokenRow> = sqlx::query_as(&format!("{} WHERE id = $1", $crate::metadata::accounts_sql::ACCESS_TOKEN_SELECT))
                    .bind(id)
                    .fetch_optional(&mut *self.read_connection().await?)
                    .await?;
                Ok(row.map($crate::metadata::accounts_sql::access_token_from_row))
            }

            async fn access_tokens(&self, user: Option<&str>) -> MetadataResult<Vec<AccessTokenRecord>> {
                let rows: Vec<$crate::metadata::accounts_sql::AccessTokenRow> =
                    sqlx::query_as(&format!("{} WHERE ($1 IS NULL OR user_name = $1) ORDER BY created_at, id", $crate::metadata::accounts_sql::ACCESS_TOKEN_SELECT))
                        .bind(user)
                        .fetch_all(&mut *self.read_connection().await?)
                        .await?;
                Ok(rows.into_iter().map($crate::metadata::accounts_sql::access_token_from_row).collect())
            }

            async fn revoke_access_token(&self, id: &str) -> MetadataResult<bool> {
                let mut tx = self.begin_write().await?;
                let revoked = sqlx::query("UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                    .bind(unix_now())
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM refresh_tokens WHERE access_token_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(revoked.rows_affected() == 1)
            }

            async fn store_refresh_token(&self, secret_hash: &str, token: &RefreshTokenRecord) -> MetadataResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO refresh_tokens (secret_hash, user_name, access_token_id, created_at) VALUES ($1, $2, $3, $4)",
                )
                .bind(secret_hash)
                .bind(&token.user_name)
                .bind(&token.access_token_id)
                .bind(unix_now())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn refresh_token(&self, secret_hash: &str) -> MetadataResult<Option<RefreshTokenRecord>> {
                let row: Option<(String, Option<String>)> = sqlx::query_as(
                    "SELECT user_name, access_token_id FROM refresh_tokens WHERE secret_hash = $1",
                )
                .bind(secret_hash)
                .fetch_optional(&mut *self.read_connection().await?)
                .await?;
                Ok(row.map(|(user_name, access_token_id)| RefreshTokenRecord { user_name, access_token_id }))
            }

            async fn public_paths(&self) -> MetadataResult<Vec<String>> {
                Ok(sqlx::query_scalar("SELECT path FROM public_paths ORDER BY path").fetch_all(&mut *self.read_connection().await?).await?)
            }

            async fn set_public(&self, path: &str, public: bool) -> MetadataResult<()> {
                let mut tx = self.begin_write().await?;
                if public {
                    sqlx::query("INSERT INTO public_paths (path, created_at) VALUES ($1, $2) ON CONFLICT (path) DO NOTHING")
                        .bind(path)
                        .bind(unix_now())
                        .execute(&mut *tx)
                        .await?;
                } else {
                    sqlx::query("DELETE FROM public_paths WHERE path = $1").bind(path).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn retention_policies(&self) -> MetadataResult<Vec<crate::retention::RetentionPolicy>> {
                let rows: Vec<(String, Option<i64>, Option<i64>, String)> = sqlx::query_as(
                    "SELECT path, keep_last, keep_days, exclude FROM retention_policies ORDER BY path",
                )
                .fetch_all(&mut *self.read_connection().await?)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(path, keep_last, keep_days, exclude)| crate::retention::RetentionPolicy {
                        path,
                        keep_last: keep_last.map(|n| n as u64),
                        keep_days: keep_days.map(|n| n as u64),
                        exclude: exclude.split_whitespace().map(str::to_string).collect(),
                    })
                    .collect())
            }

            async fn set_retention_policy(&self, policy: &crate::retention::RetentionPolicy) -> MetadataResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO retention_policies (path, keep_last, keep_days, exclude, created_at) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (path) DO UPDATE SET keep_last = excluded.keep_last, keep_days = excluded.keep_days, \
                     exclude = excluded.exclude",
                )
                .bind(&policy.path)
                .bind(policy.keep_last.map(|n| n as i64))
                .bind(policy.keep_days.map(|n| n as i64))
                .bind(policy.exclude.join(" "))
                .bind(unix_now())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn remove_retention_policy(&self, path: &str) -> MetadataResult<bool> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM retention_policies WHERE path = $1")
                    .bind(path)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(deleted.rows_affected() == 1)
            }

            async fn quotas(&self) -> MetadataResult<Vec<(String, u64)>> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT namespace, limit_bytes FROM namespace_quotas ORDER BY namespace")
                        .fetch_all(&mut *self.read_connection().await?)
                        .await?;
                Ok(rows.into_iter().map(|(n, l)| (n, l as u64)).collect())
            }

            async fn set_quota(&self, namespace: &str, limit: Option<u64>) -> MetadataResult<()> {
                let mut tx = self.begin_write().await?;
                match limit {
                    Some(limit) => {
                        sqlx::query(
                            "INSERT INTO namespace_quotas (namespace, limit_bytes, created_at) VALUES ($1, $2, $3) \
                             ON CONFLICT (namespace) DO UPDATE SET limit_bytes = excluded.limit_bytes",
                        )
                        .bind(namespace)
                        .bind(limit.min(i64::MAX as u64) as i64)
                        .bind(unix_now())
                        .execute(&mut *tx)
                        .await?;
                    }
                    None => {
                        sqlx::query("DELETE FROM namespace_quotas WHERE namespace = $1")
                            .bind(namespace)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn namespace_usage(&self, namespace: &str) -> MetadataResult<u64> {
                let used: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE digest IN ( \
                     SELECT rb.blob_digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id \
                     WHERE r.name = $1 OR substr(r.name, 1, length($1) + 1) = $1 || '/')",
                )
                .bind(namespace)
                .fetch_one(&mut *self.read_connection().await?)
                .await?;
                Ok(used as u64)
            }

            async fn immutable_tags(&self) -> MetadataResult<Vec<(String, String)>> {
                Ok(sqlx::query_as("SELECT path, pattern FROM immutable_tags ORDER BY path, pattern")
                    .fetch_all(&mut *self.read_connection().await?)
                    .await?)
            }

            async fn set_immutable_tags(&self, path: &str, pattern: &str, immutable: bool) -> MetadataResult<()> {
                let mut tx = self.begin_write().await?;
                if immutable {
                    sqlx::query(
                        "INSERT INTO immutable_tags (path, pattern, created_at) VALUES ($1, $2, $3) \
                         ON CONFLICT (path, pattern) DO NOTHING",
                    )
                    .bind(path)
                    .bind(pattern)
                    .bind(unix_now())
                    .execute(&mut *tx)
                    .await?;
                } else {
                    sqlx::query("DELETE FROM immutable_tags WHERE path = $1 AND pattern = $2")
                        .bind(path)
                        .bind(pattern)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn signing_keys(&self) -> MetadataResult<Vec<SigningKeyRecord>> {
                let rows: Vec<(i64, String, String)> = sqlx::query_as(
                    "SELECT generation, kid, private_key_pem FROM signing_keys ORDER BY generation",
                )
                .fetch_all(&mut *self.read_connection().await?)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(generation, kid, private_key_pem)| SigningKeyRecord { generation, kid, private_key_pem })
                    .collect())
            }

            async fn insert_signing_key(&self, key: &SigningKeyRecord) -> MetadataResult<bool> {
                let mut tx = self.begin_write().await?;
                let inserted = sqlx::query(
                    "INSERT INTO signing_keys (generation, kid, private_key_pem, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(key.generation)
                .bind(&key.kid)
                .bind(&key.private_key_pem)
                .bind(unix_now())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(inserted.rows_affected() == 1)
            }
        }
    };
}

pub(crate) use sql_account_store;

pub(crate) const ACCESS_TOKEN_SELECT: &str = "SELECT id, user_name, description, secret_hash, scopes, created_at, expires_at, revoked_at FROM access_tokens";

pub(crate) type AccessTokenRow = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

pub(crate) fn access_token_from_row(row: AccessTokenRow) -> super::AccessTokenRecord {
    let (id, user_name, description, secret_hash, scopes, created_at, expires_at, revoked_at) = row;
    super::AccessTokenRecord {
        id,
        user_name,
        description,
        secret_hash,
        scopes,
        created_at,
        expires_at,
        revoked_at,
    }
}
