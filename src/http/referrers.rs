//! `GET /v2/<name>/referrers/<digest>`: an OCI index of the manifests whose
//! `subject` is the digest, optionally filtered by `artifactType`.

use axum::extract::Request;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::headers::{OCI_FILTERS_APPLIED, query_value};
use super::{ApiResult, AppState, parse_digest};
use crate::oci::manifest::{OCI_INDEX, served_media_type};
use crate::oci::{ErrorCode, MediaType, RepositoryName};

pub async fn list_referrers(
    state: &AppState,
    name: &RepositoryName,
    digest: &str,
    request: Request,
) -> ApiResult {
    let subject = parse_digest(digest)?;
    let artifact_type = query_value(request.uri(), "artifactType").filter(|t| !t.is_empty());
    // Stored artifact types all pass the grammar, so nothing else can match.
    if let Some(artifact_type) = &artifact_type
        && let Err(e) = MediaType::parse(artifact_type)
    {
        return Err(ApiError::new(ErrorCode::InvalidRequest)
            .message(format!("`artifactType` must be a media type: {e}")));
    }
    let referrers = state
        .registry
        .referrers(name, &subject, artifact_type.as_deref())
        .await?;
    let manifests: Vec<Value> = referrers
        .into_iter()
        .map(|r| {
            let mut descriptor = Map::new();
            descriptor.insert("mediaType".into(), served_media_type(&r.media_type).into());
            descriptor.insert("digest".into(), r.digest.as_str().into());
            descriptor.insert("size".into(), r.size.into());
            if let Some(artifact_type) = r.artifact_type {
                descriptor.insert("artifactType".into(), artifact_type.into());
            }
            if let Some(annotations) = r
                .annotations
                .and_then(|a| serde_json::from_str::<Value>(&a).ok())
            {
                descriptor.insert("annotations".into(), annotations);
            }
            Value::Object(descriptor)
        })
        .collect();
    let body = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    let mut response = ([(header::CONTENT_TYPE, OCI_INDEX)], body.to_string()).into_response();
    if artifact_type.is_some() {
        response.headers_mut().insert(
            OCI_FILTERS_APPLIED,
            "artifactType".parse().expect("static header"),
        );
    }
    Ok(response)
}
