//! A repository's pages: its tags, its untagged manifests, and one
//! manifest (by tag or digest) with its platforms, layers and referrers.

use axum::http::Uri;
use axum::response::Response;

use super::super::{UiError, UiState, Viewer};
use crate::oci::{Digest, RepositoryName, Tag};

pub async fn tags(
    _state: &UiState,
    _viewer: &Viewer,
    _name: &RepositoryName,
    _uri: &Uri,
) -> Result<Response, UiError> {
    Err(UiError::NotFound("no such repository".into()))
}

pub async fn untagged(
    _state: &UiState,
    _viewer: &Viewer,
    _name: &RepositoryName,
    _uri: &Uri,
) -> Result<Response, UiError> {
    Err(UiError::NotFound("no such repository".into()))
}

pub async fn tag(
    _state: &UiState,
    _viewer: &Viewer,
    _name: &RepositoryName,
    _tag: &Tag,
) -> Result<Response, UiError> {
    Err(UiError::NotFound("no such tag".into()))
}

pub async fn manifest(
    _state: &UiState,
    _viewer: &Viewer,
    _name: &RepositoryName,
    _digest: &Digest,
) -> Result<Response, UiError> {
    Err(UiError::NotFound("no such manifest".into()))
}
