//! Web UI sessions (`sessions`): one row per sign-in, keyed by a SHA-256
//! of the cookie's secret (never the secret), with the session's CSRF
//! token and its expiry. Kept in the database so every instance honours a
//! sign-in and a sign-out at once. A password change deletes the user's
//! rows (in `accounts.rs`, in the transaction that changes it), the user's
//! removal cascades, and expired rows go at each new sign-in.

use super::accounts::AccountStore;
use super::db::{Conn, Value};
use super::{MetadataResult, unix_now};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the cookie's secret.
    pub secret_hash: String,
    pub user_name: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Ends every session of `user`: what a password change does.
pub(super) async fn delete_user_sessions(conn: &mut Conn<'_>, user: &str) -> MetadataResult<u64> {
    conn.execute(
        "DELETE FROM sessions WHERE user_name = $1",
        &[Value::Text(user)],
    )
    .await
}

impl AccountStore {
    /// Records a new session, first dropping every expired one (of anyone),
    /// so the table holds live sessions and the few that expired since the
    /// last sign-in. False when the user no longer exists.
    pub async fn create_session(&self, session: &SessionRecord) -> MetadataResult<bool> {
        let session = session.clone();
        self.db
            .write(async move |conn| {
                conn.execute(
                    "DELETE FROM sessions WHERE expires_at <= $1",
                    &[unix_now().into()],
                )
                .await?;
                // Inserted only while the user exists: a removal racing the
                // sign-in leaves no row, rather than a foreign-key error.
                let inserted = conn
                    .execute(
                        "INSERT INTO sessions (secret_hash, user_name, csrf_token, created_at, expires_at) \
                         SELECT $1, name, $3, $4, $5 FROM users WHERE name = $2",
                        &[
                            Value::Text(&session.secret_hash),
                            Value::Text(&session.user_name),
                            Value::Text(&session.csrf_token),
                            session.created_at.into(),
                            session.expires_at.into(),
                        ],
                    )
                    .await?;
                Ok(inserted == 1)
            })
            .await
    }

    /// The unexpired session whose secret hashes to `secret_hash`.
    pub async fn session(&self, secret_hash: &str) -> MetadataResult<Option<SessionRecord>> {
        let secret_hash = secret_hash.to_string();
        self.db
            .read(async move |conn| {
                conn.query_optional(
                    "SELECT secret_hash, user_name, csrf_token, created_at, expires_at FROM sessions \
                     WHERE secret_hash = $1 AND expires_at > $2",
                    &[Value::Text(&secret_hash), unix_now().into()],
                    |row| {
                        Ok(SessionRecord {
                            secret_hash: row.get(0)?,
                            user_name: row.get(1)?,
                            csrf_token: row.get(2)?,
                            created_at: row.get(3)?,
                            expires_at: row.get(4)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Ends one session (a sign-out). False when there was none.
    pub async fn delete_session(&self, secret_hash: &str) -> MetadataResult<bool> {
        let secret_hash = secret_hash.to_string();
        self.db
            .autocommit(async move |conn| {
                let deleted = conn
                    .execute(
                        "DELETE FROM sessions WHERE secret_hash = $1",
                        &[Value::Text(&secret_hash)],
                    )
                    .await?;
                Ok(deleted == 1)
            })
            .await
    }
}
