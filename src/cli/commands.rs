//! The administrative subcommands as clap parses them, and the
//! [`Command`] each becomes (`berth gc` and `berth key` have no HTTP
//! counterpart and are run by `cli/mod.rs` itself).

use std::io::{BufRead, IsTerminal};

use clap::Subcommand;

use crate::admin::{
    AuditQuery, Command, NewRetention, NewToken, NewUser, NewWebhook, parse_lifetime,
};
use crate::policy::parse_size;

#[derive(Subcommand)]
pub enum UserCommand {
    /// Create a user owning the namespace NAME/*.
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Change a user's password (their stored `docker login` sessions end).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user with their tokens and memberships.
    Remove { name: String },
}

#[derive(Subcommand)]
pub enum OrgCommand {
    /// Create an organization owning the namespace NAME/*.
    Create { name: String },
    /// List organizations with their members.
    List,
    /// Add a member or change their role (read, write or admin).
    AddMember {
        org: String,
        user: String,
        role: String,
    },
    /// Remove a member.
    RemoveMember { org: String, user: String },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Create an access token and print its secret (shown once).
    Create {
        #[arg(long)]
        user: String,
        /// What the token may do, e.g. 'repository:team/*:pull,push' (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime such as 30d or 12h; no expiry when absent.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List access tokens.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an access token (its next token request fails).
    Revoke { id: String },
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Make a repository (alice/app) or a namespace (alice) public or private.
    Visibility {
        name: String,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
    },
}

#[derive(Subcommand)]
pub enum TagCommand {
    /// Forbid moving or deleting tags matching PATTERN (e.g. 'v*') in a
    /// repository (team/app) or a namespace (team).
    Immutable { path: String, pattern: String },
    /// Lift an immutable-tag rule.
    Mutable { path: String, pattern: String },
    /// List immutable-tag rules.
    Rules,
}

#[derive(Subcommand)]
pub enum QuotaCommand {
    /// Limit the bytes a namespace stores (each distinct blob counted once), e.g. 10GiB.
    Set { namespace: String, size: String },
    /// Remove a namespace's quota.
    Remove { namespace: String },
    /// List quotas with their usage.
    List,
}

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Keep the newest N tags and/or tags pushed within D days in a
    /// repository (team/app) or namespace (team); untag the rest.
    Set {
        path: String,
        #[arg(long)]
        keep_last: Option<u64>,
        #[arg(long)]
        keep_days: Option<u64>,
        /// Tags matching this pattern are always kept (repeatable), e.g. 'v*'.
        #[arg(long)]
        exclude: Vec<String>,
    },
    /// Remove a policy.
    Remove { path: String },
    /// List policies.
    List,
}

/// A password from standard input (`--password-stdin`) or typed twice at a prompt.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no terminal to prompt for a password: use --password-stdin");
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Password again: ")?;
    if first != second {
        anyhow::bail!("the passwords do not match");
    }
    Ok(first)
}

impl UserCommand {
    pub fn into_command(self) -> anyhow::Result<Command> {
        Ok(match self {
            UserCommand::Add {
                name,
                admin,
                password_stdin,
            } => Command::AddUser(NewUser {
                name,
                password: read_password(password_stdin)?,
                admin,
            }),
            UserCommand::List => Command::ListUsers,
            UserCommand::Passwd {
                name,
                password_stdin,
            } => Command::SetPassword {
                user: name,
                password: read_password(password_stdin)?,
            },
            UserCommand::Remove { name } => Command::RemoveUser { user: name },
        })
    }
}

impl OrgCommand {
    pub fn into_command(self) -> Command {
        match self {
            OrgCommand::Create { name } => Command::CreateOrganization { name },
            OrgCommand::List => Command::ListOrganizations,
            OrgCommand::AddMember { org, user, role } => Command::SetMember {
                organization: org,
                user,
                role,
            },
            OrgCommand::RemoveMember { org, user } => Command::RemoveMember {
                organization: org,
                user,
            },
        }
    }
}

impl TokenCommand {
    pub fn into_command(self) -> anyhow::Result<Command> {
        Ok(match self {
            TokenCommand::Create {
                user,
                scopes,
                expires,
                description,
            } => Command::CreateToken(NewToken {
                user: Some(user),
                scopes,
                expires: expires
                    .map(|text| parse_lifetime(&text))
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                description,
            }),
            TokenCommand::List { user } => Command::ListTokens { user },
            TokenCommand::Revoke { id } => Command::RevokeToken { id },
        })
    }
}

impl RepoCommand {
    pub fn into_command(self) -> Command {
        match self {
            RepoCommand::Visibility { name, visibility } => Command::SetVisibility {
                path: name,
                public: visibility == "public",
            },
        }
    }
}

impl TagCommand {
    pub fn into_command(self) -> Command {
        match self {
            TagCommand::Immutable { path, pattern } => Command::SetImmutableTags {
                path,
                pattern,
                immutable: true,
            },
            TagCommand::Mutable { path, pattern } => Command::SetImmutableTags {
                path,
                pattern,
                immutable: false,
            },
            TagCommand::Rules => Command::ListImmutableTags,
        }
    }
}

impl QuotaCommand {
    pub fn into_command(self) -> anyhow::Result<Command> {
        Ok(match self {
            QuotaCommand::Set { namespace, size } => Command::SetQuota {
                namespace,
                limit: Some(parse_size(&size)?),
            },
            QuotaCommand::Remove { namespace } => Command::SetQuota {
                namespace,
                limit: None,
            },
            QuotaCommand::List => Command::ListQuotas,
        })
    }
}

impl RetentionCommand {
    pub fn into_command(self) -> Command {
        match self {
            RetentionCommand::Set {
                path,
                keep_last,
                keep_days,
                exclude,
            } => Command::SetRetention(
                NewRetention {
                    keep_last,
                    keep_days,
                    exclude,
                }
                .for_path(path),
            ),
            RetentionCommand::Remove { path } => Command::RemoveRetention { path },
            RetentionCommand::List => Command::ListRetention,
        }
    }
}

/// The namespace argument of `berth webhook`: `-` names the config file's endpoints.
fn webhook_namespace(namespace: String) -> String {
    if namespace == "-" {
        String::new()
    } else {
        namespace
    }
}

#[derive(Subcommand)]
pub enum WebhookCommand {
    /// List the endpoints of a namespace (`-`: the config file's), or all.
    List { namespace: Option<String> },
    /// Add an endpoint to a namespace; prints its secret when one is made.
    Add {
        namespace: String,
        name: String,
        url: String,
        /// The signing secret; one is made (and printed once) when absent.
        #[arg(long)]
        secret: Option<String>,
        /// `reference` (the reference registry's envelope) or `cloudevents`.
        #[arg(long, default_value = "reference")]
        format: String,
        /// Repository pattern such as team/* (repeatable); all when absent.
        #[arg(long = "repository")]
        repositories: Vec<String>,
        /// push, delete, mount, pull, create, or Berth's names (repeatable).
        #[arg(long = "action")]
        actions: Vec<String>,
        #[arg(long = "ignore-media-type")]
        ignore_media_types: Vec<String>,
        /// Such as 5s.
        #[arg(long)]
        timeout: Option<String>,
    },
    /// Remove an endpoint.
    Remove { namespace: String, name: String },
    /// The last deliveries to an endpoint.
    Deliveries {
        namespace: String,
        name: String,
        /// Only the dead-letter list.
        #[arg(long)]
        dead: bool,
    },
    /// Queue a test event for an endpoint.
    Test { namespace: String, name: String },
    /// Queue a dead delivery again.
    Redeliver {
        namespace: String,
        name: String,
        delivery: i64,
    },
}

impl WebhookCommand {
    pub fn into_command(self) -> anyhow::Result<Command> {
        Ok(match self {
            WebhookCommand::List { namespace } => Command::ListWebhooks {
                namespace: namespace.map(webhook_namespace),
            },
            WebhookCommand::Add {
                namespace,
                name,
                url,
                secret,
                format,
                repositories,
                actions,
                ignore_media_types,
                timeout,
            } => Command::AddWebhook(NewWebhook {
                namespace: webhook_namespace(namespace),
                name,
                url,
                secret,
                format: match format.as_str() {
                    "reference" => crate::metadata::EventFormat::Reference,
                    "cloudevents" => crate::metadata::EventFormat::Cloudevents,
                    other => {
                        anyhow::bail!("`{other}` is not a format: use reference or cloudevents")
                    }
                },
                repositories,
                actions,
                ignore_media_types,
                headers: Default::default(),
                timeout: timeout
                    .map(|t| parse_lifetime(&t))
                    .transpose()
                    .map_err(|e| anyhow::anyhow!(e))?,
            }),
            WebhookCommand::Remove { namespace, name } => Command::RemoveWebhook {
                namespace: webhook_namespace(namespace),
                name,
            },
            WebhookCommand::Deliveries {
                namespace,
                name,
                dead,
            } => Command::WebhookDeliveries {
                namespace: webhook_namespace(namespace),
                name,
                dead_only: dead,
            },
            WebhookCommand::Test { namespace, name } => Command::TestWebhook {
                namespace: webhook_namespace(namespace),
                name,
            },
            WebhookCommand::Redeliver {
                namespace,
                name,
                delivery,
            } => Command::Redeliver {
                namespace: webhook_namespace(namespace),
                name,
                delivery,
            },
        })
    }
}

#[derive(clap::Args)]
pub struct AuditArgs {
    #[arg(long)]
    actor: Option<String>,
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long)]
    repository: Option<String>,
    /// Such as manifest.pushed, login, user.created.
    #[arg(long)]
    action: Option<String>,
    /// An RFC 3339 time or Unix seconds.
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// Rows older than this id (the `next` of the page before).
    #[arg(long)]
    before: Option<i64>,
    /// How many rows (at most 500).
    #[arg(long, default_value_t = 100)]
    n: u32,
}

impl AuditArgs {
    pub fn into_command(self) -> Command {
        Command::ReadAudit(AuditQuery {
            actor: self.actor,
            namespace: self.namespace,
            repository: self.repository,
            action: self.action,
            since: self.since,
            until: self.until,
            before: self.before,
            n: Some(self.n),
        })
    }
}
