//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::headers::{DOCKER_CONTENT_DIGEST, header_str};
use super::{ApiResult, AppState, parse_digest};
use crate::oci::range::ByteRange;
use crate::oci::{Digest, RepositoryName};
use crate::registry::{BlobBody, BlobRead};

pub async fn get_blob(
    state: &AppState,
    name: &RepositoryName,
    digest: &str,
    request: Request,
) -> ApiResult {
    let digest = parse_digest(digest)?;
    if request.method() == Method::HEAD {
        let stat = state.registry.stat_blob(name, &digest).await?;
        return Ok(stat_response(&digest, stat.size));
    }
    let range_header = header_str(request.headers(), &header::RANGE);
    let read = state
        .registry
        .read_blob(name, &digest, range_header)
        .await?;
    Ok(read_response(&digest, read))
}

/// The answer to a blob `GET`: the bytes (206 with `Content-Range` for a
/// range) or a redirect to them.
pub(super) fn read_response(digest: &Digest, read: BlobRead) -> Response {
    let body = match read.body {
        BlobBody::Stream(stream) => Body::from_stream(stream),
        BlobBody::Bytes(bytes) => Body::from(bytes),
        BlobBody::Redirect(url) => {
            return (
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, url),
                    (DOCKER_CONTENT_DIGEST, digest.to_string()),
                    (header::CONTENT_LENGTH, "0".to_string()),
                ],
            )
                .into_response();
        }
    };
    bytes_response(digest, Some(read.size), read.range, body)
}

/// Blob bytes: the whole (200, with its length when known) or a range (206).
pub(super) fn bytes_response(
    digest: &Digest,
    size: Option<u64>,
    range: Option<ByteRange>,
    body: Body,
) -> Response {
    let status = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let mut response = (
        status,
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        body,
    )
        .into_response();
    let headers = response.headers_mut();
    let length = range.map(|r| r.len()).or(size);
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, length.into());
    }
    if let (Some(range), Some(size)) = (range, size) {
        let value = format!("bytes {}-{}/{}", range.start, range.end, size);
        headers.insert(
            header::CONTENT_RANGE,
            value.parse().expect("ASCII header value"),
        );
    }
    response
}

/// The answer to a blob `HEAD`, from metadata alone; clients take the
/// layer size from its `Content-Length`.
pub(super) fn stat_response(digest: &Digest, size: u64) -> Response {
    (
        [
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        Body::empty(),
    )
        .into_response()
}

pub async fn delete_blob(state: &AppState, name: &RepositoryName, digest: &str) -> ApiResult {
    let digest = parse_digest(digest)?;
    state.registry.delete_blob(name, &digest).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
