//! Where a change came from, as events and the audit log record it: who
//! (and how they proved it) and the request that carried it: the request
//! id `http` gave it, the client's address, `Host`, method and user agent,
//! cut to printable text of bounded length, since they go into rows and
//! webhook bodies. A leaf: `http` and `ui` fill it in, `registry`, `admin`
//! and `auth` pass it on, `metadata` stores it.

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::{Extensions, HeaderMap, Method, header};

/// How a caller proved who they are, as the audit log names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    #[default]
    Anonymous,
    Password,
    AccessToken,
    /// A web UI session (signed in with a password).
    Session,
    /// The command line, run by whoever holds the configuration.
    System,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Anonymous => "anonymous",
            AuthMethod::Password => "password",
            AuthMethod::AccessToken => "access_token",
            AuthMethod::Session => "session",
            AuthMethod::System => "system",
        }
    }
}

/// Where a change came from: who (and how they authenticated) and the
/// request that carried it. Every value was checked or produced by the
/// server (the user agent is cut to printable text).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The user's name; `None` for an anonymous caller or the system.
    pub actor: Option<String>,
    pub auth: AuthMethod,
    /// The id of the access token used, if one was.
    pub access_token: Option<String>,
    pub addr: Option<String>,
    pub host: Option<String>,
    pub method: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    /// The command line or the server itself (retention, start-up).
    pub fn system() -> Self {
        Origin {
            auth: AuthMethod::System,
            ..Origin::default()
        }
    }
}

/// The id of one request: the client's `X-Request-Id` when it is a plain
/// token (a proxy in front sets it), else one made here.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    pub fn from_headers(headers: &HeaderMap) -> RequestId {
        let given = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            });
        RequestId(match given {
            Some(id) => id.to_string(),
            None => uuid::Uuid::new_v4().simple().to_string(),
        })
    }
}

/// Printable ASCII of a header, at most `limit` bytes; `None` when absent or empty.
fn printable(headers: &HeaderMap, name: header::HeaderName, limit: usize) -> Option<String> {
    let value = headers.get(name)?.as_bytes();
    let text: String = value
        .iter()
        .take(limit)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    (!text.is_empty()).then_some(text)
}

impl Origin {
    /// The request's facts, with no caller yet (anonymous).
    pub fn of_request(method: &Method, headers: &HeaderMap, extensions: &Extensions) -> Origin {
        Origin {
            actor: None,
            auth: AuthMethod::Anonymous,
            access_token: None,
            addr: extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(a)| a.to_string()),
            host: printable(headers, header::HOST, 255),
            method: Some(method.to_string()),
            user_agent: printable(headers, header::USER_AGENT, 256),
            request_id: extensions.get::<RequestId>().map(|r| r.0.clone()),
        }
    }
}
