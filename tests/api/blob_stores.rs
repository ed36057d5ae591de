//! One behaviour suite for every blob store, run against the stores
//! directly (no HTTP, no metadata): the `BlobStore` contract written once,
//! as async functions taking `&dyn BlobStore`, and stamped into one test per
//! store and contract by [`every_contract!`] (e.g.
//! `blob_stores::s3::ranged_reads_return_exactly_their_bytes`).
//!
//! The stores: in memory, on the filesystem with `fsync` on and off, and on
//! the suite's S3 server (a bucket prefix of its own per test). Appends made
//! of several requests respect `capabilities().min_chunk_size`, as a client
//! told `OCI-Chunk-Min-Length` would.

use berth::oci::range::ByteRange;
use berth::oci::{Algorithm, Digest};
use berth::storage::{
    AppendError, Appended, BlobStore, ByteStream, FilesystemBlobStore, MemoryBlobStore,
    S3BlobStore, StagedUpload, StorageError,
};
use bytes::Bytes;
use futures_util::StreamExt;

/// A store under test, with what it must outlive (its directory).
struct Subject {
    store: Box<dyn BlobStore>,
    _dir: Option<tempfile::TempDir>,
}

async fn open_memory() -> Subject {
    Subject {
        store: Box::new(MemoryBlobStore::new()),
        _dir: None,
    }
}

async fn open_filesystem(fsync: bool) -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = FilesystemBlobStore::open(dir.path().join("storage"), fsync)
        .await
        .unwrap();
    Subject {
        store: Box::new(store),
        _dir: Some(dir),
    }
}

async fn open_filesystem_fsync() -> Subject {
    open_filesystem(true).await
}

async fn open_filesystem_no_fsync() -> Subject {
    open_filesystem(false).await
}

async fn open_s3() -> Subject {
    Subject {
        store: Box::new(S3BlobStore::open(&crate::harness::s3_config()).unwrap()),
        _dir: None,
    }
}

/// Stamps one `#[tokio::test]` per contract for `$store` (opened by
/// `$open`), in a module named after the store; `$extra` are contracts only
/// some stores keep.
macro_rules! every_contract {
    ($store:ident = $open:ident $(, $extra:ident)* $(,)?) => {
        contracts!(
            $store = $open:
            staged_bytes_are_invisible_until_commit,
            append_resumes_at_the_recorded_offset,
            observe_sees_every_byte,
            a_commit_is_idempotent,
            ranged_reads_return_exactly_their_bytes,
            delete_and_abort_are_idempotent,
            unknown_keys_are_not_found,
            uploads_of_the_same_content_commit_to_their_own_keys,
            $($extra,)*
        );
    };
}

macro_rules! contracts {
    ($store:ident = $open:ident: $($contract:ident),+ $(,)?) => {
        mod $store {
            $(
                #[tokio::test]
                async fn $contract() {
                    let subject = super::$open().await;
                    super::$contract(subject.store.as_ref()).await;
                }
            )+
        }
    };
}

every_contract!(memory = open_memory, lost_staging_is_reported);
every_contract!(
    filesystem_fsync = open_filesystem_fsync,
    lost_staging_is_reported
);
every_contract!(
    filesystem_no_fsync = open_filesystem_no_fsync,
    lost_staging_is_reported
);
// S3 is not held to `lost_staging_is_reported`: once every staged byte has
// gone into parts of the multipart upload, no staging object is left whose
// absence it could notice, and the aborted upload fails as an S3 error.
every_contract!(s3 = open_s3);

// ----- helpers -----

/// `len` bytes that differ from one seed to the next and have no short
/// period, so a misplaced piece never compares equal by chance.
fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of_bytes(Algorithm::Sha256, bytes)
}

/// The size of every request but the last in a multi-request append: the
/// store's minimum, or a size that still spans several write batches.
fn chunk_size(store: &dyn BlobStore) -> usize {
    store
        .capabilities()
        .min_chunk_size
        .map_or(3 * 1024 * 1024 / 2, |min| min as usize)
}

/// A request body carrying `bytes` in pieces of `piece` bytes.
fn body_in_pieces(bytes: &[u8], piece: usize) -> ByteStream {
    let parts: Vec<std::io::Result<Bytes>> = bytes
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(parts))
}

fn body(bytes: &[u8]) -> ByteStream {
    body_in_pieces(bytes, 64 * 1024)
}

/// A request body that carries `bytes` and then breaks, as when a client goes away.
fn failing_body(bytes: &[u8]) -> ByteStream {
    let mut parts: Vec<std::io::Result<Bytes>> = bytes
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    parts.push(Err(std::io::Error::other("client went away")));
    Box::pin(futures_util::stream::iter(parts))
}

async fn read_all(mut stream: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

async fn get(store: &dyn BlobStore, key: &str, range: Option<ByteRange>) -> Vec<u8> {
    read_all(store.get(key, range).await.unwrap()).await
}

fn assert_not_found<T>(result: Result<T, StorageError>, what: &str) {
    match result {
        Err(StorageError::NotFound) => {}
        Err(e) => panic!("{what}: expected NotFound, got {e}"),
        Ok(_) => panic!("{what}: expected NotFound, got a stream"),
    }
}

/// An upload as the registry tracks it: the store's state and the offset
/// recorded after the last successful append.
struct Upload {
    staged: StagedUpload,
    offset: u64,
}

async fn begin(store: &dyn BlobStore, id: &str) -> Upload {
    Upload {
        staged: StagedUpload {
            id: id.to_string(),
            storage_state: store.begin_upload(id).await.unwrap(),
        },
        offset: 0,
    }
}

/// Appends `bytes` as one request and records the result, as the registry
/// does after a successful append.
async fn append(store: &dyn BlobStore, upload: &mut Upload, bytes: &[u8]) -> Appended {
    let appended = store
        .append(&upload.staged, upload.offset, &mut body(bytes), &mut |_| {})
        .await
        .unwrap();
    assert_eq!(appended.written, bytes.len() as u64);
    upload.offset += appended.written;
    upload.staged.storage_state = appended.storage_state.clone();
    appended
}

async fn commit(store: &dyn BlobStore, upload: &Upload, digest: &Digest) -> String {
    store
        .commit_upload(&upload.staged, upload.offset, digest)
        .await
        .unwrap()
}

/// Uploads `bytes` in requests of [`chunk_size`] and commits them.
async fn push(store: &dyn BlobStore, id: &str, bytes: &[u8]) -> (Upload, String) {
    let mut upload = begin(store, id).await;
    for request in bytes.chunks(chunk_size(store)) {
        append(store, &mut upload, request).await;
    }
    let key = commit(store, &upload, &sha256(bytes)).await;
    (upload, key)
}

// ----- the contract -----

/// Nothing staged can be read under the key the upload commits to until
/// the commit; then all of it can.
async fn staged_bytes_are_invisible_until_commit(store: &dyn BlobStore) {
    let chunk = chunk_size(store);
    let bytes = content(2 * chunk + 1000, 1);
    let digest = sha256(&bytes);
    // Learn the key this upload commits to, then stage it afresh.
    let (_, key) = push(store, "u1", &bytes).await;
    store.delete(&key).await.unwrap();

    let mut upload = begin(store, "u1").await;
    for request in bytes.chunks(chunk) {
        append(store, &mut upload, request).await;
        assert_not_found(store.get(&key, None).await, "whole blob before commit");
        let range = ByteRange { start: 0, end: 9 };
        assert_not_found(store.get(&key, Some(range)).await, "range before commit");
    }
    if store.capabilities().reads_staged_uploads {
        let staged = store
            .read_upload(&upload.staged, upload.offset)
            .await
            .unwrap();
        assert!(read_all(staged).await == bytes, "read back from staging");
    }
    assert_eq!(commit(store, &upload, &digest).await, key);
    assert!(get(store, &key, None).await == bytes);
}

/// An append starts at the offset recorded by the last successful one;
/// what a failed append staged past it is gone.
async fn append_resumes_at_the_recorded_offset(store: &dyn BlobStore) {
    let chunk = chunk_size(store);
    let bytes = content(2 * chunk + 777, 2);
    let mut upload = begin(store, "u1").await;

    // A first request that breaks after more than a chunk, then one after
    // each successful request: none of their bytes may stay.
    for (i, request) in bytes.chunks(chunk).enumerate() {
        let garbage = content(chunk + 5, 100 + i as u64);
        let mut observed = Vec::new();
        let failed = store
            .append(
                &upload.staged,
                upload.offset,
                &mut failing_body(&garbage),
                &mut |b| observed.extend_from_slice(b),
            )
            .await;
        assert!(
            matches!(failed, Err(AppendError::Body(_))),
            "a broken body is the body's failure"
        );
        assert!(
            observed == garbage,
            "observe saw what came before the break"
        );
        append(store, &mut upload, request).await;
    }
    assert_eq!(upload.offset, bytes.len() as u64);
    if store.capabilities().reads_staged_uploads {
        let staged = store
            .read_upload(&upload.staged, upload.offset)
            .await
            .unwrap();
        assert!(read_all(staged).await == bytes, "read back from staging");
    }
    let key = commit(store, &upload, &sha256(&bytes)).await;
    assert!(get(store, &key, None).await == bytes);
}

/// `observe` is handed every byte of the body, in order, whatever the
/// pieces (empty ones included); `written` counts them.
async fn observe_sees_every_byte(store: &dyn BlobStore) {
    let bytes = content(chunk_size(store) * 3 / 2 + 3, 3);
    let sizes = [1, 0, 4095, 4097, 65_536, 0, 100_003, 7];
    let mut parts: Vec<std::io::Result<Bytes>> = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at == bytes.len() {
            break;
        }
        let end = (at + size).min(bytes.len());
        parts.push(Ok(Bytes::copy_from_slice(&bytes[at..end])));
        at = end;
    }
    let mut stream: ByteStream = Box::pin(futures_util::stream::iter(parts));
    let mut upload = begin(store, "u1").await;
    let mut observed = Vec::new();
    let appended = store
        .append(&upload.staged, 0, &mut stream, &mut |b| {
            observed.extend_from_slice(b)
        })
        .await
        .unwrap();
    assert_eq!(appended.written, bytes.len() as u64);
    assert!(observed == bytes, "observed every byte in order");
    upload.offset = appended.written;
    upload.staged.storage_state = appended.storage_state;
    let key = commit(store, &upload, &sha256(&bytes)).await;
    assert!(get(store, &key, None).await == bytes);
}

/// Committing an upload again (a retried request) returns the same key and
/// leaves the blob as it was: for a blob under one chunk and one of several.
async fn a_commit_is_idempotent(store: &dyn BlobStore) {
    let chunk = chunk_size(store);
    for (id, len) in [("small", 1000), ("large", 2 * chunk + 11)] {
        let bytes = content(len, 4);
        let (upload, key) = push(store, id, &bytes).await;
        assert_eq!(
            commit(store, &upload, &sha256(&bytes)).await,
            key,
            "{id}: committed again"
        );
        assert!(get(store, &key, None).await == bytes, "{id}: read back");
    }
}

/// A range returns exactly its bytes, wherever it starts and ends: the first
/// and last byte, the whole blob, and ranges spanning the filesystem
/// store's 512 KiB read chunks and S3's parts, in a blob of several MiB.
async fn ranged_reads_return_exactly_their_bytes(store: &dyn BlobStore) {
    const READ_CHUNK: u64 = 512 * 1024;
    let bytes = content(6 * 1024 * 1024 + 17, 5);
    let last = bytes.len() as u64 - 1;
    let (_, key) = push(store, "u1", &bytes).await;
    assert!(get(store, &key, None).await == bytes);
    for (start, end) in [
        (0, 0),
        (last, last),
        (0, last),
        (5, READ_CHUNK + 9),
        (READ_CHUNK - 1, READ_CHUNK),
        (READ_CHUNK - 5, 2 * READ_CHUNK + 5),
        (1024 * 1024 + 3, 5 * 1024 * 1024 + 11),
        (last - READ_CHUNK - 1, last),
    ] {
        let range = ByteRange { start, end };
        assert!(
            get(store, &key, Some(range)).await == bytes[start as usize..=end as usize],
            "bytes {start}-{end}"
        );
    }
}

/// Deleting a blob or aborting an upload twice, or one that never was,
/// succeeds.
async fn delete_and_abort_are_idempotent(store: &dyn BlobStore) {
    let bytes = content(1000, 6);
    let (_, key) = push(store, "u1", &bytes).await;
    store.delete(&key).await.unwrap();
    assert_not_found(store.get(&key, None).await, "a deleted blob");
    store.delete(&key).await.unwrap();

    let mut upload = begin(store, "u2").await;
    append(store, &mut upload, &content(chunk_size(store) + 10, 7)).await;
    store.abort_upload(&upload.staged).await.unwrap();
    store.abort_upload(&upload.staged).await.unwrap();
    let never = StagedUpload {
        id: "never-begun".into(),
        storage_state: String::new(),
    };
    store.abort_upload(&never).await.unwrap();
}

/// A key the store never committed is not found, whole or in part.
async fn unknown_keys_are_not_found(store: &dyn BlobStore) {
    let (_, key) = push(store, "u1", &content(1000, 8)).await;
    let unknown = format!("{key}-unknown");
    assert_not_found(store.get(&unknown, None).await, "an unknown key");
    let range = ByteRange { start: 0, end: 9 };
    assert_not_found(store.get(&unknown, Some(range)).await, "a range of one");
    store.delete(&unknown).await.unwrap();
}

/// Two uploads of one content commit under keys of their own, so deleting
/// one (the collector removing a collected blob) leaves the other whole.
async fn uploads_of_the_same_content_commit_to_their_own_keys(store: &dyn BlobStore) {
    let bytes = content(chunk_size(store) + 100, 9);
    let (_, first) = push(store, "u1", &bytes).await;
    let (_, second) = push(store, "u2", &bytes).await;
    assert_ne!(first, second);
    store.delete(&first).await.unwrap();
    assert_not_found(store.get(&first, None).await, "the deleted copy");
    assert!(get(store, &second, None).await == bytes);
}

/// Staging that is missing or shorter than the offset an append starts
/// from is reported as lost (for a store that can tell), not silently
/// filled.
async fn lost_staging_is_reported(store: &dyn BlobStore) {
    let lost = |result: Result<Appended, AppendError>| match result {
        Err(AppendError::Storage(StorageError::StagingLost { found, expected })) => {
            (found, expected)
        }
        Err(e) => panic!("expected StagingLost, got {e}"),
        Ok(_) => panic!("expected StagingLost, the append succeeded"),
    };
    let never = StagedUpload {
        id: "never-begun".into(),
        storage_state: String::new(),
    };
    let result = store.append(&never, 0, &mut body(b"x"), &mut |_| {}).await;
    assert_eq!(lost(result), (0, 0), "an upload never begun");

    let mut upload = begin(store, "u1").await;
    append(store, &mut upload, b"abc").await;
    let result = store
        .append(&upload.staged, 10, &mut body(b"x"), &mut |_| {})
        .await;
    assert_eq!(lost(result), (3, 10), "staging shorter than the offset");

    store.abort_upload(&upload.staged).await.unwrap();
    let result = store
        .append(&upload.staged, upload.offset, &mut body(b"x"), &mut |_| {})
        .await;
    assert_eq!(lost(result), (0, 3), "staging removed under the upload");
}
