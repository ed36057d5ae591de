//! Header names and values the distribution API uses, and small helpers to
//! read request headers and queries.

use axum::http::{HeaderMap, HeaderName, Uri, header};

pub const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const DOCKER_UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const DOCKER_DISTRIBUTION_API_VERSION: HeaderName =
    HeaderName::from_static("docker-distribution-api-version");
pub const OCI_CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");

/// The `Range` an upload reports: the inclusive range of bytes received so
/// far, written `0-0` when nothing has arrived (as every registry does).
pub fn upload_range(received: u64) -> String {
    format!("0-{}", received.saturating_sub(1))
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, &header::CONTENT_LENGTH).and_then(|v| v.trim().parse().ok())
}

/// All values of query parameter `key`, percent-decoded.
pub fn query_values(uri: &Uri, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

pub fn query_value(uri: &Uri, key: &str) -> Option<String> {
    query_values(uri, key).into_iter().next()
}

/// A request carries a body when it announces a length above zero or is chunked.
pub fn has_body(headers: &HeaderMap) -> bool {
    match content_length(headers) {
        Some(length) => length > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}
