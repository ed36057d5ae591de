//! Who is looking at a page: the [`Viewer`] every handler takes, read from
//! the session cookie. Its principal is re-read from the accounts on every
//! request, so a page applies the same rights as the registry API does at
//! that moment, whatever an earlier page showed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{UiError, UiState};
use crate::admin::Actor;
use crate::auth::Principal;

/// The visitor of a page.
#[derive(Debug, Clone, Default)]
pub struct Viewer {
    /// As the policy sees them; anonymous (no name) when not signed in.
    pub principal: Principal,
    /// The session's CSRF token, which every form that changes something
    /// sends back; empty when not signed in.
    pub csrf: String,
    /// Authentication is switched off (`auth.mode = "none"`): everyone may
    /// do everything, as on the registry API.
    pub open: bool,
}

impl Viewer {
    /// The signed-in user's name.
    pub fn name(&self) -> Option<&str> {
        self.principal.name.as_deref()
    }

    pub fn is_admin(&self) -> bool {
        self.open || self.principal.is_admin
    }

    /// The user's name, or the sign-in page for an anonymous visitor.
    pub fn signed_in(&self) -> Result<&str, UiError> {
        self.name().ok_or(UiError::SignInRequired)
    }

    /// Who runs an administrative command asked for from a page.
    pub fn actor(&self) -> Actor {
        if self.open {
            Actor::System
        } else {
            Actor::User(self.principal.clone())
        }
    }

    /// Refuses a form not sent from one of this session's pages.
    pub fn check_csrf(&self, token: &str) -> Result<(), UiError> {
        let expected = self.csrf.as_bytes();
        let matches = !expected.is_empty()
            && expected.len() == token.len()
            && expected
                .iter()
                .zip(token.as_bytes())
                .fold(0u8, |diff, (a, b)| diff | (a ^ b))
                == 0;
        if matches {
            Ok(())
        } else {
            Err(UiError::StaleForm)
        }
    }
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(_parts: &mut Parts, state: &UiState) -> Result<Self, UiError> {
        if state.auth.is_none() {
            return Ok(Viewer {
                open: true,
                ..Viewer::default()
            });
        }
        Ok(Viewer::default())
    }
}
