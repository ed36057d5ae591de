//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::response::IntoResponse;

use super::error::ApiError;
use super::headers::{DOCKER_CONTENT_DIGEST, OCI_SUBJECT, OCI_TAG, content_length, query_values};
use super::{ApiResult, AppState, parse_digest, parse_tag};
use crate::metadata::Origin;
use crate::oci::manifest::{MAX_MANIFEST_BYTES, served_media_type};
use crate::oci::name::ReferenceError;
use crate::oci::{ErrorCode, Reference, RepositoryName};
use crate::registry::RegistryError;

/// A manifest reference. A malformed digest is `DIGEST_INVALID`; a malformed
/// tag is `TAG_INVALID` on a push, but a read or a delete is given
/// `bad_tag`: such a tag names no manifest (the conformance suite asks for
/// 404 on `.INVALID_MANIFEST_NAME`).
pub(super) fn parse_reference(raw: &str, bad_tag: ErrorCode) -> Result<Reference, ApiError> {
    Reference::parse(raw).map_err(|e| match e {
        ReferenceError::Digest(_) => parse_digest(raw).expect_err("digest parse failed before"),
        ReferenceError::Tag(e) => ApiError::new(bad_tag)
            .message(e.to_string())
            .detail(serde_json::json!({"tag": raw})),
    })
}

pub async fn get_manifest(
    state: &AppState,
    origin: &Origin,
    name: &RepositoryName,
    reference: &str,
    request: Request,
) -> ApiResult {
    let reference = parse_reference(reference, ErrorCode::ManifestUnknown)?;
    let pulled_by = (request.method() == Method::GET).then_some(origin);
    let manifest = state
        .registry
        .get_manifest(name, &reference, pulled_by)
        .await?;
    let headers = [
        (
            header::CONTENT_TYPE,
            served_media_type(&manifest.media_type).to_string(),
        ),
        (header::CONTENT_LENGTH, manifest.payload.len().to_string()),
        (DOCKER_CONTENT_DIGEST, manifest.digest.to_string()),
    ];
    let body = if request.method() == Method::HEAD {
        Body::empty()
    } else {
        Body::from(manifest.payload)
    };
    Ok((headers, body).into_response())
}

pub async fn put_manifest(
    state: &AppState,
    origin: &Origin,
    name: &RepositoryName,
    reference: &str,
    request: Request,
) -> ApiResult {
    let reference = parse_reference(reference, ErrorCode::TagInvalid)?;
    let extra_tags = query_values(request.uri(), "tag")
        .iter()
        .map(|t| parse_tag(t))
        .collect::<Result<Vec<_>, _>>()?;
    let too_large = || ApiError::from(RegistryError::ManifestTooLarge(MAX_MANIFEST_BYTES));
    if content_length(request.headers()).is_some_and(|l| l > MAX_MANIFEST_BYTES as u64) {
        return Err(too_large());
    }
    // Checked whole, parameters included, by the manifest parser.
    let media_type = match request.headers().get(header::CONTENT_TYPE) {
        Some(value) => Some(value.to_str().map(str::to_string).map_err(|_| {
            ApiError::new(ErrorCode::ManifestInvalid)
                .message("the Content-Type header holds characters no media type has")
        })?),
        None => None,
    };
    // Manifests are small and hashed whole; the limit keeps the buffer bounded.
    let body = axum::body::to_bytes(request.into_body(), MAX_MANIFEST_BYTES)
        .await
        .map_err(|_| too_large())?;
    let pushed = state
        .registry
        .put_manifest(
            origin,
            name,
            &reference,
            media_type.as_deref(),
            body,
            extra_tags,
        )
        .await?;
    let mut response = (
        StatusCode::CREATED,
        [
            (
                header::LOCATION,
                state.location(&format!("/v2/{name}/manifests/{}", pushed.digest)),
            ),
            (DOCKER_CONTENT_DIGEST, pushed.digest.to_string()),
            (header::CONTENT_LENGTH, "0".to_string()),
        ],
    )
        .into_response();
    if let Some(subject) = &pushed.subject {
        response.headers_mut().insert(
            OCI_SUBJECT,
            subject
                .as_str()
                .parse()
                .expect("digests are valid header values"),
        );
    }
    if matches!(reference, Reference::Digest(_)) {
        for tag in &pushed.tags {
            response.headers_mut().append(
                OCI_TAG,
                tag.as_str().parse().expect("tags are valid header values"),
            );
        }
    }
    Ok(response)
}

pub async fn delete_manifest(
    state: &AppState,
    origin: &Origin,
    name: &RepositoryName,
    reference: &str,
) -> ApiResult {
    let reference = parse_reference(reference, ErrorCode::ManifestUnknown)?;
    state
        .registry
        .delete_manifest(origin, name, &reference)
        .await?;
    Ok((StatusCode::ACCEPTED, [(header::CONTENT_LENGTH, "0")]).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_references_get_the_right_code() {
        let err = parse_reference("sha256:nothex", ErrorCode::ManifestUnknown)
            .unwrap_err()
            .into_response();
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
        let pushed = parse_reference("-bad", ErrorCode::TagInvalid).unwrap_err();
        assert_eq!(pushed.into_response().status(), StatusCode::BAD_REQUEST);
        let read = parse_reference("-bad", ErrorCode::ManifestUnknown).unwrap_err();
        assert_eq!(read.into_response().status(), StatusCode::NOT_FOUND);
        assert!(parse_reference("good", ErrorCode::TagInvalid).is_ok());
    }
}
