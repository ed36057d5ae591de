//! The error codes of the distribution spec (plus the reference registry's
//! additions that clients recognise), each with its message and HTTP status
//! side by side so the two can never drift apart.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    RangeInvalid,
    TagInvalid,
    NotFound,
    MethodNotAllowed,
    Unavailable,
    Internal,
    /// A malformed request body or value: the account API's, and a `/v2/`
    /// query parameter or string that no spec code fits.
    InvalidRequest,
    /// The account API's: the name is already taken.
    Conflict,
}

impl ErrorCode {
    /// `(code, message, status)` as the spec and the reference registry define them.
    const fn entry(self) -> (&'static str, &'static str, u16) {
        use ErrorCode::*;
        match self {
            BlobUnknown => ("BLOB_UNKNOWN", "blob unknown to registry", 404),
            BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", "blob upload invalid", 400),
            BlobUploadUnknown => (
                "BLOB_UPLOAD_UNKNOWN",
                "blob upload unknown to registry",
                404,
            ),
            DigestInvalid => (
                "DIGEST_INVALID",
                "provided digest did not match uploaded content",
                400,
            ),
            ManifestBlobUnknown => (
                "MANIFEST_BLOB_UNKNOWN",
                "manifest references a manifest or blob unknown to registry",
                400,
            ),
            ManifestInvalid => ("MANIFEST_INVALID", "manifest invalid", 400),
            ManifestUnknown => ("MANIFEST_UNKNOWN", "manifest unknown", 404),
            NameInvalid => ("NAME_INVALID", "invalid repository name", 400),
            NameUnknown => ("NAME_UNKNOWN", "repository name not known to registry", 404),
            SizeInvalid => (
                "SIZE_INVALID",
                "provided length did not match content length",
                400,
            ),
            Unauthorized => ("UNAUTHORIZED", "authentication required", 401),
            Denied => ("DENIED", "requested access to the resource is denied", 403),
            Unsupported => ("UNSUPPORTED", "the operation is unsupported", 405),
            TooManyRequests => ("TOOMANYREQUESTS", "too many requests", 429),
            RangeInvalid => ("RANGE_INVALID", "invalid content range", 416),
            TagInvalid => ("TAG_INVALID", "manifest tag did not match URI", 400),
            NotFound => ("NOT_FOUND", "no such endpoint", 404),
            MethodNotAllowed => ("UNSUPPORTED", "method not allowed on this endpoint", 405),
            Unavailable => ("UNAVAILABLE", "service unavailable", 503),
            Internal => ("UNKNOWN", "internal server error", 500),
            InvalidRequest => ("INVALID_REQUEST", "the request is invalid", 400),
            Conflict => ("CONFLICT", "the resource already exists", 409),
        }
    }

    pub const fn code(self) -> &'static str {
        self.entry().0
    }

    pub const fn message(self) -> &'static str {
        self.entry().1
    }

    pub const fn status(self) -> u16 {
        self.entry().2
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}
