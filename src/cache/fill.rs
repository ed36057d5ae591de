//! Blobs being fetched from upstream, one fill per repository and digest
//! however many clients ask. The bytes arrive in batches that every reader
//! (each waiting client, and the blob store's writer) takes in turn without
//! a copy; a batch is dropped once the slowest reader is past it. Readers
//! may be at most [`WINDOW`] behind the newest byte: the fill waits for
//! them, and gives up on one that has not moved for the upstream's timeout
//! (its download breaks off; the others go on). A client that arrives once
//! the start has been dropped waits for the blob to be stored and reads it
//! from there.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{Notify, watch};

use crate::oci::Digest;
use crate::oci::digest::BlobHasher;
use crate::oci::range::ByteRange;
use crate::storage::ByteStream;

/// Batches are about this large: readers wake once per batch, not per
/// network read, and hashing and sending work on whole batches.
const BATCH: usize = 256 * 1024;

/// How far the newest byte may be ahead of the slowest reader.
pub const WINDOW: u64 = 64 * 1024 * 1024;

/// How far a fill has got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillState {
    /// Waiting for the upstream's answer, or for another instance's fill.
    Starting,
    /// Bytes are arriving; `written` of them have been received.
    Receiving { written: u64, size: Option<u64> },
    /// Every byte has arrived and the digest matched.
    Complete { size: u64 },
    /// The blob is in the blob store and linked (fetched here and recorded,
    /// or fetched by another instance, or already here): read it from there.
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

/// The batches still wanted by some reader, and where the readers are.
#[derive(Default)]
struct Window {
    /// Each batch with its offset, in order.
    batches: VecDeque<(u64, Bytes)>,
    /// The offset of the first batch kept.
    base: u64,
    written: u64,
    /// Every reader's next offset.
    readers: HashMap<u64, u64>,
    next_reader: u64,
    /// Readers given up on for being too slow.
    dropped: HashSet<u64>,
    /// Whether the whole blob arrived and matched its digest.
    complete: bool,
}

impl Window {
    fn slowest(&self) -> u64 {
        self.readers.values().copied().min().unwrap_or(self.written)
    }

    /// Drops the batches every reader is past.
    fn trim(&mut self) {
        let slowest = self.slowest();
        while let Some((offset, first)) = self.batches.front() {
            let end = offset + first.len() as u64;
            if end > slowest {
                break;
            }
            self.base = end;
            self.batches.pop_front();
        }
    }

    /// The bytes from `position` that may be read now, at most to `end`
    /// (exclusive). The last byte waits for the digest's check, so a client
    /// never receives a whole body that then proves corrupt: a mismatch
    /// ends its download short instead.
    fn read(&self, position: u64, end: Option<u64>) -> Option<Bytes> {
        let available = if self.complete {
            self.written
        } else {
            self.written.saturating_sub(1)
        };
        let available = end.map_or(available, |end| available.min(end));
        if position >= available || position < self.base {
            return None;
        }
        // The last batch starting at or before `position`.
        let index = self
            .batches
            .partition_point(|(offset, _)| *offset <= position)
            .checked_sub(1)?;
        let (offset, batch) = &self.batches[index];
        let batch_end = offset + batch.len() as u64;
        if position >= batch_end {
            return None;
        }
        let from = (position - offset) as usize;
        let to = (available.min(batch_end) - offset) as usize;
        Some(batch.slice(from..to))
    }
}

pub struct Fill {
    pub digest: Digest,
    /// What it is listed under: the repository and the digest.
    key: String,
    state: watch::Sender<FillState>,
    window: Mutex<Window>,
    /// Woken when a reader moves, for a fill waiting on the slowest.
    moved: Notify,
}

impl Fill {
    pub fn state(&self) -> watch::Receiver<FillState> {
        self.state.subscribe()
    }

    pub fn set(&self, state: FillState) {
        self.state.send_replace(state);
    }

    /// A reader of the blob (all, or `range`) following the fill; `None`
    /// when its start is no longer held (read the stored blob instead).
    pub fn reader(self: &Arc<Self>, range: Option<ByteRange>) -> Option<ByteStream> {
        let (start, end) = match range {
            Some(range) => (range.start, Some(range.end + 1)),
            None => (0, None),
        };
        let id = {
            let mut window = self.window.lock().expect("fill window");
            if start < window.base {
                return None;
            }
            let id = window.next_reader;
            window.next_reader += 1;
            window.readers.insert(id, start);
            id
        };
        let reader = Reader {
            fill: self.clone(),
            id,
            end,
        };
        let start = (reader, self.state.subscribe(), start);
        Some(Box::pin(futures_util::stream::unfold(
            start,
            |(reader, mut state, position)| async move {
                loop {
                    if position == u64::MAX {
                        return None;
                    }
                    let current = state.borrow_and_update().clone();
                    match reader.next(position) {
                        Next::Bytes(bytes) => {
                            let next = position + bytes.len() as u64;
                            return Some((Ok(bytes), (reader, state, next)));
                        }
                        Next::End => return None,
                        Next::Dropped => {
                            let error = io::Error::other(
                                "this download fell too far behind the others of the same blob",
                            );
                            return Some((Err(error), (reader, state, u64::MAX)));
                        }
                        // What arrived whole is read to its end even if
                        // storing it failed afterwards.
                        Next::Wait => {
                            if let FillState::Failed(failure) = current {
                                let error =
                                    io::Error::other(format!("the cache fill failed: {failure:?}"));
                                return Some((Err(error), (reader, state, u64::MAX)));
                            }
                        }
                    }
                    if state.changed().await.is_err() {
                        let error = io::Error::other("the cache fill was abandoned");
                        return Some((Err(error), (reader, state, u64::MAX)));
                    }
                }
            },
        )))
    }

    /// Takes what arrives from `body`, hashing it; returns the size once
    /// the body ended and the digest matched. `size` is what the upstream
    /// announced. `stall` is how long the slowest reader may hold the fill
    /// before it is given up on.
    pub async fn receive(
        &self,
        mut body: ByteStream,
        size: Option<u64>,
        stall: Duration,
    ) -> Result<u64, FillFailure> {
        use futures_util::StreamExt;
        self.set(FillState::Receiving { written: 0, size });
        let mut hasher = BlobHasher::new(self.digest.algorithm());
        let mut written = 0u64;
        // What the readers were last told had arrived.
        let mut announced = 0u64;
        let mut batch = BytesMut::with_capacity(BATCH);
        loop {
            let chunk = body.next().await;
            let end = chunk.is_none();
            if let Some(chunk) = chunk {
                let chunk = chunk.map_err(|e| FillFailure::Upstream {
                    status: None,
                    reason: format!("the upstream's body broke off: {e}"),
                })?;
                if size.is_some_and(|size| written + (batch.len() + chunk.len()) as u64 > size) {
                    return Err(FillFailure::Upstream {
                        status: None,
                        reason: "the upstream sent more bytes than it announced".into(),
                    });
                }
                // Large reads are kept as they came (no copy); small ones
                // are gathered into a batch first.
                if batch.is_empty() && chunk.len() >= BATCH / 4 {
                    hasher.update(&chunk);
                    written += chunk.len() as u64;
                    self.push(chunk, stall).await;
                } else {
                    batch.extend_from_slice(&chunk);
                }
            }
            if batch.len() >= BATCH || (end && !batch.is_empty()) {
                let bytes = batch.split().freeze();
                hasher.update(&bytes);
                written += bytes.len() as u64;
                self.push(bytes, stall).await;
            }
            // Readers are woken once per batch's worth, not per read.
            if end || written >= announced + BATCH as u64 {
                announced = written;
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
        self.window.lock().expect("fill window").complete = true;
        Ok(written)
    }

    /// Adds a batch, then waits while the slowest reader is more than
    /// [`WINDOW`] behind; one that does not move for `stall` is dropped.
    async fn push(&self, bytes: Bytes, stall: Duration) {
        {
            let mut window = self.window.lock().expect("fill window");
            let offset = window.written;
            window.written += bytes.len() as u64;
            window.batches.push_back((offset, bytes));
            window.trim();
        }
        loop {
            let behind = {
                let window = self.window.lock().expect("fill window");
                window.written - window.slowest()
            };
            if behind <= WINDOW {
                return;
            }
            if tokio::time::timeout(stall, self.moved.notified())
                .await
                .is_err()
            {
                let mut window = self.window.lock().expect("fill window");
                let slowest = window.slowest();
                let stalled: Vec<u64> = window
                    .readers
                    .iter()
                    .filter(|(_, position)| **position == slowest)
                    .map(|(id, _)| *id)
                    .collect();
                for id in stalled {
                    window.readers.remove(&id);
                    window.dropped.insert(id);
                }
                window.trim();
                drop(window);
                tracing::warn!(digest = %self.digest, "gave up on a download that stopped reading a blob being fetched");
                // Wakes the dropped readers, to tell them.
                self.state.send_modify(|_| {});
            }
        }
    }
}

/// One reader's place in a fill; it leaves the fill when dropped.
struct Reader {
    fill: Arc<Fill>,
    id: u64,
    end: Option<u64>,
}

enum Next {
    Bytes(Bytes),
    End,
    Dropped,
    Wait,
}

impl Reader {
    fn next(&self, position: u64) -> Next {
        let mut window = self.fill.window.lock().expect("fill window");
        if window.dropped.contains(&self.id) {
            return Next::Dropped;
        }
        if let Some(bytes) = window.read(position, self.end) {
            window
                .readers
                .insert(self.id, position + bytes.len() as u64);
            window.trim();
            drop(window);
            self.fill.moved.notify_one();
            return Next::Bytes(bytes);
        }
        let done = self.end.is_some_and(|end| position >= end)
            || (window.complete && position >= window.written);
        if done {
            window.readers.remove(&self.id);
            window.trim();
            drop(window);
            self.fill.moved.notify_one();
            return Next::End;
        }
        Next::Wait
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let mut window = self.fill.window.lock().expect("fill window");
        window.readers.remove(&self.id);
        window.dropped.remove(&self.id);
        window.trim();
        drop(window);
        self.fill.moved.notify_one();
    }
}

/// The fills in progress on this instance, by repository and digest: a
/// client joins only a fill for the repository it asked through, so no one
/// receives bytes through a repository the upstream has not confirmed
/// holds them.
#[derive(Default)]
pub struct Fills {
    inflight: Mutex<HashMap<String, Arc<Fill>>>,
}

impl Fills {
    /// The fill of `digest` for `repository` in progress, or a new one
    /// (`true`: the caller runs it, and ends it with [`Fills::end`]).
    pub fn join(&self, repository: &str, digest: &Digest) -> (Arc<Fill>, bool) {
        let key = format!("{repository}@{digest}");
        let mut inflight = self.inflight.lock().expect("fills");
        if let Some(fill) = inflight.get(&key) {
            return (fill.clone(), false);
        }
        let (state, _) = watch::channel(FillState::Starting);
        let fill = Arc::new(Fill {
            digest: digest.clone(),
            key: key.clone(),
            state,
            window: Mutex::default(),
            moved: Notify::new(),
        });
        inflight.insert(key, fill.clone());
        (fill, true)
    }

    /// Takes the fill off the list: later clients look in the blob store.
    pub fn end(&self, fill: &Fill) {
        self.inflight.lock().expect("fills").remove(&fill.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn digest_of(bytes: &[u8]) -> Digest {
        Digest::of_bytes(crate::oci::Algorithm::Sha256, bytes)
    }

    async fn collect(mut stream: ByteStream) -> io::Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(chunk) = stream.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all)
    }

    fn body(bytes: Vec<u8>) -> ByteStream {
        let chunks: Vec<io::Result<Bytes>> = bytes
            .chunks(10_000)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn readers_get_every_byte_and_a_mismatch_breaks_them_off() {
        let blob: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let fills = Fills::default();
        let (fill, started) = fills.join("hub/x", &digest_of(&blob));
        assert!(started);
        assert!(
            !fills.join("hub/x", &digest_of(&blob)).1,
            "the second asker joins"
        );
        assert!(
            fills.join("hub/y", &digest_of(&blob)).1,
            "another repository does not"
        );
        let readers: Vec<_> = (0..3).map(|_| fill.reader(None).unwrap()).collect();
        let range = fill.reader(Some(ByteRange { start: 10, end: 19 })).unwrap();
        let size = fill
            .receive(
                body(blob.clone()),
                Some(blob.len() as u64),
                Duration::from_secs(5),
            )
            .await;
        // Readers wait for the fill here only after it is done: the window
        // is larger than this blob, so it never waited for them.
        fill.set(FillState::Complete {
            size: size.unwrap(),
        });
        for reader in readers {
            assert_eq!(collect(reader).await.unwrap(), blob);
        }
        assert_eq!(collect(range).await.unwrap(), blob[10..20]);
        // Every reader is gone: the batches are dropped, a late reader
        // gets none.
        assert!(fill.reader(None).is_none());

        let (wrong, _) = fills.join("hub/z", &digest_of(b"something else"));
        let reader = wrong.reader(None).unwrap();
        let failure = wrong
            .receive(body(blob.clone()), None, Duration::from_secs(5))
            .await
            .unwrap_err();
        wrong.set(FillState::Failed(failure));
        assert!(collect(reader).await.is_err());
    }

    #[tokio::test]
    async fn a_stalled_reader_is_dropped_and_the_others_go_on() {
        let blob: Vec<u8> = (0..(WINDOW as u32 + 5_000_000))
            .map(|i| (i % 253) as u8)
            .collect();
        let fills = Fills::default();
        let (fill, _) = fills.join("hub/x", &digest_of(&blob));
        let stalled = fill.reader(None).unwrap();
        let reading = tokio::spawn(collect(fill.reader(None).unwrap()));
        let size = fill
            .receive(
                body(blob.clone()),
                Some(blob.len() as u64),
                Duration::from_millis(200),
            )
            .await
            .unwrap();
        fill.set(FillState::Complete { size });
        assert_eq!(reading.await.unwrap().unwrap(), blob);
        assert!(collect(stalled).await.is_err());
    }
}
