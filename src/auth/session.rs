//! Web UI sessions: a person signs in with their password (through the
//! same failed-login limits and Argon2id check as `/token`), and gets a
//! random secret for a cookie, kept in the database only as its SHA-256
//! beside a CSRF token and an expiry. Each request's session is re-read
//! with the user's rights as they stand ([`Auth::session`]), so a removal,
//! a password change or a sign-out on any instance ends it at once.

use std::net::IpAddr;

use super::{Auth, LoginError, Principal, secret};
use crate::metadata::{MetadataError, SessionRecord, unix_now};

/// What a successful sign-in hands the browser.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The cookie's value; never stored.
    pub secret: String,
    /// What the session's forms send back.
    pub csrf: String,
    /// Seconds since the Unix epoch.
    pub expires_at: i64,
    pub principal: Principal,
}

/// A live session, as it stands now.
#[derive(Debug, Clone)]
pub struct Session {
    pub principal: Principal,
    pub csrf: String,
    pub expires_at: i64,
}

impl Auth {
    /// A person's password, as signing in and changing a password ask for
    /// it: never an access token, which a script holds (and which can be
    /// made from a session, so taking one for the password would let a
    /// borrowed session take the account). Through the failed-login limits.
    pub async fn check_password(
        &self,
        user: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Principal, LoginError> {
        if password.starts_with(secret::ACCESS_TOKEN_PREFIX) {
            return Err(LoginError::AccessTokenNotForPeople);
        }
        self.login_password(user, password, address).await
    }

    /// Signs `user` in with their password. An access token is refused
    /// (sessions are for people, tokens for machines), without counting as
    /// a failure: nothing about it was checked.
    pub async fn sign_in(
        &self,
        user: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<SignedIn, LoginError> {
        let principal = self.check_password(user, password, address).await?;
        let name = principal.name.clone().unwrap_or_default();
        let (secret, csrf) = (secret::random_string(32), secret::random_string(32));
        let created_at = unix_now();
        let expires_at = created_at + self.session_lifetime.as_secs() as i64;
        let recorded = self
            .accounts
            .create_session(&SessionRecord {
                secret_hash: secret::secret_hash(&secret),
                user_name: name,
                csrf_token: csrf.clone(),
                created_at,
                expires_at,
            })
            .await?;
        if !recorded {
            // Removed between the password check and now.
            return Err(LoginError::BadCredentials);
        }
        Ok(SignedIn {
            secret,
            csrf,
            expires_at,
            principal,
        })
    }

    /// The session whose cookie holds `secret`, with its user's rights now;
    /// `None` when it is unknown, expired, signed out or its user is gone.
    pub async fn session(&self, secret: &str) -> Result<Option<Session>, MetadataError> {
        let Some(record) = self.accounts.session(&secret::secret_hash(secret)).await? else {
            return Ok(None);
        };
        let Some(principal) = self.principal(&record.user_name, None).await? else {
            return Ok(None);
        };
        Ok(Some(Session {
            principal,
            csrf: record.csrf_token,
            expires_at: record.expires_at,
        }))
    }

    /// Ends the session whose cookie holds `secret`, on every instance.
    pub async fn sign_out(&self, secret: &str) -> Result<(), MetadataError> {
        self.accounts
            .delete_session(&secret::secret_hash(secret))
            .await?;
        Ok(())
    }
}
