//! `berth bench-load` (hidden): fills an empty registry for the `scale`
//! benchmark. The shared image config and the dangling blobs are written
//! through the configured blob store, as uploads would write them (per
//! upload keys and all); then `metadata::RegistryStore::bulk_load` writes
//! the rows. Layers get rows only (see `metadata/bulk.rs`).

use std::time::Instant;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use crate::config::Config;
use crate::metadata::{BulkPlan, Metadata, StoredBlob};
use crate::oci::{Algorithm, Digest};
use crate::storage::{BlobStore, StagedUpload};

/// Dangling blobs written to the blob store at a time: the filesystem
/// store's writes are blocking-pool jobs, and this keeps both cores busy.
const CONCURRENT_WRITES: usize = 16;

/// What to load, as the subcommand's flags give it.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchLoadArgs {
    /// Repositories, the one with many tags among them.
    #[arg(long, default_value_t = 100)]
    pub repositories: u64,
    /// Tags in all.
    #[arg(long, default_value_t = 1_000)]
    pub tags: u64,
    /// Layer blobs in all (rows only; the shared config is one more).
    #[arg(long, default_value_t = 1_000)]
    pub blobs: u64,
    /// Tags of `<namespace>/big`, counted in `--tags`.
    #[arg(long, default_value_t = 100)]
    pub big_repository_tags: u64,
    /// Blobs uploaded and never used by a manifest, older than `gc.grace`.
    #[arg(long, default_value_t = 0)]
    pub dangling_blobs: u64,
    /// The namespace the repositories are under.
    #[arg(long, default_value = "scale")]
    pub namespace: String,
}

/// The config every loaded manifest names.
const CONFIG: &[u8] = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[]}}"#;

/// Bytes of dangling blob `index`.
pub fn dangling_bytes(index: u64) -> Vec<u8> {
    format!("berth bulk dangling blob {index}\n").into_bytes()
}

/// Stores `bytes` as one upload would: staged, appended, committed.
async fn store(blobs: &dyn BlobStore, bytes: Vec<u8>) -> anyhow::Result<StoredBlob> {
    let digest = Digest::of_bytes(Algorithm::Sha256, &bytes);
    let id = uuid::Uuid::new_v4().to_string();
    let size = bytes.len() as u64;
    let storage_state = blobs.begin_upload(&id).await?;
    let mut upload = StagedUpload { id, storage_state };
    let mut body: crate::storage::ByteStream = Box::pin(futures_util::stream::once(async move {
        Ok::<_, std::io::Error>(Bytes::from(bytes))
    }));
    let appended = blobs
        .append(&upload, 0, &mut body, &mut |_| {})
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    upload.storage_state = appended.storage_state;
    let storage_key = blobs.commit_upload(&upload, size, &digest).await?;
    Ok(StoredBlob {
        digest,
        size,
        storage_key,
    })
}

pub async fn bench_load(
    config: &Config,
    metadata: &Metadata,
    args: BenchLoadArgs,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let blobs = crate::server::open_blob_store(config).await?;
    let config_blob = store(blobs.as_ref(), CONFIG.to_vec()).await?;
    let dangling: Vec<StoredBlob> = futures_util::stream::iter(0..args.dangling_blobs)
        .map(|index| {
            let blobs = blobs.clone();
            async move { store(blobs.as_ref(), dangling_bytes(index)).await }
        })
        .buffer_unordered(CONCURRENT_WRITES)
        .try_collect()
        .await?;
    let stored_in = started.elapsed();
    let grace = i64::try_from(config.gc.grace.as_secs()).unwrap_or(i64::MAX / 2);
    let plan = BulkPlan {
        namespace: args.namespace,
        repositories: args.repositories,
        tags: args.tags,
        big_repository_tags: args.big_repository_tags,
        layers: args.blobs,
        config: config_blob,
        config_bytes: CONFIG.to_vec(),
        layer_key_prefix: "blobs/sha256/bulk-layer-without-bytes/".into(),
        dangling,
        // An hour past the grace: due at the next pass.
        dangling_since: crate::metadata::unix_now() - grace - 3600,
    };
    let loaded = metadata
        .registry
        .bulk_load(plan, |_| {})
        .await
        .map_err(|e| anyhow::anyhow!("cannot load: {e}"))?;
    println!(
        "loaded {} repositories, {} manifests, {} tags, {} layer blobs, {} dangling blobs \
         in {:.1}s ({:.1}s of it writing blob bytes)",
        loaded.repositories,
        loaded.manifests,
        loaded.tags,
        loaded.blobs,
        loaded.dangling,
        started.elapsed().as_secs_f64(),
        stored_in.as_secs_f64()
    );
    Ok(())
}
