//! Administration: users, organizations, access tokens and repository
//! policies, as one typed set of [`Command`]s run by one function,
//! [`Admin::execute`], for a given caller ([`Actor`]), whose rights are
//! checked there. The `berth` CLI builds commands from its arguments (clap,
//! in `cli/`) and acts as the system; `/api/v1` builds them from paths and
//! JSON bodies (serde, in `http/api.rs`) and acts as the logged-in user.
//! Each answer is an [`Outcome`], rendered as text for the terminal and as
//! JSON for HTTP.
//!
//! Called by `cli`, `http` and `ui`; calls `auth` (principals, secrets,
//! scope patterns), `policy`, `events` (the check of an endpoint's
//! settings), `metadata`'s account and event stores and `oci` (names).
//! Every change it makes, and every one it refuses for want of a right, is
//! a line in the audit log (`webhooks.rs` also reads it).

mod command;
mod execute;
mod outcome;
mod webhooks;

pub use command::{
    AuditQuery, Command, NewRetention, NewToken, NewUser, NewWebhook, parse_lifetime,
};
pub use outcome::{
    CreatedToken, Kind, MemberView, OrganizationView, Outcome, TokenView, UserView, VisibilityView,
};

use crate::auth::{Principal, Role};
use crate::metadata::{AccountStore, EventStore, MetadataError};
use crate::policy::{Policies, PolicyError};

/// Who asks for an administrative operation.
#[derive(Debug, Clone)]
pub enum Actor {
    /// The command line, run by whoever holds the configuration.
    System,
    User(Principal),
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Metadata(#[from] MetadataError),
}

impl From<PolicyError> for AdminError {
    fn from(error: PolicyError) -> Self {
        match error {
            PolicyError::Invalid(message) => AdminError::Invalid(message),
            PolicyError::NotFound(message) => AdminError::NotFound(message),
            PolicyError::Metadata(e) => AdminError::Metadata(e),
        }
    }
}

pub type AdminResult<T> = Result<T, AdminError>;

/// The account and policy stores administration works on.
pub struct Admin {
    accounts: AccountStore,
    policies: Policies,
    /// The audit log, and the webhook endpoints and their deliveries.
    events: EventStore,
}

impl Admin {
    pub fn new(accounts: AccountStore, policies: Policies, events: EventStore) -> Self {
        Self {
            accounts,
            policies,
            events,
        }
    }
}

/// Whether the actor is an administrator with full rights (not limited by
/// an access token).
fn is_admin(actor: &Actor) -> bool {
    match actor {
        Actor::System => true,
        Actor::User(p) => p.is_admin && p.limits.is_none(),
    }
}

fn require_admin(actor: &Actor) -> AdminResult<()> {
    if is_admin(actor) {
        Ok(())
    } else {
        Err(AdminError::Forbidden(
            "only an administrator may do this".into(),
        ))
    }
}

fn is_self_or_admin(actor: &Actor, user: &str) -> bool {
    match actor {
        Actor::System => true,
        Actor::User(p) => p.limits.is_none() && (p.is_admin || p.name.as_deref() == Some(user)),
    }
}

fn require_org_admin(actor: &Actor, organization: &str) -> AdminResult<()> {
    let allowed = match actor {
        Actor::System => true,
        Actor::User(p) => {
            p.limits.is_none()
                && (p.is_admin
                    || p.memberships
                        .iter()
                        .any(|(o, role)| o == organization && *role == Role::Admin))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(AdminError::Forbidden(format!(
            "only an admin of `{organization}` may change its members"
        )))
    }
}

/// The repository or namespace `path` must be valid and the caller its
/// owner, an admin of its organization, or an administrator; `what` says
/// what they were about to change, for the refusal.
fn require_namespace_admin(actor: &Actor, path: &str, what: &str) -> AdminResult<()> {
    crate::policy::check_path(path)?;
    let namespace = crate::oci::name::namespace_of(path);
    let allowed = match actor {
        Actor::System => true,
        Actor::User(p) => {
            p.limits.is_none()
                && (p.is_admin
                    || p.name.as_deref() == Some(namespace)
                    || p.memberships
                        .iter()
                        .any(|(o, r)| o == namespace && *r == Role::Admin))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(AdminError::Forbidden(format!(
            "only the owner of `{namespace}` or an administrator may change {what}"
        )))
    }
}

/// Whether the actor may change the policies of `path` (a repository or a
/// namespace): what pages ask before they show a settings form, which
/// [`Admin::execute`] checks again whatever the page showed.
pub fn may_manage(actor: &Actor, path: &str) -> bool {
    require_namespace_admin(actor, path, "its settings").is_ok()
}

/// Whether the actor may see a namespace's quota: its owner, members and administrators.
pub fn may_see_namespace(actor: &Actor, namespace: &str) -> bool {
    match actor {
        Actor::System => true,
        Actor::User(p) => {
            p.is_admin
                || p.name.as_deref() == Some(namespace)
                || p.memberships.iter().any(|(o, _)| o == namespace)
        }
    }
}
