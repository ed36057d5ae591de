//! What a command answers, already rendered both ways: JSON for `/api/v1`
//! (with whether it changed, created or only showed something, which picks
//! the HTTP status), and lines for the terminal (a listing on standard
//! output, a confirmation on standard error).

use serde::Serialize;
use serde_json::Value;

use crate::metadata::AccessTokenRecord;

/// Which kind of answer: over HTTP, 204, 201 and 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Something changed; nothing to show but the confirmation.
    Changed,
    /// Something new, shown once.
    Created,
    /// A listing or a view; nothing changed.
    Shown,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    kind: Kind,
    json: Option<Value>,
    lines: Vec<String>,
    note: Option<String>,
}

impl Outcome {
    pub(super) fn changed(note: String) -> Self {
        Self {
            kind: Kind::Changed,
            json: None,
            lines: Vec::new(),
            note: Some(note),
        }
    }

    pub(super) fn created(view: impl Serialize, note: String, lines: Vec<String>) -> Self {
        Self {
            kind: Kind::Created,
            json: Some(serde_json::to_value(view).expect("views serialize")),
            lines,
            note: Some(note),
        }
    }

    pub(super) fn shown(json: Value, lines: Vec<String>) -> Self {
        Self {
            kind: Kind::Shown,
            json: Some(json),
            lines,
            note: None,
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The JSON body `/api/v1` answers with; none for a change.
    pub fn into_json(self) -> Option<Value> {
        self.json
    }

    /// What the terminal shows on standard output: one line per item.
    pub fn lines(&self) -> &[String] {
        &self.lines
    }

    /// The confirmation the terminal shows on standard error.
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }
}

/// An RFC 3339 time, for the terminal.
pub(super) fn when(unix: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

#[derive(Debug, Clone, Serialize)]
pub struct UserView {
    pub name: String,
    pub admin: bool,
    pub created_at: i64,
}

impl UserView {
    pub(super) fn line(&self) -> String {
        let kind = if self.admin { "admin" } else { "user" };
        format!("{}\t{kind}\t{}", self.name, when(self.created_at))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberView {
    pub user: String,
    pub role: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrganizationView {
    pub name: String,
    pub members: Vec<MemberView>,
}

impl OrganizationView {
    pub(super) fn line(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}:{}", m.user, m.role))
            .collect();
        format!("{}\t{}", self.name, members.join(","))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenView {
    pub id: String,
    pub user: String,
    pub description: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked: bool,
}

impl From<AccessTokenRecord> for TokenView {
    fn from(token: AccessTokenRecord) -> Self {
        TokenView {
            id: token.id,
            user: token.user_name,
            description: token.description,
            scopes: token
                .scopes
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            created_at: token.created_at,
            expires_at: token.expires_at,
            revoked: token.revoked_at.is_some(),
        }
    }
}

impl TokenView {
    pub(super) fn line(&self) -> String {
        let state = if self.revoked {
            "revoked".to_string()
        } else {
            self.expires_at
                .map_or("no expiry".into(), |at| format!("expires {}", when(at)))
        };
        format!(
            "{}\t{}\t{}\t{state}\t{}",
            self.id,
            self.user,
            self.scopes.join(" "),
            self.description
        )
    }
}

/// A new access token: shown once, never stored in the clear.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    pub secret: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct VisibilityView {
    pub name: String,
    pub public: bool,
    /// The public path that makes it public.
    pub public_via: Option<String>,
}
