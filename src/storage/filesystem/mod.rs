//! Blobs on a local filesystem: [`FilesystemBlobStore`], whose
//! [`BlobStore`] methods call the modules that own each concern:
//!
//! - `layout`: where blobs and staging files live, and path safety;
//! - `staging`: the pipelined staging writer, the per-upload epochs that
//!   keep an abandoned request's queued write from landing, cutting staging
//!   back to its recorded length, moving it into place at commit;
//! - `durable`: getting bytes and names onto the disk with `fsync` on
//!   (direct writes, writeback, the commit's flushes);
//! - `read`: the read-ahead reader behind pulls, and which reads go around
//!   the page cache.
//!
//! The store writes with its own staging writer rather than
//! `object_store`'s local backend because uploads need append-at-offset and
//! resumable staging across restarts, which that backend does not offer.
//! A commit's file operations and the flush of the file's data run in one
//! blocking-pool task, with the directory flushed by a second beside it.

mod durable;
mod layout;
mod read;
mod staging;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::fs::{self, File};

use self::durable::{DirectIo, flush_committed, sync_dir};
use self::layout::Layout;
use self::read::{FirstReads, read_stream};
use self::staging::{Epochs, StagingWriter, move_into_place, supersede, take_over};
use super::*;

pub struct FilesystemBlobStore {
    layout: Layout,
    /// Flush blobs to disk before a commit is acknowledged.
    fsync: bool,
    /// Which request owns each upload's staging file.
    epochs: Epochs,
    /// Staging writes go around the page cache where the filesystem allows
    /// ([`durable::DirectWrites`]), and so do first reads ([`read::FirstReads`]).
    direct_io: Arc<DirectIo>,
    /// Which files were read before: a first read goes around the page
    /// cache for what it does not hold ([`read::FirstReads`]).
    first_reads: FirstReads,
}

impl FilesystemBlobStore {
    /// Opens (creating if needed) a store rooted at `root`. With `fsync`, a
    /// committed blob's bytes and name are on disk before the commit returns;
    /// without it they are left to the kernel's writeback, which survives a
    /// crash of Berth but not of the machine.
    pub async fn open(root: impl Into<PathBuf>, fsync: bool) -> Result<Self, StorageError> {
        let layout = Layout::new(root.into());
        fs::create_dir_all(layout.blobs_dir()).await?;
        fs::create_dir_all(layout.uploads_dir()).await?;
        if fsync {
            let dirs = layout.root_dirs();
            tokio::task::spawn_blocking(move || dirs.iter().try_for_each(|dir| sync_dir(dir)))
                .await
                .map_err(join_error)??;
        }
        let direct_io = Arc::new(DirectIo::new());
        Ok(Self {
            layout,
            fsync,
            epochs: Epochs::default(),
            first_reads: FirstReads::new(direct_io.clone()),
            direct_io,
        })
    }
}

fn not_found_as(err: std::io::Error) -> StorageError {
    if err.kind() == std::io::ErrorKind::NotFound {
        StorageError::NotFound
    } else {
        StorageError::Io(err)
    }
}

/// A blocking-pool task that panicked (never expected) reports as an I/O error.
fn join_error(e: tokio::task::JoinError) -> StorageError {
    StorageError::Io(std::io::Error::other(e))
}

#[async_trait]
impl BlobStore for FilesystemBlobStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            min_chunk_size: None,
            reads_staged_uploads: true,
        }
    }

    async fn ping(&self) -> Result<(), StorageError> {
        fs::metadata(self.layout.uploads_dir()).await?;
        Ok(())
    }

    async fn begin_upload(&self, id: &str) -> Result<String, StorageError> {
        File::create(self.layout.upload_path(id)?).await?;
        Ok(String::new())
    }

    async fn append(
        &self,
        upload: &StagedUpload,
        offset: u64,
        body: &mut ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended, AppendError> {
        let path = self.layout.upload_path(&upload.id)?;
        let guard = self.epochs.get(&upload.id);
        let writer =
            StagingWriter::open(path, offset, guard, self.direct_io.clone(), self.fsync).await?;
        let written = writer.write_body(body, observe).await?;
        Ok(Appended {
            written,
            storage_state: upload.storage_state.clone(),
        })
    }

    async fn read_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        read_stream(
            &self.first_reads,
            self.layout.upload_path(&upload.id)?,
            0,
            Some(len),
        )
        .await
    }

    async fn commit_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
        digest: &Digest,
    ) -> Result<String, StorageError> {
        let staging = self.layout.upload_path(&upload.id)?;
        let key = Layout::blob_key(digest, &upload.id);
        let target = self.layout.key_path(&key)?;
        let guard = self.epochs.get(&upload.id);
        let dir = target
            .parent()
            .expect("blob paths have a parent")
            .to_path_buf();
        let fsync = self.fsync;
        let parents = if fsync {
            self.layout.parents_to_flush(&dir)
        } else {
            Vec::new()
        };
        let newly_flushed = !parents.is_empty();
        // One trip to the blocking pool for the whole move and the flush of
        // the data, not one per call.
        let names = tokio::task::spawn_blocking(move || {
            let current = take_over(&guard);
            let file = move_into_place(&staging, &target, len)?;
            drop(current);
            fsync
                .then(|| flush_committed(&file, &target, parents))
                .transpose()
        })
        .await
        .map_err(join_error)??;
        if let Some(names) = names {
            names.await.map_err(join_error)??;
            if newly_flushed {
                self.layout.flushed(dir);
            }
        }
        Ok(key)
    }

    async fn abort_upload(&self, upload: &StagedUpload) -> Result<(), StorageError> {
        let path = self.layout.upload_path(&upload.id)?;
        supersede(&self.epochs, &upload.id).await?;
        match fs::remove_file(path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let path = self.layout.key_path(key)?;
        match range {
            Some(range) => {
                read_stream(&self.first_reads, path, range.start, Some(range.len())).await
            }
            None => read_stream(&self.first_reads, path, 0, None).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match fs::remove_file(self.layout.key_path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::read::READ_CHUNK;
    use super::staging::WRITE_BATCH;
    use super::*;
    use crate::oci::{Algorithm, Digest};

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        let items: Vec<std::io::Result<Bytes>> =
            parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures_util::stream::iter(items))
    }

    async fn collect(mut s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn staged_bytes_become_visible_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemBlobStore::open(dir.path(), true).await.unwrap();
        let upload = StagedUpload {
            id: "u1".into(),
            storage_state: store.begin_upload("u1").await.unwrap(),
        };
        let mut seen = Vec::new();
        let a = store
            .append(&upload, 0, &mut body(&[b"hello ", b"wor"]), &mut |b| {
                seen.extend_from_slice(b)
            })
            .await
            .unwrap();
        assert_eq!(a.written, 9);
        // A failed append left 3 extra bytes; the next append at offset 9 discards them.
        let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
            Ok(Bytes::from_static(b"XYZ")),
            Err(std::io::Error::other("client went away")),
        ]));
        let mut failing = failing;
        assert!(matches!(
            store.append(&upload, 9, &mut failing, &mut |_| {}).await,
            Err(AppendError::Body(_))
        ));
        store
            .append(&upload, 9, &mut body(&[b"ld"]), &mut |_| {})
            .await
            .unwrap();
        let digest = Digest::of_bytes(Algorithm::Sha256, b"hello world");
        let key = Layout::blob_key(&digest, "u1");
        assert!(matches!(
            store.get(&key, None).await,
            Err(StorageError::NotFound)
        ));
        // The blob's directory is new: its name, and its parent's, are
        // flushed with the first commit into it and not again.
        let blob_dir = store
            .layout
            .key_path(&key)
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let blobs = dir.path().join("blobs");
        assert_eq!(
            store.layout.parents_to_flush(&blob_dir),
            [blobs.join("sha256"), blobs.clone()]
        );
        assert_eq!(
            store.commit_upload(&upload, 11, &digest).await.unwrap(),
            key
        );
        assert!(store.layout.parents_to_flush(&blob_dir).is_empty());
        assert_eq!(
            store.commit_upload(&upload, 11, &digest).await.unwrap(),
            key
        );
        assert!(matches!(
            store.get("blobs/../../etc/passwd", None).await,
            Err(StorageError::NotFound)
        ));
        assert_eq!(
            collect(store.get(&key, None).await.unwrap()).await,
            b"hello world"
        );
        let range = ByteRange { start: 6, end: 8 };
        assert_eq!(
            collect(store.get(&key, Some(range)).await.unwrap()).await,
            b"wor"
        );
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(matches!(
            store.get(&key, None).await,
            Err(StorageError::NotFound)
        ));
    }

    #[tokio::test]
    async fn without_fsync_blobs_commit_and_read_back_the_same() {
        blobs_commit_and_read_back_the_same(false, false).await;
    }

    /// With `fsync` on, most of the bytes are written directly, around the page cache.
    #[tokio::test]
    async fn with_fsync_blobs_commit_and_read_back_the_same() {
        blobs_commit_and_read_back_the_same(true, true).await;
    }

    #[tokio::test]
    async fn with_fsync_on_a_filesystem_without_direct_io_blobs_commit_and_read_back_the_same() {
        blobs_commit_and_read_back_the_same(true, false).await;
    }

    async fn blobs_commit_and_read_back_the_same(fsync: bool, direct_io: bool) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FilesystemBlobStore::open(dir.path(), fsync).await.unwrap();
        if !direct_io {
            store.direct_io = Arc::new(DirectIo::refused());
            store.first_reads = FirstReads::new(store.direct_io.clone());
        }
        let upload = StagedUpload {
            id: "u3".into(),
            storage_state: store.begin_upload("u3").await.unwrap(),
        };
        // More than one write batch and one read chunk.
        let content: Vec<u8> = (0..3 * WRITE_BATCH + 17).map(|i| (i % 251) as u8).collect();
        let parts: Vec<std::io::Result<Bytes>> = content
            .chunks(100_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let mut stream: ByteStream = Box::pin(futures_util::stream::iter(parts));
        let appended = store
            .append(&upload, 0, &mut stream, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(appended.written, content.len() as u64);
        let digest = Digest::of_bytes(Algorithm::Sha256, &content);
        let key = store
            .commit_upload(&upload, content.len() as u64, &digest)
            .await
            .unwrap();
        assert_eq!(collect(store.get(&key, None).await.unwrap()).await, content);
        let range = ByteRange {
            start: 5,
            end: READ_CHUNK as u64 + 9,
        };
        assert_eq!(
            collect(store.get(&key, Some(range)).await.unwrap()).await,
            &content[5..READ_CHUNK + 10]
        );
    }

    #[tokio::test]
    async fn lost_staging_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemBlobStore::open(dir.path(), true).await.unwrap();
        let upload = StagedUpload {
            id: "gone".into(),
            storage_state: String::new(),
        };
        assert!(matches!(
            store
                .append(&upload, 5, &mut body(&[b"x"]), &mut |_| {})
                .await,
            Err(AppendError::Storage(StorageError::StagingLost { .. }))
        ));
        let bad = StagedUpload {
            id: "../etc".into(),
            storage_state: String::new(),
        };
        assert!(store.abort_upload(&bad).await.is_err());
    }
}
