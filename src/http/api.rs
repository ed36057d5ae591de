//! `/api/v1/`: the administrative commands of the `berth` CLI as JSON over
//! HTTP, for integrations. Each handler turns its path and body into an
//! [`admin::Command`](crate::admin::Command) and answers with its
//! [`Outcome`]; what the caller may do is decided in `admin`. Every
//! administrative endpoint authenticates with Basic credentials (a
//! password, or an access token, which is refused for administration); the
//! browsing endpoints (`/repositories…`, in `browse.rs`) also answer
//! anonymous callers and `Bearer` access tokens. Paths, queries and bodies
//! are taken with `input.rs`'s extractors, which check every string and
//! answer what they cannot read in the API's error shape.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use serde::Deserialize;

use super::AppState;
use super::error::ApiError;
use super::input::{ApiJson, ApiPath, ApiQuery};
use super::token::basic_credentials;
use crate::admin::{
    Actor, AuditQuery, Command, Kind, NewRetention, NewToken, NewUser, NewWebhook, Outcome,
};
use crate::oci::ErrorCode;
use crate::origin::Origin;
use crate::policy::parse_size;

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
        .route("/audit", get(read_audit))
        .route("/webhooks", get(list_all_webhooks))
        .route(
            "/webhooks/{name}/deliveries",
            get(config_webhook_deliveries),
        )
        .route(
            "/webhooks/{name}/test",
            axum::routing::post(test_config_webhook),
        )
        .route(
            "/webhooks/{name}/deliveries/{id}/redeliver",
            axum::routing::post(redeliver_config_webhook),
        )
        .route(
            "/namespaces/{namespace}/webhooks",
            get(list_webhooks).post(add_webhook),
        )
        .route(
            "/namespaces/{namespace}/webhooks/{name}",
            delete(remove_webhook),
        )
        .route(
            "/namespaces/{namespace}/webhooks/{name}/deliveries",
            get(webhook_deliveries),
        )
        .route(
            "/namespaces/{namespace}/webhooks/{name}/test",
            axum::routing::post(test_webhook),
        )
        .route(
            "/namespaces/{namespace}/webhooks/{name}/deliveries/{id}/redeliver",
            axum::routing::post(redeliver),
        )
        .route("/repositories", get(super::browse::repositories))
        .route("/repositories/{*path}", get(super::browse::repository))
        .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed) })
        .fallback(|| async { ApiError::new(ErrorCode::NotFound) })
}

/// The authenticated caller of an `/api/v1/` request; a handler that takes
/// one cannot forget to authenticate.
pub struct Caller(Actor, Origin);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let origin = Origin::of_request(&parts.method, &parts.headers, &parts.extensions);
        let Some(auth) = &state.auth else {
            return Ok(Caller(Actor::System, origin));
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
        let principal = auth.login_password(&user, &password, address).await?;
        let origin = super::origin::with_principal(origin, &principal);
        Ok(Caller(Actor::User(principal), origin))
    }
}

/// Runs `command` for the caller and answers with its outcome: 204 for a
/// change, 201 and the new thing, or 200 and what was asked for.
async fn run(
    state: &AppState,
    Caller(actor, origin): Caller,
    command: Command,
) -> Result<Response, ApiError> {
    let outcome: Outcome = state.admin.execute(&origin, &actor, command).await?;
    let status = match outcome.kind() {
        Kind::Changed => return Ok(StatusCode::NO_CONTENT.into_response()),
        Kind::Created => StatusCode::CREATED,
        Kind::Shown => StatusCode::OK,
    };
    let json = outcome.into_json().unwrap_or_default();
    Ok((status, Json(json)).into_response())
}

type ApiResult = Result<Response, ApiError>;

async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult {
    run(&state, caller, Command::Whoami).await
}

async fn list_users(State(state): State<AppState>, caller: Caller) -> ApiResult {
    run(&state, caller, Command::ListUsers).await
}

async fn add_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewUser>,
) -> ApiResult {
    run(&state, caller, Command::AddUser(new)).await
}

async fn remove_user(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
) -> ApiResult {
    run(&state, caller, Command::RemoveUser { user }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPassword {
    password: String,
}

async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(user): ApiPath<String>,
    ApiJson(NewPassword { password }): ApiJson<NewPassword>,
) -> ApiResult {
    run(&state, caller, Command::SetPassword { user, password }).await
}

async fn list_organizations(State(state): State<AppState>, caller: Caller) -> ApiResult {
    run(&state, caller, Command::ListOrganizations).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrganization {
    name: String,
}

async fn create_organization(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(NewOrganization { name }): ApiJson<NewOrganization>,
) -> ApiResult {
    run(&state, caller, Command::CreateOrganization { name }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    role: String,
}

async fn set_member(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((organization, user)): ApiPath<(String, String)>,
    ApiJson(Membership { role }): ApiJson<Membership>,
) -> ApiResult {
    let command = Command::SetMember {
        organization,
        user,
        role,
    };
    run(&state, caller, command).await
}

async fn remove_member(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((organization, user)): ApiPath<(String, String)>,
) -> ApiResult {
    run(&state, caller, Command::RemoveMember { organization, user }).await
}

#[derive(Deserialize)]
struct TokenFilter {
    user: Option<String>,
}

async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(TokenFilter { user }): ApiQuery<TokenFilter>,
) -> ApiResult {
    run(&state, caller, Command::ListTokens { user }).await
}

async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(new): ApiJson<NewToken>,
) -> ApiResult {
    run(&state, caller, Command::CreateToken(new)).await
}

async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> ApiResult {
    run(&state, caller, Command::RevokeToken { id }).await
}

async fn visibility(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<String>,
) -> ApiResult {
    run(&state, caller, Command::ShowVisibility { path }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Visibility {
    public: bool,
}

async fn set_visibility(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<String>,
    ApiJson(Visibility { public }): ApiJson<Visibility>,
) -> ApiResult {
    run(&state, caller, Command::SetVisibility { path, public }).await
}

#[derive(Deserialize)]
struct PatternQuery {
    pattern: String,
}

async fn list_immutable_tags(State(state): State<AppState>, caller: Caller) -> ApiResult {
    run(&state, caller, Command::ListImmutableTags).await
}

async fn add_immutable_tags(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<String>,
    ApiQuery(PatternQuery { pattern }): ApiQuery<PatternQuery>,
) -> ApiResult {
    let command = Command::SetImmutableTags {
        path,
        pattern,
        immutable: true,
    };
    run(&state, caller, command).await
}

async fn remove_immutable_tags(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<String>,
    ApiQuery(PatternQuery { pattern }): ApiQuery<PatternQuery>,
) -> ApiResult {
    let command = Command::SetImmutableTags {
        path,
        pattern,
        immutable: false,
    };
    run(&state, caller, command).await
}

async fn list_quotas(State(state): State<AppState>, caller: Caller) -> ApiResult {
    run(&state, caller, Command::ListQuotas).await
}

async fn show_quota(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(namespace): ApiPath<String>,
) -> ApiResult {
    run(&state, caller, Command::ShowQuota { namespace }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewQuota {
    /// A size such as `10GiB`.
    limit: String,
}

async fn set_quota(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(namespace): ApiPath<String>,
    ApiJson(NewQuota { limit }): ApiJson<NewQuota>,
) -> ApiResult {
    let limit = Some(parse_size(&limit)?);
    run(&state, caller, Command::SetQuota { namespace, limit }).await
}

async fn remove_quota(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(namespace): ApiPath<String>,
) -> ApiResult {
    let command = Command::SetQuota {
        namespace,
        limit: None,
    };
    run(&state, caller, command).await
}

async fn list_retention(State(state): State<AppState>, caller: Caller) -> ApiResult {
    run(&state, caller, Command::ListRetention).await
}

async fn set_retention(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<String>,
    ApiJson(new): ApiJson<NewRetention>,
) -> ApiResult {
    run(&state, caller, Command::SetRetention(new.for_path(path))).await
}

async fn remove_retention(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(path): ApiPath<String>,
) -> ApiResult {
    run(&state, caller, Command::RemoveRetention { path }).await
}

async fn read_audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> ApiResult {
    run(&state, caller, Command::ReadAudit(query)).await
}

async fn list_all_webhooks(State(state): State<AppState>, caller: Caller) -> ApiResult {
    run(&state, caller, Command::ListWebhooks { namespace: None }).await
}

async fn list_webhooks(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(namespace): ApiPath<String>,
) -> ApiResult {
    let namespace = Some(namespace);
    run(&state, caller, Command::ListWebhooks { namespace }).await
}

async fn add_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(namespace): ApiPath<String>,
    ApiJson(new): ApiJson<NewWebhook>,
) -> ApiResult {
    let new = NewWebhook { namespace, ..new };
    run(&state, caller, Command::AddWebhook(new)).await
}

async fn remove_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> ApiResult {
    run(&state, caller, Command::RemoveWebhook { namespace, name }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    /// Only the dead-letter list.
    #[serde(default)]
    dead: bool,
}

async fn webhook_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> ApiResult {
    let command = Command::WebhookDeliveries {
        namespace,
        name,
        dead_only: query.dead,
    };
    run(&state, caller, command).await
}

async fn config_webhook_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> ApiResult {
    let command = Command::WebhookDeliveries {
        namespace: String::new(),
        name,
        dead_only: query.dead,
    };
    run(&state, caller, command).await
}

async fn test_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((namespace, name)): ApiPath<(String, String)>,
) -> ApiResult {
    run(&state, caller, Command::TestWebhook { namespace, name }).await
}

async fn test_config_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    let namespace = String::new();
    run(&state, caller, Command::TestWebhook { namespace, name }).await
}

async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((namespace, name, delivery)): ApiPath<(String, String, i64)>,
) -> ApiResult {
    let command = Command::Redeliver {
        namespace,
        name,
        delivery,
    };
    run(&state, caller, command).await
}

async fn redeliver_config_webhook(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((name, delivery)): ApiPath<(String, i64)>,
) -> ApiResult {
    let command = Command::Redeliver {
        namespace: String::new(),
        name,
        delivery,
    };
    run(&state, caller, command).await
}
