//! Online garbage collection: a pass reviews what pushes and deletes queued
//! as possibly unreferenced (manifests, blob links, blobs), deletes what is
//! still unreferenced once its grace period has passed, expires idle
//! uploads, then removes the blob-store objects whose metadata went.
//!
//! Runs in every instance as background work, paced so that pushes keep
//! most of their rate ([`Collector::in_background`]), and as `berth gc`, at
//! full speed; several
//! collectors at once never take the same item (see `metadata/collector.rs`).
//! Each real pass is recorded (`gc_passes`, the last [`KEPT_PASSES`]) for
//! the web UI's administration page, which reads them through
//! [`Collector::recent_passes`].
//! Calls `metadata`, `storage`, `policy` (retention) and the leaves
//! `metrics` and `setting`; owns the `[gc]` settings. Started by `server`
//! and by `cli` (`berth gc`); read by `ui`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::metadata::{
    Collected, CollectorStore, Garbage, GcPassRecord, MetadataError, PolicyStore,
};
use crate::metrics::Metrics;
use crate::policy::retention;
use crate::setting::Invalid;
use crate::storage::{BlobStore, StagedUpload, StorageError};

/// Review items handled per transaction: small enough that a push never
/// waits long behind a collector (SQLite has one writer), large enough that
/// a backlog of thousands goes in seconds.
const BATCH: u32 = 200;

/// Blob-store deletes in flight at once during a pass run on demand.
const CONCURRENT_DELETES: usize = 8;

/// A background pass's rest after each step, in multiples of the step's time.
const REST_PER_STEP: u32 = 3;

/// Passes kept in `gc_passes` for the administration page.
pub const KEPT_PASSES: u32 = 20;

/// The `[gc]` settings, as a file or the environment spell them and as
/// the collector runs with them once checked: the two are the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcConfig {
    /// How often each instance runs a pass (e.g. `10m`); `None` (`off`)
    /// turns the background work off.
    #[serde(with = "crate::setting::duration_or_off")]
    pub interval: Option<Duration>,
    /// How long something stays unreferenced before it is collected (e.g. `24h`; `0s` is safe).
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How long an upload may stay idle before it expires (e.g. `24h`).
    #[serde(with = "humantime_serde")]
    pub upload_expiry: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(600)),
            grace: Duration::from_secs(24 * 3600),
            upload_expiry: Duration::from_secs(24 * 3600),
        }
    }
}

impl GcConfig {
    pub fn check(self) -> Result<GcConfig, Invalid> {
        if self.interval.is_some_and(|i| i.is_zero()) {
            return Err(Invalid::new(
                "interval",
                "use a positive duration, or `off`",
            ));
        }
        Ok(self)
    }
}

#[derive(Debug, Clone, Default)]
pub struct GcReport {
    /// Tags retention policies removed (or, in a dry run, would remove), as
    /// `(repository, tag)`.
    pub expired_tags: Vec<(String, String)>,
    pub collected: Collected,
    /// Cached manifests and blobs forgotten for not being pulled.
    pub evicted: u64,
    /// Blob-store objects deleted, and those that failed (retried next pass).
    pub objects_deleted: u64,
    pub objects_failed: u64,
    pub duration: Duration,
}

impl GcReport {
    /// The pass as `gc_passes` keeps it, finished now.
    fn record(&self) -> GcPassRecord {
        let c = &self.collected;
        GcPassRecord {
            finished_at: crate::metadata::unix_now(),
            duration_ms: self.duration.as_millis() as u64,
            expired_tags: self.expired_tags.len() as u64,
            manifests: c.manifests,
            blob_links: c.blob_links,
            blobs: c.blobs,
            uploads: c.uploads,
            bytes_freed: c.bytes,
            objects_deleted: self.objects_deleted,
            objects_failed: self.objects_failed,
        }
    }
}

pub struct Collector {
    metadata: CollectorStore,
    policies: PolicyStore,
    blobs: Arc<dyn BlobStore>,
    config: GcConfig,
    metrics: Option<Arc<Metrics>>,
    /// The pull-through cache's namespaces: the prefix of their
    /// repositories (`hub/`) and how long unpulled content is kept.
    evictions: Vec<(String, Duration)>,
    /// How long a background pass rests after each step, as a multiple of
    /// the step's own time; zero for a pass run on demand.
    rest: u32,
    /// Blob-store deletes in flight at once.
    deletes_in_flight: usize,
}

impl Collector {
    pub fn new(
        metadata: CollectorStore,
        policies: PolicyStore,
        blobs: Arc<dyn BlobStore>,
        config: GcConfig,
        metrics: Option<Arc<Metrics>>,
    ) -> Self {
        Self {
            metadata,
            policies,
            blobs,
            config,
            metrics,
            evictions: Vec::new(),
            rest: 0,
            deletes_in_flight: CONCURRENT_DELETES,
        }
    }

    /// Makes each pass yield to the registry's own work: after each round
    /// and each batch of deletes it rests [`REST_PER_STEP`] times as long
    /// as the step took, and it deletes one object at a time. At full
    /// speed on two cores a pass of 100,000 dangling blobs left 16 pushing
    /// clients a fifth of their rate (a round holds SQLite's one writer; an
    /// unlink may wait for the disk to discard, and a push's flush behind
    /// it); like this they kept 81-100% (docs/performance.md, "At scale").
    pub fn in_background(mut self) -> Self {
        self.rest = REST_PER_STEP;
        self.deletes_in_flight = 1;
        self
    }

    async fn rest_after(&self, step_started: Instant) {
        if self.rest > 0 {
            tokio::time::sleep(step_started.elapsed() * self.rest).await;
        }
    }

    /// Evicts, at the start of every pass, what the cache holds under each
    /// prefix and has not served for its window.
    pub fn with_evictions(mut self, evictions: Vec<(String, Duration)>) -> Self {
        self.evictions = evictions;
        self
    }

    /// Forgets cached content not pulled within its window, so the queues
    /// below take its links and bytes (after the grace).
    async fn evict_cached(&self) -> Result<u64, MetadataError> {
        let mut evicted = 0;
        for (prefix, window) in &self.evictions {
            let before = crate::metadata::unix_now() - window.as_secs() as i64;
            loop {
                let round = self.metadata.evict(prefix, before, BATCH).await?;
                evicted += round.manifests + round.blobs;
                if round.manifests < u64::from(BATCH) && round.blobs < u64::from(BATCH) {
                    break;
                }
            }
        }
        Ok(evicted)
    }

    /// One pass now. With `dry_run` nothing is deleted and the report says
    /// what would be.
    pub async fn run_pass(&self, dry_run: bool) -> Result<GcReport, MetadataError> {
        let started = Instant::now();
        let grace = self.config.grace.as_secs() as i64;
        let upload_expiry = self.config.upload_expiry.as_secs() as i64;
        let mut report = GcReport {
            expired_tags: self.apply_retention(dry_run).await?,
            ..GcReport::default()
        };
        if dry_run {
            // Eviction is not previewed: it only queues reviews.
            report.collected = self
                .metadata
                .collect(grace, upload_expiry, u32::MAX, true)
                .await?;
            report.duration = started.elapsed();
            return Ok(report);
        }
        report.evicted = self.evict_cached().await?;
        // Objects are deleted while later rounds still collect: the rounds
        // wait on the database, the deletes on blob storage.
        let collected = Notify::new();
        let collecting = AtomicBool::new(true);
        let collect = async {
            let mut total = Collected::default();
            let rounds = async {
                loop {
                    let step = Instant::now();
                    let round = self
                        .metadata
                        .collect(grace, upload_expiry, BATCH, false)
                        .await?;
                    total += round;
                    collected.notify_one();
                    self.rest_after(step).await;
                    if round.reviewed == 0 {
                        return Ok::<_, MetadataError>(());
                    }
                }
            };
            let outcome = rounds.await;
            collecting.store(false, Ordering::Release);
            collected.notify_one();
            outcome.map(|()| total)
        };
        let delete = async {
            let mut deleted = (0, 0);
            loop {
                let finished = !collecting.load(Ordering::Acquire);
                let step = Instant::now();
                let garbage = self.metadata.garbage(BATCH).await?;
                if garbage.is_empty() {
                    if finished {
                        return Ok(deleted);
                    }
                    collected.notified().await;
                    continue;
                }
                let (done, failed) = self.delete_objects(garbage).await;
                deleted.1 += failed;
                if done.is_empty() {
                    // Storage refuses every delete: leave the rest to the next pass.
                    return Ok(deleted);
                }
                deleted.0 += done.len() as u64;
                self.metadata.forget_garbage(&done).await?;
                self.rest_after(step).await;
            }
        };
        let (collected, (deleted, failed)) = tokio::try_join!(collect, delete)?;
        report.collected = collected;
        report.objects_deleted = deleted;
        report.objects_failed = failed;
        report.duration = started.elapsed();
        // The pass is done whether or not its record is kept.
        if let Err(e) = self
            .metadata
            .record_pass(&report.record(), KEPT_PASSES)
            .await
        {
            tracing::warn!(error = %e, "could not record a garbage collection pass");
        }
        if let Some(metrics) = &self.metrics {
            let c = &report.collected;
            metrics.record_gc(
                &[
                    ("manifest", c.manifests),
                    ("blob_link", c.blob_links),
                    ("blob", c.blobs),
                    ("upload", c.uploads),
                    ("object", report.objects_deleted),
                    ("tag", report.expired_tags.len() as u64),
                    ("cache_eviction", report.evicted),
                ],
                c.bytes,
            );
        }
        Ok(report)
    }

    /// Deletes collected objects from blob storage, `deletes_in_flight` at
    /// once (each is a round trip to S3, or an unlink that may wait on the
    /// disk to discard); returns the garbage ids of those deleted, and how many
    /// failed.
    async fn delete_objects(&self, garbage: Vec<Garbage>) -> (Vec<String>, u64) {
        let results: Vec<(String, Result<(), StorageError>)> = futures_util::stream::iter(garbage)
            .map(|item| self.delete_object(item))
            .buffer_unordered(self.deletes_in_flight)
            .collect()
            .await;
        let mut done = Vec::with_capacity(results.len());
        let mut failed = 0;
        for (id, result) in results {
            match result {
                Ok(()) => done.push(id),
                Err(e) => {
                    failed += 1;
                    tracing::warn!(error = %e, "could not delete a collected object; retrying next pass");
                }
            }
        }
        (done, failed)
    }

    /// Deletes one collected object from blob storage; returns its
    /// garbage id with the outcome.
    async fn delete_object(&self, item: Garbage) -> (String, Result<(), StorageError>) {
        match item {
            Garbage::Blob { id, key } => {
                let result = self.blobs.delete(&key).await;
                (id, result)
            }
            Garbage::Upload {
                id,
                upload_id,
                storage_state,
            } => {
                let staged = StagedUpload {
                    id: upload_id,
                    storage_state,
                };
                (id, self.blobs.abort_upload(&staged).await)
            }
        }
    }

    /// The last passes any instance (or `berth gc`) finished, newest
    /// first, at most [`KEPT_PASSES`]; dry runs are not among them.
    pub async fn recent_passes(&self) -> Result<Vec<GcPassRecord>, MetadataError> {
        self.metadata.recent_passes(KEPT_PASSES).await
    }

    /// Untags what retention policies let go (the queues then collect what
    /// those tags held); in a dry run only lists it. A repository covered by
    /// several policies follows the most specific (`retention::governing`).
    async fn apply_retention(&self, dry_run: bool) -> Result<Vec<(String, String)>, MetadataError> {
        let policies = self.policies.retention_policies().await?;
        if policies.is_empty() {
            return Ok(Vec::new());
        }
        let now = crate::metadata::unix_now();
        let mut by_repository: std::collections::BTreeMap<String, Vec<(String, i64)>> =
            Default::default();
        for policy in &policies {
            for pushed in self.metadata.tags_under(&policy.path).await? {
                by_repository
                    .entry(pushed.repository)
                    .or_default()
                    .push((pushed.tag, pushed.pushed_at));
            }
        }
        let mut expired = Vec::new();
        for (repository, mut tags) in by_repository {
            tags.sort();
            tags.dedup();
            let Some(policy) = retention::governing(&policies, &repository) else {
                continue;
            };
            for (tag, pushed_at) in retention::expired(policy, &tags, now) {
                let pushed = crate::metadata::PushedTag {
                    repository: repository.clone(),
                    tag: tag.clone(),
                    pushed_at: *pushed_at,
                };
                if dry_run || self.metadata.untag_if_unchanged(&pushed).await? {
                    expired.push((repository.clone(), tag.clone()));
                }
            }
        }
        Ok(expired)
    }

    /// Runs a pass every `interval` until the returned task is aborted.
    pub fn spawn(self: Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let interval = self.config.interval?;
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                match self.run_pass(false).await {
                    Ok(report) => {
                        let c = report.collected;
                        if c.reviewed > 0
                            || report.objects_deleted > 0
                            || !report.expired_tags.is_empty()
                        {
                            tracing::info!(
                                expired_tags = report.expired_tags.len(),
                                manifests = c.manifests,
                                blob_links = c.blob_links,
                                blobs = c.blobs,
                                bytes = c.bytes,
                                uploads = c.uploads,
                                objects = report.objects_deleted,
                                duration_ms = report.duration.as_millis() as u64,
                                "garbage collection pass"
                            );
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "garbage collection pass failed; retrying next interval")
                    }
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_check_into_the_config() {
        let config = GcConfig::default().check().unwrap();
        assert_eq!(config.interval, Some(Duration::from_secs(600)));
        assert_eq!(config.grace, Duration::from_secs(24 * 3600));
        assert_eq!(config.upload_expiry, Duration::from_secs(24 * 3600));
        let off = GcConfig {
            interval: None,
            grace: Duration::ZERO,
            ..GcConfig::default()
        };
        assert_eq!(off.check().unwrap().interval, None);
        let zero = GcConfig {
            interval: Some(Duration::ZERO),
            ..GcConfig::default()
        };
        assert_eq!(zero.check().unwrap_err().key, "interval");
    }
}
