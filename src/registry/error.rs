//! What can go wrong in registry logic, in the registry's terms. The mapping
//! to wire error codes lives in `http::error`.

use crate::metadata::MetadataError;
use crate::oci::Digest;
use crate::oci::manifest::ManifestError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob {0} is not in this repository")]
    BlobUnknown(Digest),
    #[error("upload session is unknown")]
    UploadUnknown,
    #[error("chunk does not start at the current offset {received}")]
    ChunkOutOfOrder { received: u64 },
    #[error("{0}")]
    UploadInvalid(String),
    #[error("range not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("content length does not match: {0}")]
    SizeInvalid(String),
    #[error("content has digest {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    ManifestInvalid(#[from] ManifestError),
    #[error("manifest is larger than {0} bytes")]
    ManifestTooLarge(usize),
    #[error("manifest refers to {0}, which is not in this repository")]
    ManifestReferenceUnknown(Digest),
    #[error("manifest unknown")]
    ManifestUnknown,
    #[error("repository unknown")]
    RepositoryUnknown,
    /// A page cursor this registry did not hand out.
    #[error("`cursor` is not one this registry handed out: start from the first page")]
    CursorInvalid,
    /// Still used by `referenced_by` (the first few of the manifests that
    /// use `digest`); `message` says what to delete first.
    #[error("{message}")]
    InUse {
        digest: Digest,
        referenced_by: Vec<Digest>,
        message: String,
    },
    /// A rule of the registry forbids it (an immutable tag).
    #[error("{0}")]
    Denied(String),
    #[error("metadata store: {0}")]
    Metadata(#[from] MetadataError),
    #[error("blob store: {0}")]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Internal(String),
}
