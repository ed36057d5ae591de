//! Blobs being fetched from upstream, one fill per digest however many
//! clients ask: the bytes go to a spool file as they arrive (unlinked at
//! once, so a crash leaves nothing), every waiting client and the blob
//! store's writer read it at their own pace, and the fill's state says how
//! far it has got.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use crate::oci::Digest;
use crate::oci::digest::BlobHasher;
use crate::oci::range::ByteRange;
use crate::storage::ByteStream;

/// Reads of the spool are at most this large; batches written to it are
/// about this large, so readers wake once per batch, not per network read.
const SPOOL_CHUNK: usize = 256 * 1024;

/// How far a fill has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillState {
    /// Waiting for the upstream's answer, or for another instance's fill.
    Starting,
    /// Bytes are arriving; `written` of them are in the spool.
    Receiving { written: u64, size: Option<u64> },
    /// Every byte is in the spool and the digest matched.
    Complete { size: u64 },
    /// The blob is in the blob store and linked (another instance fetched
    /// it, or it was already here): read it from there.
    Stored,
    /// The fill failed; the message says why, for the clients.
    Failed(FillFailure),
}

/// Why a fill failed, kept as the answer its waiting clients get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillFailure {
    NotFound,
    Upstream { status: Option<u16>, reason: String },
    Quota(String),
    Internal(String),
}

pub struct Fill {
    pub digest: Digest,
    /// What it is listed under: the repository and the digest.
    key: String,
    spool: Arc<File>,
    state: watch::Sender<FillState>,
}

impl Fill {
    pub fn state(&self) -> watch::Receiver<FillState> {
        self.state.subscribe()
    }

    pub fn set(&self, state: FillState) {
        self.state.send_replace(state);
    }

    /// A reader of the spooled bytes (all, or `range`), following the fill.
    pub fn reader(&self, range: Option<ByteRange>) -> ByteStream {
        let (start, end) = match range {
            Some(range) => (range.start, Some(range.end + 1)),
            None => (0, None),
        };
        spool_reader(self.spool.clone(), self.state.subscribe(), start, end)
    }

    /// Writes what arrives from `body` to the spool, hashing it; returns
    /// the size once the body ended and the digest matched. `size` is what
    /// the upstream announced. The state follows every batch written.
    pub async fn receive(
        &self,
        mut body: ByteStream,
        size: Option<u64>,
    ) -> Result<u64, FillFailure> {
        use futures_util::StreamExt;
        self.set(FillState::Receiving { written: 0, size });
        let mut hasher = BlobHasher::new(self.digest.algorithm());
        let mut written = 0u64;
        let mut batch = BytesMut::with_capacity(SPOOL_CHUNK);
        loop {
            let chunk = body.next().await;
            let end = chunk.is_none();
            if let Some(chunk) = chunk {
                let chunk = chunk.map_err(|e| FillFailure::Upstream {
                    status: None,
                    reason: format!("the upstream's body broke off: {e}"),
                })?;
                batch.extend_from_slice(&chunk);
                if size.is_some_and(|size| written + batch.len() as u64 > size) {
                    return Err(FillFailure::Upstream {
                        status: None,
                        reason: "the upstream sent more bytes than it announced".into(),
                    });
                }
                if batch.len() < SPOOL_CHUNK {
                    continue;
                }
            }
            if !batch.is_empty() {
                let bytes = batch.split().freeze();
                hasher.update(&bytes);
                written = self.append(bytes, written).await?;
                self.set(FillState::Receiving { written, size });
            }
            if end {
                break;
            }
        }
        if size.is_some_and(|size| size != written) {
            return Err(FillFailure::Upstream {
                status: None,
                reason: format!(
                    "the upstream's body ended after {written} of {} bytes",
                    size.unwrap_or_default()
                ),
            });
        }
        let actual = hasher.current();
        if actual != self.digest {
            return Err(FillFailure::Upstream {
                status: None,
                reason: format!(
                    "the upstream's blob has digest {actual}, not {}: discarded",
                    self.digest
                ),
            });
        }
        Ok(written)
    }

    async fn append(&self, bytes: Bytes, at: u64) -> Result<u64, FillFailure> {
        let spool = self.spool.clone();
        let len = bytes.len() as u64;
        tokio::task::spawn_blocking(move || spool.write_all_at(&bytes, at))
            .await
            .map_err(|e| FillFailure::Internal(e.to_string()))?
            .map_err(|e| FillFailure::Internal(format!("cannot write the cache spool: {e}")))?;
        Ok(at + len)
    }
}

/// The fills in progress on this instance, by repository and digest: a
/// client joins only a fill for the repository it asked through, so no one
/// receives bytes through a repository the upstream has not confirmed
/// holds them.
pub struct Fills {
    spool_dir: PathBuf,
    inflight: Mutex<HashMap<String, Arc<Fill>>>,
}

impl Fills {
    pub fn new(spool_dir: &Path) -> Self {
        Fills {
            spool_dir: spool_dir.to_path_buf(),
            inflight: Mutex::new(HashMap::new()),
        }
    }

    /// The fill of `digest` for `repository` in progress, or a new one
    /// (`true`: the caller runs it, and ends it with [`Fills::end`]).
    pub fn join(&self, repository: &str, digest: &Digest) -> io::Result<(Arc<Fill>, bool)> {
        let key = format!("{repository}@{digest}");
        let mut inflight = self.inflight.lock().expect("fills");
        if let Some(fill) = inflight.get(&key) {
            return Ok((fill.clone(), false));
        }
        std::fs::create_dir_all(&self.spool_dir)?;
        let path = self.spool_dir.join(format!(
            "{}.{}",
            digest.hex(),
            uuid::Uuid::new_v4().simple()
        ));
        let spool = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        // Only the open handle is needed: nothing is left after a crash.
        std::fs::remove_file(&path)?;
        let (state, _) = watch::channel(FillState::Starting);
        let fill = Arc::new(Fill {
            digest: digest.clone(),
            key: key.clone(),
            spool: Arc::new(spool),
            state,
        });
        inflight.insert(key, fill.clone());
        Ok((fill, true))
    }

    /// Takes the fill off the list: later clients look in the blob store.
    pub fn end(&self, fill: &Fill) {
        self.inflight.lock().expect("fills").remove(&fill.key);
    }
}

/// Streams the spool from `start` to `end` (exclusive; the end of the blob
/// when `None`) as the fill writes it, ending when that much is read or the
/// fill is complete, and failing when it failed.
fn spool_reader(
    spool: Arc<File>,
    state: watch::Receiver<FillState>,
    start: u64,
    end: Option<u64>,
) -> ByteStream {
    let start = (spool, state, start);
    Box::pin(futures_util::stream::unfold(
        start,
        move |(spool, mut state, position)| async move {
            loop {
                let current = state.borrow_and_update().clone();
                let (available, complete) = match current {
                    FillState::Starting => (0, false),
                    FillState::Stored => {
                        let error = io::Error::other("the blob was not spooled here");
                        return Some((Err(error), (spool, state, u64::MAX)));
                    }
                    FillState::Receiving { written, .. } => (written, false),
                    FillState::Complete { size } => (size, true),
                    FillState::Failed(failure) => {
                        let error = io::Error::other(format!("the cache fill failed: {failure:?}"));
                        return Some((Err(error), (spool, state, u64::MAX)));
                    }
                };
                let available = end.map_or(available, |end| available.min(end));
                let done = end.is_some_and(|end| position >= end);
                if position == u64::MAX || done || (complete && position >= available) {
                    return None;
                }
                if position < available {
                    let len = (available - position).min(SPOOL_CHUNK as u64) as usize;
                    let file = spool.clone();
                    let read = tokio::task::spawn_blocking(move || {
                        let mut buffer = vec![0; len];
                        file.read_exact_at(&mut buffer, position).map(|()| buffer)
                    })
                    .await
                    .map_err(io::Error::other)
                    .and_then(|r| r);
                    return Some(match read {
                        Ok(buffer) => (
                            Ok(Bytes::from(buffer)),
                            (spool, state, position + len as u64),
                        ),
                        Err(e) => (Err(e), (spool, state, u64::MAX)),
                    });
                }
                if state.changed().await.is_err() {
                    let error = io::Error::other("the cache fill was abandoned");
                    return Some((Err(error), (spool, state, u64::MAX)));
                }
            }
        },
    ))
}
