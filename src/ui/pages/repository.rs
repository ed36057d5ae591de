//! A repository's pages: its tags, its untagged manifests, and one
//! manifest (by tag or digest) with its platforms, layers and referrers.
//! Every row comes from `registry`'s browse queries (metadata only, never
//! blob storage); a repository the viewer may not pull is answered exactly
//! like one that does not exist.

use axum::http::Uri;
use axum::response::Response;

use super::super::format::{absolute, relative};
use super::super::{UiError, UiState, Viewer, paths};
use crate::admin;
use crate::auth::scope::Actions;
use crate::metadata::unix_now;
use crate::oci::name::namespace_of;
use crate::oci::{Digest, RepositoryName, Tag};
use crate::policy::visibility::is_public;

/// A moment, as pages show it: relative, with the exact UTC time on hover.
pub struct When {
    pub relative: String,
    pub absolute: String,
}

impl When {
    pub fn at(unix_seconds: i64, now: i64) -> When {
        When {
            relative: relative(unix_seconds, now),
            absolute: absolute(unix_seconds),
        }
    }
}

/// The heading and tabs every page of a repository shows, and what the
/// viewer may do there (which decides the controls shown; the server
/// checks again on every change).
pub struct RepositoryHeader {
    pub name: String,
    pub namespace: String,
    pub public: bool,
    pub may_delete: bool,
    pub may_manage: bool,
    /// `tags`, `untagged`, `settings` or `manifest`: which tab is current.
    pub tab: &'static str,
    pub url: String,
    pub untagged_url: String,
    pub settings_url: String,
}

impl RepositoryHeader {
    /// The header of `name` for `viewer`, or `NotFound` when they may not
    /// pull it (whether or not it exists).
    pub async fn load(
        state: &UiState,
        viewer: &Viewer,
        name: &RepositoryName,
        tab: &'static str,
    ) -> Result<RepositoryHeader, UiError> {
        let public_paths = state.policies.public_paths().await?;
        let actions = if viewer.open {
            Actions::ALL
        } else {
            viewer
                .principal
                .repository_actions(name.as_str(), &public_paths)
        };
        if !actions.contains(Actions::PULL) {
            return Err(not_found());
        }
        let name = name.as_str();
        Ok(RepositoryHeader {
            name: name.to_string(),
            namespace: namespace_of(name).to_string(),
            public: is_public(name, &public_paths),
            may_delete: actions.contains(Actions::DELETE),
            may_manage: admin::may_manage(&viewer.actor(), name),
            tab,
            url: paths::repository(name),
            untagged_url: paths::untagged(name),
            settings_url: paths::settings(name),
        })
    }
}

/// What a viewer sees for a repository they may not pull, or that does not exist.
pub fn not_found() -> UiError {
    UiError::NotFound("there is no such repository, or you may not see it".into())
}

pub async fn tags(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    _uri: &Uri,
) -> Result<Response, UiError> {
    let _header = RepositoryHeader::load(state, viewer, name, "tags").await?;
    let _now = unix_now();
    Err(not_found())
}

pub async fn untagged(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    _uri: &Uri,
) -> Result<Response, UiError> {
    let _header = RepositoryHeader::load(state, viewer, name, "untagged").await?;
    Err(not_found())
}

pub async fn tag(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    _tag: &Tag,
) -> Result<Response, UiError> {
    let _header = RepositoryHeader::load(state, viewer, name, "tags").await?;
    Err(not_found())
}

pub async fn manifest(
    state: &UiState,
    viewer: &Viewer,
    name: &RepositoryName,
    _digest: &Digest,
) -> Result<Response, UiError> {
    let _header = RepositoryHeader::load(state, viewer, name, "untagged").await?;
    Err(not_found())
}
