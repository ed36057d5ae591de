//! Getting a blob's bytes and name onto the disk: staging writes that go
//! around the page cache (`O_DIRECT`, with `fsync` on or off), writeback
//! started early where they cannot, and, with `fsync` on, the flushes of a
//! commit.
//!
//! With `fsync` on, every byte of an upload must be on the disk before its
//! commit returns. Written through the page cache, each byte is first copied
//! into a newly allocated cache page, and written back from there later; on
//! a VM whose host backs guest memory lazily, that copy into fresh pages
//! costs more of the server's CPU than anything else in a large push
//! (docs/performance.md has the profile and the figures).
//! Written directly, the bytes go from one reused, page-aligned buffer to
//! the disk, and the commit's flush has little left to do. The same copy is
//! what held pushes with `fsync` off to a quarter of durable ones, so they
//! write directly too and only skip the flushes.
//!
//! Direct writes need whole, aligned pages. So an append's bytes are
//! gathered in a [`PageBlock`], whole pages are written directly, and what
//! is left past the last whole page waits for the next batch. The request's
//! last batch and what is still pending go through the page cache (see
//! [`DirectWrites::finish`]) with their writeback started, so the request
//! does not wait for the disk at its end.
//!
//! On a filesystem that refuses `O_DIRECT`, every batch goes through the
//! page cache, and the [`Writeback`] tracker asks the kernel to start
//! writing back every [`WRITEBACK_EVERY`] bytes and at the end of each
//! request (unless less than a batch is left), so disk writes overlap with
//! receiving and the flush before a commit waits only for what is still in
//! flight instead of the whole blob.
//!
//! A commit renames the staging file into place first (`staging`), then
//! flushes its data and its directory side by side ([`flush_committed`]);
//! the first commit into a new blob directory also flushes the directories
//! above it, or a crash could lose the directory with the blob in it.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::task::JoinHandle;

use crate::storage::StorageError;

/// With `fsync` on, writeback of the staging file is started after this many new bytes.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;

/// Direct I/O's unit: buffers, file offsets and lengths are multiples of
/// it. A page covers every block size in common use (512 and 4,096).
const PAGE: usize = 4096;

/// Page-aligned memory holding bytes bound for the file at a page-aligned
/// offset. Mapped rather than allocated: a mapping is aligned by nature, and
/// its pages go back to the system when it is dropped, where a freed heap
/// block of this size would stay in a thread's arena and in the resident set.
pub(super) struct PageBlock {
    map: Option<memmap2::MmapMut>,
    len: usize,
}

impl PageBlock {
    fn new() -> Self {
        Self { map: None, len: 0 }
    }

    fn capacity(&self) -> usize {
        self.map.as_ref().map_or(0, |map| map.len())
    }

    /// Makes room for `total` bytes, keeping those it holds.
    fn reserve(&mut self, total: usize) -> io::Result<()> {
        if total <= self.capacity() {
            return Ok(());
        }
        // Rounded up, so batches a little larger than the last rarely remap.
        let mut map = memmap2::MmapMut::map_anon(total.next_multiple_of(256 * 1024))?;
        map[..self.len].copy_from_slice(self.bytes());
        self.map = Some(map);
        Ok(())
    }

    fn extend(&mut self, bytes: &[u8]) {
        let map = self.map.as_mut().expect("reserved before it is extended");
        map[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    fn bytes(&self) -> &[u8] {
        self.map.as_ref().map_or(&[], |map| &map[..self.len])
    }

    /// Drops the first `count` bytes, moving the rest to the front.
    fn consume(&mut self, count: usize) {
        if let Some(map) = self.map.as_mut() {
            map.copy_within(count..self.len, 0);
        }
        self.len -= count;
    }
}

/// A store's direct I/O: whether its filesystem takes it, and blocks
/// between appends.
pub(super) struct DirectIo {
    /// Cleared for good when the filesystem refuses direct I/O, so later
    /// appends go through the page cache from the start.
    supported: AtomicBool,
    /// Blocks that appends have finished with, kept for the next ones: a
    /// new mapping's pages are faulted in (and, on a VM, often backed by the
    /// host) on first use, once per 16 MiB chunk of a chunked push.
    idle: Mutex<Vec<PageBlock>>,
}

/// Idle blocks kept: enough for two uploads at once, at about 1.25 MiB each.
const IDLE_BLOCKS: usize = 2;

impl DirectIo {
    pub(super) fn new() -> Self {
        Self {
            supported: AtomicBool::new(true),
            idle: Mutex::new(Vec::new()),
        }
    }

    #[cfg(test)]
    pub(super) fn refused() -> Self {
        let direct = Self::new();
        direct.supported.store(false, Ordering::Relaxed);
        direct
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<PageBlock>> {
        // A list of spare buffers is consistent after any push or pop.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_block(&self) -> PageBlock {
        self.idle().pop().unwrap_or_else(PageBlock::new)
    }

    fn give_back(&self, mut block: PageBlock) {
        block.len = 0;
        let mut idle = self.idle();
        if block.capacity() > 0 && idle.len() < IDLE_BLOCKS {
            idle.push(block);
        }
    }

    /// Whether the filesystem took direct I/O so far.
    pub(super) fn supported(&self) -> bool {
        self.supported.load(Ordering::Relaxed)
    }

    pub(super) fn give_up(&self, e: &io::Error) {
        if self.supported.swap(false, Ordering::Relaxed) {
            tracing::warn!(error = %e, "the blob filesystem refuses direct I/O: uploads and reads go through the page cache");
        }
    }
}

/// One append's direct writes to a staging file.
pub(super) struct DirectWrites {
    path: PathBuf,
    /// The `O_DIRECT` descriptor, opened with the first whole page.
    file: Option<File>,
    store: Arc<DirectIo>,
    /// Where `pending` begins in the file; page-aligned.
    offset: u64,
    /// Bytes received and not yet written: under a page after each batch.
    pending: PageBlock,
}

impl DirectWrites {
    /// Prepares direct writes that continue the staging file at `path`
    /// from `offset`, reading back through `buffered` the part of its last
    /// page that is already written, since only whole pages can be written.
    /// `None` when this filesystem has refused direct I/O.
    pub(super) fn resume(
        path: &Path,
        buffered: &File,
        offset: u64,
        store: &Arc<DirectIo>,
    ) -> io::Result<Option<Self>> {
        if !store.supported.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let page_offset = offset - offset % PAGE as u64;
        let mut pending = store.take_block();
        let written = (offset - page_offset) as usize;
        if written > 0 {
            let mut head = vec![0u8; written];
            buffered.read_exact_at(&mut head, page_offset)?;
            pending.reserve(written)?;
            pending.extend(&head);
        }
        Ok(Some(Self {
            path: path.to_path_buf(),
            file: None,
            store: store.clone(),
            offset: page_offset,
            pending,
        }))
    }

    /// Writes `batch` after the bytes already pending: every whole page now,
    /// the rest with the next batch or at [`Self::finish`].
    pub(super) fn write(&mut self, buffered: &File, batch: Vec<Bytes>) -> io::Result<()> {
        let incoming: usize = batch.iter().map(Bytes::len).sum();
        if incoming == 0 {
            return Ok(());
        }
        self.pending.reserve(self.pending.len + incoming)?;
        for bytes in &batch {
            self.pending.extend(bytes);
        }
        // The request's buffers go back before the disk write, not after it.
        drop(batch);
        let whole = self.pending.len - self.pending.len % PAGE;
        if whole == 0 {
            return Ok(());
        }
        self.write_pages(buffered, whole)?;
        self.offset += whole as u64;
        self.pending.consume(whole);
        Ok(())
    }

    fn write_pages(&mut self, buffered: &File, len: usize) -> io::Result<()> {
        let pages = &self.pending.bytes()[..len];
        if self.file.is_none() && self.store.supported.load(Ordering::Relaxed) {
            self.file = open_direct(&self.path, &self.store)?;
        }
        if let Some(file) = &self.file {
            match file.write_all_at(pages, self.offset) {
                Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
                    // Stricter alignment than a page, or no direct I/O for
                    // this file after all: the page cache takes these bytes
                    // (again, if some went through) and every later write.
                    self.store.give_up(&e);
                    self.file = None;
                }
                result => return result,
            }
        }
        buffered.write_all_at(pages, self.offset)
    }

    pub(super) fn has_pending(&self) -> bool {
        self.pending.len > 0
    }

    /// Writes the pending bytes and the request's `last` batch through the
    /// page cache, where the commit's flush finds them, and returns where
    /// they went (offset, length). The request waits for this write: a copy
    /// into memory ends it sooner than a trip to the disk, which made every
    /// 16 MiB chunk of a chunked push wait for its last batch's.
    pub(super) fn finish(self, buffered: &File, last: Vec<Bytes>) -> io::Result<(u64, u64)> {
        let mut at = self.offset;
        for bytes in std::iter::once(self.pending.bytes()).chain(last.iter().map(|b| &b[..])) {
            buffered.write_all_at(bytes, at)?;
            at += bytes.len() as u64;
        }
        Ok((self.offset, at - self.offset))
    }
}

impl Drop for DirectWrites {
    fn drop(&mut self) {
        self.store
            .give_back(std::mem::replace(&mut self.pending, PageBlock::new()));
    }
}

/// Opens `path` for direct writes; `None` (and the store told) when its
/// filesystem does not do direct I/O.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path, store: &DirectIo) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        // EINVAL: this filesystem does not do O_DIRECT.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => {
            store.give_up(&e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path, store: &DirectIo) -> io::Result<Option<File>> {
    store.give_up(&io::ErrorKind::Unsupported.into());
    Ok(None)
}

/// With `fsync` on, where direct writes are refused: the part of the
/// staging file written since writeback was last started, and the task
/// starting it. That task may block while the disk is busy; it runs beside
/// the writer so receiving never waits for it, and at most one runs per
/// request.
pub(super) struct Writeback {
    from: u64,
    to: u64,
    /// The least a request's end starts writeback for.
    min_tail: u64,
    starting: Option<JoinHandle<()>>,
}

impl Writeback {
    /// Tracks a staging file whose first `offset` bytes were written
    /// before; a request's end starts writeback only for a tail of at least
    /// `min_tail` bytes (the writer's batch).
    pub(super) fn new(offset: u64, min_tail: u64) -> Self {
        Self {
            from: offset,
            to: offset,
            min_tail,
            starting: None,
        }
    }

    /// Counts `len` more bytes handed to the file.
    pub(super) fn wrote(&mut self, len: u64) {
        self.to += len;
    }

    /// Starts writeback of what was written since it was last started,
    /// once that is [`WRITEBACK_EVERY`] bytes; with `force` (the request's
    /// end), once it is `min_tail`, even while an earlier start still runs.
    pub(super) fn start(&mut self, file: &Arc<File>, force: bool) {
        let busy = self.starting.as_ref().is_some_and(|t| !t.is_finished());
        // A tail under one batch is left to the flush at commit: starting
        // its writeback early saves that flush next to nothing, and costs a
        // trip to the blocking pool on every small push.
        let pending = self.to - self.from;
        let due = pending >= WRITEBACK_EVERY || (force && pending >= self.min_tail);
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

/// Asks the kernel to start writing a range of `file` to disk without
/// waiting. Unlike a flush, it consumes no write error: the flush at commit
/// still reports any.
#[cfg(target_os = "linux")]
pub(super) fn start_writeback(file: &File, offset: u64, len: u64) {
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
pub(super) fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// Makes a committed blob's bytes and name durable, on the blocking thread
/// that moved it into place: its directory is flushed by another blocking
/// task at the same time, so the filesystem can fold both into one journal
/// commit instead of two in a row. `parents` are flushed with the
/// directory, for the directory's own name. Await the returned task.
pub(super) fn flush_committed(
    file: &File,
    target: &Path,
    parents: Vec<PathBuf>,
) -> Result<JoinHandle<io::Result<()>>, StorageError> {
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

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir)?.sync_all() {
        // Some filesystems cannot flush a directory; its entries are then as
        // durable as they make them.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 % 251) as u8).collect()
    }

    /// Appends `content[from..to]` in batches of `batch` bytes, as one request would.
    fn append(path: &Path, content: &[u8], from: usize, to: usize, batch: usize) {
        let store = Arc::new(DirectIo::new());
        let buffered = std::fs::OpenOptions::new()
            .write(true)
            .read(true)
            .open(path)
            .unwrap();
        let mut writes = DirectWrites::resume(path, &buffered, from as u64, &store)
            .unwrap()
            .unwrap();
        let mut parts: Vec<Bytes> = content[from..to]
            .chunks(batch)
            .map(Bytes::copy_from_slice)
            .collect();
        let last = parts.pop().into_iter().collect();
        for part in parts {
            writes.write(&buffered, vec![part]).unwrap();
        }
        writes.finish(&buffered, last).unwrap();
    }

    #[test]
    fn appends_at_any_offset_and_of_any_size_leave_exactly_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging");
        std::fs::write(&path, b"").unwrap();
        let content = content(3 * 1024 * 1024 + 5000);
        // A first request ending mid-page, then others resuming there with
        // batches that are not page multiples either.
        let cuts = [
            0,
            10,
            70_001,
            1024 * 1024 + 3,
            3 * 1024 * 1024,
            content.len(),
        ];
        for pair in cuts.windows(2) {
            append(&path, &content, pair[0], pair[1], 300_007);
            let written = std::fs::read(&path).unwrap();
            assert!(
                written == content[..pair[1]],
                "after appending up to {}",
                pair[1]
            );
        }
    }

    #[test]
    fn appends_reuse_the_blocks_earlier_appends_finished_with() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("staging");
        std::fs::write(&path, b"").unwrap();
        let store = Arc::new(DirectIo::new());
        let buffered = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut first = DirectWrites::resume(&path, &buffered, 0, &store)
            .unwrap()
            .unwrap();
        // Nothing to hold yet, and no block mapped for it.
        first.write(&buffered, vec![Bytes::new()]).unwrap();
        first
            .write(&buffered, vec![Bytes::from(vec![7u8; 3 * PAGE])])
            .unwrap();
        let block = first.pending.bytes().as_ptr();
        first.finish(&buffered, Vec::new()).unwrap();
        assert_eq!(store.idle().len(), 1);

        let second = DirectWrites::resume(&path, &buffered, 3 * PAGE as u64, &store)
            .unwrap()
            .unwrap();
        assert_eq!(second.pending.bytes().as_ptr(), block);
        assert!(store.idle().is_empty());
    }

    #[test]
    fn a_block_keeps_its_bytes_aligned_as_it_grows_and_is_consumed() {
        let mut block = PageBlock::new();
        block.reserve(10).unwrap();
        block.extend(b"0123456789");
        block.reserve(300_000).unwrap();
        assert_eq!(block.bytes().as_ptr() as usize % PAGE, 0);
        assert_eq!(block.bytes(), b"0123456789");
        block.consume(4);
        assert_eq!(block.bytes(), b"456789");
    }
}
