//! `/sign-in` and `/sign-out`. Signing in goes through `Auth::sign_in` (the
//! failed-login limits and password check of `/token`) and sets the session
//! cookie; the form carries a token matched against a cookie set with the
//! form (no session exists yet), so another site cannot sign a browser in
//! to an account of its choosing. Signing out deletes the session row, so
//! the old cookie is worthless on every instance.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::input::{UiForm, UiQuery};
use super::super::viewer::{
    ClientAddress, SESSION_COOKIE, clearing_cookie, constant_time_eq, cookie_header, cookie_value,
};
use super::super::{UiError, UiState, Viewer, render, see_other};
use super::layout::Layout;
use crate::auth::{Auth, LoginError, secret};
use crate::metadata::unix_now;

/// The cookie holding the sign-in form's token until a session exists.
const SIGN_IN_COOKIE: &str = "berth_sign_in";

#[derive(askama::Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    layout: Layout,
    csrf: String,
    next: String,
    user: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct SignInQuery {
    #[serde(default)]
    next: String,
    #[serde(default)]
    done: String,
}

#[derive(Deserialize)]
pub struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

#[derive(Deserialize)]
pub struct SignOutForm {
    #[serde(default)]
    csrf: String,
}

/// `next` when it is a path on this site, else `/`: never `//host` or
/// `/\host`, which browsers take for another site.
pub fn local_path(next: &str) -> &str {
    // Printable ASCII only: it goes into `Location` as it is.
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.bytes().all(|b| b.is_ascii_graphic());
    if local { next } else { "/" }
}

/// The fixed sentence a `?done=` notice stands for.
fn notice(done: &str) -> Option<&'static str> {
    match done {
        "password-changed" => Some("Your password was changed. Sign in with the new one."),
        "signed-out" => Some("You have signed out."),
        _ => None,
    }
}

fn auth(state: &UiState) -> Result<&Auth, UiError> {
    state.auth.as_deref().ok_or_else(|| {
        UiError::NotFound("authentication is switched off: there is nothing to sign in to".into())
    })
}

pub async fn show(
    State(state): State<UiState>,
    viewer: Viewer,
    headers: HeaderMap,
    UiQuery(query): UiQuery<SignInQuery>,
) -> Result<Response, UiError> {
    auth(&state)?;
    let next = local_path(&query.next).to_string();
    if viewer.name().is_some() {
        return Ok(see_other(&next));
    }
    // One token per browser until it signs in, so two open tabs both work.
    let existing = cookie_value(&headers, SIGN_IN_COOKIE);
    let csrf = existing
        .clone()
        .unwrap_or_else(|| secret::random_string(32));
    let page = SignInPage {
        layout: Layout::for_viewer(&viewer),
        csrf: csrf.clone(),
        next,
        user: String::new(),
        notice: notice(&query.done),
        error: None,
    };
    let mut response = render(&page)?;
    if existing.is_none() {
        response.headers_mut().append(
            header::SET_COOKIE,
            cookie_header(SIGN_IN_COOKIE, csrf, None, state.secure_cookies()),
        );
    }
    Ok(response)
}

pub async fn sign_in(
    State(state): State<UiState>,
    viewer: Viewer,
    ClientAddress(address): ClientAddress,
    headers: HeaderMap,
    UiForm(form): UiForm<SignInForm>,
) -> Result<Response, UiError> {
    let auth = auth(&state)?;
    let expected = cookie_value(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !constant_time_eq(&expected, &form.csrf) {
        return Err(UiError::StaleForm);
    }
    let next = local_path(&form.next).to_string();
    let refused = |status: StatusCode, message: String| -> Result<Response, UiError> {
        let page = SignInPage {
            layout: Layout::for_viewer(&viewer),
            csrf: expected.clone(),
            next: next.clone(),
            user: form.user.clone(),
            notice: None,
            error: Some(message),
        };
        Ok((status, render(&page)?).into_response())
    };
    match auth.sign_in(&form.user, &form.password, address).await {
        Ok(signed_in) => {
            // A browser signing in again ends the session it had.
            if let Some(old) = cookie_value(&headers, SESSION_COOKIE) {
                auth.sign_out(&old).await?;
            }
            let mut response = see_other(&next);
            let cookies = response.headers_mut();
            cookies.append(
                header::SET_COOKIE,
                cookie_header(
                    SESSION_COOKIE,
                    signed_in.secret,
                    Some(signed_in.expires_at - unix_now()),
                    state.secure_cookies(),
                ),
            );
            cookies.append(
                header::SET_COOKIE,
                clearing_cookie(SIGN_IN_COOKIE, state.secure_cookies()),
            );
            Ok(response)
        }
        Err(e @ (LoginError::BadCredentials | LoginError::AccessTokenNotForPeople)) => {
            refused(StatusCode::UNAUTHORIZED, e.to_string())
        }
        Err(LoginError::RateLimited(seconds)) => {
            let mut response = refused(
                StatusCode::TOO_MANY_REQUESTS,
                UiError::RateLimited(seconds).to_string(),
            )?;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            Ok(response)
        }
        Err(LoginError::Metadata(e)) => Err(e.into()),
    }
}

pub async fn sign_out(
    State(state): State<UiState>,
    viewer: Viewer,
    headers: HeaderMap,
    UiForm(form): UiForm<SignOutForm>,
) -> Result<Response, UiError> {
    let auth = auth(&state)?;
    if viewer.name().is_some() {
        viewer.check_csrf(&form.csrf)?;
        if let Some(secret) = cookie_value(&headers, SESSION_COOKIE) {
            auth.sign_out(&secret).await?;
        }
    }
    // Signed out already (or expired): nothing to end but the cookie.
    let mut response = see_other("/");
    response.headers_mut().append(
        header::SET_COOKIE,
        clearing_cookie(SESSION_COOKIE, state.secure_cookies()),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_ever_a_local_path() {
        assert_eq!(local_path("/r/alice/web"), "/r/alice/web");
        assert_eq!(local_path("/account?x=1"), "/account?x=1");
        for outside in [
            "",
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "/a\\b",
            "evil",
            "/caf\u{e9}",
        ] {
            assert_eq!(local_path(outside), "/", "{outside:?}");
        }
    }
}
