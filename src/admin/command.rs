//! The administrative commands: what the CLI's arguments and `/api/v1`'s
//! paths and bodies are turned into. The bodies `/api/v1` accepts are the
//! payload types below, read with serde (unknown fields refused).

use std::time::Duration;

use serde::Deserialize;

use crate::metadata::{AuditEntry, AuditOutcome, EventFormat, RetentionPolicy};

#[derive(Debug, Clone)]
pub enum Command {
    /// The caller as the registry sees them.
    Whoami,
    AddUser(NewUser),
    ListUsers,
    SetPassword {
        user: String,
        password: String,
    },
    RemoveUser {
        user: String,
    },
    CreateOrganization {
        name: String,
    },
    ListOrganizations,
    /// Adds a member or changes their role (`read`, `write` or `admin`).
    SetMember {
        organization: String,
        user: String,
        role: String,
    },
    RemoveMember {
        organization: String,
        user: String,
    },
    CreateToken(NewToken),
    /// Tokens of one user, or of everyone (administrators).
    ListTokens {
        user: Option<String>,
    },
    RevokeToken {
        id: String,
    },
    /// Whether a repository or namespace is public, and what makes it so.
    ShowVisibility {
        path: String,
    },
    SetVisibility {
        path: String,
        public: bool,
    },
    ListImmutableTags,
    /// Protects (or frees) tags matching `pattern` in `path` from moving.
    SetImmutableTags {
        path: String,
        pattern: String,
        immutable: bool,
    },
    ListQuotas,
    ShowQuota {
        namespace: String,
    },
    /// Sets (`Some`) or removes (`None`) a namespace's quota, in bytes.
    SetQuota {
        namespace: String,
        limit: Option<u64>,
    },
    ListRetention,
    SetRetention(RetentionPolicy),
    RemoveRetention {
        path: String,
    },
    /// The webhook endpoints of a namespace (`""`: the config file's), or
    /// all of them (administrators).
    ListWebhooks {
        namespace: Option<String>,
    },
    AddWebhook(NewWebhook),
    RemoveWebhook {
        namespace: String,
        name: String,
    },
    /// The last deliveries to an endpoint (only the dead ones with `dead_only`).
    WebhookDeliveries {
        namespace: String,
        name: String,
        dead_only: bool,
    },
    /// Queues a test event for one endpoint.
    TestWebhook {
        namespace: String,
        name: String,
    },
    /// Queues a dead delivery again.
    Redeliver {
        namespace: String,
        name: String,
        delivery: i64,
    },
    ReadAudit(AuditQuery),
}

impl Command {
    /// The audit log's line for this command, when it changes something
    /// (its outcome is filled in once it has run). Never a secret.
    pub(super) fn audit(&self) -> Option<AuditEntry> {
        use serde_json::json;
        let entry = |action: &str| AuditEntry::new(action, AuditOutcome::Ok);
        let path_entry = |action: &str, path: &str| entry(action).namespace(path).target(path);
        Some(match self {
            Command::AddUser(new) => entry("user.created")
                .target(&new.name)
                .detail(json!({"admin": new.admin})),
            Command::SetPassword { user, .. } => entry("user.password_changed").target(user),
            Command::RemoveUser { user } => entry("user.removed").target(user),
            Command::CreateOrganization { name } => {
                entry("organization.created").namespace(name).target(name)
            }
            Command::SetMember {
                organization,
                user,
                role,
            } => entry("membership.changed")
                .namespace(organization)
                .target(user)
                .detail(json!({"role": role})),
            Command::RemoveMember { organization, user } => entry("membership.removed")
                .namespace(organization)
                .target(user),
            Command::CreateToken(new) => {
                let mut e = entry("access_token.created").detail(json!({"scopes": new.scopes}));
                if let Some(user) = &new.user {
                    e = e.target(user);
                }
                e
            }
            Command::RevokeToken { id } => entry("access_token.revoked").target(id),
            Command::SetVisibility { path, public } => {
                path_entry("visibility.changed", path).detail(json!({"public": public}))
            }
            Command::SetImmutableTags {
                path,
                pattern,
                immutable,
            } => path_entry("immutable_tags.changed", path)
                .detail(json!({"pattern": pattern, "immutable": immutable})),
            Command::SetQuota { namespace, limit } => {
                path_entry("quota.changed", namespace).detail(json!({"limit": limit}))
            }
            Command::SetRetention(policy) => path_entry("retention.changed", &policy.path)
                .detail(json!({"keep_last": policy.keep_last, "keep_days": policy.keep_days, "exclude": policy.exclude})),
            Command::RemoveRetention { path } => path_entry("retention.removed", path),
            Command::AddWebhook(new) => webhook_entry("webhook.created", &new.namespace, &new.name)
                .detail(json!({"url": new.url})),
            Command::RemoveWebhook { namespace, name } => {
                webhook_entry("webhook.removed", namespace, name)
            }
            Command::TestWebhook { namespace, name } => {
                webhook_entry("webhook.tested", namespace, name)
            }
            Command::Redeliver {
                namespace,
                name,
                delivery,
            } => webhook_entry("webhook.redelivered", namespace, name)
                .detail(json!({"delivery": delivery})),
            Command::Whoami
            | Command::ListUsers
            | Command::ListOrganizations
            | Command::ListTokens { .. }
            | Command::ShowVisibility { .. }
            | Command::ListImmutableTags
            | Command::ListQuotas
            | Command::ShowQuota { .. }
            | Command::ListRetention
            | Command::ListWebhooks { .. }
            | Command::WebhookDeliveries { .. }
            | Command::ReadAudit(_) => return None,
        })
    }
}

fn webhook_entry(action: &str, namespace: &str, name: &str) -> AuditEntry {
    let entry = AuditEntry::new(action, AuditOutcome::Ok).target(name);
    if namespace.is_empty() {
        entry
    } else {
        entry.namespace(namespace)
    }
}

/// `POST /api/v1/namespaces/<ns>/webhooks`; `berth webhook add`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// From the path (or the CLI's argument), never the body.
    #[serde(skip)]
    pub namespace: String,
    pub name: String,
    pub url: String,
    /// Made for the caller (and shown once) when absent.
    pub secret: Option<String>,
    #[serde(default)]
    pub format: EventFormat,
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    #[serde(default)]
    pub ignore_media_types: Vec<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    /// Such as `5s`; 5 seconds when absent.
    #[serde(default, deserialize_with = "lifetime")]
    pub timeout: Option<Duration>,
}

/// `GET /api/v1/audit`; `berth audit`. Checked by [`crate::admin::Admin::execute`].
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub namespace: Option<String>,
    pub repository: Option<String>,
    pub action: Option<String>,
    /// RFC 3339 times or Unix seconds.
    pub since: Option<String>,
    pub until: Option<String>,
    /// The `next` of the page before.
    pub before: Option<i64>,
    pub n: Option<u32>,
}

/// `POST /api/v1/users`; `berth user add`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub name: String,
    pub password: String,
    #[serde(default)]
    pub admin: bool,
}

/// `POST /api/v1/tokens`; `berth token create`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Defaults to the caller.
    pub user: Option<String>,
    pub scopes: Vec<String>,
    /// A lifetime such as `30d`; no expiry when absent.
    #[serde(default, deserialize_with = "lifetime")]
    pub expires: Option<Duration>,
    #[serde(default)]
    pub description: String,
}

/// A token lifetime such as `30d` or `12h`.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|_| format!("`{text}` is not a duration such as 30d"))
}

fn lifetime<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Duration>, D::Error> {
    match Option::<String>::deserialize(deserializer)? {
        Some(text) => parse_lifetime(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
        None => Ok(None),
    }
}

/// `PUT /api/v1/retention/<path>`; `berth retention set`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRetention {
    pub keep_last: Option<u64>,
    pub keep_days: Option<u64>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

impl NewRetention {
    pub fn for_path(self, path: String) -> RetentionPolicy {
        RetentionPolicy {
            path,
            keep_last: self.keep_last,
            keep_days: self.keep_days,
            exclude: self.exclude,
        }
    }
}
