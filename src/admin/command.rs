//! The administrative commands: what the CLI's arguments and `/api/v1`'s
//! paths and bodies are turned into. The bodies `/api/v1` accepts are the
//! payload types below, read with serde (unknown fields refused).

use std::time::Duration;

use serde::Deserialize;

use crate::metadata::RetentionPolicy;

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
