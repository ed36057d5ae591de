//! The HTTP face of the registry: routing, request parsing, response headers
//! and error bodies. Handlers stay thin: they validate what the client sent,
//! call `registry`, and shape the answer.
//!
//! Called by `server`, which builds the router. Calls `registry` for the
//! content, `cache` for the proxy namespaces (`cache.rs`, chosen by name
//! before the registry's handlers), `auth` for tokens and logins, `admin` for `/api/v1`, `policy`
//! (sizes), `metrics` and `oci`; never a store: `error.rs` names the stores'
//! error types only to turn them into wire errors.

mod api;
mod auth;
mod blobs;
mod browse;
mod cache;
mod catalog;
mod error;
mod headers;
mod input;
mod manifests;
mod observe;
mod origin;
mod referrers;
mod route;
mod token;
mod uploads;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::admin::Admin;
use crate::auth::Auth;
use crate::metrics::Metrics;
use crate::oci::{Digest, ErrorCode, RepositoryName, Tag};
use crate::registry::Registry;
pub use error::ApiError;
use route::Route;

pub type ApiResult = Result<Response, ApiError>;

#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// `None` when authentication is switched off.
    pub auth: Option<Arc<Auth>>,
    pub admin: Arc<Admin>,
    /// The pull-through cache, serving the `[[proxy]]` namespaces.
    pub cache: Option<Arc<crate::cache::Cache>>,
    pub metrics: Arc<Metrics>,
    /// External base URL (no trailing slash) for `Location` headers; relative locations when unset.
    pub public_url: Option<String>,
    /// Served over TLS: URLs built from `Host` are `https`.
    pub tls: bool,
}

impl AppState {
    fn location(&self, path: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{base}{path}"),
            None => path.to_string(),
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2/", any(api_base))
        .route("/v2", any(api_base))
        .route("/v2/{*rest}", any(dispatch))
        .route("/token", get(token::get_token).post(token::post_token))
        .route("/token/jwks.json", get(token::jwks))
        .route("/.well-known/jwks.json", get(token::jwks))
        .nest("/api/v1", api::router())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .method_not_allowed_fallback(|| async { ApiError::new(ErrorCode::MethodNotAllowed) })
        .fallback(|| async { ApiError::new(ErrorCode::NotFound) })
        .layer(SetResponseHeaderLayer::if_not_present(
            headers::DOCKER_DISTRIBUTION_API_VERSION,
            HeaderValue::from_static("registry/2.0"),
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        // Nothing the registry serves is a page: a manifest, a blob or an
        // error body pushed by a user is never sniffed into HTML, runs no
        // script, loads nothing and cannot be framed. A route that serves
        // pages (a web UI) sets its own policy, which these leave alone.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'; sandbox"),
        ))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .with_state(state)
}

async fn api_base(State(state): State<AppState>, request: Request) -> ApiResult {
    match *request.method() {
        Method::GET | Method::HEAD => {
            auth::authorize(&state, request.headers(), &[]).await?;
            Ok(([(header::CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        _ => method_not_allowed("GET,HEAD"),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let pool = state.registry.pool_stats();
    let uploads = match state.registry.upload_count().await {
        Ok(count) => Some(count),
        Err(e) => {
            tracing::warn!(error = %e, "cannot count upload sessions");
            None
        }
    };
    let text = state.metrics.render(pool.connections, pool.idle, uploads);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn ready(State(state): State<AppState>) -> Response {
    match state.registry.ready().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }
}

fn parse_name(raw: &str) -> Result<RepositoryName, ApiError> {
    raw.parse().map_err(|e: crate::oci::name::NameError| {
        ApiError::new(ErrorCode::NameInvalid)
            .message(e.to_string())
            .detail(serde_json::json!({"name": raw}))
    })
}

fn parse_tag(raw: &str) -> Result<Tag, ApiError> {
    raw.parse().map_err(|e: crate::oci::name::NameError| {
        ApiError::new(ErrorCode::TagInvalid)
            .message(e.to_string())
            .detail(serde_json::json!({"tag": raw}))
    })
}

fn parse_digest(raw: &str) -> Result<Digest, ApiError> {
    raw.parse().map_err(|e: crate::oci::digest::DigestError| {
        ApiError::new(ErrorCode::DigestInvalid)
            .message(e.to_string())
            .detail(serde_json::json!({"digest": raw}))
    })
}

/// 405, with the methods the endpoint does answer.
fn method_not_allowed(allowed: &'static str) -> ApiResult {
    Err(ApiError::new(ErrorCode::MethodNotAllowed).header(header::ALLOW, allowed))
}

/// Every `/v2/<name>/...` request: the path is parsed once into a route,
/// then the method picks the handler.
async fn dispatch(State(state): State<AppState>, request: Request) -> Response {
    let mut subject = None;
    let mut response = match route_request(&state, request, &mut subject).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    if let Some(subject) = subject {
        response.extensions_mut().insert(observe::Subject(subject));
    }
    response
}

async fn route_request(
    state: &AppState,
    request: Request,
    subject: &mut Option<String>,
) -> ApiResult {
    let path = request
        .uri()
        .path()
        .strip_prefix("/v2/")
        .unwrap_or("")
        .to_string();
    let Some(route) = route::parse(&path) else {
        return Err(ApiError::new(ErrorCode::NotFound));
    };
    let method = request.method().clone();
    // A proxy namespace's repositories are the cache's, beside the
    // registry's own: reads go there, writes are refused.
    let proxied = cache::proxied(state, &route, &method, request.uri()).await?;
    let needed = auth::required_scopes(&route, &method);
    let from = crate::origin::Origin::of_request(&method, request.headers(), request.extensions());
    let claims = match auth::authorize_or_refuse(state, request.headers(), &needed).await {
        Ok(claims) => claims,
        Err((error, Some(claims))) => {
            // A caller who proved who they are but lacks the scope: that
            // refusal is worth a line in the audit log; a bare challenge is not.
            let origin = origin::with_claims(from, Some(&claims));
            audit_refusal(state, origin, &route, &method, &error).await;
            return Err(error);
        }
        Err((error, None)) => return Err(error),
    };
    let origin = origin::with_claims(from, claims.as_ref());
    *subject = claims.as_ref().map(|c| {
        if c.sub.is_empty() {
            "anonymous".to_string()
        } else {
            c.sub.clone()
        }
    });
    let answer = match proxied {
        Some(proxied) => {
            cache::handle(state, &origin, proxied, route.clone(), &method, request).await
        }
        None => {
            route_to_handler(
                state,
                &origin,
                route.clone(),
                &method,
                claims.as_ref(),
                &needed,
                request,
            )
            .await
        }
    };
    if let Err(error) = &answer
        && error.code() == ErrorCode::Denied
    {
        audit_refusal(state, origin, &route, &method, error).await;
    }
    answer
}

/// Records a request refused by a rule (an immutable tag, a quota) or for
/// want of a scope.
async fn audit_refusal(
    state: &AppState,
    origin: crate::metadata::Origin,
    route: &Route<'_>,
    method: &Method,
    error: &ApiError,
) {
    let (action, repository) = route.audit_action(method);
    let mut entry = crate::metadata::AuditEntry::new(action, crate::metadata::AuditOutcome::Denied)
        .detail(serde_json::json!({"code": error.code().code(), "message": error.message_text()}));
    if let Some(repository) = repository {
        entry = entry.repository(repository);
    }
    state.registry.audit(origin, entry).await;
}

/// The handler for the route and method, with the caller's `claims` (which
/// passed the `needed` scopes) and `origin`.
async fn route_to_handler(
    state: &AppState,
    origin: &crate::metadata::Origin,
    route: Route<'_>,
    method: &Method,
    claims: Option<&crate::auth::token::Claims>,
    needed: &[crate::auth::scope::Scope],
    request: Request,
) -> ApiResult {
    let method = method.clone();
    match route {
        Route::Catalog => match method {
            Method::GET | Method::HEAD => {
                catalog::list_repositories(state, claims.cloned(), request).await
            }
            _ => method_not_allowed("GET,HEAD"),
        },
        Route::Tags { name } => {
            let name = parse_name(name)?;
            match method {
                Method::GET | Method::HEAD => catalog::list_tags(state, &name, request).await,
                _ => method_not_allowed("GET,HEAD"),
            }
        }
        Route::Manifest { name, reference } => {
            let name = parse_name(name)?;
            match method {
                Method::GET | Method::HEAD => {
                    manifests::get_manifest(state, origin, &name, reference, request).await
                }
                Method::PUT => {
                    manifests::put_manifest(state, origin, &name, reference, request).await
                }
                Method::DELETE => manifests::delete_manifest(state, origin, &name, reference).await,
                _ => method_not_allowed("GET,HEAD,PUT,DELETE"),
            }
        }
        Route::Referrers { name, digest } => {
            let name = parse_name(name)?;
            match method {
                Method::GET | Method::HEAD => {
                    referrers::list_referrers(state, &name, digest, request).await
                }
                _ => method_not_allowed("GET,HEAD"),
            }
        }
        Route::Blob { name, digest } => {
            let name = parse_name(name)?;
            match method {
                Method::GET | Method::HEAD => blobs::get_blob(state, &name, digest, request).await,
                Method::DELETE => blobs::delete_blob(state, &name, digest).await,
                _ => method_not_allowed("GET,HEAD,DELETE"),
            }
        }
        Route::UploadStart { name } => {
            let name = parse_name(name)?;
            match method {
                Method::POST => {
                    uploads::start_upload(state, origin, &name, claims, needed, request).await
                }
                _ => method_not_allowed("POST"),
            }
        }
        Route::Upload { name, id } => {
            let name = parse_name(name)?;
            match method {
                Method::GET | Method::HEAD => uploads::upload_status(state, &name, id).await,
                Method::PATCH => uploads::append_chunk(state, &name, id, request).await,
                Method::PUT => uploads::finish_upload(state, &name, id, request).await,
                Method::DELETE => uploads::cancel_upload(state, &name, id).await,
                _ => method_not_allowed("GET,HEAD,PATCH,PUT,DELETE"),
            }
        }
    }
}
