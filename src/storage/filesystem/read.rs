//! Reading blobs (and staging, to verify a digest) back: a read-ahead
//! reader on the blocking pool whose buffers become the response's frames
//! without another copy.
//!
//! A file's first read goes around the page cache for the parts the page
//! cache does not hold ([`FirstReads`]); later reads go through it. Durable
//! uploads are written around the page cache (`durable.rs`), so the pull a
//! CI pipeline makes right after its push finds nothing cached, and reading
//! it through the page cache means filling half a gigabyte of pages no one
//! has touched in a while: on a VM whose balloon reports free memory to the
//! host, every such page is backed again by the host on first touch, which
//! held those pulls to about 400 MB/s where the disk reads 1.1 GB/s. Direct
//! reads land in the reader's own buffers, reused from the heap. A blob read
//! a second time is one that is pulled again, so from then on its pages are
//! worth keeping and reads go through the page cache. See
//! docs/performance.md, "Pull right after push".

use std::collections::HashSet;
use std::fs::File;
use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::durable::DirectIo;
use super::{join_error, not_found_as};
use crate::storage::{ByteStream, StorageError};

/// Pulls read this much at a time, straight into the buffer that is sent,
/// the next read running while the previous one is on the wire; so a pull
/// holds about two of these.
pub(super) const READ_CHUNK: usize = 512 * 1024;

/// Direct reads start and end on this boundary, in file and in memory.
const ALIGN: usize = 4096;

/// Files remembered as read once. At the limit the set starts again, so a
/// few files read twice long ago get one more direct read; 8 bytes each.
const REMEMBERED_READS: usize = 16_384;

/// Which files have been read before, so that a first read goes around the
/// page cache and later ones through it.
pub(super) struct FirstReads {
    direct_io: Arc<DirectIo>,
    read_before: Mutex<HashSet<u64>>,
    hasher: RandomState,
}

impl FirstReads {
    pub(super) fn new(direct_io: Arc<DirectIo>) -> Self {
        Self {
            direct_io,
            read_before: Mutex::new(HashSet::new()),
            hasher: RandomState::new(),
        }
    }

    /// Whether this read of `path` should go around the page cache, and
    /// remembers that `path` was read.
    fn first_read(&self, path: &Path) -> bool {
        if !self.direct_io.supported() {
            return false;
        }
        let key = self.hasher.hash_one(path);
        // A set of hashes is consistent after any insert or clear.
        let mut read_before = self
            .read_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if read_before.len() >= REMEMBERED_READS {
            read_before.clear();
        }
        read_before.insert(key)
    }
}

/// Streams `len` bytes (all of the file when `None`) of the file at `path`
/// from `start`. Reads run on the blocking pool into buffers that become the
/// response's frames without another copy, one read ahead of the sender.
pub(super) async fn read_stream(
    reads: &FirstReads,
    path: PathBuf,
    start: u64,
    len: Option<u64>,
) -> Result<ByteStream, StorageError> {
    let first_read = reads.first_read(&path);
    let direct_io = reads.direct_io.clone();
    let (reader, end) = tokio::task::spawn_blocking(move || {
        let file = File::open(&path).map_err(not_found_as)?;
        let end = match len {
            Some(len) => start.saturating_add(len),
            None => file.metadata()?.len(),
        };
        let direct = if first_read {
            open_direct(&path, &direct_io)?
        } else {
            None
        };
        Ok::<_, StorageError>((Reader { file, direct }, end))
    })
    .await
    .map_err(join_error)??;
    let reader = Arc::new(reader);
    let read_next = move |reader: Arc<Reader>, offset: u64, remaining: u64| {
        tokio::task::spawn_blocking(move || {
            let want = remaining.min(READ_CHUNK as u64) as usize;
            reader.read_chunk(offset, want)
        })
    };
    let remaining = end.saturating_sub(start);
    let first = (remaining > 0).then(|| read_next(reader.clone(), start, remaining));
    let stream = futures_util::stream::unfold(
        (reader, start, remaining, first),
        move |(reader, offset, remaining, reading)| async move {
            let chunk = match reading?.await {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => return Some((Err(e), (reader, offset, 0, None))),
                Err(e) => {
                    return Some((Err(std::io::Error::other(e)), (reader, offset, 0, None)));
                }
            };
            let offset = offset + chunk.len() as u64;
            let remaining = remaining - chunk.len() as u64;
            let next = (remaining > 0).then(|| read_next(reader.clone(), offset, remaining));
            Some((Ok(chunk), (reader, offset, remaining, next)))
        },
    );
    Ok(Box::pin(stream))
}

/// One open file, and its `O_DIRECT` descriptor on a first read.
struct Reader {
    file: File,
    direct: Option<File>,
}

impl Reader {
    /// `want` bytes from `offset`: from the page cache where it holds all
    /// of them or this is not a first read, else read directly.
    fn read_chunk(&self, offset: u64, want: usize) -> std::io::Result<Bytes> {
        let chunk = match &self.direct {
            Some(direct) if !all_cached(&self.file, offset, want) => {
                read_direct(direct, offset, want)?
            }
            _ => read_buffered(&self.file, offset, want)?,
        };
        if chunk.len() < want {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the file is shorter than expected",
            ));
        }
        Ok(chunk)
    }
}

/// Up to `want` bytes from `offset` through the page cache; fewer only at
/// the end of the file.
fn read_buffered(file: &File, offset: u64, want: usize) -> std::io::Result<Bytes> {
    let mut buffer = Vec::with_capacity(want);
    let filled = read_into_spare(file, &mut buffer, 0, want, offset)?;
    // SAFETY: `read_into_spare` initialised the first `filled` bytes.
    unsafe { buffer.set_len(filled) };
    Ok(Bytes::from(buffer))
}

/// Up to `want` bytes from `offset` read around the page cache; fewer only
/// at the end of the file. The read covers whole aligned blocks, so it may
/// start before `offset`; the buffer is sliced to what was asked.
fn read_direct(file: &File, offset: u64, want: usize) -> std::io::Result<Bytes> {
    let lead = (offset % ALIGN as u64) as usize;
    let aligned_len = (lead + want).next_multiple_of(ALIGN);
    // Room to start the read on an aligned address inside the buffer.
    let mut buffer: Vec<u8> = Vec::with_capacity(aligned_len + ALIGN);
    let skip = buffer.as_ptr().align_offset(ALIGN);
    // SAFETY: `skip < ALIGN` bytes of the buffer's capacity; zeroed so that
    // every byte below the length set below is initialised.
    unsafe { std::ptr::write_bytes(buffer.as_mut_ptr(), 0, skip) };
    // A direct read short of what was asked ends at the end of the file.
    let filled = read_into_spare(file, &mut buffer, skip, aligned_len, offset - lead as u64)?;
    // SAFETY: bytes below `skip` were zeroed, the next `filled` were read.
    unsafe { buffer.set_len(skip + filled) };
    let got = filled.saturating_sub(lead).min(want);
    Ok(Bytes::from(buffer).slice(skip + lead..skip + lead + got))
}

/// Reads up to `len` bytes from `offset` of `file` into `buffer`'s spare
/// capacity from index `at`, without zeroing it first; returns how many
/// were read, fewer than `len` only at the end of the file. The caller sets
/// the length.
#[cfg(target_os = "linux")]
fn read_into_spare(
    file: &File,
    buffer: &mut Vec<u8>,
    at: usize,
    len: usize,
    offset: u64,
) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    assert!(at + len <= buffer.capacity());
    let mut filled = 0;
    while filled < len {
        // SAFETY: the range written, `at + filled .. at + len`, lies within
        // the buffer's allocation (asserted above), which `buffer` keeps alive.
        let read = unsafe {
            libc::pread(
                file.as_raw_fd(),
                buffer.as_mut_ptr().add(at + filled).cast(),
                len - filled,
                (offset + filled as u64) as libc::off_t,
            )
        };
        match read {
            0 => break,
            n if n > 0 => filled += n as usize,
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(filled)
}

#[cfg(not(target_os = "linux"))]
fn read_into_spare(
    file: &File,
    buffer: &mut Vec<u8>,
    at: usize,
    len: usize,
    offset: u64,
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let start = buffer.len();
    buffer.resize(at + len, 0);
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buffer[at + filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buffer.truncate(start);
    Ok(filled)
}

/// Whether the page cache holds every page of `len` bytes from `offset`,
/// asked without touching them (`cachestat`, Linux 6.5). Where the kernel
/// cannot say, `true`: the read then goes through the page cache, as
/// every read did before.
#[cfg(target_os = "linux")]
fn all_cached(file: &File, offset: u64, len: usize) -> bool {
    use std::os::fd::AsRawFd;
    /// `cachestat`'s number, the same on every architecture (the syscall
    /// table is shared from 424 on); libc does not name it for x86_64.
    const SYS_CACHESTAT: libc::c_long = 451;
    #[repr(C)]
    struct CachestatRange {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Cachestat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let page = ALIGN as u64;
    let first_page = offset / page;
    let pages = (offset + len as u64).div_ceil(page) - first_page;
    let range = CachestatRange {
        off: first_page * page,
        len: pages * page,
    };
    let mut stat = Cachestat::default();
    // SAFETY: both pointers are to live values of the layouts the kernel
    // reads and writes; the descriptor is open for the call's length.
    let result = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    result != 0 || stat.nr_cache >= pages
}

#[cfg(not(target_os = "linux"))]
fn all_cached(_file: &File, _offset: u64, _len: usize) -> bool {
    true
}

/// `path` opened for direct reads; `None` where the filesystem refuses them.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path, direct_io: &DirectIo) -> std::io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => Ok(Some(file)),
        // EINVAL: this filesystem does not do O_DIRECT.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            direct_io.give_up(&e);
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path, _direct_io: &DirectIo) -> std::io::Result<Option<File>> {
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn direct_reads_return_exactly_the_bytes_asked_at_any_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let bytes = content(3 * READ_CHUNK + 1234);
        std::fs::write(&path, &bytes).unwrap();
        let Some(direct) = open_direct(&path, &DirectIo::new()).unwrap() else {
            eprintln!("this filesystem refuses O_DIRECT: nothing to check");
            return;
        };
        for (offset, want) in [
            (0, READ_CHUNK),
            (1, 10),
            (4095, 2),
            (4096 * 3, READ_CHUNK),
            (777, READ_CHUNK),
            (bytes.len() as u64 - 5, 5),
            (bytes.len() as u64 - 5, 100),
        ] {
            let got = read_direct(&direct, offset, want).unwrap();
            let end = (offset as usize + want).min(bytes.len());
            assert_eq!(&got[..], &bytes[offset as usize..end], "{offset} + {want}");
        }
    }

    #[test]
    fn a_file_read_again_goes_through_the_page_cache() {
        let reads = FirstReads::new(Arc::new(DirectIo::new()));
        let path = Path::new("/blobs/one");
        assert!(reads.first_read(path));
        assert!(!reads.first_read(path));
        assert!(reads.first_read(Path::new("/blobs/two")));
        let refused = FirstReads::new(Arc::new(DirectIo::refused()));
        assert!(!refused.first_read(path), "no direct reads where refused");
    }
}
