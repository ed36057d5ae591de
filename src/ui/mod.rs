//! The web UI: server-rendered pages at `/` on the registry's own listener,
//! for browsing repositories, tags and manifests, managing them, and the
//! account and administration pages. Templates are askama's (`templates/`,
//! checked at compile time, every value HTML-escaped unless a template says
//! otherwise, which none does); one stylesheet and one script are embedded
//! from `static/`, so pages need no network beyond Berth and build with no
//! Node.js. Pages read without JavaScript; the script only adds copy
//! buttons, confirmation dialogs and live search.
//!
//! Like `http`, it is a face of the registry: it calls `registry`, `auth`,
//! `policy`, `admin` (whose commands carry the same rights checks as
//! `/api/v1`) and `gc` (its last passes), never a store. Its errors become pages in `error.rs`, the one
//! place that happens for HTML. Every page response carries its own
//! security headers (`security_headers`): a strict CSP with no inline
//! script or style, no framing, `nosniff`, no referrer, no caching of pages
//! that show what a signed-in user may see.

mod assets;
mod error;
mod format;
mod guard;
mod input;
mod pages;
mod paths;
mod settings;
mod viewer;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::admin::Admin;
use crate::auth::Auth;
use crate::gc::Collector;
use crate::policy::Policies;
use crate::registry::Registry;
pub use error::UiError;
pub use settings::UiSettings;
pub use viewer::Viewer;

/// What every page handler may use.
#[derive(Clone)]
pub struct UiState {
    pub registry: Arc<Registry>,
    /// `None` when authentication is switched off: every visitor may do everything.
    pub auth: Option<Arc<Auth>>,
    pub admin: Arc<Admin>,
    pub policies: Policies,
    /// The collector, for its last passes on the administration page.
    pub gc: Arc<Collector>,
    /// The registry as clients reach it (`registry.example:5000`), for pull
    /// commands; from `public_url` when set, else from the request's `Host`.
    pub public_url: Option<String>,
    /// Served over TLS (see [`UiState::secure_cookies`]).
    pub tls: bool,
    /// What the administration page says the server runs on.
    pub server: ServerFacts,
}

impl UiState {
    /// Whether cookies are `Secure`: Berth serves TLS itself, or it is
    /// reached as `https://` through a proxy that does (`public_url`), where
    /// a cookie sent over a stray `http://` request would be given away.
    pub fn secure_cookies(&self) -> bool {
        self.tls
            || self
                .public_url
                .as_deref()
                .is_some_and(|url| url.starts_with("https://"))
    }
}

/// Facts about this instance shown to administrators.
#[derive(Debug, Clone)]
pub struct ServerFacts {
    pub version: &'static str,
    pub database: &'static str,
    pub blob_store: String,
}

/// The policy every page is served with: scripts and styles only from
/// Berth's own origin (no inline script, no inline style, so an injected
/// tag or attribute does nothing), forms posting only back to Berth, no
/// plugins, no framing, no `<base>` games.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/", get(pages::home::show))
        .route(
            "/sign-in",
            get(pages::session::show).post(pages::session::sign_in),
        )
        .route("/sign-out", post(pages::session::sign_out))
        .route("/account", get(pages::account::show))
        .route("/account/password", post(pages::account::change_password))
        .route("/account/tokens", post(pages::account::create_token))
        .route(
            "/account/tokens/{id}/revoke",
            post(pages::account::revoke_token),
        )
        .route("/account/orgs", post(pages::account::create_organization))
        .route("/admin", get(pages::admin::show))
        .route("/admin/users", post(pages::admin::create_user))
        .route(
            "/admin/users/{user}/delete",
            get(pages::admin::confirm_delete).post(pages::admin::delete_user),
        )
        .route("/orgs/{org}", get(pages::orgs::show))
        .route("/orgs/{org}/members", post(pages::orgs::set_member))
        .route(
            "/orgs/{org}/members/{user}/remove",
            post(pages::orgs::remove_member),
        )
        .route("/n/{namespace}", get(pages::namespace::show))
        .route("/n/{namespace}/{action}", post(pages::namespace::act))
        .route(
            "/r/{*path}",
            get(pages::repository_page).post(pages::repository_page),
        )
        .merge(assets::router())
        // Forms are small; nothing a page posts comes near this.
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::same_origin_writes,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(state)
}

/// Headers on every UI response, set unless a handler chose its own.
async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let defaults = [
        (header::CONTENT_SECURITY_POLICY, PAGE_CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
    ];
    for (name, value) in defaults {
        if !headers.contains_key(&name) {
            headers.insert(name, HeaderValue::from_static(value));
        }
    }
    response
}

/// A rendered template as an HTML response; a template that cannot render
/// (a bug, never input) is a 500 page.
fn render(template: &impl askama::Template) -> Result<Response, UiError> {
    let html = template
        .render()
        .map_err(|e| UiError::Internal(e.to_string()))?;
    Ok(Html(html).into_response())
}

/// The answer to a form that worked (Post/Redirect/Get): `303 See Other`
/// to the page to show next, a local path.
fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The registry as clients name it in `docker pull HOST/NAME:TAG`: the host
/// and port of `public_url` when set, else the request's `Host` if it is a
/// plain `host[:port]` (anything else is not shown in a command to copy).
fn registry_host(state: &UiState, headers: &axum::http::HeaderMap) -> String {
    if let Some(url) = state
        .public_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        && let Some(host) = url.host_str()
    {
        return match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|host| {
            !host.is_empty()
                && host.len() <= 255
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost")
        .to_string()
}
