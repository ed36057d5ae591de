//! Blobs on a local filesystem.
//!
//! Layout under the root:
//! ```text
//! blobs/<algorithm>/<first two hex>/<hex>.<upload id>   committed blobs
//! uploads/<upload id>                                   staging files
//! ```
//! A committed blob's name includes the upload it came from, so two uploads
//! of one digest never share a file: the garbage collector deleting the
//! file of a collected blob can never hit the file a concurrent upload of
//! the same content has just committed (the duplicate is deleted instead
//! when its metadata finds the digest recorded).
//! Staging files live on the same filesystem as blobs, so a commit is a
//! `rename`, which is atomic. The store writes with its own staging writer
//! rather than `object_store`'s local backend because uploads need
//! append-at-offset and resumable staging across restarts, which that
//! backend does not offer.
//!
//! Pushes are pipelined: the request task receives and hashes the next
//! batch of body bytes while the blocking pool writes the previous one.
//! With `fsync` on, the writer asks the kernel to start writing back every
//! [`WRITEBACK_EVERY`] bytes and at the end of each request (unless less
//! than a batch is left), so disk writes overlap with receiving and the
//! flush before a commit waits only for what is still in flight instead of
//! the whole blob. A commit's file operations run in one blocking-pool task,
//! and its two flushes in two side by side.

use std::collections::{HashMap, HashSet};
use std::io::{IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use async_trait::async_trait;
use futures_util::StreamExt;
use tokio::fs::{self, File};
use tokio::task::JoinHandle;

use super::direct_io::{DirectIo, DirectWrites};
use super::*;

/// Pulls read this much at a time, straight into the buffer that is sent,
/// the next read running while the previous one is on the wire; so a pull
/// holds about two of these.
const READ_CHUNK: usize = 512 * 1024;
/// Body bytes gathered into one vectored write. One batch is written while
/// the next is received, so an upload holds about two batches in memory.
const WRITE_BATCH: usize = 1024 * 1024;
/// With `fsync` on, writeback of the staging file is started after this many new bytes.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

pub struct FilesystemBlobStore {
    root: PathBuf,
    /// Flush blobs to disk before a commit is acknowledged.
    fsync: bool,
    staging_guards: StagingGuards,
    /// With `fsync` on: blob directories whose own names this process has
    /// flushed into their parents. A commit into any other directory (one
    /// it may just have created) flushes the parents too, or a crash could
    /// lose the directory, and the committed blob with it.
    flushed_dirs: Mutex<HashSet<PathBuf>>,
    /// With `fsync` on, staging writes go around the page cache where the
    /// filesystem allows ([`DirectWrites`]).
    direct_io: Arc<DirectIo>,
}

impl FilesystemBlobStore {
    /// Opens (creating if needed) a store rooted at `root`. With `fsync`, a
    /// committed blob's bytes and name are on disk before the commit returns;
    /// without it they are left to the kernel's writeback, which survives a
    /// crash of Berth but not of the machine.
    pub async fn open(root: impl Into<PathBuf>, fsync: bool) -> Result<Self, StorageError> {
        let root = root.into();
        fs::create_dir_all(root.join("blobs")).await?;
        fs::create_dir_all(root.join("uploads")).await?;
        if fsync {
            // A root named relative to the working directory, with no parent in its name, sits in `.`.
            let parent = root
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let dirs = [root.clone(), parent.to_path_buf()];
            tokio::task::spawn_blocking(move || dirs.iter().try_for_each(|dir| sync_dir(dir)))
                .await
                .map_err(join_error)??;
        }
        Ok(Self {
            root,
            fsync,
            staging_guards: StagingGuards::default(),
            flushed_dirs: Mutex::default(),
            direct_io: Arc::new(DirectIo::new()),
        })
    }

    /// `blobs/<algorithm>/<first two hex>/<hex>.<upload id>`, relative to the root.
    fn blob_key(digest: &Digest, upload_id: &str) -> String {
        let hex = digest.hex();
        format!(
            "blobs/{}/{}/{hex}.{upload_id}",
            digest.algorithm().name(),
            &hex[..2]
        )
    }

    /// Keys come from metadata this store wrote; the check keeps a corrupt
    /// row from ever naming a path outside the store.
    fn key_path(&self, key: &str) -> Result<PathBuf, StorageError> {
        let safe = key.starts_with("blobs/")
            && key.split('/').all(|part| {
                !part.is_empty()
                    && !part.starts_with('.')
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            });
        if !safe {
            return Err(StorageError::NotFound);
        }
        Ok(self.root.join(key))
    }

    fn flushed_dirs(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.flushed_dirs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// With `fsync` on, the directories holding the names of a blob
    /// directory and its ancestors below `blobs` (whose own name was flushed
    /// at open), unless this process has flushed them before.
    fn parents_to_flush(&self, dir: &Path) -> Vec<PathBuf> {
        if !self.fsync || self.flushed_dirs().contains(dir) {
            return Vec::new();
        }
        let blobs = self.root.join("blobs");
        dir.ancestors()
            .skip(1)
            .take_while(|p| p.starts_with(&blobs))
            .map(Path::to_path_buf)
            .collect()
    }

    /// Upload ids are generated by the registry (UUIDs), never taken from a
    /// client unchecked, but the check here keeps the path safe regardless.
    fn upload_path(&self, id: &str) -> Result<PathBuf, StorageError> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(StorageError::NotFound);
        }
        Ok(self.root.join("uploads").join(id))
    }
}

fn not_found_as(err: std::io::Error) -> StorageError {
    if err.kind() == std::io::ErrorKind::NotFound {
        StorageError::NotFound
    } else {
        StorageError::Io(err)
    }
}

/// Which request owns an upload's staging file. A request dropped mid-push
/// (its client went away) can leave a batch write queued on the blocking
/// pool; every append, commit and abort first bumps the upload's epoch under
/// this lock, so such a stale write finds a newer epoch and writes nothing
/// instead of landing in bytes a later request wrote or committed.
#[derive(Default)]
struct StagingGuards(Mutex<HashMap<String, Weak<StagingGuard>>>);

type StagingGuard = Mutex<u64>;

impl StagingGuards {
    fn get(&self, id: &str) -> Arc<StagingGuard> {
        let mut guards = self.0.lock().expect("staging guard map poisoned");
        if let Some(guard) = guards.get(id).and_then(Weak::upgrade) {
            return guard;
        }
        if guards.len() >= 1024 {
            guards.retain(|_, guard| guard.strong_count() > 0);
        }
        let guard = Arc::new(Mutex::new(0));
        guards.insert(id.to_string(), Arc::downgrade(&guard));
        guard
    }

    /// Takes the staging file away from any earlier request.
    async fn supersede(&self, id: &str) -> Result<(), StorageError> {
        let guard = self.get(id);
        tokio::task::spawn_blocking(move || drop(take_over(&guard)))
            .await
            .map_err(join_error)?;
        Ok(())
    }
}

/// The upload's epoch, once no write holds it. A write that panicked
/// poisons nothing worth refusing: the epoch is a plain counter.
fn lock_epoch(guard: &StagingGuard) -> std::sync::MutexGuard<'_, u64> {
    guard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits for a write in progress, then makes every queued one stale. The
/// lock stays held until the returned guard is dropped: a request that is
/// cutting or reading back the staging file keeps any other from writing
/// in between.
fn take_over(guard: &StagingGuard) -> std::sync::MutexGuard<'_, u64> {
    let mut epoch = lock_epoch(guard);
    *epoch += 1;
    epoch
}

/// Appends one request's body to a staging file, one batch write in flight
/// on the blocking pool at a time.
struct StagingWriter {
    file: Arc<std::fs::File>,
    guard: Arc<StagingGuard>,
    epoch: u64,
    /// With `fsync` on, where the filesystem allows: whole pages go to the
    /// disk directly ([`DirectWrites`]). Away on the blocking pool while a
    /// batch is written, and back with its result.
    direct: Option<DirectWrites>,
    /// Otherwise, with `fsync` on: writeback started as batches land.
    writeback: Option<Writeback>,
    writing: Option<JoinHandle<std::io::Result<Option<DirectWrites>>>>,
}

/// With `fsync` on: the part of the staging file written since writeback
/// was last started, and the task starting it. That task may block while
/// the disk is busy; it runs beside the writer so receiving never waits for
/// it, and at most one runs per request.
struct Writeback {
    from: u64,
    to: u64,
    starting: Option<JoinHandle<()>>,
}

impl Writeback {
    fn start(&mut self, file: &Arc<std::fs::File>, force: bool) {
        let busy = self.starting.as_ref().is_some_and(|t| !t.is_finished());
        // A tail under one batch is left to the flush at commit: starting
        // its writeback early saves that flush next to nothing, and costs a
        // trip to the blocking pool on every small push.
        let pending = self.to - self.from;
        let due = pending >= WRITEBACK_EVERY || (force && pending >= WRITE_BATCH as u64);
        if !due || (busy && !force) {
            return;
        }
        let (file, offset, len) = (file.clone(), self.from, pending);
        self.starting = Some(tokio::task::spawn_blocking(move || {
            start_writeback(&file, offset, len)
        }));
        self.from = self.to;
    }
}

impl StagingWriter {
    /// Opens staging at `offset`, discarding what an earlier failed append
    /// left beyond it. `direct` is the store's [`DirectIo`], when `fsync` is
    /// on.
    async fn open(
        path: PathBuf,
        offset: u64,
        guard: Arc<StagingGuard>,
        direct: Option<Arc<DirectIo>>,
    ) -> Result<Self, StorageError> {
        let fsync = direct.is_some();
        let (file, epoch, guard, direct) = tokio::task::spawn_blocking(move || {
            // Held until the file is cut and read back: a request abandoned
            // between taking the upload and cutting it would otherwise cut
            // off what a newer request had written meanwhile.
            let current = take_over(&guard);
            let epoch = *current;
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => StorageError::StagingLost {
                        found: 0,
                        expected: offset,
                    },
                    _ => StorageError::Io(e),
                })?;
            cut_staging(&file, offset)?;
            file.seek(SeekFrom::Start(offset))?;
            let direct = match direct {
                Some(store) => DirectWrites::resume(&path, &file, offset, &store)?,
                None => None,
            };
            drop(current);
            Ok::<_, StorageError>((file, epoch, guard, direct))
        })
        .await
        .map_err(join_error)??;
        Ok(Self {
            file: Arc::new(file),
            guard,
            epoch,
            writeback: (fsync && direct.is_none()).then_some(Writeback {
                from: offset,
                to: offset,
                starting: None,
            }),
            direct,
            writing: None,
        })
    }

    /// Waits for the batch in flight, taking back the direct writes' state.
    async fn settle(&mut self) -> Result<(), StorageError> {
        if let Some(task) = self.writing.take() {
            self.direct = task.await.map_err(join_error)??;
        }
        Ok(())
    }

    /// Queues `batch` after the previous batch has been written.
    async fn write(&mut self, batch: Vec<Bytes>) -> Result<(), StorageError> {
        self.settle().await?;
        if let Some(writeback) = self.writeback.as_mut() {
            // Everything up to `to` is written now.
            writeback.start(&self.file, false);
        }
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(writeback) = self.writeback.as_mut() {
            writeback.to += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        }
        let (file, guard, epoch) = (self.file.clone(), self.guard.clone(), self.epoch);
        let mut direct = self.direct.take();
        self.writing = Some(tokio::task::spawn_blocking(move || {
            // Held through the write, so a take-over waits for it to end.
            let _current = still_owned(&guard, epoch)?;
            match direct.as_mut() {
                Some(direct) => direct.write(&file, batch)?,
                None => write_all_vectored(&file, &batch)?,
            }
            Ok(direct)
        }));
        Ok(())
    }

    /// Writes the request's `last` batch and waits for every write. With
    /// direct writes, the last batch and the bytes past the last whole page
    /// go through the page cache in one trip to the blocking pool, their
    /// writeback started.
    async fn finish(mut self, last: Vec<Bytes>) -> Result<(), StorageError> {
        self.settle().await?;
        match self.direct.take() {
            Some(direct) if !last.is_empty() || direct.has_pending() => {
                let (file, guard, epoch) = (self.file.clone(), self.guard.clone(), self.epoch);
                tokio::task::spawn_blocking(move || {
                    let _current = still_owned(&guard, epoch)?;
                    let (offset, len) = direct.finish(&file, last)?;
                    start_writeback(&file, offset, len);
                    Ok::<_, std::io::Error>(())
                })
                .await
                .map_err(join_error)??;
            }
            Some(_) => {}
            None => {
                self.write(last).await?;
                self.settle().await?;
                if let Some(writeback) = self.writeback.as_mut() {
                    writeback.start(&self.file, true);
                }
            }
        }
        Ok(())
    }
}

/// The upload's epoch lock, if the request at `epoch` still owns the
/// staging file; held through a write, so a take-over waits for it to end.
fn still_owned(
    guard: &StagingGuard,
    epoch: u64,
) -> std::io::Result<std::sync::MutexGuard<'_, u64>> {
    let current = lock_epoch(guard);
    if *current != epoch {
        return Err(std::io::Error::other(
            "a newer request took over this upload",
        ));
    }
    Ok(current)
}

/// Asks the kernel to start writing a range of `file` to disk without
/// waiting. Unlike a flush, it consumes no write error: the flush at commit
/// still reports any.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor belongs to `file`, which outlives the call; the
    // call only reads its arguments. A failure merely leaves the work to the
    // flush at commit.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

/// A blocking-pool task that panicked (never expected) reports as an I/O error.
fn join_error(e: tokio::task::JoinError) -> StorageError {
    StorageError::Io(std::io::Error::other(e))
}

fn write_all_vectored(mut file: &std::fs::File, batch: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|b| IoSlice::new(b)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Streams `len` bytes (all of the file when `None`) of the file at `path`
/// from `start`. Reads run on the blocking pool into buffers that become the
/// response's frames without another copy, one read ahead of the sender.
async fn read_stream(
    path: PathBuf,
    start: u64,
    len: Option<u64>,
) -> Result<ByteStream, StorageError> {
    let (file, end) = tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path).map_err(not_found_as)?;
        let end = match len {
            Some(len) => start.saturating_add(len),
            None => file.metadata()?.len(),
        };
        file.seek(SeekFrom::Start(start))?;
        Ok::<_, StorageError>((file, end))
    })
    .await
    .map_err(join_error)??;
    let file = Arc::new(file);
    let read_next = move |file: Arc<std::fs::File>, remaining: u64| {
        tokio::task::spawn_blocking(move || {
            let want = remaining.min(READ_CHUNK as u64);
            let mut buffer = Vec::with_capacity(want as usize);
            (&*file).take(want).read_to_end(&mut buffer)?;
            if (buffer.len() as u64) < want {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file is shorter than expected",
                ));
            }
            Ok(Bytes::from(buffer))
        })
    };
    let remaining = end.saturating_sub(start);
    let first = (remaining > 0).then(|| read_next(file.clone(), remaining));
    let stream = futures_util::stream::unfold(
        (file, remaining, first),
        move |(file, remaining, reading)| async move {
            let chunk = match reading?.await {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Some((Err(e), (file, 0, None))),
                Err(e) => return Some((Err(std::io::Error::other(e)), (file, 0, None))),
            };
            let remaining = remaining - chunk.len() as u64;
            let next = (remaining > 0).then(|| read_next(file.clone(), remaining));
            Some((Ok(chunk), (file, remaining, next)))
        },
    );
    Ok(Box::pin(stream))
}

/// Checks that a staging file holds the `len` bytes its session recorded,
/// and cuts off what a failed request left past them.
fn cut_staging(file: &std::fs::File, len: u64) -> Result<(), StorageError> {
    let found = file.metadata()?.len();
    if found < len {
        return Err(StorageError::StagingLost {
            found,
            expected: len,
        });
    }
    if found > len {
        file.set_len(len)?;
    }
    Ok(())
}

/// Moves a staging file of at least `len` bytes to `target`, cut to `len`.
/// Renamed before it is flushed: the name is this upload's own, and no
/// metadata points at it until the commit returns, so a crash in between
/// leaves only an unreferenced file. Returns the committed file.
fn move_into_place(staging: &Path, target: &Path, len: u64) -> Result<std::fs::File, StorageError> {
    let file = match std::fs::OpenOptions::new().write(true).open(staging) {
        Ok(file) => file,
        // Committed before (a retried commit after a crash between rename and metadata).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && target.try_exists()? => {
            return Ok(std::fs::File::open(target)?);
        }
        Err(e) => return Err(not_found_as(e)),
    };
    cut_staging(&file, len)?;
    std::fs::create_dir_all(target.parent().expect("blob paths have a parent"))?;
    std::fs::rename(staging, target)?;
    Ok(file)
}

/// Makes a committed blob's bytes and name durable, on the blocking thread
/// that moved it into place: its directory is flushed by another blocking
/// task at the same time, so the filesystem can fold both into one journal
/// commit instead of two in a row. `parents` are flushed with the
/// directory, for the directory's own name. Await the returned task.
fn flush_committed(
    file: &std::fs::File,
    target: &Path,
    parents: Vec<PathBuf>,
) -> Result<JoinHandle<std::io::Result<()>>, StorageError> {
    let dir = target
        .parent()
        .expect("blob paths have a parent")
        .to_path_buf();
    let names = tokio::task::spawn_blocking(move || {
        std::iter::once(dir.as_path())
            .chain(parents.iter().map(PathBuf::as_path))
            .try_for_each(sync_dir)
    });
    file.sync_data()?;
    Ok(names)
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::File::open(dir)?.sync_all() {
        // Some filesystems cannot flush a directory; its entries are then as
        // durable as they make them.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
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
        fs::metadata(self.root.join("uploads")).await?;
        Ok(())
    }

    async fn begin_upload(&self, id: &str) -> Result<String, StorageError> {
        File::create(self.upload_path(id)?).await?;
        Ok(String::new())
    }

    async fn append(
        &self,
        upload: &StagedUpload,
        offset: u64,
        body: &mut ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<Appended, AppendError> {
        let path = self.upload_path(&upload.id)?;
        let guard = self.staging_guards.get(&upload.id);
        let direct = self.fsync.then(|| self.direct_io.clone());
        let mut writer = StagingWriter::open(path, offset, guard, direct).await?;
        let mut batch = Vec::new();
        let mut batch_len = 0;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    // What was written past `offset` is discarded by the next append.
                    writer.finish(Vec::new()).await?;
                    return Err(AppendError::Body(e));
                }
            };
            observe(&chunk);
            written += chunk.len() as u64;
            batch_len += chunk.len();
            batch.push(chunk);
            if batch_len >= WRITE_BATCH {
                writer.write(std::mem::take(&mut batch)).await?;
                batch_len = 0;
            }
        }
        writer.finish(batch).await?;
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
        read_stream(self.upload_path(&upload.id)?, 0, Some(len)).await
    }

    async fn commit_upload(
        &self,
        upload: &StagedUpload,
        len: u64,
        digest: &Digest,
    ) -> Result<String, StorageError> {
        let staging = self.upload_path(&upload.id)?;
        let key = Self::blob_key(digest, &upload.id);
        let target = self.key_path(&key)?;
        let guard = self.staging_guards.get(&upload.id);
        let dir = target
            .parent()
            .expect("blob paths have a parent")
            .to_path_buf();
        let parents = self.parents_to_flush(&dir);
        let fsync = self.fsync;
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
                self.flushed_dirs().insert(dir);
            }
        }
        Ok(key)
    }

    async fn abort_upload(&self, upload: &StagedUpload) -> Result<(), StorageError> {
        let path = self.upload_path(&upload.id)?;
        self.staging_guards.supersede(&upload.id).await?;
        match fs::remove_file(path).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StorageError> {
        let path = self.key_path(key)?;
        match range {
            Some(range) => read_stream(path, range.start, Some(range.len())).await,
            None => read_stream(path, 0, None).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match fs::remove_file(self.key_path(key)?).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
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
        let key = FilesystemBlobStore::blob_key(&digest, "u1");
        assert!(matches!(
            store.get(&key, None).await,
            Err(StorageError::NotFound)
        ));
        // The blob's directory is new: its name, and its parent's, are
        // flushed with the first commit into it and not again.
        let blob_dir = store
            .key_path(&key)
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let blobs = dir.path().join("blobs");
        assert_eq!(
            store.parents_to_flush(&blob_dir),
            [blobs.join("sha256"), blobs.clone()]
        );
        assert_eq!(
            store.commit_upload(&upload, 11, &digest).await.unwrap(),
            key
        );
        assert!(store.parents_to_flush(&blob_dir).is_empty());
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
    // Holding the lock while the write is queued is the point of the test.
    #[allow(clippy::await_holding_lock)]
    async fn a_write_left_queued_by_an_abandoned_request_lands_nowhere() {
        let dir = tempfile::tempdir().unwrap();
        let store = FilesystemBlobStore::open(dir.path(), true).await.unwrap();
        store.begin_upload("u2").await.unwrap();
        let path = store.upload_path("u2").unwrap();
        let guard = store.staging_guards.get("u2");
        let mut writer = StagingWriter::open(
            path.clone(),
            0,
            guard.clone(),
            Some(store.direct_io.clone()),
        )
        .await
        .unwrap();
        {
            // The write is queued behind the lock; meanwhile a newer request
            // (whose client retried) takes the upload over.
            let mut epoch = guard.lock().unwrap();
            writer
                .write(vec![Bytes::from_static(b"stale bytes")])
                .await
                .unwrap();
            *epoch += 1;
        }
        assert!(writer.finish(Vec::new()).await.is_err());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
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
