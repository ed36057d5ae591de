//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;

use super::headers::{DOCKER_CONTENT_DIGEST, header_str};
use super::{ApiResult, AppState, parse_digest};
use crate::oci::RepositoryName;
use crate::registry::BlobBody;

pub async fn get_blob(
    state: &AppState,
    name: &RepositoryName,
    digest: &str,
    request: Request,
) -> ApiResult {
    let digest = parse_digest(digest)?;
    if request.method() == Method::HEAD {
        // Answered from metadata alone; clients take the layer size from this Content-Length.
        let stat = state.registry.stat_blob(name, &digest).await?;
        return Ok((
            [
                (header::CONTENT_LENGTH, stat.size.to_string()),
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (DOCKER_CONTENT_DIGEST, digest.to_string()),
                (header::ACCEPT_RANGES, "bytes".to_string()),
            ],
            Body::empty(),
        )
            .into_response());
    }
    let range_header = header_str(request.headers(), &header::RANGE);
    let read = state
        .registry
        .read_blob(name, &digest, range_header)
        .await?;
    let body = match read.body {
        BlobBody::Stream(stream) => Body::from_stream(stream),
        BlobBody::Bytes(bytes) => Body::from(bytes),
        BlobBody::Redirect(url) => {
            return Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [
                    (header::LOCATION, url),
                    (DOCKER_CONTENT_DIGEST, digest.to_string()),
                    (header::CONTENT_LENGTH, "0".to_string()),
                ],
            )
                .into_response());
        }
    };
    let (status, length) = match read.range {
        Some(range) => (StatusCode::PARTIAL_CONTENT, range.len()),
        None => (StatusCode::OK, read.size),
    };
    let mut response = (
        status,
        [
            (header::CONTENT_LENGTH, length.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (DOCKER_CONTENT_DIGEST, digest.to_string()),
            (header::ACCEPT_RANGES, "bytes".to_string()),
        ],
        body,
    )
        .into_response();
    if let Some(range) = read.range {
        let value = format!("bytes {}-{}/{}", range.start, range.end, read.size);
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            value.parse().expect("ASCII header value"),
        );
    }
    Ok(response)
}

pub async fn delete_blob(state: &AppState, name: &RepositoryName, digest: &str) -> ApiResult {
    let digest = parse_digest(digest)?;
    state.registry.delete_blob(name, &digest).await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}
