//! Who may do what: logins (passwords, access tokens, refresh tokens), the
//! registry tokens they are exchanged for, web UI sessions (`session.rs`),
//! and the policy deciding which actions a caller gets on a repository.
//!
//! Called by `http` (the token endpoint, the check on every `/v2/` request,
//! the `/api/v1/` handlers), `ui` (sign-in, sessions), `admin` and the CLI; calls `metadata`'s
//! account store, `policy` (which repositories are public), `oci` (names)
//! and `setting` (for `[auth]`). Knows nothing of blobs or manifests.

pub mod keys;
pub mod limiter;
pub mod scope;
pub mod secret;
mod session;
pub mod settings;
pub mod token;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::metadata::{
    AccountStore, AuditEntry, AuditOutcome, EventStore, MetadataError, RefreshTokenRecord, unix_now,
};
use crate::origin::{AuthMethod, Origin};
use crate::policy::{Policies, visibility::is_public};
use keys::{KeyError, KeyRing};
use limiter::{Limits, LoginLimiter};
use scope::{Access, Actions, Scope, ScopePattern};
pub use session::{Session, SignedIn};
pub use settings::{AuthMode, AuthSettings};
use token::{Claims, Issued, TokenError, TokenIssuer};

/// The authentication settings, after checking.
#[derive(Clone)]
pub struct AuthConfig {
    /// Off only for a registry behind another gate (or tests of the protocol):
    /// every request is then allowed.
    pub enabled: bool,
    pub token_lifetime: Duration,
    /// PEM file with the key that signs tokens; stored keys are used when unset.
    pub signing_key_file: Option<PathBuf>,
    /// The token audience (`service`), the same on every instance.
    pub service: String,
    pub issuer: String,
    /// Password for the `admin` user created on first start.
    pub admin_password: Option<String>,
    /// Whether logins asking for offline access get a refresh token.
    pub refresh_tokens: bool,
    pub login_limits: Limits,
    /// How long a web UI sign-in lasts (`ui.session_lifetime`).
    pub session_lifetime: Duration,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("enabled", &self.enabled)
            .field("token_lifetime", &self.token_lifetime)
            .field("signing_key_file", &self.signing_key_file)
            .field("service", &self.service)
            .field("issuer", &self.issuer)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "***"),
            )
            .field("refresh_tokens", &self.refresh_tokens)
            .field("login_limits", &self.login_limits)
            .field("session_lifetime", &self.session_lifetime)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    fn actions(self) -> Actions {
        match self {
            Role::Read => Actions::PULL,
            Role::Write => Actions::PULL | Actions::PUSH,
            Role::Admin => Actions::ALL,
        }
    }
}

/// A caller, as far as the policy is concerned.
#[derive(Debug, Clone, Default)]
pub struct Principal {
    /// `None` for an anonymous caller.
    pub name: Option<String>,
    pub is_admin: bool,
    pub memberships: Vec<(String, Role)>,
    /// Set when the caller logged in with an access token: nothing outside
    /// these patterns is granted, whatever the user may do.
    pub limits: Option<Vec<ScopePattern>>,
    pub access_token: Option<String>,
}

use crate::oci::name::namespace_of;

impl Principal {
    /// What this caller may do on `repository`.
    pub fn repository_actions(&self, repository: &str, public_paths: &[String]) -> Actions {
        let mut actions = Actions::NONE;
        if let Some(name) = &self.name {
            let namespace = namespace_of(repository);
            let under_namespace = repository.len() > namespace.len();
            if self.is_admin || (under_namespace && namespace == name) {
                actions = Actions::ALL;
            }
            for (organization, role) in &self.memberships {
                if under_namespace && namespace == organization {
                    actions = actions | role.actions();
                }
            }
        }
        if is_public(repository, public_paths) {
            actions = actions | Actions::PULL;
        }
        match &self.limits {
            Some(limits) => {
                let allowed = limits
                    .iter()
                    .fold(Actions::NONE, |set, p| set | p.allows(repository));
                actions & allowed
            }
            None => actions,
        }
    }

    pub fn may_list_catalog(&self) -> bool {
        self.name.is_some()
    }
}

/// No stored user name is longer than a repository name or holds a control
/// character (names are path components); such a name is not looked up.
fn could_be_user_name(name: &str) -> bool {
    name.len() <= 255 && !name.chars().any(char::is_control)
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("incorrect user name or password")]
    BadCredentials,
    #[error("too many failed logins; try again in {0} seconds")]
    RateLimited(u64),
    /// An access token given to sign in to the web UI, which is for people:
    /// they sign in with their password.
    #[error("access tokens are for docker login and scripts; sign in with your password")]
    AccessTokenNotForPeople,
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

pub struct Auth {
    accounts: AccountStore,
    /// Where logins are recorded (the audit log).
    events: EventStore,
    policies: Policies,
    issuer: TokenIssuer,
    limiter: LoginLimiter,
    refresh_tokens: bool,
    session_lifetime: Duration,
}

impl Auth {
    /// Loads (or on first start creates) the signing keys.
    pub async fn open(
        accounts: AccountStore,
        events: EventStore,
        policies: Policies,
        config: &AuthConfig,
    ) -> Result<Auth, AuthError> {
        let keys =
            Arc::new(KeyRing::open(accounts.clone(), config.signing_key_file.as_deref()).await?);
        Ok(Auth {
            issuer: TokenIssuer::new(
                keys,
                config.issuer.clone(),
                config.service.clone(),
                config.token_lifetime,
            ),
            limiter: LoginLimiter::new(config.login_limits),
            refresh_tokens: config.refresh_tokens,
            session_lifetime: config.session_lifetime,
            accounts,
            events,
            policies,
        })
    }

    pub fn service(&self) -> &str {
        self.issuer.service()
    }

    pub fn keys(&self) -> &KeyRing {
        self.issuer.keys()
    }

    /// A user name and a password, or an access token given as the password.
    /// Failures are limited per user name at `address` and per `address`
    /// (see [`limiter`]).
    ///
    /// Each success and each wrong password is a line in the audit log; a
    /// login refused by the limits is not (a stranger could otherwise turn
    /// every refused guess into a database write).
    pub async fn login_password(
        &self,
        user: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Principal, LoginError> {
        let result = self.check_login(user, password, address).await;
        let (outcome, principal) = match &result {
            Ok(principal) => (AuditOutcome::Ok, Some(principal)),
            Err(LoginError::BadCredentials) => (AuditOutcome::Failed, None),
            Err(_) => return result,
        };
        let origin = Origin {
            actor: could_be_user_name(user).then(|| user.to_string()),
            auth: if password.starts_with(secret::ACCESS_TOKEN_PREFIX) {
                AuthMethod::AccessToken
            } else {
                AuthMethod::Password
            },
            access_token: principal.and_then(|p| p.access_token.clone()),
            addr: address.map(|a| a.to_string()),
            ..Origin::default()
        };
        let entry = AuditEntry::new("login", outcome);
        if let Err(e) = self.events.record_audit(origin, entry).await {
            tracing::warn!(error = %e, "could not write to the audit log");
        }
        result
    }

    async fn check_login(
        &self,
        user: &str,
        password: &str,
        address: Option<IpAddr>,
    ) -> Result<Principal, LoginError> {
        if password.is_empty() {
            // What a client sends when it misread stored credentials (an
            // identity token with an empty password): a bug, not a guess, so
            // it counts against no one; and no account has an empty password.
            return Err(LoginError::BadCredentials);
        }
        if !could_be_user_name(user) {
            // No account has such a name, so it is bad credentials like any
            // other; counted against the address only, as it protects no
            // account and a huge name would be a huge key to keep.
            if let Some(wait) = self.limiter.retry_after(None, address) {
                return Err(LoginError::RateLimited(wait));
            }
            self.limiter.record_failure(None, address);
            return Err(LoginError::BadCredentials);
        }
        if password.starts_with(secret::ACCESS_TOKEN_PREFIX) {
            // Access tokens have their own failure count per address only, so
            // an attacker guessing a user's password cannot lock out the
            // machines that use that user's tokens.
            if let Some(wait) = self.limiter.retry_after(None, address) {
                return Err(LoginError::RateLimited(wait));
            }
            let principal = self.access_token_principal(Some(user), password).await?;
            if principal.is_none() {
                self.limiter.record_failure(None, address);
            }
            return principal.ok_or(LoginError::BadCredentials);
        }
        if let Some(wait) = self.limiter.retry_after(Some(user), address) {
            return Err(LoginError::RateLimited(wait));
        }
        let record = self.accounts.user(user).await?;
        let hash = record
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| secret::decoy_hash().to_string());
        let password = password.to_string();
        let matches = secret::verify_password_queued(password, hash).await;
        match record {
            Some(record) if matches => {
                self.limiter.record_success(user, address);
                Ok(self.user_principal(&record.name, record.is_admin).await?)
            }
            _ => {
                self.limiter.record_failure(Some(user), address);
                Err(LoginError::BadCredentials)
            }
        }
    }

    /// An access token alone, as `Authorization: Bearer berth_pat_…` sends
    /// it to `/api/v1`: the token names its user. Failures count against
    /// `address` only, as for tokens given as a password.
    pub async fn login_access_token(
        &self,
        secret: &str,
        address: Option<IpAddr>,
    ) -> Result<Principal, LoginError> {
        if let Some(wait) = self.limiter.retry_after(None, address) {
            return Err(LoginError::RateLimited(wait));
        }
        let principal = if secret.starts_with(secret::ACCESS_TOKEN_PREFIX) {
            self.access_token_principal(None, secret).await?
        } else {
            None
        };
        if principal.is_none() {
            self.limiter.record_failure(None, address);
        }
        principal.ok_or(LoginError::BadCredentials)
    }

    /// The user an access token stands for, if it is live and (when
    /// `user` is given, as Basic credentials name one) that user's.
    async fn access_token_principal(
        &self,
        user: Option<&str>,
        secret: &str,
    ) -> Result<Option<Principal>, MetadataError> {
        let Some(token) = self
            .accounts
            .access_token_by_secret(&secret::secret_hash(secret))
            .await?
        else {
            return Ok(None);
        };
        let expired = token.expires_at.is_some_and(|at| at <= unix_now());
        let someone_else = user.is_some_and(|user| token.user_name != user);
        if token.revoked_at.is_some() || expired || someone_else {
            return Ok(None);
        }
        self.principal(&token.user_name, Some(&token.id)).await
    }

    /// A refresh token from an earlier `offline_token` login.
    pub async fn login_refresh(&self, refresh_token: &str) -> Result<Principal, LoginError> {
        let Some(record) = self
            .accounts
            .refresh_token(&secret::secret_hash(refresh_token))
            .await?
        else {
            return Err(LoginError::BadCredentials);
        };
        self.principal(&record.user_name, record.access_token_id.as_deref())
            .await?
            .ok_or(LoginError::BadCredentials)
    }

    async fn user_principal(&self, name: &str, is_admin: bool) -> Result<Principal, MetadataError> {
        let memberships = self
            .accounts
            .members(None, Some(name))
            .await?
            .into_iter()
            .filter_map(|m| Some((m.organization, Role::parse(&m.role)?)))
            .collect();
        Ok(Principal {
            name: Some(name.to_string()),
            is_admin,
            memberships,
            limits: None,
            access_token: None,
        })
    }

    /// The caller a token was issued to, as they stand now; `None` when the
    /// user or their access token is gone, revoked or expired.
    pub async fn principal(
        &self,
        user: &str,
        access_token: Option<&str>,
    ) -> Result<Option<Principal>, MetadataError> {
        let Some(record) = self.accounts.user(user).await? else {
            return Ok(None);
        };
        let mut principal = self.user_principal(&record.name, record.is_admin).await?;
        if let Some(id) = access_token {
            let Some(token) = self.accounts.access_token(id).await? else {
                return Ok(None);
            };
            let expired = token.expires_at.is_some_and(|at| at <= unix_now());
            if token.revoked_at.is_some() || expired || token.user_name != record.name {
                return Ok(None);
            }
            principal.limits = Some(
                token
                    .scopes
                    .split_whitespace()
                    .filter_map(|s| ScopePattern::parse(s).ok())
                    .collect(),
            );
            principal.access_token = Some(token.id);
        }
        Ok(Some(principal))
    }

    /// A test of "may `principal` pull this repository" now, by their
    /// rights and the repositories' visibility (not by any token's scopes),
    /// for any number of repositories at the cost of one read.
    pub async fn pull_check(
        &self,
        principal: Principal,
    ) -> Result<impl Fn(&str) -> bool + Send + Sync + 'static, MetadataError> {
        let public = self.policies.public_paths().await?;
        Ok(move |repository: &str| {
            principal
                .repository_actions(repository, &public)
                .contains(Actions::PULL)
        })
    }

    /// [`Auth::pull_check`] where authentication may be off (`auth` is
    /// `None`) or the caller unrestricted (`principal` is `None`): then
    /// every repository passes.
    pub async fn pull_test(
        auth: Option<&Auth>,
        principal: Option<&Principal>,
    ) -> Result<Box<dyn Fn(&str) -> bool + Send + Sync>, MetadataError> {
        Ok(match (auth, principal) {
            (Some(auth), Some(principal)) => Box::new(auth.pull_check(principal.clone()).await?),
            _ => Box::new(|_: &str| true),
        })
    }

    /// The part of `requested` this caller may have: asking for more is not
    /// an error, the token simply carries less.
    pub async fn grant(
        &self,
        principal: &Principal,
        requested: &[Scope],
    ) -> Result<Vec<Access>, MetadataError> {
        let public = self.policies.public_paths().await?;
        let mut granted = Vec::new();
        for scope in requested {
            match scope {
                Scope::Catalog if principal.may_list_catalog() => {
                    granted.push(Access::from_scope(scope))
                }
                Scope::Catalog => {}
                Scope::Repository { name, actions } => {
                    if name.parse::<crate::oci::RepositoryName>().is_err() {
                        continue;
                    }
                    let allowed = principal.repository_actions(name, &public) & *actions;
                    if !allowed.is_empty() {
                        granted.push(Access::from_scope(&Scope::Repository {
                            name: name.clone(),
                            actions: allowed,
                        }));
                    }
                }
            }
        }
        Ok(granted)
    }

    pub async fn issue(
        &self,
        principal: &Principal,
        access: Vec<Access>,
    ) -> Result<Issued, TokenError> {
        self.issuer
            .issue(
                principal.name.as_deref().unwrap_or(""),
                access,
                principal.access_token.clone(),
            )
            .await
    }

    /// A long-lived refresh token (Docker's "identity token"), kept hashed,
    /// for a login that asked for offline access; `None` for an anonymous
    /// caller and unless `auth.refresh_tokens` is on (see [`AuthSettings`]).
    pub async fn new_refresh_token(
        &self,
        principal: &Principal,
    ) -> Result<Option<String>, MetadataError> {
        if !self.refresh_tokens {
            return Ok(None);
        }
        let Some(name) = &principal.name else {
            return Ok(None);
        };
        let secret = format!(
            "{}{}",
            secret::REFRESH_TOKEN_PREFIX,
            secret::random_string(32)
        );
        self.accounts
            .store_refresh_token(
                &secret::secret_hash(&secret),
                &RefreshTokenRecord {
                    user_name: name.clone(),
                    access_token_id: principal.access_token.clone(),
                },
            )
            .await?;
        Ok(Some(secret))
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.issuer.verify(token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> Principal {
        Principal {
            name: Some(name.into()),
            ..Principal::default()
        }
    }

    #[test]
    fn users_own_their_namespace_only() {
        let alice = user("alice");
        assert_eq!(alice.repository_actions("alice/app", &[]), Actions::ALL);
        assert_eq!(alice.repository_actions("alice/a/b", &[]), Actions::ALL);
        assert_eq!(alice.repository_actions("alice", &[]), Actions::NONE);
        assert_eq!(alice.repository_actions("alicex/app", &[]), Actions::NONE);
        assert_eq!(alice.repository_actions("bob/app", &[]), Actions::NONE);
    }

    #[test]
    fn organizations_grant_by_role_and_public_paths_grant_pull() {
        let mut bob = user("bob");
        bob.memberships = vec![("team".into(), Role::Write), ("ops".into(), Role::Read)];
        assert_eq!(
            bob.repository_actions("team/app", &[]),
            Actions::PULL | Actions::PUSH
        );
        assert_eq!(bob.repository_actions("ops/app", &[]), Actions::PULL);
        let public = vec!["carol".to_string(), "dave/site".to_string()];
        assert_eq!(bob.repository_actions("carol/x", &public), Actions::PULL);
        assert_eq!(
            Principal::default().repository_actions("dave/site", &public),
            Actions::PULL
        );
        assert_eq!(
            Principal::default().repository_actions("dave/site2", &public),
            Actions::NONE
        );
        assert_eq!(
            Principal::default().repository_actions("dave/other", &public),
            Actions::NONE
        );
        assert!(!Principal::default().may_list_catalog());
    }

    #[test]
    fn names_no_account_can_have_are_not_looked_up() {
        assert!(could_be_user_name("alice") && could_be_user_name(""));
        assert!(!could_be_user_name("alice\0"));
        assert!(!could_be_user_name("al\nice"));
        assert!(!could_be_user_name(&"a".repeat(256)));
    }

    #[test]
    fn access_token_limits_cut_the_users_rights() {
        let mut ci = user("alice");
        ci.limits = Some(vec![
            ScopePattern::parse("repository:alice/web*:pull").unwrap(),
        ]);
        assert_eq!(ci.repository_actions("alice/web", &[]), Actions::PULL);
        assert_eq!(ci.repository_actions("alice/db", &[]), Actions::NONE);
        let mut admin = user("root");
        admin.is_admin = true;
        assert_eq!(admin.repository_actions("anyone/app", &[]), Actions::ALL);
    }
}
