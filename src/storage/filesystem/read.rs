//! Reading blobs (and staging, to verify a digest) back: a read-ahead
//! reader on the blocking pool whose buffers become the response's frames
//! without another copy.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use super::{join_error, not_found_as};
use crate::storage::{ByteStream, StorageError};

/// Pulls read this much at a time, straight into the buffer that is sent,
/// the next read running while the previous one is on the wire; so a pull
/// holds about two of these.
pub(super) const READ_CHUNK: usize = 512 * 1024;

/// Streams `len` bytes (all of the file when `None`) of the file at `path`
/// from `start`. Reads run on the blocking pool into buffers that become the
/// response's frames without another copy, one read ahead of the sender.
pub(super) async fn read_stream(
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
