//! One file per page (or group of pages), each a thin handler: read the
//! viewer and the request, call the layers below, fill a view struct,
//! render. `/r/...` URLs reach theirs through [`repository_page`].

pub mod account;
pub mod admin;
pub mod home;
pub mod layout;
pub mod manage;
pub mod namespace;
pub mod orgs;
pub mod repository;
pub mod session;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::Response;

use super::paths::{self, RepositoryView};
use super::{UiError, UiState, Viewer};

/// Every `/r/<name>...` request, sent to its page by the URL's view.
pub async fn repository_page(
    State(state): State<UiState>,
    viewer: Viewer,
    request: Request,
) -> Result<Response, UiError> {
    let path = request.uri().path().strip_prefix("/r/").unwrap_or("");
    let Some((name, view)) = paths::parse(path) else {
        return Err(UiError::NotFound("there is no such page".into()));
    };
    let method = request.method().clone();
    let host = super::registry_host(&state, request.headers());
    match (method, view) {
        (Method::GET, RepositoryView::Tags) => {
            repository::tags(&state, &viewer, &name, &host, request.uri()).await
        }
        (Method::GET, RepositoryView::Untagged) => {
            repository::untagged(&state, &viewer, &name, request.uri()).await
        }
        (Method::GET, RepositoryView::Tag(tag)) => {
            repository::tag(&state, &viewer, &name, &host, &tag).await
        }
        (Method::GET, RepositoryView::Manifest(digest)) => {
            repository::manifest(&state, &viewer, &name, &host, &digest).await
        }
        (Method::GET, RepositoryView::Settings) => {
            manage::settings(&state, &viewer, &name, request.uri()).await
        }
        (Method::GET, RepositoryView::Delete) => {
            manage::confirm_delete(&state, &viewer, &name, request.uri()).await
        }
        (Method::POST, RepositoryView::Delete) => {
            manage::delete(&state, &viewer, &name, request).await
        }
        (Method::POST, RepositoryView::Action(action)) => {
            manage::act(&state, &viewer, &name, &action, request).await
        }
        _ => Err(UiError::NotFound("there is no such page".into())),
    }
}
