//! Who is looking at a page: the [`Viewer`] every handler takes, read from
//! the session cookie ([`SESSION_COOKIE`], built by [`cookie_header`]). Its principal is re-read from the accounts on every
//! request, so a page applies the same rights as the registry API does at
//! that moment, whatever an earlier page showed.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use cookie::{Cookie, SameSite};

use super::{UiError, UiState};
use crate::admin::Actor;
use crate::auth::Principal;
use crate::origin::{AuthMethod, Origin};

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
    /// This request as the audit log and events record it, with the viewer as its actor.
    pub origin: Origin,
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
    /// With authentication off there is no session to ride on (the API
    /// itself takes anyone's request), so only the same-origin check that
    /// guards every UI `POST` applies.
    pub fn check_csrf(&self, token: &str) -> Result<(), UiError> {
        if self.open || (!self.csrf.is_empty() && constant_time_eq(&self.csrf, token)) {
            Ok(())
        } else {
            Err(UiError::StaleForm)
        }
    }
}

impl FromRequestParts<UiState> for Viewer {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &UiState) -> Result<Self, UiError> {
        let origin = Origin::of_request(&parts.method, &parts.headers, &parts.extensions);
        let anonymous = Viewer {
            origin: origin.clone(),
            ..Viewer::default()
        };
        let Some(auth) = &state.auth else {
            return Ok(Viewer {
                open: true,
                ..anonymous
            });
        };
        // An unknown, expired or signed-out cookie is simply no one: the
        // page shows what an anonymous visitor may see.
        let Some(secret) = cookie_value(&parts.headers, SESSION_COOKIE) else {
            return Ok(anonymous);
        };
        Ok(match auth.session(&secret).await? {
            Some(session) => Viewer {
                origin: Origin {
                    actor: session.principal.name.clone(),
                    auth: AuthMethod::Session,
                    ..origin
                },
                principal: session.principal,
                csrf: session.csrf,
                open: false,
            },
            None => anonymous,
        })
    }
}

/// The client's address, for the failed-login limits (`None` when the
/// connection did not say, as in a router driven without a listener).
pub struct ClientAddress(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ConnectInfo(address)| address.ip()),
        ))
    }
}

/// Whether two tokens are equal, in a time that does not tell how much of
/// a guess was right.
pub fn constant_time_eq(expected: &str, given: &str) -> bool {
    expected.len() == given.len()
        && expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// The cookie holding a signed-in browser's session secret.
pub const SESSION_COOKIE: &str = "berth_session";

/// The value of the request's cookie `name`, if it sent one.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|cookie| cookie.name() == name && !cookie.value().is_empty())
        .map(|cookie| cookie.value().to_string())
}

/// A cookie only this origin's pages send and no script reads: `HttpOnly`,
/// `SameSite=Lax` (sent on a link followed from elsewhere, never on another
/// site's form post), `Path=/`, and `Secure` when Berth serves TLS.
/// `max_age` `None` makes it last until the browser closes.
pub fn cookie_header(
    name: &'static str,
    value: String,
    max_age: Option<i64>,
    secure: bool,
) -> HeaderValue {
    let mut cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure);
    if let Some(seconds) = max_age {
        cookie = cookie.max_age(cookie::time::Duration::seconds(seconds.max(0)));
    }
    HeaderValue::from_str(&cookie.build().to_string())
        .expect("cookie names and base64url values are valid header text")
}

/// The `Set-Cookie` value that makes a browser forget cookie `name`.
pub fn clearing_cookie(name: &'static str, secure: bool) -> HeaderValue {
    cookie_header(name, String::new(), Some(0), secure)
}
