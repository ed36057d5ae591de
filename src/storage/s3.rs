//! Blobs in an S3 bucket (AWS or any S3-compatible server), through
//! `object_store`.
//!
//! Layout under the configured prefix:
//! ```text
//! blobs/by-upload/<upload id>         a committed blob (the key is recorded in metadata)
//! staging/<upload id>/tail-<random>   bytes of an upload not yet making a whole part
//! ```
//! An upload streams into an S3 multipart upload created (lazily) for the
//! key `blobs/by-upload/<id>`: every full part (`part_size`, announced as
//! `OCI-Chunk-Min-Length`) is sent as it fills; the remainder of a request
//! is kept as a small tail object and prepended to the next chunk. A part
//! is sent while the next one is received, one at a time. The
//! session's multipart id, part ETags and tail live in the session row, so
//! any instance can continue it. Completing never copies the blob: the
//! object already sits at its final key, which is why that key is recorded
//! per blob instead of derived from the digest (an S3 object cannot be
//! renamed, and a server-side copy is limited to 5 GiB and costs a full
//! read and write). Memory per request is bounded by two parts.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectStore, PutPayload, RetryConfig,
};
use serde::{Deserialize, Serialize};

use super::*;

/// S3 settings, after checking.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket, without leading or trailing slash.
    pub prefix: String,
    /// Explicit values; unset ones come from the standard `AWS_*` variables.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub allow_http: Option<bool>,
    pub virtual_hosted_style: bool,
    pub part_size: u64,
    /// When set, blob downloads are redirected to presigned URLs valid this long.
    pub redirect: Option<Duration>,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .field("part_size", &self.part_size)
            .field("redirect", &self.redirect)
            .finish()
    }
}

/// What an upload session keeps between requests (JSON in its row).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct S3UploadState {
    /// Created with the first full part.
    multipart_id: Option<String>,
    /// ETags of the parts sent so far, in order.
    parts: Vec<String>,
    tail_key: Option<String>,
    tail_len: u64,
}

/// A part being sent; dropping it cancels the send.
struct PartInFlight(tokio::task::JoinHandle<Result<String, StorageError>>);

impl Drop for PartInFlight {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct S3BlobStore {
    store: Arc<AmazonS3>,
    prefix: String,
    part_size: usize,
    redirect: Option<Duration>,
}

fn storage_error(error: object_store::Error) -> StorageError {
    match error {
        object_store::Error::NotFound { .. } => StorageError::NotFound,
        other => StorageError::Unavailable(other.to_string()),
    }
}

impl S3BlobStore {
    pub fn open(config: &S3Config) -> Result<Self, StorageError> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_virtual_hosted_style_request(config.virtual_hosted_style)
            // Bounded retries: a short S3 hiccup is absorbed, an outage
            // reaches clients as 503 within seconds instead of minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: 4,
                retry_timeout: Duration::from_secs(15),
            })
            // Set key by key: replacing the client options would drop what
            // `from_env` read (AWS_ALLOW_HTTP is one of them).
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
                "5s",
            )
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::Timeout), "120s");
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &config.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(allow) = config.allow_http {
            builder = builder.with_allow_http(allow);
        }
        let store = builder
            .build()
            .map_err(|e| StorageError::Unavailable(format!("S3 configuration: {e}")))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: config.prefix.clone(),
            part_size: config.part_size as usize,
            redirect: config.redirect,
        })
    }

    fn path(&self, key: &str) -> Path {
        if self.prefix.is_empty() {
            Path::from(key)
        } else {
            Path::from(format!("{}/{key}", self.prefix))
        }
    }

    fn data_key(id: &str) -> String {
        format!("blobs/by-upload/{id}")
    }

    fn staging_prefix(id: &str) -> String {
        format!("staging/{id}")
    }

    fn state(upload: &StagedUpload) -> Result<S3UploadState, StorageError> {
        if upload.storage_state.is_empty() {
            return Ok(S3UploadState::default());
        }
        serde_json::from_str(&upload.storage_state)
            .map_err(|e| StorageError::Unavailable(format!("upload state is corrupt: {e}")))
    }

    async fn read_tail(
        &self,
        state: &S3UploadState,
        into: &mut BytesMut,
    ) -> Result<(), StorageError> {
        let Some(key) = &state.tail_key else {
            return Ok(());
        };
        let lost = |found: u64| StorageError::StagingLost {
            found,
            expected: state.tail_len,
        };
        let bytes = match self.store.get(&self.path(key)).await {
            Ok(result) => result.bytes().await.map_err(storage_error)?,
            Err(object_store::Error::NotFound { .. }) => return Err(lost(0)),
            Err(e) => return Err(storage_error(e)),
        };
        if (bytes.len() as u64) < state.tail_len {
            return Err(lost(bytes.len() as u64));
        }
        into.extend_from_slice(&bytes[..state.tail_len as usize]);
        Ok(())
    }

    /// Starts sending `part` as the upload's next part (creating the
    /// multipart upload with the first), on a task of its own so that the
    /// next part is received meanwhile. Its ETag is pushed onto
    /// `state.parts` by [`Self::part_sent`], before the next part starts.
    async fn start_part(
        &self,
        id: &str,
        state: &mut S3UploadState,
        part: Bytes,
    ) -> Result<PartInFlight, StorageError> {
        let path = self.path(&Self::data_key(id));
        let multipart_id = match &state.multipart_id {
            Some(multipart_id) => multipart_id.clone(),
            None => {
                let created = self
                    .store
                    .create_multipart(&path)
                    .await
                    .map_err(storage_error)?;
                state.multipart_id = Some(created.clone());
                created
            }
        };
        let (store, index) = (self.store.clone(), state.parts.len());
        let sending = tokio::spawn(async move {
            store
                .put_part(&path, &multipart_id, index, PutPayload::from(part))
                .await
                .map(|part| part.content_id)
                .map_err(storage_error)
        });
        Ok(PartInFlight(sending))
    }

    /// Waits for the part in flight, if any, and records its ETag.
    async fn part_sent(
        state: &mut S3UploadState,
        in_flight: &mut Option<PartInFlight>,
    ) -> Result<(), StorageError> {
        if let Some(PartInFlight(sending)) = in_flight.as_mut() {
            let sent = sending
                .await
                .map_err(|e| StorageError::Unavailable(format!("sending a part failed: {e}")));
            *in_flight = None;
            state.parts.push(sent??);
        }
        Ok(())
    }

    /// Removes the staging objects of an upload (best effort: leftovers are
    /// small and collected with the session's prefix later).
    async fn remove_staging(&self, id: &str) {
        let prefix = self.path(&Self::staging_prefix(id));
        let listed: Vec<_> = match self.store.list(Some(&prefix)).try_collect().await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(upload = id, error = %e, "could not list upload staging objects");
                return;
            }
        };
        for object in listed {
            if let Err(e) = self.store.delete(&object.location).await {
                tracing::warn!(upload = id, error = %e, "could not remove an upload staging object");
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            min_chunk_size: Some(self.part_size as u64),
            // Parts of an unfinished multipart upload cannot be read back.
            reads_staged_uploads: false,
        }
    }

    async fn ping(&self) -> Result<(), StorageError> {
        match self.store.head(&self.path(".berth-ping")).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn begin_upload(&self, _id: &str) -> Result<String, StorageError> {
        // Nothing to create yet: small blobs never need a multipart upload.
        Ok(serde_json::to_string(&S3UploadState::default()).expect("state serializes"))
    }

    async fn append(
        &self,
        upload: &StagedUpload,
        offset: u64,
        body: &mut ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended, AppendError> {
        let mut state = Self::state(upload)?;
        let staged = state.parts.len() as u64 * self.part_size as u64 + state.tail_len;
        if staged != offset {
            return Err(StorageError::StagingLost {
                found: staged,
                expected: offset,
            }
            .into());
        }
        let created_here = state.multipart_id.is_none();
        let mut buffer = BytesMut::with_capacity(self.part_size);
        self.read_tail(&state, &mut buffer).await?;
        let mut written = 0u64;
        // One part on its way while the next is received: sending and
        // receiving overlap, and at most two parts are held.
        let mut in_flight = None;
        let result: Result<(), AppendError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(AppendError::Body)?;
                observe(&chunk);
                written += chunk.len() as u64;
                buffer.extend_from_slice(&chunk);
                while buffer.len() >= self.part_size {
                    let part = buffer.split_to(self.part_size).freeze();
                    Self::part_sent(&mut state, &mut in_flight).await?;
                    in_flight = Some(self.start_part(&upload.id, &mut state, part).await?);
                }
            }
            Self::part_sent(&mut state, &mut in_flight).await?;
            Ok(())
        }
        .await;
        // A part still in flight after a failure is cancelled (dropping it
        // aborts its task) before the multipart upload is aborted below.
        drop(in_flight);
        if let Err(e) = result {
            // A multipart upload created by this failed request is not
            // recorded anywhere; abort it rather than leave parts to bill for.
            if let (true, Some(multipart_id)) = (created_here, &state.multipart_id) {
                let path = self.path(&Self::data_key(&upload.id));
                if let Err(abort) = self.store.abort_multipart(&path, multipart_id).await {
                    tracing::warn!(upload = %upload.id, error = %abort, "could not abort a multipart upload");
                }
            }
            return Err(e);
        }
        state.tail_len = buffer.len() as u64;
        state.tail_key = if buffer.is_empty() {
            None
        } else {
            // A fresh key per request, so a racing or failed request never
            // overwrites the tail a recorded state points at.
            let key = format!(
                "{}/tail-{}",
                Self::staging_prefix(&upload.id),
                uuid::Uuid::new_v4().simple()
            );
            self.store
                .put(&self.path(&key), PutPayload::from(buffer.freeze()))
                .await
                .map_err(storage_error)?;
            Some(key)
        };
        Ok(Appended {
            written,
            storage_state: serde_json::to_string(&state).expect("state serializes"),
        })
    }

    async fn read_upload(
        &self,
        _upload: &StagedUpload,
        _len: u64,
    ) -> Result<ByteStream, StorageError> {
        // Never called: the capabilities say staging cannot be read back.
        Err(StorageError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the parts of an unfinished S3 multipart upload cannot be read back",
        )))
    }

    async fn commit_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
        _digest: &Digest,
    ) -> Result<String, StorageError> {
        let state = Self::state(upload)?;
        let key = Self::data_key(&upload.id);
        let path = self.path(&key);
        let mut tail = BytesMut::new();
        match self.read_tail(&state, &mut tail).await {
            Ok(()) => {}
            // A retried commit: the first one completed the object and
            // removed the tail with the rest of the staging.
            Err(StorageError::StagingLost { .. })
                if self
                    .store
                    .head(&path)
                    .await
                    .is_ok_and(|meta| meta.size == len) =>
            {
                return Ok(key);
            }
            Err(e) => return Err(e),
        }
        let committed = match &state.multipart_id {
            // Small blob: one plain PUT of the tail.
            None => self
                .store
                .put(&path, PutPayload::from(tail.freeze()))
                .await
                .map(|_| ()),
            Some(multipart_id) => {
                let mut parts: Vec<PartId> = state
                    .parts
                    .iter()
                    .map(|id| PartId {
                        content_id: id.clone(),
                    })
                    .collect();
                // A tail that outlived a completed first commit (its
                // removal is best effort) fails here; the check below then
                // finds the object there.
                let last = match tail.is_empty() {
                    true => Ok(None),
                    false => self
                        .store
                        .put_part(
                            &path,
                            multipart_id,
                            parts.len(),
                            PutPayload::from(tail.freeze()),
                        )
                        .await
                        .map(Some),
                };
                match last {
                    Ok(last) => {
                        parts.extend(last);
                        self.store
                            .complete_multipart(&path, multipart_id, parts)
                            .await
                            .map(|_| ())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = committed {
            // A retried commit finds the multipart upload gone but the object there.
            match self.store.head(&path).await {
                Ok(meta) if meta.size == len => {}
                _ => return Err(storage_error(e)),
            }
        }
        let meta = self.store.head(&path).await.map_err(storage_error)?;
        if meta.size != len {
            return Err(StorageError::StagingLost {
                found: meta.size,
                expected: len,
            });
        }
        self.remove_staging(&upload.id).await;
        Ok(key)
    }

    async fn abort_upload(&self, upload: &StagedUpload) -> Result<(), StorageError> {
        let state = Self::state(upload)?;
        if let Some(multipart_id) = &state.multipart_id {
            let path = self.path(&Self::data_key(&upload.id));
            match self.store.abort_multipart(&path, multipart_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(storage_error(e)),
            }
        }
        self.remove_staging(&upload.id).await;
        Ok(())
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let options = GetOptions {
            range: range.map(|r| GetRange::Bounded(r.start..r.end + 1)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.path(key), options)
            .await
            .map_err(storage_error)?;
        Ok(Box::pin(
            result
                .into_stream()
                .map_err(|e| std::io::Error::other(e.to_string())),
        ))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(storage_error(e)),
        }
    }

    async fn download_url(&self, key: &str) -> Result<Option<String>, StorageError> {
        let Some(expires_in) = self.redirect else {
            return Ok(None);
        };
        // Signing is local (no request to S3): cheap enough for every pull.
        let url = self
            .store
            .signed_url(axum::http::Method::GET, &self.path(key), expires_in)
            .await
            .map_err(storage_error)?;
        Ok(Some(url.to_string()))
    }
}
