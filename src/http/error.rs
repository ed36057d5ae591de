//! The one error type handlers return, and the single place where the
//! errors of the layers below (registry, storage, metadata, logins, tokens,
//! administration, policy) become wire errors: the spec's JSON body with
//! its status, for `/v2/`, `/token` and `/api/v1` alike. Internal details
//! are logged, never sent.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::admin::AdminError;
use crate::auth::LoginError;
use crate::auth::keys::KeyError;
use crate::auth::token::TokenError;
use crate::cache::CacheError;
use crate::metadata::MetadataError;
use crate::oci::manifest::ManifestError;
use crate::oci::{Digest, ErrorCode};
use crate::policy::PolicyError;
use crate::registry::RegistryError;
use crate::storage::StorageError;

#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    status: StatusCode,
    message: String,
    detail: Value,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(code: ErrorCode) -> Self {
        Self {
            code,
            status: StatusCode::from_u16(code.status()).expect("catalogue statuses are valid"),
            message: code.message().to_string(),
            detail: Value::Null,
            headers: Vec::new(),
        }
    }

    pub fn message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, value));
        }
        self
    }

    /// The spec's code, for the callers that record refusals.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message the client is given.
    pub fn message_text(&self) -> &str {
        &self.message
    }

    /// A server-side failure: logged in full here, reported to the client without detail.
    pub(super) fn internal(code: ErrorCode, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %error, "request failed");
        Self::new(code)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code.code(), "message": self.message, "detail": self.detail}]});
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        for (name, value) in self.headers {
            response.headers_mut().append(name, value);
        }
        response
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::StagingLost { .. } => ApiError::new(ErrorCode::BlobUploadInvalid)
                .message("the data of this upload was lost; start the upload again")
                .detail(json!({"reason": error.to_string()})),
            StorageError::NotFound | StorageError::Io(_) | StorageError::Unavailable(_) => {
                ApiError::internal(ErrorCode::Unavailable, &error)
            }
        }
    }
}

/// A database that is unreachable, restarting or busy is 503 (a client may
/// retry); a value it cannot store is the request's fault, 400; anything
/// else is our own fault, 500.
impl From<MetadataError> for ApiError {
    fn from(error: MetadataError) -> Self {
        if let MetadataError::Unstorable(_) = error {
            tracing::debug!(error = %error, "request refused");
            return ApiError::new(ErrorCode::InvalidRequest)
                .message("the request holds a character that cannot be stored (NUL)");
        }
        let code = if error.is_retryable() {
            ErrorCode::Unavailable
        } else {
            ErrorCode::Internal
        };
        ApiError::internal(code, &error)
    }
}

impl From<AdminError> for ApiError {
    fn from(error: AdminError) -> Self {
        let message = error.to_string();
        match error {
            AdminError::Forbidden(_) => ApiError::new(ErrorCode::Denied).message(message),
            AdminError::NotFound(_) => ApiError::new(ErrorCode::NotFound).message(message),
            AdminError::Conflict(_) => ApiError::new(ErrorCode::Conflict).message(message),
            AdminError::Invalid(_) => ApiError::new(ErrorCode::InvalidRequest).message(message),
            AdminError::Metadata(e) => e.into(),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(error: PolicyError) -> Self {
        AdminError::from(error).into()
    }
}

impl From<LoginError> for ApiError {
    fn from(error: LoginError) -> Self {
        match error {
            // Only sign-in refuses an access token; `/token` takes them.
            LoginError::BadCredentials | LoginError::AccessTokenNotForPeople => {
                ApiError::new(ErrorCode::Unauthorized)
                    .message(error.to_string())
                    .header(header::WWW_AUTHENTICATE, "Basic realm=\"berth\"")
            }
            LoginError::RateLimited(seconds) => ApiError::new(ErrorCode::TooManyRequests)
                .message(error.to_string())
                .header(header::RETRY_AFTER, seconds.to_string()),
            LoginError::Metadata(e) => e.into(),
        }
    }
}

/// A token that fails verification is answered with a challenge where it
/// is checked (`http/auth.rs`); what reaches here is a failure to sign or
/// to load the keys.
impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Keys(e) => e.into(),
            TokenError::Invalid(_) => ApiError::internal(ErrorCode::Internal, &error),
        }
    }
}

impl From<KeyError> for ApiError {
    fn from(error: KeyError) -> Self {
        match error {
            KeyError::Metadata(e) => e.into(),
            KeyError::Invalid(_) | KeyError::File { .. } => {
                ApiError::internal(ErrorCode::Internal, &error)
            }
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(error: RegistryError) -> Self {
        use RegistryError as E;
        let message = error.to_string();
        match error {
            E::BlobUnknown(digest) => ApiError::new(ErrorCode::BlobUnknown)
                .message(message)
                .detail(json!({"digest": digest.as_str()})),
            E::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown),
            E::ChunkOutOfOrder { received } => ApiError::new(ErrorCode::BlobUploadInvalid)
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .message(message)
                .header(header::RANGE, super::headers::upload_range(received)),
            E::UploadInvalid(_) => ApiError::new(ErrorCode::BlobUploadInvalid).message(message),
            E::RangeNotSatisfiable { size } => ApiError::new(ErrorCode::RangeInvalid)
                .message(message)
                .header(header::CONTENT_RANGE, format!("bytes */{size}")),
            E::SizeInvalid(_) => ApiError::new(ErrorCode::SizeInvalid).message(message),
            E::DigestMismatch { expected, actual } => ApiError::new(ErrorCode::DigestInvalid)
                .message(message)
                .detail(json!({"expected": expected.as_str(), "actual": actual.as_str()})),
            E::DigestInvalid(_) => ApiError::new(ErrorCode::DigestInvalid).message(message),
            E::ManifestInvalid(ManifestError::Contradiction {
                declared,
                content_type,
            }) => ApiError::new(ErrorCode::ManifestInvalid)
                .message(message)
                .detail(json!({"mediaType": declared, "contentType": content_type})),
            E::ManifestInvalid(ManifestError::Invalid(_)) => {
                ApiError::new(ErrorCode::ManifestInvalid).message(message)
            }
            E::ManifestTooLarge(limit) => ApiError::new(ErrorCode::SizeInvalid)
                .status(StatusCode::PAYLOAD_TOO_LARGE)
                .message(message)
                .detail(json!({"limit": limit})),
            E::ManifestReferenceUnknown(digest) => ApiError::new(ErrorCode::ManifestBlobUnknown)
                .message(message)
                .detail(json!({"digest": digest.as_str()})),
            E::ManifestUnknown => ApiError::new(ErrorCode::ManifestUnknown),
            E::RepositoryUnknown => ApiError::new(ErrorCode::NameUnknown),
            E::CursorInvalid => ApiError::new(ErrorCode::InvalidRequest).message(message),
            E::Denied(_) => ApiError::new(ErrorCode::Denied).message(message),
            // 403 as the spec's table pairs it with DENIED: clients know
            // only its codes, and print the message, which says what to do.
            E::InUse {
                digest,
                referenced_by,
                ..
            } => ApiError::new(ErrorCode::Denied)
                .message(message)
                .detail(json!({
                    "digest": digest.as_str(),
                    "referenced_by": referenced_by.iter().map(Digest::as_str).collect::<Vec<_>>(),
                })),
            E::Metadata(e) => e.into(),
            E::Storage(e) => e.into(),
            E::Internal(_) => ApiError::internal(ErrorCode::Internal, &message),
        }
    }
}

impl From<CacheError> for ApiError {
    fn from(error: CacheError) -> Self {
        use crate::cache::UpstreamError;
        let message = error.to_string();
        match error {
            CacheError::ReadOnly { .. } | CacheError::Quota(_) => {
                ApiError::new(ErrorCode::Denied).message(message)
            }
            CacheError::ManifestUnknown => {
                ApiError::new(ErrorCode::ManifestUnknown).message(message)
            }
            CacheError::BlobUnknown(digest) => ApiError::new(ErrorCode::BlobUnknown)
                .message(message)
                .detail(json!({"digest": digest.as_str()})),
            // Nothing cached: the upstream's refusal, said as such.
            CacheError::Upstream {
                error:
                    UpstreamError::Refused {
                        status: 429,
                        retry_after,
                    },
                ..
            } => {
                let error = ApiError::new(ErrorCode::TooManyRequests).message(message);
                match retry_after {
                    Some(after) => error.header(header::RETRY_AFTER, after),
                    None => error,
                }
            }
            CacheError::Upstream {
                error: UpstreamError::NotFound,
                ..
            } => ApiError::new(ErrorCode::NameUnknown).message(message),
            CacheError::Upstream { .. } => {
                tracing::debug!(error = %message, "nothing cached to serve");
                ApiError::new(ErrorCode::Unavailable).message(message)
            }
            CacheError::Registry(e) => e.into(),
            CacheError::Metadata(e) => e.into(),
            CacheError::Storage(e) => e.into(),
            CacheError::Internal(_) => ApiError::internal(ErrorCode::Internal, &message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_database_is_unavailable_and_a_bug_is_internal() {
        let unavailable = ApiError::from(MetadataError::Unavailable("restarting".into()));
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        for error in [
            MetadataError::Conflict("unique".into()),
            MetadataError::Corrupt("digest".into()),
            MetadataError::Internal("syntax".into()),
        ] {
            assert_eq!(
                ApiError::from(error).status,
                StatusCode::INTERNAL_SERVER_ERROR
            );
        }
        let login = ApiError::from(LoginError::Metadata(MetadataError::Unavailable("x".into())));
        assert_eq!(login.status, StatusCode::SERVICE_UNAVAILABLE);
        let unstorable = ApiError::from(MetadataError::Unstorable("NUL".into()));
        assert_eq!(unstorable.status, StatusCode::BAD_REQUEST);
    }
}
