//! [`Admin::execute`]: every command, for one caller, with the rights it
//! needs checked before anything is read or changed.

use serde_json::json;

use super::command::{Command, NewToken, NewUser};
use super::outcome::{
    CreatedToken, MemberView, OrganizationView, Outcome, TokenView, UserView, VisibilityView,
};
use super::{
    Actor, Admin, AdminError, AdminResult, is_admin, is_self_or_admin, may_see_namespace,
    require_admin, require_namespace_admin, require_org_admin,
};
use crate::auth::scope::ScopePattern;
use crate::auth::{Role, secret};
use crate::metadata::{
    AccessTokenRecord, AuditOutcome, Claimant, Created, MemberOutcome, Origin, RetentionPolicy,
    unix_now,
};
use crate::oci::name::namespace_of;
use crate::oci::pattern::TagRule;

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

/// How the actor claims a namespace: only an administrator may take one
/// that is already in use.
fn claimant(actor: &Actor) -> Claimant {
    if is_admin(actor) {
        Claimant::Administrator
    } else {
        Claimant::User
    }
}

/// What creating user or organization `name` answered, as an error.
fn not_created(name: &str, outcome: Created) -> AdminError {
    match outcome {
        Created::InUse => AdminError::Forbidden(format!(
            "repositories or rules already use the namespace `{name}`; only an administrator may create a user or organization named `{name}`"
        )),
        Created::Created | Created::NameTaken => {
            AdminError::Conflict(format!("`{name}` is already a user or an organization"))
        }
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

impl Admin {
    /// Runs `command` for `actor`, who sent it as `origin` says; a change,
    /// or a change refused for want of a right, goes into the audit log.
    pub async fn execute(
        &self,
        origin: &Origin,
        actor: &Actor,
        command: Command,
    ) -> AdminResult<Outcome> {
        let audit = command.audit();
        let result = self.run(origin, actor, command).await;
        let outcome = match &result {
            Ok(_) => Some(AuditOutcome::Ok),
            Err(AdminError::Forbidden(_)) => Some(AuditOutcome::Denied),
            // Nothing changed and no right was missing.
            Err(_) => None,
        };
        if let (Some(mut entry), Some(outcome)) = (audit, outcome) {
            entry.outcome = outcome;
            if let Err(e) = self.events.record_audit(origin.clone(), entry).await {
                tracing::warn!(error = %e, "could not write to the audit log");
            }
        }
        result
    }

    async fn run(&self, origin: &Origin, actor: &Actor, command: Command) -> AdminResult<Outcome> {
        match command {
            Command::Whoami => Ok(whoami(actor)),
            Command::AddUser(new) => self.add_user(actor, new).await,
            Command::ListUsers => self.users(actor).await,
            Command::SetPassword { user, password } => {
                self.set_password(actor, &user, &password).await
            }
            Command::RemoveUser { user } => self.remove_user(actor, &user).await,
            Command::CreateOrganization { name } => self.create_organization(actor, &name).await,
            Command::ListOrganizations => self.organizations(actor).await,
            Command::SetMember {
                organization,
                user,
                role,
            } => self.set_member(actor, &organization, &user, &role).await,
            Command::RemoveMember { organization, user } => {
                self.remove_member(actor, &organization, &user).await
            }
            Command::CreateToken(new) => self.create_token(actor, new).await,
            Command::ListTokens { user } => self.tokens(actor, user.as_deref()).await,
            Command::RevokeToken { id } => self.revoke_token(actor, &id).await,
            Command::ShowVisibility { path } => self.visibility(path).await,
            Command::SetVisibility { path, public } => {
                self.set_visibility(actor, &path, public).await
            }
            Command::ListImmutableTags => self.immutable_tags(actor).await,
            Command::SetImmutableTags {
                path,
                pattern,
                immutable,
            } => {
                self.set_immutable_tags(actor, TagRule { path, pattern }, immutable)
                    .await
            }
            Command::ListQuotas => self.quotas(actor).await,
            Command::ShowQuota { namespace } => self.quota(actor, &namespace).await,
            Command::SetQuota { namespace, limit } => {
                self.set_quota(actor, &namespace, limit).await
            }
            Command::ListRetention => self.retention_policies(actor).await,
            Command::SetRetention(policy) => self.set_retention(actor, &policy).await,
            Command::RemoveRetention { path } => self.remove_retention(actor, &path).await,
            Command::ListWebhooks { namespace } => self.webhooks(actor, namespace.as_deref()).await,
            Command::AddWebhook(new) => self.add_webhook(actor, new).await,
            Command::RemoveWebhook { namespace, name } => {
                self.remove_webhook(actor, &namespace, &name).await
            }
            Command::WebhookDeliveries {
                namespace,
                name,
                dead_only,
            } => self.deliveries(actor, &namespace, &name, dead_only).await,
            Command::TestWebhook { namespace, name } => {
                self.test_webhook(origin, actor, &namespace, &name).await
            }
            Command::Redeliver {
                namespace,
                name,
                delivery,
            } => self.redeliver(actor, &namespace, &name, delivery).await,
            Command::ReadAudit(query) => self.read_audit(actor, query).await,
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
        match self
            .accounts
            .create_user("admin", &hash, true, Claimant::Administrator)
            .await?
        {
            Created::Created => Ok(generated),
            // Another instance starting at the same moment created it.
            Created::NameTaken | Created::InUse => Ok(None),
        }
    }

    async fn add_user(&self, actor: &Actor, new: NewUser) -> AdminResult<Outcome> {
        require_admin(actor)?;
        check_namespace_name(&new.name)?;
        check_password(&new.password)?;
        let hash = secret::hash_password_queued(new.password).await;
        match self
            .accounts
            .create_user(&new.name, &hash, new.admin, claimant(actor))
            .await?
        {
            Created::Created => {
                let note = format!(
                    "created user `{}`{}",
                    new.name,
                    if new.admin { " (administrator)" } else { "" }
                );
                let view = UserView {
                    name: new.name,
                    admin: new.admin,
                    created_at: unix_now(),
                };
                Ok(Outcome::created(view, note, Vec::new()))
            }
            refused => Err(not_created(&new.name, refused)),
        }
    }

    async fn users(&self, actor: &Actor) -> AdminResult<Outcome> {
        require_admin(actor)?;
        let users: Vec<UserView> = self
            .accounts
            .users()
            .await?
            .into_iter()
            .map(|u| UserView {
                name: u.name,
                admin: u.is_admin,
                created_at: u.created_at,
            })
            .collect();
        let lines = users.iter().map(UserView::line).collect();
        Ok(Outcome::shown(json!({ "users": users }), lines))
    }

    async fn set_password(
        &self,
        actor: &Actor,
        name: &str,
        password: &str,
    ) -> AdminResult<Outcome> {
        if !is_self_or_admin(actor, name) {
            return Err(AdminError::Forbidden(
                "you may change only your own password".into(),
            ));
        }
        check_password(password)?;
        let hash = secret::hash_password_queued(password.to_string()).await;
        if self.accounts.set_password(name, &hash).await? {
            Ok(Outcome::changed(format!(
                "changed the password of `{name}`"
            )))
        } else {
            Err(AdminError::NotFound(format!("no user `{name}`")))
        }
    }

    async fn remove_user(&self, actor: &Actor, name: &str) -> AdminResult<Outcome> {
        require_admin(actor)?;
        if self.accounts.remove_user(name).await? {
            Ok(Outcome::changed(format!("removed user `{name}`")))
        } else {
            Err(AdminError::NotFound(format!("no user `{name}`")))
        }
    }

    /// Creates an organization; a user who creates one becomes its admin.
    /// Only an administrator may create one whose namespace is already in
    /// use (say `library`, after pushing `library/*`): anyone else would
    /// gain pull, push and delete over what is there.
    async fn create_organization(&self, actor: &Actor, name: &str) -> AdminResult<Outcome> {
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
        let created = self
            .accounts
            .create_organization(name, claimant(actor))
            .await?;
        if created != Created::Created {
            return Err(not_created(name, created));
        }
        if let Some(creator) = creator {
            self.accounts
                .set_member(name, &creator, Role::Admin.as_str())
                .await?;
        }
        let view = self.organization(name).await?;
        Ok(Outcome::created(
            view,
            format!("created organization `{name}`"),
            Vec::new(),
        ))
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
    async fn organizations(&self, actor: &Actor) -> AdminResult<Outcome> {
        let names = match actor {
            Actor::User(p) if !is_admin(actor) => {
                p.memberships.iter().map(|(o, _)| o.clone()).collect()
            }
            _ => self.accounts.organizations().await?,
        };
        let mut views = Vec::new();
        for name in names {
            views.push(self.organization(&name).await?);
        }
        let lines = views.iter().map(OrganizationView::line).collect();
        Ok(Outcome::shown(json!({ "organizations": views }), lines))
    }

    async fn set_member(
        &self,
        actor: &Actor,
        organization: &str,
        user: &str,
        role: &str,
    ) -> AdminResult<Outcome> {
        require_org_admin(actor, organization)?;
        let role = Role::parse(role).ok_or_else(|| {
            AdminError::Invalid(format!("`{role}` is not a role: use read, write or admin"))
        })?;
        match self
            .accounts
            .set_member(organization, user, role.as_str())
            .await?
        {
            MemberOutcome::Set => Ok(Outcome::changed(format!(
                "`{user}` is now {} in `{organization}`",
                role.as_str()
            ))),
            MemberOutcome::UnknownOrganization => Err(AdminError::NotFound(format!(
                "no organization `{organization}`"
            ))),
            MemberOutcome::UnknownUser => Err(AdminError::NotFound(format!("no user `{user}`"))),
        }
    }

    async fn remove_member(
        &self,
        actor: &Actor,
        organization: &str,
        user: &str,
    ) -> AdminResult<Outcome> {
        require_org_admin(actor, organization)?;
        if self.accounts.remove_member(organization, user).await? {
            Ok(Outcome::changed(format!(
                "removed `{user}` from `{organization}`"
            )))
        } else {
            Err(AdminError::NotFound(format!(
                "`{user}` is not a member of `{organization}`"
            )))
        }
    }

    /// Creates an access token for `new.user` (the caller by default),
    /// limited to `new.scopes`.
    async fn create_token(&self, actor: &Actor, new: NewToken) -> AdminResult<Outcome> {
        let user = match (&new.user, actor) {
            (Some(user), _) => user.clone(),
            (None, Actor::User(p)) => p.name.clone().unwrap_or_default(),
            (None, Actor::System) => {
                return Err(AdminError::Invalid("name the token's `user`".into()));
            }
        };
        if !is_self_or_admin(actor, &user) {
            return Err(AdminError::Forbidden(
                "you may create tokens only for yourself".into(),
            ));
        }
        if self.accounts.user(&user).await?.is_none() {
            return Err(AdminError::NotFound(format!("no user `{user}`")));
        }
        if new.scopes.is_empty() {
            return Err(AdminError::Invalid(
                "give at least one scope, e.g. repository:team/*:pull,push".into(),
            ));
        }
        let patterns = new
            .scopes
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
        let created_at = unix_now();
        let expires_at = match new.expires {
            None => None,
            Some(lifetime) => Some(
                i64::try_from(lifetime.as_secs())
                    .ok()
                    .and_then(|seconds| created_at.checked_add(seconds))
                    .ok_or_else(|| {
                        AdminError::Invalid(
                            "that expiry is too far away; leave it out for a token that does not expire"
                                .into(),
                        )
                    })?,
            ),
        };
        let record = AccessTokenRecord {
            id: format!("tok_{}", secret::random_string(9)),
            user_name: user.clone(),
            description: new.description,
            secret_hash: secret::secret_hash(&secret),
            scopes: patterns.join(" "),
            created_at,
            expires_at,
            revoked_at: None,
        };
        self.accounts.create_access_token(&record).await?;
        let token = TokenView::from(record);
        let note = format!(
            "created token {} for `{user}` ({}); use the secret below as the password of `docker login -u {user}`; it is not shown again",
            token.id,
            token.scopes.join(" ")
        );
        let lines = vec![secret.clone()];
        Ok(Outcome::created(
            CreatedToken { token, secret },
            note,
            lines,
        ))
    }

    /// Tokens of `user` (the caller's own when not an administrator), or of everyone.
    async fn tokens(&self, actor: &Actor, user: Option<&str>) -> AdminResult<Outcome> {
        let user = match actor {
            Actor::User(p) if !is_admin(actor) => {
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
        let tokens: Vec<TokenView> = self
            .accounts
            .access_tokens(user.as_deref())
            .await?
            .into_iter()
            .map(TokenView::from)
            .collect();
        let lines = tokens.iter().map(TokenView::line).collect();
        Ok(Outcome::shown(json!({ "tokens": tokens }), lines))
    }

    async fn revoke_token(&self, actor: &Actor, id: &str) -> AdminResult<Outcome> {
        let token = self
            .accounts
            .access_token(id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("no token `{id}`")))?;
        // Someone else's token is as good as absent.
        if !is_self_or_admin(actor, &token.user_name) {
            return Err(AdminError::NotFound(format!("no token `{id}`")));
        }
        self.accounts.revoke_access_token(id).await?;
        Ok(Outcome::changed(format!("revoked token {id}")))
    }

    /// Whether `path` is public, and the public path that makes it so.
    async fn visibility(&self, path: String) -> AdminResult<Outcome> {
        let public_via = self.policies.public_via(&path).await?;
        let line = format!(
            "{path}\t{}",
            public_via
                .as_deref()
                .map_or("private".to_string(), |via| format!("public (via {via})"))
        );
        let view = VisibilityView {
            name: path,
            public: public_via.is_some(),
            public_via,
        };
        Ok(Outcome::shown(json!(view), vec![line]))
    }

    /// Makes a repository (`alice/app`) or a namespace (`alice`) public or private.
    async fn set_visibility(
        &self,
        actor: &Actor,
        path: &str,
        public: bool,
    ) -> AdminResult<Outcome> {
        require_namespace_admin(actor, path, "its visibility")?;
        self.policies.set_public(path, public).await?;
        let visibility = if public { "public" } else { "private" };
        Ok(Outcome::changed(format!("`{path}` is now {visibility}")))
    }

    /// The rules of the namespaces the actor may see: another user's rules
    /// would name their repositories.
    async fn immutable_tags(&self, actor: &Actor) -> AdminResult<Outcome> {
        let mut rules = self.policies.immutable_tags().await?;
        rules.retain(|rule| may_see_namespace(actor, namespace_of(&rule.path)));
        let lines = rules
            .iter()
            .map(|r| format!("{}\t{}\timmutable", r.path, r.pattern))
            .collect();
        let rules: Vec<_> = rules
            .into_iter()
            .map(|r| json!({"path": r.path, "pattern": r.pattern}))
            .collect();
        Ok(Outcome::shown(json!({ "immutable_tags": rules }), lines))
    }

    /// Protects tags matching `rule.pattern` (e.g. `v*`) in a repository or
    /// namespace from being moved or deleted, or lifts that protection.
    async fn set_immutable_tags(
        &self,
        actor: &Actor,
        rule: TagRule,
        immutable: bool,
    ) -> AdminResult<Outcome> {
        require_namespace_admin(actor, &rule.path, "its rules")?;
        self.policies.set_immutable_tags(&rule, immutable).await?;
        let TagRule { path, pattern } = rule;
        Ok(Outcome::changed(if immutable {
            format!("tags matching `{pattern}` in `{path}` can no longer be moved or deleted")
        } else {
            format!("tags matching `{pattern}` in `{path}` are mutable again")
        }))
    }

    /// Sets or removes a namespace's storage quota (administrators only).
    async fn set_quota(
        &self,
        actor: &Actor,
        namespace: &str,
        limit: Option<u64>,
    ) -> AdminResult<Outcome> {
        require_admin(actor)?;
        check_namespace_name(namespace)?;
        self.policies.set_quota(namespace, limit).await?;
        Ok(Outcome::changed(match limit {
            Some(limit) => format!("namespace `{namespace}` may store {limit} bytes"),
            None => format!("namespace `{namespace}` has no quota"),
        }))
    }

    /// A namespace's quota and usage, for its owner, members and administrators.
    async fn quota(&self, actor: &Actor, namespace: &str) -> AdminResult<Outcome> {
        if !may_see_namespace(actor, namespace) {
            return Err(AdminError::Forbidden(format!(
                "you are not a member of `{namespace}`"
            )));
        }
        let quota = self.policies.quota(namespace).await?;
        let line = quota_line(&quota);
        Ok(Outcome::shown(json!(quota), vec![line]))
    }

    /// Every quota with its usage.
    async fn quotas(&self, actor: &Actor) -> AdminResult<Outcome> {
        require_admin(actor)?;
        let quotas = self.policies.quotas().await?;
        let lines = quotas.iter().map(quota_line).collect();
        Ok(Outcome::shown(json!({ "quotas": quotas }), lines))
    }

    /// Sets or replaces the retention policy of a repository or namespace.
    async fn set_retention(&self, actor: &Actor, policy: &RetentionPolicy) -> AdminResult<Outcome> {
        require_namespace_admin(actor, &policy.path, "its rules")?;
        self.policies.set_retention(policy).await?;
        Ok(Outcome::changed(format!(
            "retention policy of `{}` set; `berth gc --dry-run` lists what it would untag",
            policy.path
        )))
    }

    async fn remove_retention(&self, actor: &Actor, path: &str) -> AdminResult<Outcome> {
        require_namespace_admin(actor, path, "its rules")?;
        self.policies.remove_retention(path).await?;
        Ok(Outcome::changed(format!(
            "`{path}` has no retention policy"
        )))
    }

    /// The policies of the namespaces the actor may see.
    async fn retention_policies(&self, actor: &Actor) -> AdminResult<Outcome> {
        let mut policies = self.policies.retention_policies().await?;
        policies.retain(|policy| may_see_namespace(actor, namespace_of(&policy.path)));
        let lines = policies
            .iter()
            .map(|policy| {
                format!(
                    "{}\tkeep_last={}\tkeep_days={}\texclude={}",
                    policy.path,
                    policy.keep_last.map_or("-".into(), |n| n.to_string()),
                    policy.keep_days.map_or("-".into(), |n| n.to_string()),
                    policy.exclude.join(",")
                )
            })
            .collect();
        Ok(Outcome::shown(json!({ "retention": policies }), lines))
    }
}

fn quota_line(quota: &crate::policy::QuotaView) -> String {
    format!(
        "{}\t{} of {} bytes used",
        quota.namespace,
        quota.used_bytes,
        quota.limit_bytes.unwrap_or(0)
    )
}

/// The caller as the registry sees them.
fn whoami(actor: &Actor) -> Outcome {
    match actor {
        Actor::System => Outcome::shown(
            json!({"name": null, "admin": true, "organizations": []}),
            vec!["the system (the command line)".into()],
        ),
        Actor::User(p) => Outcome::shown(
            json!({
                "name": p.name,
                "admin": p.is_admin,
                "organizations": p.memberships.iter().map(|(o, r)| json!({"name": o, "role": r.as_str()})).collect::<Vec<_>>(),
                "access_token": p.access_token,
            }),
            vec![p.name.clone().unwrap_or_else(|| "anonymous".into())],
        ),
    }
}
