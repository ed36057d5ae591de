//! Reading, mounting and unlinking blobs. Existence and size come from
//! metadata alone; storage is touched only to stream bytes.

use bytes::Bytes;

use super::{Registry, RegistryError, RegistryResult};
use crate::metadata::{DeleteOutcome, LinkedBlob, Mounted, Origin};
use crate::oci::range::{ByteRange, RangeRequest, parse_download_range};
use crate::oci::{Digest, RepositoryName};
use crate::storage::{ByteStream, StorageError};

#[derive(Debug, Clone)]
pub struct BlobStat {
    pub digest: Digest,
    pub size: u64,
}

pub enum BlobBody {
    Stream(ByteStream),
    /// Fetch it from here instead (a presigned object-store URL).
    Redirect(String),
    /// Small content served from metadata (a manifest fetched through the blob endpoint).
    Bytes(Bytes),
}

pub struct BlobRead {
    pub size: u64,
    pub range: Option<ByteRange>,
    pub body: BlobBody,
}

enum Located {
    Stored(LinkedBlob),
    Manifest(Vec<u8>),
}

impl Registry {
    /// Looks the blob up in this repository. Manifests are content too, and
    /// clients may fetch them through the blob endpoint, as the reference
    /// registry allows.
    async fn locate_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> RegistryResult<Located> {
        if let Some(blob) = self.metadata.linked_blob(repository, digest).await? {
            return Ok(Located::Stored(blob));
        }
        match self.metadata.manifest_by_digest(repository, digest).await? {
            Some(manifest) => Ok(Located::Manifest(manifest.payload)),
            None => Err(RegistryError::BlobUnknown(digest.clone())),
        }
    }

    pub async fn stat_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> RegistryResult<BlobStat> {
        let size = match self.locate_blob(repository, digest).await? {
            Located::Stored(blob) => blob.size,
            Located::Manifest(payload) => payload.len() as u64,
        };
        Ok(BlobStat {
            digest: digest.clone(),
            size,
        })
    }

    /// Opens a blob for reading, honouring a `Range` header value.
    pub async fn read_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
        range_header: Option<&str>,
    ) -> RegistryResult<BlobRead> {
        let located = self.locate_blob(repository, digest).await?;
        let size = match &located {
            Located::Stored(blob) => blob.size,
            Located::Manifest(payload) => payload.len() as u64,
        };
        let range = match parse_download_range(range_header, size) {
            RangeRequest::Whole => None,
            RangeRequest::Partial(range) => Some(range),
            RangeRequest::Unsatisfiable => return Err(RegistryError::RangeNotSatisfiable { size }),
        };
        let body = match located {
            Located::Stored(blob)
                if range.is_none()
                    && let Some(url) = self.blobs.download_url(&blob.storage_key).await? =>
            {
                BlobBody::Redirect(url)
            }
            Located::Stored(blob) => match self.blobs.get(&blob.storage_key, range).await {
                Ok(stream) => BlobBody::Stream(stream),
                Err(StorageError::NotFound) => {
                    tracing::error!(%digest, "blob is recorded in metadata but missing from storage");
                    return Err(RegistryError::BlobUnknown(digest.clone()));
                }
                Err(e) => return Err(e.into()),
            },
            Located::Manifest(payload) => {
                let bytes = Bytes::from(payload);
                BlobBody::Bytes(match range {
                    Some(r) => bytes.slice(r.start as usize..=r.end as usize),
                    None => bytes,
                })
            }
        };
        Ok(BlobRead { size, range, body })
    }

    /// Links a blob of `from` into `repository`. `None` when `from` cannot
    /// provide it; the caller then falls back to a normal upload.
    pub async fn mount_blob(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        digest: &Digest,
        from: &RepositoryName,
    ) -> RegistryResult<Option<BlobStat>> {
        match self
            .metadata
            .mount_blob(origin, repository, from, digest)
            .await?
        {
            Mounted::Linked(size) => Ok(Some(BlobStat {
                digest: digest.clone(),
                size,
            })),
            Mounted::NotInSource => Ok(None),
            Mounted::QuotaExceeded(exceeded) => Err(super::uploads::quota_error(&exceeded)),
        }
    }

    /// Whether `repository` holds blob `digest` (a layer or config, not a
    /// manifest): whether a mount from it can succeed.
    pub async fn holds_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> RegistryResult<bool> {
        Ok(self
            .metadata
            .linked_blob(repository, digest)
            .await?
            .is_some())
    }

    /// A mount without `from` (OCI 1.1): links the blob from the first
    /// repository, by name, that holds it and that `readable` accepts.
    /// `None` when there is none; the caller then falls back to a normal
    /// upload. Reads the holders a page at a time, as the catalog does.
    pub async fn mount_blob_from_any(
        &self,
        origin: &Origin,
        repository: &RepositoryName,
        digest: &Digest,
        readable: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> RegistryResult<Option<BlobStat>> {
        const PAGE: u32 = 1000;
        let mut last: Option<String> = None;
        loop {
            let page = self
                .metadata
                .repositories_with_blob(digest, last.as_deref(), PAGE)
                .await?;
            for source in page.names.iter().filter(|name| readable(name)) {
                let Ok(source) = source.parse::<RepositoryName>() else {
                    continue;
                };
                // `None`: unlinked from there meanwhile; try the next.
                if let Some(blob) = self.mount_blob(origin, repository, digest, &source).await? {
                    return Ok(Some(blob));
                }
            }
            if !page.more {
                return Ok(None);
            }
            last = page.names.last().cloned();
        }
    }

    /// Unlinks a blob from a repository. Refused while a manifest of the
    /// repository still refers to it, so a tagged image can never lose a layer.
    pub async fn delete_blob(
        &self,
        repository: &RepositoryName,
        digest: &Digest,
    ) -> RegistryResult<()> {
        match self.metadata.unlink_blob(repository, digest).await? {
            DeleteOutcome::Deleted => Ok(()),
            DeleteOutcome::NotFound => Err(RegistryError::BlobUnknown(digest.clone())),
            DeleteOutcome::ReferencedBy(manifests) => {
                let (noun, listed) = super::manifests::named(&manifests, "manifest", "manifests");
                Err(RegistryError::InUse {
                    message: format!(
                        "blob {digest} is used by {noun} {listed}: delete the {noun} first"
                    ),
                    digest: digest.clone(),
                    referenced_by: manifests,
                })
            }
            DeleteOutcome::Immutable { tag, rule } => Err(RegistryError::Denied(format!(
                "tag `{tag}` is immutable by {rule}"
            ))),
        }
    }
}
