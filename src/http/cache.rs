//! `/v2/` requests on a proxy namespace's repositories (and, in mirror mode,
//! on the unprefixed names of the registry a proxy mirrors), answered by
//! `cache` instead of the registry's own handlers; and the token grant's
//! view of mirrored names.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, Uri, header};
use axum::response::IntoResponse;

use super::blobs::{bytes_response, read_response, stat_response};
use super::error::ApiError;
use super::headers::{DOCKER_CONTENT_DIGEST, header_str, query_value};
use super::manifests::parse_reference;
use super::route::Route;
use super::{ApiResult, AppState, method_not_allowed, parse_digest};
use crate::auth::scope::{Access, Actions, Scope};
use crate::auth::{Auth, Principal};
use crate::cache::{CachedBlob, Proxied};
use crate::metadata::Origin;
use crate::oci::manifest::{OCI_INDEX, served_media_type};
use crate::oci::{ErrorCode, RepositoryName};

/// The proxy repository `route` names, if any: by its namespace, or for a
/// read (`GET`, `HEAD`) by the mirror of the registry that `?ns=` (or, by
/// default, `docker.io`) names. A write is refused here, before any
/// authentication: a cache holds nothing anyone may push.
pub(super) async fn proxied(
    state: &AppState,
    route: &Route<'_>,
    method: &Method,
    uri: &Uri,
) -> Result<Option<Proxied>, ApiError> {
    let Some(cache) = state.cache.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let name = match route {
        Route::Catalog => return Ok(None),
        Route::Tags { name }
        | Route::Manifest { name, .. }
        | Route::Referrers { name, .. }
        | Route::Blob { name, .. }
        | Route::UploadStart { name }
        | Route::Upload { name, .. } => name,
    };
    // An invalid name is the registry's handlers' to refuse.
    let Ok(name) = name.parse::<RepositoryName>() else {
        return Ok(None);
    };
    let reading = matches!(*method, Method::GET | Method::HEAD);
    if let Some(proxied) = cache.proxied(&name) {
        if !reading {
            return Err(cache.read_only(&proxied).into());
        }
        return Ok(Some(proxied));
    }
    let pull_route = matches!(
        route,
        Route::Tags { .. } | Route::Manifest { .. } | Route::Referrers { .. } | Route::Blob { .. }
    );
    if !reading || !pull_route {
        return Ok(None);
    }
    let ns = query_value(uri, "ns");
    Ok(cache.mirrored(&name, ns.as_deref()).await?)
}

/// A request on a proxy repository, its scope already checked.
pub(super) async fn handle(
    state: &AppState,
    origin: &Origin,
    proxied: Proxied,
    route: Route<'_>,
    method: &Method,
    request: Request,
) -> ApiResult {
    let cache = state
        .cache
        .clone()
        .expect("proxied names come from the cache");
    let head = *method == Method::HEAD;
    match route {
        Route::Manifest { reference, .. } => {
            let reference = parse_reference(reference, ErrorCode::ManifestUnknown)?;
            let pulled_by = (!head).then_some(origin);
            let manifest = cache.manifest(&proxied, &reference, pulled_by).await?;
            let headers = [
                (
                    header::CONTENT_TYPE,
                    served_media_type(&manifest.media_type).to_string(),
                ),
                (header::CONTENT_LENGTH, manifest.payload.len().to_string()),
                (DOCKER_CONTENT_DIGEST, manifest.digest),
            ];
            let body = if head {
                Body::empty()
            } else {
                Body::from(manifest.payload)
            };
            Ok((headers, body).into_response())
        }
        Route::Blob { digest, .. } => {
            let digest = parse_digest(digest)?;
            if head {
                let size = cache.stat_blob(&proxied, &digest).await?;
                return Ok(stat_response(&digest, size));
            }
            let range = header_str(request.headers(), &header::RANGE);
            Ok(match cache.blob(&proxied, &digest, range).await? {
                CachedBlob::Stored(read) => read_response(&digest, read),
                CachedBlob::Arriving { size, range, body } => {
                    bytes_response(&digest, size, range, Body::from_stream(body))
                }
            })
        }
        Route::Tags { .. } => {
            let tags = cache.tags(&proxied, request.uri().query()).await?;
            let mut response = (
                [(header::CONTENT_TYPE, "application/json")],
                if head {
                    Body::empty()
                } else {
                    Body::from(tags.body)
                },
            )
                .into_response();
            if let Some(link) = tags.link.and_then(|l| l.parse().ok()) {
                response.headers_mut().insert(header::LINK, link);
            }
            Ok(response)
        }
        // Referrers are not fetched from upstream: none are cached.
        Route::Referrers { digest, .. } => {
            parse_digest(digest)?;
            let body =
                serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []});
            Ok(([(header::CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response())
        }
        Route::Catalog | Route::UploadStart { .. } | Route::Upload { .. } => {
            method_not_allowed("GET,HEAD")
        }
    }
}

/// The part of `requested` this caller may have, where a scope on a name a
/// mirror serves is judged on its proxy repository (`library/alpine` as
/// `hub/library/alpine`), for pull only, and granted under the name asked.
pub(super) async fn grant(
    state: &AppState,
    auth: &Auth,
    principal: &Principal,
    requested: &[Scope],
) -> Result<Vec<Access>, ApiError> {
    let Some(cache) = state.cache.as_deref().filter(|c| !c.is_empty()) else {
        return Ok(auth.grant(principal, requested).await?);
    };
    let mut direct = Vec::new();
    let mut granted = Vec::new();
    for scope in requested {
        if let Scope::Repository { name, actions } = scope
            && let Ok(repository) = name.parse::<RepositoryName>()
            && let Some(proxied) = cache.mirrored(&repository, None).await?
        {
            let local = Scope::Repository {
                name: proxied.local.to_string(),
                actions: *actions & Actions::PULL,
            };
            for mut access in auth.grant(principal, &[local]).await? {
                access.name = name.clone();
                granted.push(access);
            }
            continue;
        }
        direct.push(scope.clone());
    }
    granted.extend(auth.grant(principal, &direct).await?);
    Ok(granted)
}
