//! The UI's errors, and the one place they become pages: the status a
//! browser (and a test) sees, with a short explanation and no internals,
//! which are logged instead.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use super::pages::layout::Layout;
use crate::admin::AdminError;
use crate::auth::LoginError;
use crate::metadata::MetadataError;
use crate::policy::PolicyError;
use crate::registry::RegistryError;

#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No such page, or one the viewer may not see (the two look the same,
    /// so a private repository's name is never confirmed).
    #[error("{0}")]
    NotFound(String),
    /// The viewer must sign in first.
    #[error("sign in to see this page")]
    SignInRequired,
    /// Signed in, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// A form whose CSRF token is missing or not this session's.
    #[error("this form has expired: reload the page and try again")]
    StaleForm,
    /// A form or query value that cannot be used.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many failed sign-ins; try again in {0} seconds")]
    RateLimited(u64),
    /// A database that cannot be reached: try again later.
    #[error("the registry's database is unavailable; try again shortly")]
    Unavailable,
    #[error("internal error")]
    Internal(String),
}

impl UiError {
    fn status(&self) -> StatusCode {
        match self {
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::SignInRequired => StatusCode::UNAUTHORIZED,
            UiError::Forbidden(_) | UiError::StaleForm => StatusCode::FORBIDDEN,
            UiError::Invalid(_) => StatusCode::BAD_REQUEST,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            UiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            UiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(askama::Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    title: &'a str,
    message: String,
    sign_in: bool,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let UiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "page failed");
        }
        let page = ErrorPage {
            layout: Layout::bare(),
            title: status.canonical_reason().unwrap_or("Error"),
            message: self.to_string(),
            sign_in: matches!(self, UiError::SignInRequired),
        };
        match askama::Template::render(&page) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(_) => (status, self.to_string()).into_response(),
        }
    }
}

impl From<MetadataError> for UiError {
    fn from(error: MetadataError) -> Self {
        match error {
            MetadataError::Unstorable(message) => UiError::Invalid(message),
            e if e.is_retryable() => UiError::Unavailable,
            e => UiError::Internal(e.to_string()),
        }
    }
}

impl From<RegistryError> for UiError {
    fn from(error: RegistryError) -> Self {
        match error {
            RegistryError::Metadata(e) => e.into(),
            RegistryError::RepositoryUnknown | RegistryError::ManifestUnknown => {
                UiError::NotFound("no such repository or manifest".into())
            }
            RegistryError::Denied(message) => UiError::Forbidden(message),
            e @ RegistryError::CursorInvalid => UiError::Invalid(e.to_string()),
            RegistryError::InUse { message, .. } => UiError::Conflict(message),
            e => UiError::Internal(e.to_string()),
        }
    }
}

impl From<AdminError> for UiError {
    fn from(error: AdminError) -> Self {
        match error {
            AdminError::Forbidden(m) => UiError::Forbidden(m),
            AdminError::NotFound(m) => UiError::NotFound(m),
            AdminError::Conflict(m) => UiError::Conflict(m),
            AdminError::Invalid(m) => UiError::Invalid(m),
            AdminError::Metadata(e) => e.into(),
        }
    }
}

impl From<PolicyError> for UiError {
    fn from(error: PolicyError) -> Self {
        AdminError::from(error).into()
    }
}

impl From<LoginError> for UiError {
    fn from(error: LoginError) -> Self {
        match error {
            LoginError::BadCredentials => {
                UiError::Invalid("incorrect user name or password".into())
            }
            LoginError::RateLimited(seconds) => UiError::RateLimited(seconds),
            LoginError::AccessTokenNotForPeople => UiError::Invalid(error.to_string()),
            LoginError::Metadata(e) => e.into(),
        }
    }
}
