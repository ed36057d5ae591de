//! The token endpoint Docker's token protocol names as `realm`: `GET /token`
//! (Basic credentials, repeated `scope`) and `POST /token` (the OAuth2 form
//! with `grant_type=password` or `refresh_token`), plus the public keys as a
//! JWKS document so other services can verify Berth's tokens.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use super::error::ApiError;
use super::headers::{header_str, query_value, query_values};
use super::{ApiResult, AppState};
use crate::auth::scope::Scope;
use crate::auth::{Auth, Principal};
use crate::oci::ErrorCode;

/// The largest OAuth2 form accepted.
const MAX_FORM_BYTES: usize = 64 * 1024;

fn auth(state: &AppState) -> Result<&Arc<Auth>, ApiError> {
    state
        .auth
        .as_ref()
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound).message("authentication is switched off"))
}

pub fn client_address(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip())
}

/// `user:password` from a Basic `Authorization` header.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = header_str(headers, &header::AUTHORIZATION)?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn check_service(auth: &Auth, service: Option<&str>) -> Result<(), ApiError> {
    match service {
        Some(service) if !service.is_empty() && service != auth.service() => {
            Err(ApiError::new(ErrorCode::Denied)
                .status(StatusCode::BAD_REQUEST)
                .message(format!(
                    "this token service is `{}`, not `{service}`",
                    auth.service()
                )))
        }
        _ => Ok(()),
    }
}

async fn token_response(
    state: &AppState,
    principal: &Principal,
    scopes: &[Scope],
    refresh_token: Option<String>,
) -> ApiResult {
    let auth = self::auth(state)?;
    let access = super::cache::grant(state, auth, principal, scopes).await?;
    let issued = auth.issue(principal, access).await?;
    let mut body = json!({
        "token": issued.token,
        "access_token": issued.token,
        "expires_in": issued.expires_in,
        "issued_at": humantime::format_rfc3339_seconds(issued.issued_at).to_string(),
    });
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response())
}

/// `GET /token?service=..&scope=..&offline_token=true` with optional Basic credentials.
pub async fn get_token(State(state): State<AppState>, request: Request) -> ApiResult {
    let auth = auth(&state)?;
    let uri = request.uri();
    check_service(auth, query_value(uri, "service").as_deref())?;
    let scopes: Vec<Scope> = query_values(uri, "scope")
        .iter()
        .flat_map(|s| Scope::parse_list(s))
        .collect();
    let principal = match basic_credentials(request.headers()) {
        Some((user, password)) => {
            auth.login_password(&user, &password, client_address(&request))
                .await?
        }
        None => Principal::default(),
    };
    let refresh_token = if query_value(uri, "offline_token").as_deref() == Some("true") {
        auth.new_refresh_token(&principal).await?
    } else {
        None
    };
    token_response(&state, &principal, &scopes, refresh_token).await
}

/// `POST /token` with an `application/x-www-form-urlencoded` OAuth2 body.
pub async fn post_token(State(state): State<AppState>, request: Request) -> ApiResult {
    let auth = auth(&state)?;
    let address = client_address(&request);
    let body = axum::body::to_bytes(request.into_body(), MAX_FORM_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(ErrorCode::SizeInvalid)
                .status(StatusCode::PAYLOAD_TOO_LARGE)
                .message("the token request form is too large")
        })?;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    check_service(auth, field("service"))?;
    let scopes: Vec<Scope> = form
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| Scope::parse_list(v))
        .collect();
    match field("grant_type") {
        Some("password") => {
            let principal = auth
                .login_password(
                    field("username").unwrap_or(""),
                    field("password").unwrap_or(""),
                    address,
                )
                .await?;
            let refresh_token = if field("access_type") == Some("offline") {
                auth.new_refresh_token(&principal).await?
            } else {
                None
            };
            token_response(&state, &principal, &scopes, refresh_token).await
        }
        Some("refresh_token") => {
            let refresh_token = field("refresh_token").unwrap_or("");
            let principal = auth.login_refresh(refresh_token).await?;
            token_response(&state, &principal, &scopes, Some(refresh_token.to_string())).await
        }
        other => Err(ApiError::new(ErrorCode::Unsupported)
            .status(StatusCode::BAD_REQUEST)
            .message(format!(
                "grant_type `{}` is not supported: use password or refresh_token",
                other.unwrap_or("")
            ))),
    }
}

/// The public halves of every key that may have signed a live token.
pub async fn jwks(State(state): State<AppState>) -> Response {
    let Ok(auth) = auth(&state) else {
        return ApiError::new(ErrorCode::NotFound).into_response();
    };
    match auth.keys().jwks().await {
        Ok(set) => Json(set).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
