//! The disk's own rates, measured by the bench in the same run as the
//! servers and on the filesystem their data directories are on: the
//! ceilings of the rows a disk bounds.
//!
//! - A durable write: the large blob written to a new file with `O_DIRECT`
//!   in 1 MiB blocks from one page-aligned buffer, then `fdatasync`, which
//!   is the least any server must do to acknowledge a durable push.
//! - A sequential read after the page cache was emptied, in 1 MiB reads
//!   through the page cache, as `dd bs=1M` does: the most a cold pull can get.

use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bytes::Bytes;

const BLOCK: usize = 1 << 20;
const ALIGN: usize = 4096;

/// Writes `bytes` to `path` around the page cache and flushes it; MiB/s.
/// Where the filesystem refuses `O_DIRECT` (tmpfs), through the page cache.
pub fn durable_write(path: &Path, bytes: &Bytes) -> f64 {
    let _ = std::fs::remove_file(path);
    let open = |flags| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(flags)
            .open(path)
    };
    let mut file = open(libc::O_DIRECT).unwrap_or_else(|_| open(0).expect("the disk file opens"));
    let mut buffer = vec![0u8; BLOCK + ALIGN];
    let skip = buffer.as_ptr().align_offset(ALIGN);
    let started = Instant::now();
    for piece in bytes.chunks(BLOCK) {
        // A direct write is of whole pages; the bench's sizes are whole MiB.
        let block = &mut buffer[skip..skip + piece.len().next_multiple_of(ALIGN)];
        block[..piece.len()].copy_from_slice(piece);
        file.write_all(block).expect("the disk takes the write");
    }
    file.sync_data().expect("the disk flushes");
    bytes.len() as f64 / 1048576.0 / started.elapsed().as_secs_f64()
}

/// Reads the file at `path` from start to end in 1 MiB reads; MiB/s. The
/// caller empties the page cache first.
pub fn sequential_read(path: &Path) -> f64 {
    let mut file = std::fs::File::open(path).expect("the disk file opens");
    let mut buffer = vec![0u8; BLOCK];
    let started = Instant::now();
    let mut total = 0usize;
    loop {
        let read = file.read(&mut buffer).expect("the disk reads");
        if read == 0 {
            break;
        }
        total += read;
    }
    total as f64 / 1048576.0 / started.elapsed().as_secs_f64()
}

/// Where the disk's file goes: beside the servers' data directories.
pub fn scratch_file(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("disk-ceiling")
}
