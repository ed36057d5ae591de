//! A blob store wrapper that reports failed operations (for metrics),
//! leaving the wrapped store unaware of them.

use std::sync::Arc;

use async_trait::async_trait;

use super::*;

type OnError = dyn Fn(&'static str, &StorageError) + Send + Sync;

pub struct MeteredBlobStore {
    inner: Arc<dyn BlobStore>,
    on_error: Box<OnError>,
}

impl MeteredBlobStore {
    /// `on_error` is called with the operation's name for every failure
    /// except a blob that is simply absent.
    pub fn new(
        inner: Arc<dyn BlobStore>,
        on_error: impl Fn(&'static str, &StorageError) + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            on_error: Box::new(on_error),
        }
    }

    fn observe<T>(
        &self,
        operation: &'static str,
        result: Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        if let Err(e) = &result
            && !matches!(e, StorageError::NotFound)
        {
            (self.on_error)(operation, e);
        }
        result
    }
}

#[async_trait]
impl BlobStore for MeteredBlobStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let result = self.inner.ping().await;
        self.observe("ping", result)
    }

    async fn begin_upload(&self, id: &str) -> Result<String, StorageError> {
        let result = self.inner.begin_upload(id).await;
        self.observe("begin_upload", result)
    }

    async fn append(
        &self,
        upload: &StagedUpload,
        offset: u64,
        body: &mut ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended, AppendError> {
        let result = self.inner.append(upload, offset, body, observe).await;
        if let Err(AppendError::Storage(e)) = &result
            && !matches!(e, StorageError::NotFound)
        {
            (self.on_error)("append", e);
        }
        result
    }

    async fn read_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        let result = self.inner.read_upload(upload, len).await;
        self.observe("read_upload", result)
    }

    async fn commit_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
        digest: &Digest,
    ) -> Result<String, StorageError> {
        let result = self.inner.commit_upload(upload, len, digest).await;
        self.observe("commit_upload", result)
    }

    async fn abort_upload(&self, upload: &StagedUpload) -> Result<(), StorageError> {
        let result = self.inner.abort_upload(upload).await;
        self.observe("abort_upload", result)
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let result = self.inner.get(key, range).await;
        self.observe("get", result)
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let result = self.inner.delete(key).await;
        self.observe("delete", result)
    }

    async fn download_url(&self, key: &str) -> Result<Option<String>, StorageError> {
        let result = self.inner.download_url(key).await;
        self.observe("download_url", result)
    }
}
