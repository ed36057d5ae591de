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

/// The `Host` the client named, if it is a plain `host[:port]` (a name, an
/// IPv4 address or a bracketed IPv6 address): the token realm is built from
/// it and sent back inside a quoted `WWW-Authenticate` parameter, where a
/// quote, a comma or a `user@` would let a request rewrite its own challenge.
pub fn request_authority(headers: &HeaderMap) -> Option<&str> {
    let host = header_str(headers, &header::HOST)?;
    let plain = !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
        });
    plain.then_some(host)
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

#[cfg(test)]
mod authority_tests {
    use super::*;

    fn with_host(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().unwrap());
        headers
    }

    #[test]
    fn plain_hosts_are_kept_and_others_dropped() {
        for host in [
            "registry.example:5000",
            "127.0.0.1",
            "[::1]:5443",
            "my_host",
        ] {
            assert_eq!(request_authority(&with_host(host)), Some(host), "{host}");
        }
        for host in ["a\",b=\"c", "user@host", "host/path", "", "a b"] {
            assert_eq!(request_authority(&with_host(host)), None, "{host:?}");
        }
        assert_eq!(request_authority(&HeaderMap::new()), None);
    }
}
