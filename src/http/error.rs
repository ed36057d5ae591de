//! The one error type handlers return, and the single place where registry
//! errors become wire errors. Internal details are logged, never sent.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::metadata::MetadataError;
use crate::oci::ErrorCode;
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

fn storage_error(error: StorageError) -> ApiError {
    match error {
        StorageError::StagingLost { .. } => ApiError::new(ErrorCode::BlobUploadInvalid)
            .message("the data of this upload was lost; start the upload again")
            .detail(json!({"reason": error.to_string()})),
        StorageError::NotFound | StorageError::Io(_) | StorageError::Unavailable(_) => {
            ApiError::internal(ErrorCode::Unavailable, &error)
        }
    }
}

fn metadata_error(error: MetadataError) -> ApiError {
    let unreachable = match &error {
        MetadataError::Database(
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
        ) => true,
        // SQLSTATE classes 08 (connection exception) and 57 (operator
        // intervention: the server shutting down or restarting) are
        // transient; a client may retry.
        MetadataError::Database(sqlx::Error::Database(e)) => e
            .code()
            .is_some_and(|code| code.starts_with("08") || code.starts_with("57")),
        // Another process (an admin command) held SQLite's write lock past
        // the busy timeout.
        MetadataError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
            e.code,
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
        ),
        _ => false,
    };
    let code = if unreachable {
        ErrorCode::Unavailable
    } else {
        ErrorCode::Internal
    };
    ApiError::internal(code, &error)
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
            E::ManifestInvalid(_) => ApiError::new(ErrorCode::ManifestInvalid).message(message),
            E::ManifestTooLarge(limit) => ApiError::new(ErrorCode::SizeInvalid)
                .status(StatusCode::PAYLOAD_TOO_LARGE)
                .message(message)
                .detail(json!({"limit": limit})),
            E::ManifestReferenceUnknown(digest) => ApiError::new(ErrorCode::ManifestBlobUnknown)
                .message(message)
                .detail(json!({"digest": digest.as_str()})),
            E::ManifestUnknown => ApiError::new(ErrorCode::ManifestUnknown),
            E::RepositoryUnknown => ApiError::new(ErrorCode::NameUnknown),
            E::Denied(_) => ApiError::new(ErrorCode::Denied).message(message),
            E::InUse(_) => ApiError::new(ErrorCode::Denied)
                .status(StatusCode::CONFLICT)
                .message(message),
            E::Metadata(e) => metadata_error(e),
            E::Storage(e) => storage_error(e),
            E::Internal(_) => ApiError::internal(ErrorCode::Internal, &message),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    /// A database error as PostgreSQL reports it, with only its SQLSTATE.
    #[derive(Debug)]
    struct ServerError(&'static str);

    impl std::fmt::Display for ServerError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for ServerError {}

    impl sqlx::error::DatabaseError for ServerError {
        fn message(&self) -> &str {
            "from the database"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn status_for(sqlstate: &'static str) -> StatusCode {
        metadata_error(MetadataError::Database(sqlx::Error::Database(Box::new(
            ServerError(sqlstate),
        ))))
        .status
    }

    #[test]
    fn a_restarting_or_unreachable_database_is_unavailable_not_a_bug() {
        // admin_shutdown, crash_shutdown, connection_failure
        for sqlstate in ["57P01", "57P02", "08006"] {
            assert_eq!(
                status_for(sqlstate),
                StatusCode::SERVICE_UNAVAILABLE,
                "{sqlstate}"
            );
        }
        // unique_violation, undefined_table: our own bugs
        for sqlstate in ["23505", "42P01"] {
            assert_eq!(
                status_for(sqlstate),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{sqlstate}"
            );
        }
    }
}
