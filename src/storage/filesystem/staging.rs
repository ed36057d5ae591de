//! Staging files: appending one request's body with one batch write in
//! flight on the blocking pool, which request owns an upload's file (its
//! epoch), cutting staging back to the session's recorded length, and
//! moving it into place at commit.
//!
//! Pushes are pipelined: the request task receives and hashes the next
//! batch of body bytes while the blocking pool writes the previous one, so
//! an upload holds about two batches in memory. How a batch reaches the
//! disk (directly, or through the page cache with writeback started) is
//! `durable`'s.

use std::io::{IoSlice, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::durable::{DirectIo, DirectWrites, Writeback, start_writeback};
use super::{join_error, not_found_as};
use crate::storage::{AppendError, ByteStream, StorageError};
use crate::sync::KeyedLocks;

/// Body bytes gathered into one vectored write. One batch is written while
/// the next is received, so an upload holds about two batches in memory.
pub(super) const WRITE_BATCH: usize = 1024 * 1024;

/// Which request owns an upload's staging file. A request dropped mid-push
/// (its client went away) can leave a batch write queued on the blocking
/// pool; every append, commit and abort first bumps the upload's epoch under
/// this lock, so such a stale write finds a newer epoch and writes nothing
/// instead of landing in bytes a later request wrote or committed.
pub(super) type Epoch = Mutex<u64>;

/// The epochs of the uploads some request is working on, by upload id.
pub(super) type Epochs = KeyedLocks<Epoch>;

/// Takes the staging file of upload `id` away from any earlier request.
pub(super) async fn supersede(epochs: &Epochs, id: &str) -> Result<(), StorageError> {
    let guard = epochs.get(id);
    tokio::task::spawn_blocking(move || drop(take_over(&guard)))
        .await
        .map_err(join_error)?;
    Ok(())
}

/// The upload's epoch, once no write holds it. A write that panicked
/// poisons nothing worth refusing: the epoch is a plain counter.
fn lock_epoch(guard: &Epoch) -> MutexGuard<'_, u64> {
    guard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Waits for a write in progress, then makes every queued one stale. The
/// lock stays held until the returned guard is dropped: a request that is
/// cutting or reading back the staging file keeps any other from writing
/// in between.
pub(super) fn take_over(guard: &Epoch) -> MutexGuard<'_, u64> {
    let mut epoch = lock_epoch(guard);
    *epoch += 1;
    epoch
}

/// The upload's epoch lock, if the request at `epoch` still owns the
/// staging file; held through a write, so a take-over waits for it to end.
fn still_owned(guard: &Epoch, epoch: u64) -> std::io::Result<MutexGuard<'_, u64>> {
    let current = lock_epoch(guard);
    if *current != epoch {
        return Err(std::io::Error::other(
            "a newer request took over this upload",
        ));
    }
    Ok(current)
}

/// Appends one request's body to a staging file, one batch write in flight
/// on the blocking pool at a time.
pub(super) struct StagingWriter {
    file: Arc<std::fs::File>,
    guard: Arc<Epoch>,
    epoch: u64,
    /// Where the filesystem allows: whole pages go to the disk directly
    /// ([`DirectWrites`]), with `fsync` on or off (see [`Self::open`]).
    /// Away on the blocking pool while a batch is written, and back with
    /// its result.
    direct: Option<DirectWrites>,
    /// Otherwise, with `fsync` on: writeback started as batches land.
    writeback: Option<Writeback>,
    writing: Option<JoinHandle<std::io::Result<Option<DirectWrites>>>>,
}

impl StagingWriter {
    /// Opens staging at `offset`, discarding what an earlier failed append
    /// left beyond it. `direct` is the store's [`DirectIo`]. Direct writes
    /// are used without `fsync` too, where they skip only the commit's
    /// flushes: writing through the page cache means filling fresh pages,
    /// which on a VM whose balloon reports free memory costs a host fault per
    /// page, and held pushes without `fsync` to a quarter of durable ones.
    pub(super) async fn open(
        path: PathBuf,
        offset: u64,
        guard: Arc<Epoch>,
        direct_io: Arc<DirectIo>,
        fsync: bool,
    ) -> Result<Self, StorageError> {
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
            let direct = DirectWrites::resume(&path, &file, offset, &direct_io)?;
            drop(current);
            Ok::<_, StorageError>((file, epoch, guard, direct))
        })
        .await
        .map_err(join_error)??;
        Ok(Self {
            file: Arc::new(file),
            guard,
            epoch,
            writeback: (fsync && direct.is_none())
                .then(|| Writeback::new(offset, WRITE_BATCH as u64)),
            direct,
            writing: None,
        })
    }

    /// Writes all of `body`, passing every chunk to `observe` first, and
    /// returns how many bytes it held. Chunks are gathered into batches of
    /// [`WRITE_BATCH`], each written while the next is received.
    pub(super) async fn write_body(
        mut self,
        body: &mut ByteStream,
        observe: &mut (dyn for<'b> FnMut(&'b [u8]) + Send),
    ) -> Result<u64, AppendError> {
        let mut batch = Vec::new();
        let mut batch_len = 0;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    // What was written past `offset` is discarded by the next append.
                    self.finish(Vec::new()).await?;
                    return Err(AppendError::Body(e));
                }
            };
            observe(&chunk);
            written += chunk.len() as u64;
            batch_len += chunk.len();
            batch.push(chunk);
            if batch_len >= WRITE_BATCH {
                self.write(std::mem::take(&mut batch)).await?;
                batch_len = 0;
            }
        }
        self.finish(batch).await?;
        Ok(written)
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
            // Everything up to what it was told of is written now.
            writeback.start(&self.file, false);
        }
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(writeback) = self.writeback.as_mut() {
            writeback.wrote(batch.iter().map(|b| b.len() as u64).sum::<u64>());
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
pub(super) fn move_into_place(
    staging: &Path,
    target: &Path,
    len: u64,
) -> Result<std::fs::File, StorageError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    // Holding the lock while the write is queued is the point of the test.
    #[allow(clippy::await_holding_lock)]
    async fn a_write_left_queued_by_an_abandoned_request_lands_nowhere() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u2");
        std::fs::write(&path, b"").unwrap();
        let epochs = Epochs::default();
        let guard = epochs.get("u2");
        let mut writer = StagingWriter::open(
            path.clone(),
            0,
            guard.clone(),
            Arc::new(DirectIo::new()),
            true,
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
}
