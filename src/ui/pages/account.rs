//! `/account`: the signed-in user's password, access tokens and
//! organizations. Every change is an `admin::Command` run as the viewer, so
//! the rights are `/api/v1`'s; a new token's secret is shown once, on the
//! page that answers the form that created it, and never again.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::super::format;
use super::super::input::{BadPath, UiPath};
use super::super::input::{UiForm, UiQuery};
use super::super::viewer::{ClientAddress, SESSION_COOKIE, clearing_cookie};
use super::super::{UiError, UiState, Viewer, render, see_other};
use super::layout::Layout;
use crate::admin::{AdminError, Command, NewToken, Outcome, parse_lifetime};
use crate::auth::LoginError;
use crate::metadata::unix_now;

/// A page only a signed-in user has: anyone else is sent to sign in first,
/// and back here after.
pub(super) fn signed_in<'v>(viewer: &'v Viewer, here: &str) -> Result<&'v str, Box<Response>> {
    if viewer.open {
        let off = UiError::NotFound("authentication is switched off: there are no accounts".into());
        return Err(Box::new(off.into_response()));
    }
    viewer.name().ok_or_else(|| {
        let next: String = url::form_urlencoded::byte_serialize(here.as_bytes()).collect();
        Box::new(see_other(&format!("/sign-in?next={next}")))
    })
}

/// The JSON view a listing command answers with.
pub(super) fn shown(outcome: Outcome) -> serde_json::Value {
    outcome.into_json().unwrap_or_default()
}

#[derive(askama::Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    user: String,
    notice: Option<&'static str>,
    error: Option<String>,
    organizations: Vec<MembershipRow>,
    tokens: Vec<TokenRow>,
    /// What the token form had, when it is shown again after an error.
    draft: TokenDraft,
}

struct MembershipRow {
    name: String,
    role: &'static str,
}

/// A token as the listing command shows it.
#[derive(Deserialize)]
struct ListedToken {
    id: String,
    description: String,
    scopes: Vec<String>,
    created_at: i64,
    expires_at: Option<i64>,
    revoked: bool,
}

struct TokenRow {
    id: String,
    description: String,
    scopes: String,
    created: String,
    created_exact: String,
    expires: String,
    state: &'static str,
    /// Revoked or expired tokens cannot be revoked again.
    active: bool,
}

#[derive(Default)]
struct TokenDraft {
    description: String,
    scopes: String,
    repository: String,
    expires: String,
}

#[derive(Deserialize)]
pub struct AccountQuery {
    #[serde(default)]
    done: String,
}

fn notice(done: &str) -> Option<&'static str> {
    match done {
        "token-revoked" => Some("The access token was revoked: it no longer logs in."),
        "organization-created" => Some("The organization was created, with you as its admin."),
        _ => None,
    }
}

pub async fn show(
    State(state): State<UiState>,
    viewer: Viewer,
    UiQuery(query): UiQuery<AccountQuery>,
) -> Result<Response, UiError> {
    let user = match signed_in(&viewer, "/account") {
        Ok(user) => user,
        Err(redirect) => return Ok(*redirect),
    };
    let page = account_page(&state, &viewer, user, notice(&query.done), None).await?;
    render(&page)
}

async fn account_page(
    state: &UiState,
    viewer: &Viewer,
    user: &str,
    notice: Option<&'static str>,
    error: Option<String>,
) -> Result<AccountPage, UiError> {
    let listed = shown(
        state
            .admin
            .execute(
                &viewer.origin,
                &viewer.actor(),
                Command::ListTokens {
                    user: Some(user.to_string()),
                },
            )
            .await?,
    );
    let listed: Vec<ListedToken> = serde_json::from_value(listed["tokens"].clone())
        .map_err(|e| UiError::Internal(format!("token listing: {e}")))?;
    let now = unix_now();
    let tokens = listed
        .into_iter()
        .rev()
        .map(|t| {
            let expired = t.expires_at.is_some_and(|at| at <= now);
            TokenRow {
                state: if t.revoked {
                    "revoked"
                } else if expired {
                    "expired"
                } else {
                    "active"
                },
                active: !t.revoked && !expired,
                id: t.id,
                description: t.description,
                scopes: t.scopes.join(" "),
                created: format::relative(t.created_at, now),
                created_exact: format::absolute(t.created_at),
                expires: t.expires_at.map_or("never".into(), format::absolute),
            }
        })
        .collect();
    let organizations = viewer
        .principal
        .memberships
        .iter()
        .map(|(name, role)| MembershipRow {
            name: name.clone(),
            role: role.as_str(),
        })
        .collect();
    Ok(AccountPage {
        layout: Layout::for_viewer(viewer),
        user: user.to_string(),
        notice,
        error,
        organizations,
        tokens,
        draft: TokenDraft {
            expires: "30d".into(),
            ..TokenDraft::default()
        },
    })
}

/// The account page again, with what went wrong and its status.
async fn refused(
    state: &UiState,
    viewer: &Viewer,
    user: &str,
    status: StatusCode,
    error: String,
    draft: Option<TokenDraft>,
) -> Result<Response, UiError> {
    let mut page = account_page(state, viewer, user, None, Some(error)).await?;
    if let Some(draft) = draft {
        page.draft = draft;
    }
    Ok((status, render(&page)?).into_response())
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    repeat: String,
}

/// Changes the password after checking the current one (through the
/// failed-login limits: this form must not be a way to guess it). The
/// change ends every session, this one too, so the browser signs in again.
pub async fn change_password(
    State(state): State<UiState>,
    viewer: Viewer,
    ClientAddress(address): ClientAddress,
    UiForm(form): UiForm<PasswordForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&form.csrf)?;
    let user = viewer.signed_in()?.to_string();
    let auth = state.auth.as_ref().ok_or(UiError::SignInRequired)?;
    if form.new != form.repeat {
        let error = "the new password and its repetition differ".to_string();
        return refused(&state, &viewer, &user, StatusCode::BAD_REQUEST, error, None).await;
    }
    match auth.check_password(&user, &form.current, address).await {
        Ok(_) => {}
        Err(LoginError::BadCredentials | LoginError::AccessTokenNotForPeople) => {
            let error = "the current password is incorrect".to_string();
            return refused(
                &state,
                &viewer,
                &user,
                StatusCode::UNAUTHORIZED,
                error,
                None,
            )
            .await;
        }
        Err(LoginError::RateLimited(seconds)) => {
            let error = UiError::RateLimited(seconds).to_string();
            let mut response = refused(
                &state,
                &viewer,
                &user,
                StatusCode::TOO_MANY_REQUESTS,
                error,
                None,
            )
            .await?;
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
            return Ok(response);
        }
        Err(LoginError::Metadata(e)) => return Err(e.into()),
    }
    let command = Command::SetPassword {
        user: user.clone(),
        password: form.new,
    };
    match state
        .admin
        .execute(&viewer.origin, &viewer.actor(), command)
        .await
    {
        Ok(_) => {}
        Err(AdminError::Invalid(message)) => {
            return refused(
                &state,
                &viewer,
                &user,
                StatusCode::BAD_REQUEST,
                message,
                None,
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    }
    let mut response = see_other("/sign-in?done=password-changed&next=/account");
    response.headers_mut().append(
        header::SET_COOKIE,
        clearing_cookie(SESSION_COOKIE, state.secure_cookies()),
    );
    Ok(response)
}

#[derive(askama::Template)]
#[template(path = "token_created.html")]
struct TokenCreatedPage {
    layout: Layout,
    user: String,
    id: String,
    description: String,
    scopes: String,
    expires: String,
    secret: String,
    login: String,
}

/// Creates an access token from the form's scopes: patterns such as
/// `repository:team/*:pull,push`, and a repository (or `*` pattern) with
/// the actions ticked. Its secret is on the page this answers with.
pub async fn create_token(
    State(state): State<UiState>,
    viewer: Viewer,
    headers: HeaderMap,
    UiForm(fields): UiForm<Vec<(String, String)>>,
) -> Result<Response, UiError> {
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    viewer.check_csrf(field("csrf"))?;
    let user = viewer.signed_in()?.to_string();
    let draft = TokenDraft {
        description: field("description").trim().to_string(),
        scopes: field("scopes").to_string(),
        repository: field("repository").trim().to_string(),
        expires: field("expires").trim().to_string(),
    };
    // One field, space-separated: a textarea's line breaks are control
    // characters, which no form value may hold.
    let mut scopes: Vec<String> = draft
        .scopes
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let actions: Vec<&str> = fields
        .iter()
        .filter(|(k, _)| k == "actions")
        .map(|(_, v)| v.as_str())
        .collect();
    if !draft.repository.is_empty() {
        if actions.is_empty() {
            let error = "tick at least one action for the repository".to_string();
            return refused(
                &state,
                &viewer,
                &user,
                StatusCode::BAD_REQUEST,
                error,
                Some(draft),
            )
            .await;
        }
        scopes.push(format!(
            "repository:{}:{}",
            draft.repository,
            actions.join(",")
        ));
    }
    let expires = match draft.expires.as_str() {
        "" | "none" | "never" => None,
        text => match parse_lifetime(text) {
            Ok(lifetime) => Some(lifetime),
            Err(message) => {
                return refused(
                    &state,
                    &viewer,
                    &user,
                    StatusCode::BAD_REQUEST,
                    message,
                    Some(draft),
                )
                .await;
            }
        },
    };
    let command = Command::CreateToken(NewToken {
        user: None,
        scopes,
        expires,
        description: draft.description.clone(),
    });
    let created = match state
        .admin
        .execute(&viewer.origin, &viewer.actor(), command)
        .await
    {
        Ok(outcome) => shown(outcome),
        Err(AdminError::Invalid(message)) => {
            return refused(
                &state,
                &viewer,
                &user,
                StatusCode::BAD_REQUEST,
                message,
                Some(draft),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    };
    let text = |name: &str| created[name].as_str().unwrap_or_default().to_string();
    let scopes: Vec<&str> = created["scopes"]
        .as_array()
        .map(|list| list.iter().filter_map(|s| s.as_str()).collect())
        .unwrap_or_default();
    let page = TokenCreatedPage {
        layout: Layout::for_viewer(&viewer),
        login: format!(
            "docker login -u {user} --password-stdin {}",
            super::super::registry_host(&state, &headers)
        ),
        id: text("id"),
        description: text("description"),
        scopes: scopes.join(" "),
        expires: created["expires_at"]
            .as_i64()
            .map_or("never".into(), format::absolute),
        secret: text("secret"),
        user,
    };
    render(&page)
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn revoke_token(
    State(state): State<UiState>,
    viewer: Viewer,
    id: Result<UiPath<String>, BadPath>,
    UiForm(form): UiForm<CsrfForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&form.csrf)?;
    let UiPath(id) = id.map_err(|_| UiError::NotFound("no such token".into()))?;
    viewer.signed_in()?;
    state
        .admin
        .execute(&viewer.origin, &viewer.actor(), Command::RevokeToken { id })
        .await?;
    Ok(see_other("/account?done=token-revoked#tokens"))
}

#[derive(Deserialize)]
pub struct OrganizationForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

pub async fn create_organization(
    State(state): State<UiState>,
    viewer: Viewer,
    UiForm(form): UiForm<OrganizationForm>,
) -> Result<Response, UiError> {
    viewer.check_csrf(&form.csrf)?;
    let user = viewer.signed_in()?.to_string();
    let name = form.name.trim().to_string();
    let command = Command::CreateOrganization { name: name.clone() };
    match state
        .admin
        .execute(&viewer.origin, &viewer.actor(), command)
        .await
    {
        Ok(_) => Ok(see_other(&format!(
            "/orgs/{name}?done=organization-created"
        ))),
        Err(AdminError::Invalid(message)) => {
            refused(
                &state,
                &viewer,
                &user,
                StatusCode::BAD_REQUEST,
                message,
                None,
            )
            .await
        }
        Err(AdminError::Conflict(message)) => {
            refused(&state, &viewer, &user, StatusCode::CONFLICT, message, None).await
        }
        Err(e) => Err(e.into()),
    }
}
