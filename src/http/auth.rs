//! The check every `/v2/` request passes: which scope the route needs, the
//! bearer token that must grant it, and the `WWW-Authenticate` challenge
//! that tells a client where to get one; and the one check a route's scope
//! cannot express, where a cross-repository mount may take its blob from
//! (asking `auth` what the token's user may pull, and `registry` whether
//! the source holds the blob).

use axum::http::{HeaderMap, Method, header};

use super::AppState;
use super::error::ApiError;
use super::headers::{header_str, request_authority};
use super::route::Route;
use crate::auth::Principal;
use crate::auth::scope::{Access, Actions, Scope};
use crate::auth::token::Claims;
use crate::oci::{Digest, ErrorCode, RepositoryName};

/// What a request on `route` with `method` needs; empty for `/v2/` itself,
/// which needs only a valid token.
pub fn required_scopes(route: &Route<'_>, method: &Method) -> Vec<Scope> {
    let repository = |name: &str, actions: Actions| {
        vec![Scope::Repository {
            name: name.to_string(),
            actions,
        }]
    };
    let reading = matches!(*method, Method::GET | Method::HEAD);
    let deleting = *method == Method::DELETE;
    let write = Actions::PULL | Actions::PUSH;
    match route {
        Route::Catalog => vec![Scope::Catalog],
        Route::Tags { name } | Route::Referrers { name, .. } => repository(name, Actions::PULL),
        Route::Manifest { name, .. } | Route::Blob { name, .. } => repository(
            name,
            if reading {
                Actions::PULL
            } else if deleting {
                Actions::DELETE
            } else {
                write
            },
        ),
        Route::UploadStart { name } => repository(name, write),
        // Cancelling an upload is part of pushing, not a delete of content.
        Route::Upload { name, .. } => repository(name, if reading { Actions::PULL } else { write }),
    }
}

/// The token endpoint clients are sent to.
fn realm(state: &AppState, headers: &HeaderMap) -> String {
    match &state.public_url {
        Some(base) => format!("{base}/token"),
        // Without a configured public URL, the address the client used.
        None => format!(
            "{}://{}/token",
            if state.tls { "https" } else { "http" },
            request_authority(headers).unwrap_or("localhost")
        ),
    }
}

fn challenge(
    state: &AppState,
    headers: &HeaderMap,
    scopes: &[Scope],
    error: Option<&str>,
) -> ApiError {
    let service = state
        .auth
        .as_ref()
        .map(|a| a.service().to_string())
        .unwrap_or_default();
    let mut value = format!(
        "Bearer realm=\"{}\",service=\"{service}\"",
        realm(state, headers)
    );
    if !scopes.is_empty() {
        let scopes: Vec<String> = scopes.iter().map(Scope::to_string).collect();
        value.push_str(&format!(",scope=\"{}\"", scopes.join(" ")));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{error}\""));
    }
    let message = match error {
        Some("insufficient_scope") => {
            "authentication required: the token does not grant this access"
        }
        Some(_) => "authentication required: the token is invalid or expired",
        None => "authentication required",
    };
    ApiError::new(ErrorCode::Unauthorized)
        .message(message)
        .detail(serde_json::json!(
            scopes.iter().map(Access::from_scope).collect::<Vec<_>>()
        ))
        .header(header::WWW_AUTHENTICATE, value)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = header_str(headers, &header::AUTHORIZATION)?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Checks the request's token against `needed`. Returns the token's claims,
/// or `None` when authentication is switched off.
pub async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    needed: &[Scope],
) -> Result<Option<Claims>, ApiError> {
    authorize_or_refuse(state, headers, needed)
        .await
        .map_err(|(error, _)| error)
}

/// [`authorize`], with the valid token's claims when the refusal was for
/// want of a scope (so the refusal can be recorded against its holder).
pub async fn authorize_or_refuse(
    state: &AppState,
    headers: &HeaderMap,
    needed: &[Scope],
) -> Result<Option<Claims>, (ApiError, Option<Claims>)> {
    let Some(auth) = &state.auth else {
        return Ok(None);
    };
    let Some(token) = bearer(headers) else {
        return Err((challenge(state, headers, needed, None), None));
    };
    let claims = match auth.verify(token).await {
        Ok(claims) => claims,
        Err(crate::auth::token::TokenError::Invalid(reason)) => {
            tracing::debug!(%reason, "token refused");
            return Err((
                challenge(state, headers, needed, Some("invalid_token")),
                None,
            ));
        }
        Err(e) => return Err((e.into(), None)),
    };
    if needed
        .iter()
        .all(|scope| Access::covers(&claims.access, scope))
    {
        Ok(Some(claims))
    } else {
        let error = challenge(state, headers, needed, Some("insufficient_scope"));
        Err((error, Some(claims)))
    }
}

/// Where a cross-repository mount may take its blob from.
pub enum MountSource {
    /// The repository named by `from`, which the token may pull.
    Repository(RepositoryName),
    /// No `from`: any repository holding the blob that this accepts.
    AnyReadable(Box<dyn Fn(&str) -> bool + Send + Sync>),
    /// Nowhere: the request becomes an ordinary upload, as if the blob
    /// were absent, so it tells nothing about a repository the caller may
    /// not read.
    Nowhere,
}

/// The caller a token was issued to, as they stand now (anonymous when
/// gone, or for an anonymous token).
pub(super) async fn caller(
    auth: &crate::auth::Auth,
    claims: &Claims,
) -> Result<Principal, ApiError> {
    Ok(auth
        .principal(&claims.sub, claims.berth_access_token.as_deref())
        .await?
        .unwrap_or_default())
}

/// Decides where `POST /v2/<name>/blobs/uploads/?mount=<digest>[&from=..]`
/// may mount from. `claims` passed [`authorize`] for `needed`. A `from` the
/// token may pull is used; one it may not, but whose blob its user could
/// read, is answered with a challenge for both scopes (`needed` and pull on
/// `from`), so the client fetches a wider token and retries, as Docker and
/// containerd do; one the user may not read, or without that blob, is
/// nowhere. Without `from`, any repository the user may pull, by their
/// rights (which no token's scopes could list): that tells them only that
/// the blob is somewhere they can already read.
pub async fn mount_source(
    state: &AppState,
    headers: &HeaderMap,
    claims: Option<&Claims>,
    needed: &[Scope],
    digest: &Digest,
    from: Option<&str>,
) -> Result<MountSource, ApiError> {
    let from = match from.map(str::parse::<RepositoryName>) {
        Some(Ok(from)) => Some(from),
        Some(Err(_)) => return Ok(MountSource::Nowhere),
        None => None,
    };
    let Some(auth) = &state.auth else {
        return Ok(match from {
            Some(from) => MountSource::Repository(from),
            None => MountSource::AnyReadable(Box::new(|_: &str| true)),
        });
    };
    let Some(claims) = claims else {
        return Ok(MountSource::Nowhere);
    };
    let Some(from) = from else {
        let readable = auth.pull_check(caller(auth, claims).await?).await?;
        return Ok(MountSource::AnyReadable(Box::new(readable)));
    };
    let pull_from = Scope::Repository {
        name: from.to_string(),
        actions: Actions::PULL,
    };
    if Access::covers(&claims.access, &pull_from) {
        return Ok(MountSource::Repository(from));
    }
    // The blob's presence is looked up only once the caller may read `from`.
    let may_pull = auth.pull_check(caller(auth, claims).await?).await?;
    if may_pull(from.as_str()) && state.registry.holds_blob(&from, digest).await? {
        let mut wider = needed.to_vec();
        wider.push(pull_from);
        return Err(challenge(
            state,
            headers,
            &wider,
            Some("insufficient_scope"),
        ));
    }
    Ok(MountSource::Nowhere)
}
