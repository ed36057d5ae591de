//! Blob upload sessions: `POST /v2/<name>/blobs/uploads/` (start, monolithic
//! or mount), then `PATCH`, `PUT`, `GET` and `DELETE` on the session URL.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;

use super::auth::{MountSource, mount_source};
use super::error::ApiError;
use super::headers::{
    DOCKER_CONTENT_DIGEST, DOCKER_UPLOAD_UUID, OCI_CHUNK_MIN_LENGTH, content_length, has_body,
    header_str, query_value, upload_range,
};
use super::{ApiResult, AppState, parse_digest};
use crate::auth::scope::Scope;
use crate::auth::token::Claims;
use crate::oci::range::parse_chunk_range;
use crate::oci::{ErrorCode, RepositoryName};
use crate::registry::{BlobStat, ChunkBody, UploadState};

/// Turns the request body into a chunk, with what the client announced about it.
fn chunk_body(request: Request) -> Result<ChunkBody, ApiError> {
    let range = match header_str(request.headers(), &header::CONTENT_RANGE) {
        Some(value) => Some(parse_chunk_range(value).ok_or_else(|| {
            ApiError::new(ErrorCode::BlobUploadInvalid)
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .message(format!(
                    "Content-Range `{value}` is not of the form <start>-<end>"
                ))
        })?),
        None => None,
    };
    let content_length = content_length(request.headers());
    let stream = request
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    Ok(ChunkBody {
        range,
        content_length,
        stream: Box::pin(stream),
    })
}

fn upload_location(state: &AppState, name: &RepositoryName, id: &str) -> String {
    state.location(&format!("/v2/{name}/blobs/uploads/{id}"))
}

/// 202 or 204 describing where an upload stands and where to send the next chunk.
fn upload_response(
    state: &AppState,
    name: &RepositoryName,
    status: StatusCode,
    upload: &UploadState,
) -> Response {
    let mut response = (
        status,
        [
            (header::LOCATION, upload_location(state, name, &upload.id)),
            (header::RANGE, upload_range(upload.received)),
            (DOCKER_UPLOAD_UUID, upload.id.clone()),
        ],
    )
        .into_response();
    if status != StatusCode::NO_CONTENT {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, 0.into());
    }
    response
}

/// 201 for a blob now in the repository.
fn created_response(state: &AppState, name: &RepositoryName, blob: &BlobStat) -> Response {
    (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                state.location(&format!("/v2/{name}/blobs/{}", blob.digest)),
            ),
            (DOCKER_CONTENT_DIGEST, blob.digest.to_string()),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
    )
        .into_response()
}

/// `POST .../blobs/uploads/`: a session, a whole blob (`?digest=`), or a
/// mount (`?mount=<digest>[&from=<repository>]`); `claims` passed the
/// route's `needed` scopes.
pub async fn start_upload(
    state: &AppState,
    origin: &crate::metadata::Origin,
    name: &RepositoryName,
    claims: Option<&Claims>,
    needed: &[Scope],
    request: Request,
) -> ApiResult {
    let uri = request.uri().clone();
    if let Some(mount) = query_value(&uri, "mount") {
        let digest = parse_digest(&mount)?;
        let from = query_value(&uri, "from");
        let source = mount_source(
            state,
            request.headers(),
            claims,
            needed,
            &digest,
            from.as_deref(),
        )
        .await?;
        // A source that cannot provide the blob means a normal upload
        // instead, as the spec asks.
        let mounted = match source {
            MountSource::Repository(from) => {
                state
                    .registry
                    .mount_blob(origin, name, &digest, &from)
                    .await?
            }
            MountSource::AnyReadable(readable) => {
                state
                    .registry
                    .mount_blob_from_any(origin, name, &digest, readable.as_ref())
                    .await?
            }
            MountSource::Nowhere => None,
        };
        if let Some(blob) = mounted {
            return Ok(created_response(state, name, &blob));
        }
    } else if let Some(digest) = query_value(&uri, "digest") {
        let digest = parse_digest(&digest)?;
        let blob = state
            .registry
            .upload_monolithic(name, &digest, chunk_body(request)?)
            .await?;
        return Ok(created_response(state, name, &blob));
    }
    let upload = state.registry.start_upload(name).await?;
    let mut response = upload_response(state, name, StatusCode::ACCEPTED, &upload);
    if let Some(min) = state.registry.min_chunk_size() {
        response
            .headers_mut()
            .insert(OCI_CHUNK_MIN_LENGTH, min.into());
    }
    Ok(response)
}

pub async fn append_chunk(
    state: &AppState,
    name: &RepositoryName,
    id: &str,
    request: Request,
) -> ApiResult {
    let upload = state
        .registry
        .append_chunk(name, id, chunk_body(request)?)
        .await?;
    Ok(upload_response(state, name, StatusCode::ACCEPTED, &upload))
}

pub async fn finish_upload(
    state: &AppState,
    name: &RepositoryName,
    id: &str,
    request: Request,
) -> ApiResult {
    let digest = query_value(request.uri(), "digest").ok_or_else(|| {
        ApiError::new(ErrorCode::DigestInvalid)
            .message("the `digest` query parameter is required to complete an upload")
    })?;
    let digest = parse_digest(&digest)?;
    let last_chunk = if has_body(request.headers()) {
        Some(chunk_body(request)?)
    } else {
        None
    };
    let blob = state
        .registry
        .finish_upload(name, id, &digest, last_chunk)
        .await?;
    Ok(created_response(state, name, &blob))
}

pub async fn upload_status(state: &AppState, name: &RepositoryName, id: &str) -> ApiResult {
    let upload = state.registry.upload_status(name, id).await?;
    Ok(upload_response(
        state,
        name,
        StatusCode::NO_CONTENT,
        &upload,
    ))
}

pub async fn cancel_upload(state: &AppState, name: &RepositoryName, id: &str) -> ApiResult {
    state.registry.cancel_upload(name, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
