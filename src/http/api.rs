//! `/api/v1/`: the account operations of the `berth` CLI as JSON over HTTP,
//! for integrations. Every endpoint authenticates with Basic credentials
//! (a password, or an access token, which is refused for administration);
//! what the caller may do is decided in `auth::admin`.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::token::{basic_credentials, login_error};
use crate::auth::admin::{Actor, AdminError};
use crate::oci::ErrorCode;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me))
        .route("/users", get(list_users).post(add_user))
        .route("/users/{name}", delete(remove_user))
        .route("/users/{name}/password", put(set_password))
        .route("/orgs", get(list_organizations).post(create_organization))
        .route(
            "/orgs/{org}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/visibility/{*name}", get(visibility).put(set_visibility))
        .route("/retention", get(list_retention))
        .route(
            "/retention/{*path}",
            put(set_retention).delete(remove_retention),
        )
        .route("/quotas", get(list_quotas))
        .route(
            "/quotas/{namespace}",
            get(show_quota).put(set_quota).delete(remove_quota),
        )
        .route("/immutable-tags", get(list_immutable_tags))
        .route(
            "/immutable-tags/{*path}",
            put(add_immutable_tags).delete(remove_immutable_tags),
        )
        .fallback(|| async { ApiError::new(ErrorCode::NotFound) })
}

/// The authenticated caller of an `/api/v1/` request; a handler that takes
/// one cannot forget to authenticate.
pub struct Caller(Actor);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(auth) = &state.auth else {
            return Ok(Caller(Actor::System));
        };
        let Some((user, password)) = basic_credentials(&parts.headers) else {
            return Err(ApiError::new(ErrorCode::Unauthorized)
                .message("use Basic authentication with a user name and password")
                .header(
                    axum::http::header::WWW_AUTHENTICATE,
                    "Basic realm=\"berth\"",
                ));
        };
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| a.ip());
        let principal = auth
            .login_password(&user, &password, address)
            .await
            .map_err(login_error)?;
        Ok(Caller(Actor::User(principal)))
    }
}

fn admin_error(error: AdminError) -> ApiError {
    let message = error.to_string();
    match error {
        AdminError::Forbidden(_) => ApiError::new(ErrorCode::Denied).message(message),
        AdminError::NotFound(_) => ApiError::new(ErrorCode::NotFound).message(message),
        AdminError::Conflict(_) => ApiError::new(ErrorCode::Conflict).message(message),
        AdminError::Invalid(_) => ApiError::new(ErrorCode::InvalidRequest).message(message),
        AdminError::Metadata(e) => ApiError::internal(ErrorCode::Unavailable, &e),
    }
}

/// A JSON body, with malformed input reported in the API's error shape.
fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(ErrorCode::InvalidRequest).message(format!("the JSON body is invalid: {e}"))
    })
}

type ApiResult = Result<Response, ApiError>;

fn no_content() -> ApiResult {
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn me(Caller(actor): Caller) -> ApiResult {
    let body = match actor {
        Actor::System => json!({"name": null, "admin": true, "organizations": []}),
        Actor::User(p) => json!({
            "name": p.name,
            "admin": p.is_admin,
            "organizations": p.memberships.iter().map(|(o, r)| json!({"name": o, "role": r.as_str()})).collect::<Vec<_>>(),
            "access_token": p.access_token,
        }),
    };
    Ok(Json(body).into_response())
}

async fn list_users(State(state): State<AppState>, Caller(actor): Caller) -> ApiResult {
    let users = state.admin.users(&actor).await.map_err(admin_error)?;
    Ok(Json(json!({ "users": users })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

async fn add_user(State(state): State<AppState>, Caller(actor): Caller, bytes: Bytes) -> ApiResult {
    let new: NewUser = body(&bytes)?;
    let user = state
        .admin
        .add_user(&actor, &new.name, &new.password, new.admin)
        .await
        .map_err(admin_error)?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

async fn remove_user(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    state
        .admin
        .remove_user(&actor, &name)
        .await
        .map_err(admin_error)?;
    no_content()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let new: NewPassword = body(&bytes)?;
    state
        .admin
        .set_password(&actor, &name, &new.password)
        .await
        .map_err(admin_error)?;
    no_content()
}

async fn list_organizations(State(state): State<AppState>, Caller(actor): Caller) -> ApiResult {
    let organizations = state
        .admin
        .organizations(&actor)
        .await
        .map_err(admin_error)?;
    Ok(Json(json!({ "organizations": organizations })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrganization {
    name: String,
}

async fn create_organization(
    State(state): State<AppState>,
    Caller(actor): Caller,
    bytes: Bytes,
) -> ApiResult {
    let new: NewOrganization = body(&bytes)?;
    let organization = state
        .admin
        .create_organization(&actor, &new.name)
        .await
        .map_err(admin_error)?;
    Ok((StatusCode::CREATED, Json(organization)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    role: String,
}

async fn set_member(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((org, user)): Path<(String, String)>,
    bytes: Bytes,
) -> ApiResult {
    let membership: Membership = body(&bytes)?;
    state
        .admin
        .set_member(&actor, &org, &user, &membership.role)
        .await
        .map_err(admin_error)?;
    no_content()
}

async fn remove_member(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path((org, user)): Path<(String, String)>,
) -> ApiResult {
    state
        .admin
        .remove_member(&actor, &org, &user)
        .await
        .map_err(admin_error)?;
    no_content()
}

#[derive(Deserialize)]
struct TokenFilter {
    user: Option<String>,
}

async fn list_tokens(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Query(filter): Query<TokenFilter>,
) -> ApiResult {
    let tokens = state
        .admin
        .tokens(&actor, filter.user.as_deref())
        .await
        .map_err(admin_error)?;
    Ok(Json(json!({ "tokens": tokens })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    /// Defaults to the caller.
    user: Option<String>,
    scopes: Vec<String>,
    /// A duration such as `30d`; no expiry when absent.
    expires: Option<String>,
    #[serde(default)]
    description: String,
}

async fn create_token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    bytes: Bytes,
) -> ApiResult {
    let new: NewToken = body(&bytes)?;
    let user = match (&new.user, &actor) {
        (Some(user), _) => user.clone(),
        (None, Actor::User(p)) => p.name.clone().unwrap_or_default(),
        (None, Actor::System) => {
            return Err(ApiError::new(ErrorCode::InvalidRequest).message("name the token's `user`"));
        }
    };
    let expires = match &new.expires {
        Some(text) => Some(humantime::parse_duration(text).map_err(|_| {
            ApiError::new(ErrorCode::InvalidRequest)
                .message(format!("`{text}` is not a duration such as 30d"))
        })?),
        None => None,
    };
    let created = state
        .admin
        .create_token(&actor, &user, &new.scopes, expires, &new.description)
        .await
        .map_err(admin_error)?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

async fn revoke_token(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(id): Path<String>,
) -> ApiResult {
    state
        .admin
        .revoke_token(&actor, &id)
        .await
        .map_err(admin_error)?;
    no_content()
}

async fn visibility(
    State(state): State<AppState>,
    Caller(_): Caller,
    Path(name): Path<String>,
) -> ApiResult {
    let via = state.admin.visibility(&name).await.map_err(admin_error)?;
    Ok(Json(json!({"name": name, "public": via.is_some(), "public_via": via})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Visibility {
    public: bool,
}

async fn set_visibility(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(name): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let visibility: Visibility = body(&bytes)?;
    state
        .admin
        .set_visibility(&actor, &name, visibility.public)
        .await
        .map_err(admin_error)?;
    no_content()
}

#[derive(Deserialize)]
struct PatternQuery {
    pattern: String,
}

async fn list_immutable_tags(State(state): State<AppState>, Caller(_): Caller) -> ApiResult {
    let rules = state.admin.immutable_tags().await.map_err(admin_error)?;
    let rules: Vec<_> = rules
        .into_iter()
        .map(|(path, pattern)| json!({"path": path, "pattern": pattern}))
        .collect();
    Ok(Json(json!({ "immutable_tags": rules })).into_response())
}

async fn add_immutable_tags(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(path): Path<String>,
    Query(query): Query<PatternQuery>,
) -> ApiResult {
    state
        .admin
        .set_immutable_tags(&actor, &path, &query.pattern, true)
        .await
        .map_err(admin_error)?;
    no_content()
}

async fn remove_immutable_tags(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(path): Path<String>,
    Query(query): Query<PatternQuery>,
) -> ApiResult {
    state
        .admin
        .set_immutable_tags(&actor, &path, &query.pattern, false)
        .await
        .map_err(admin_error)?;
    no_content()
}

async fn list_quotas(State(state): State<AppState>, Caller(actor): Caller) -> ApiResult {
    let quotas = state.admin.quotas(&actor).await.map_err(admin_error)?;
    Ok(Json(json!({ "quotas": quotas })).into_response())
}

async fn show_quota(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(namespace): Path<String>,
) -> ApiResult {
    let quota = state
        .admin
        .quota(&actor, &namespace)
        .await
        .map_err(admin_error)?;
    Ok(Json(quota).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewQuota {
    /// A size such as `10GiB`.
    limit: String,
}

async fn set_quota(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(namespace): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let quota: NewQuota = body(&bytes)?;
    let limit = crate::auth::admin::parse_size(&quota.limit)
        .map_err(|e| ApiError::new(ErrorCode::InvalidRequest).message(e))?;
    state
        .admin
        .set_quota(&actor, &namespace, Some(limit))
        .await
        .map_err(admin_error)?;
    no_content()
}

async fn remove_quota(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(namespace): Path<String>,
) -> ApiResult {
    state
        .admin
        .set_quota(&actor, &namespace, None)
        .await
        .map_err(admin_error)?;
    no_content()
}

async fn list_retention(State(state): State<AppState>, Caller(_): Caller) -> ApiResult {
    let policies = state
        .admin
        .retention_policies()
        .await
        .map_err(admin_error)?;
    Ok(Json(json!({ "retention": policies })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRetention {
    keep_last: Option<u64>,
    keep_days: Option<u64>,
    #[serde(default)]
    exclude: Vec<String>,
}

async fn set_retention(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(path): Path<String>,
    bytes: Bytes,
) -> ApiResult {
    let new: NewRetention = body(&bytes)?;
    let policy = crate::retention::RetentionPolicy {
        path,
        keep_last: new.keep_last,
        keep_days: new.keep_days,
        exclude: new.exclude,
    };
    state
        .admin
        .set_retention(&actor, &policy)
        .await
        .map_err(admin_error)?;
    no_content()
}

async fn remove_retention(
    State(state): State<AppState>,
    Caller(actor): Caller,
    Path(path): Path<String>,
) -> ApiResult {
    state
        .admin
        .remove_retention(&actor, &path)
        .await
        .map_err(admin_error)?;
    no_content()
}
