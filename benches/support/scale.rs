//! `BERTH_BENCH_PROFILE=scale`: Berth with a registry's worth of content,
//! on SQLite and on PostgreSQL, against the same Berth holding 100
//! repositories, in the same run.
//!
//! Each registry is filled by `berth bench-load` (rows in multi-row
//! inserts; see `src/metadata/bulk.rs`): the big one holds 100,000
//! repositories (`BERTH_BENCH_SCALE_REPOSITORIES`), 1,000,000 tags
//! (`…_TAGS`), 1,000,000 layer blobs (`…_BLOBS`), one repository,
//! `scale/big`, with 100,000 of the tags (`…_BIG_TAGS`), and 100,000
//! dangling blobs (`…_DANGLING`); the small one 100 repositories and the
//! rest in proportion. Then, for each:
//!
//! - **Start-up**: from the process's start until `/v2/` answers, against
//!   an empty database, its schema made by an earlier start (goal: at most 2×).
//! - **Latency** (p50 and p99, to the last byte) of the first and the last
//!   `_catalog?n=100` page, the first `tags/list?n=100` page of `scale/big`
//!   and one 90% into it (`last=`), and a manifest `GET` by tag:
//!   `BERTH_BENCH_SCALE_REQUESTS` (2,000) one at a time, then as many from
//!   8 connections, after 50 to warm up (goal: each p99 within 1.5× of the
//!   small registry's).
//! - **Peak resident memory** after the requests (goal: flat).
//!
//! The reference registry gets the same repositories on its filesystem
//! layout, written directly; its first `_catalog?n=100` page is timed
//! against Berth's (goal: Berth 100× faster or more).
//!
//! **Garbage collection**: Berth is restarted on the big registry with
//! `BERTH_GC_INTERVAL` at `BERTH_BENCH_SCALE_GC_DELAY` (20 s), while 16
//! clients push small images all along; the pushes' rate while the pass
//! collects the dangling blobs is set against their rate before it (goal:
//! 80% or more), and the pass's blobs per second against the reference's
//! offline `garbage-collect` of as many dangling blobs in its layout, the
//! 100,000 repositories beside them (goal: 10× or more).
//!
//! PostgreSQL is `BERTH_BENCH_POSTGRES_URL`
//! (`postgres://berth:berth@127.0.0.1:5432/postgres`), a database created
//! and dropped per registry; `BERTH_BENCH_SCALE_ENGINES=sqlite` leaves it out.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth::metadata::{bulk_big_repository, bulk_repository_name, bulk_tag_name};
use tokio::process::Command;

use super::pages::{PostgresDatabase, quantile, token};
use super::{
    BlobPush, MANIFEST_TYPE, Target, berth_binary, env_usize, image, push_image, sha256,
    start_berth_with, start_reference,
};

const NAMESPACE: &str = "scale";
/// Repositories of the small registry each figure is set against.
const SMALL_REPOSITORIES: usize = 100;
const WARM_UP: usize = 50;
const CONNECTIONS: usize = 8;
const PUSHERS: usize = 16;

/// What one registry holds.
#[derive(Clone, Copy)]
struct Size {
    repositories: usize,
    tags: usize,
    blobs: usize,
    big_tags: usize,
    dangling: usize,
}

impl Size {
    fn big() -> Size {
        Size {
            repositories: env_usize("BERTH_BENCH_SCALE_REPOSITORIES", 100_000).max(2),
            tags: env_usize("BERTH_BENCH_SCALE_TAGS", 1_000_000),
            blobs: env_usize("BERTH_BENCH_SCALE_BLOBS", 1_000_000),
            big_tags: env_usize("BERTH_BENCH_SCALE_BIG_TAGS", 100_000).max(1),
            dangling: env_usize("BERTH_BENCH_SCALE_DANGLING", 100_000),
        }
    }

    /// The big one's counts scaled down to [`SMALL_REPOSITORIES`], no
    /// dangling blobs.
    fn small(big: Size) -> Size {
        let scaled = |n: usize| (n * SMALL_REPOSITORIES / big.repositories).max(1);
        Size {
            repositories: SMALL_REPOSITORIES.min(big.repositories),
            tags: scaled(big.tags),
            blobs: scaled(big.blobs),
            big_tags: scaled(big.big_tags),
            dangling: 0,
        }
    }

    /// The requests measured: label and path.
    fn workloads(&self) -> Vec<(&'static str, String)> {
        let big = bulk_big_repository(NAMESPACE);
        // Names sort in index order: the last page follows the name
        // 101st from the end.
        let before_last =
            bulk_repository_name(NAMESPACE, self.repositories.saturating_sub(101) as u64);
        let deep = bulk_tag_name((self.big_tags * 9 / 10) as u64);
        let middle = bulk_repository_name(NAMESPACE, (self.repositories / 2) as u64);
        vec![
            ("_catalog?n=100, first page", "/v2/_catalog?n=100".into()),
            (
                "_catalog?n=100, last page",
                format!("/v2/_catalog?n=100&last={before_last}"),
            ),
            (
                "tags/list?n=100 of scale/big, first page",
                format!("/v2/{big}/tags/list?n=100"),
            ),
            (
                "tags/list?n=100 of scale/big, 90% in",
                format!("/v2/{big}/tags/list?n=100&last={deep}"),
            ),
            (
                "manifest GET by tag",
                format!("/v2/{middle}/manifests/{}", bulk_tag_name(0)),
            ),
        ]
    }

    /// The scopes the workloads need.
    fn scopes(&self) -> Vec<String> {
        vec![
            "registry:catalog:*".into(),
            format!("repository:{}:pull", bulk_big_repository(NAMESPACE)),
            format!(
                "repository:{}:pull",
                bulk_repository_name(NAMESPACE, (self.repositories / 2) as u64)
            ),
        ]
    }
}

/// p50 and p99 in milliseconds, one at a time and from [`CONNECTIONS`].
#[derive(Clone, Copy, Default)]
struct Latency {
    sequential: (f64, f64),
    concurrent: (f64, f64),
}

/// One Berth registry's figures.
#[derive(Default)]
struct Measured {
    load: Duration,
    start_up: Duration,
    latencies: Vec<Latency>,
    peak_rss_mib: f64,
}

/// The collection pass's figures.
struct Collection {
    pass: Duration,
    blobs: usize,
    pushes_before: f64,
    pushes_during: f64,
}

/// A data directory and, on PostgreSQL, a database of its own.
struct Store {
    dir: tempfile::TempDir,
    database: Option<PostgresDatabase>,
}

impl Store {
    async fn create(postgres: Option<&str>, label: &str) -> Store {
        let database = match postgres {
            Some(url) => Some(PostgresDatabase::create(url, label).await),
            None => None,
        };
        Store {
            dir: tempfile::tempdir().unwrap(),
            database,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![(
            "BERTH_DATA_DIR".to_string(),
            self.dir.path().to_str().unwrap().to_string(),
        )];
        if let Some(database) = &self.database {
            env.push(("BERTH_DATABASE_URL".into(), database.url.clone()));
        }
        env
    }

    async fn drop(self) {
        if let Some(database) = self.database {
            database.drop().await;
        }
    }
}

pub async fn profile() {
    let big = Size::big();
    let small = Size::small(big);
    let requests = env_usize("BERTH_BENCH_SCALE_REQUESTS", 2_000).max(10);
    let engines =
        std::env::var("BERTH_BENCH_SCALE_ENGINES").unwrap_or_else(|_| "sqlite,postgres".into());
    let postgres_url = std::env::var("BERTH_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://berth:berth@127.0.0.1:5432/postgres".into());
    let started = Instant::now();
    let mut results = Vec::new();
    for engine in engines.split(',').map(str::trim) {
        let postgres = match engine {
            "sqlite" => None,
            "postgres" => Some(postgres_url.as_str()),
            other => panic!("BERTH_BENCH_SCALE_ENGINES names sqlite and postgres, not {other}"),
        };
        let label = if postgres.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        };
        eprintln!("{label}: empty registry");
        let empty = Store::create(postgres, "scale_empty").await;
        // The first start creates the schema, which the loaded registries'
        // starts find done (the loader made it): the second is timed.
        drop(Arc::new(start_berth_with(true, &empty.env(), "berth").await).stop());
        super::settle().await;
        let berth = Arc::new(start_berth_with(true, &empty.env(), "berth").await);
        let empty_start = berth.started.unwrap().1;
        drop(berth.stop());
        empty.drop().await;
        eprintln!("{label}: {} repositories", small.repositories);
        let store = Store::create(postgres, "scale_small").await;
        let small_figures = measure(&store, small, requests).await;
        store.drop().await;
        eprintln!("{label}: {} repositories", big.repositories);
        let store = Store::create(postgres, "scale_big").await;
        let big_figures = measure(&store, big, requests).await;
        eprintln!("{label}: collecting {} dangling blobs", big.dangling);
        let collection = collect_while_pushing(&store, big.dangling).await;
        store.drop().await;
        results.push((label, empty_start, small_figures, big_figures, collection));
    }
    let reference = measure_reference(big).await;
    print_results(big, small, requests, &results, reference.as_ref());
    eprintln!("scale profile done in {:.0?}", started.elapsed());
}

/// Loads `size` into `store` with `berth bench-load`; returns how long it took.
async fn load(store: &Store, size: Size) -> Duration {
    let started = Instant::now();
    let output = Command::new(berth_binary())
        .arg("bench-load")
        .args([
            format!("--repositories={}", size.repositories),
            format!("--tags={}", size.tags),
            format!("--blobs={}", size.blobs),
            format!("--big-repository-tags={}", size.big_tags),
            format!("--dangling-blobs={}", size.dangling),
            format!("--namespace={NAMESPACE}"),
        ])
        .envs(store.env())
        // The loader's own blob writes need not wait for the disk.
        .env("BERTH_FSYNC", "false")
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("berth bench-load runs");
    assert!(
        output.status.success(),
        "berth bench-load failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprint!("  {}", String::from_utf8_lossy(&output.stdout));
    started.elapsed()
}

async fn measure(store: &Store, size: Size, requests: usize) -> Measured {
    let load = load(store, size).await;
    // The load's writes flushed first, as before every turn of the other
    // profiles: the start-up is timed, not the kernel's writeback.
    super::settle().await;
    let berth = Arc::new(start_berth_with(true, &store.env(), "berth").await);
    let start_up = berth.started.unwrap().1;
    let token = token(&berth, &size.scopes()).await;
    let mut latencies = Vec::new();
    for (_, path) in size.workloads() {
        latencies.push(latency(&berth, Some(&token), &path, requests).await);
    }
    let peak_rss_mib = berth.peak_rss_mib();
    drop(berth.stop());
    Measured {
        load,
        start_up,
        latencies,
        peak_rss_mib,
    }
}

/// Warm-up, then `requests` one at a time and as many from [`CONNECTIONS`].
async fn latency(
    target: &Arc<Target>,
    token: Option<&str>,
    path: &str,
    requests: usize,
) -> Latency {
    let http = reqwest::Client::new();
    timed(target, &http, token, path, WARM_UP).await;
    let mut sequential = timed(target, &http, token, path, requests).await;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (target, next, path) = (target.clone(), next.clone(), path.to_string());
        let token = token.map(str::to_string);
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut times = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                times.extend(timed(&target, &http, token.as_deref(), &path, 1).await);
            }
            times
        }));
    }
    let mut concurrent = Vec::with_capacity(requests);
    for task in tasks {
        concurrent.extend(task.await.unwrap());
    }
    Latency {
        sequential: (
            quantile(&mut sequential, 0.5),
            quantile(&mut sequential, 0.99),
        ),
        concurrent: (
            quantile(&mut concurrent, 0.5),
            quantile(&mut concurrent, 0.99),
        ),
    }
}

/// Time to the last byte of `count` sequential `GET`s of `path`.
async fn timed(
    target: &Target,
    http: &reqwest::Client,
    token: Option<&str>,
    path: &str,
    count: usize,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        // What clients send; without it the reference falls back to schema 1.
        let mut request = http
            .get(format!("{}{path}", target.base))
            .header("accept", MANIFEST_TYPE);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{} {path}: {}",
            target.name,
            response.status()
        );
        response.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times
}

/// The Prometheus counter `name` (with its labels, if any) in `/metrics`.
async fn counter(target: &Target, http: &reqwest::Client, name: &str) -> f64 {
    let text = http
        .get(format!("{}/metrics", target.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (key, value) = line.rsplit_once(' ')?;
            key.ends_with(name).then(|| value.parse().ok())?
        })
        .unwrap_or(0.0)
}

/// Berth on `store` with a collection pass due after the delay, 16
/// clients pushing small images before and during it.
async fn collect_while_pushing(store: &Store, dangling: usize) -> Collection {
    let delay = Duration::from_secs(env_usize("BERTH_BENCH_SCALE_GC_DELAY", 20) as u64);
    let mut env = store.env();
    env.push(("BERTH_GC_INTERVAL".into(), format!("{}s", delay.as_secs())));
    let berth = Arc::new(start_berth_with(true, &env, "berth").await);
    let (spawned, ready_in) = berth.started.unwrap();
    // The collector's timer starts before the listener: the pass starts
    // no later than this, so its measured time is never too short.
    let pass_started = spawned + delay;
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let seeds = Arc::new(AtomicUsize::new(10_000_000));
    let mut pushers = Vec::new();
    for _ in 0..PUSHERS {
        let (berth, stop, pushed, seeds) =
            (berth.clone(), stop.clone(), pushed.clone(), seeds.clone());
        pushers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let seed = seeds.fetch_add(1, Ordering::Relaxed);
                let tag = format!("gc{seed}");
                push_image(
                    &berth,
                    &http,
                    "bench/small",
                    &tag,
                    seed,
                    BlobPush::Monolithic,
                )
                .await;
                pushed.lock().unwrap().push(Instant::now());
            }
        }));
    }
    let http = reqwest::Client::new();
    let wanted = dangling as f64;
    loop {
        let objects = counter(&berth, &http, "gc_collected_total{kind=\"object\"}").await;
        let passes = counter(&berth, &http, "gc_passes_total").await;
        if passes >= 1.0 && objects >= wanted {
            break;
        }
        assert!(
            spawned.elapsed() < delay + Duration::from_secs(1800),
            "no pass collected the {dangling} dangling blobs in 30 minutes ({objects} objects)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pass_ended = Instant::now();
    stop.store(true, Ordering::Relaxed);
    for pusher in pushers {
        pusher.await.unwrap();
    }
    drop(berth.stop());
    let pushed = pushed.lock().unwrap().clone();
    let rate = |from: Instant, to: Instant| {
        let count = pushed.iter().filter(|&&t| t >= from && t < to).count();
        count as f64 / (to - from).as_secs_f64().max(1e-3)
    };
    // Before: from two seconds after start-up (clients connected) to just
    // before the pass.
    let before_from = spawned + ready_in + Duration::from_secs(2);
    let before_to = pass_started - Duration::from_millis(500);
    assert!(
        before_to > before_from,
        "BERTH_BENCH_SCALE_GC_DELAY leaves no time to push before the pass"
    );
    Collection {
        pass: pass_ended - pass_started,
        blobs: dangling,
        pushes_before: rate(before_from, before_to),
        pushes_during: rate(pass_started, pass_ended),
    }
}

/// The reference registry's figures: its first catalog page's latency
/// (p50, p99, how many requests), and its offline collection.
struct Reference {
    catalog: (f64, f64, usize),
    collection: Option<(Duration, usize)>,
    layout_written_in: Duration,
}

async fn measure_reference(size: Size) -> Option<Reference> {
    let Some(reference) = start_reference().await else {
        eprintln!(
            "docker-registry is not installed (apt-get install docker-registry): no reference figures"
        );
        return None;
    };
    let root = reference.dir.path().join("data/docker/registry/v2");
    eprintln!("reference: writing {} repositories", size.repositories);
    let started = Instant::now();
    let layout_root = root.clone();
    tokio::task::spawn_blocking(move || write_layout(&layout_root, size))
        .await
        .unwrap();
    let layout_written_in = started.elapsed();
    let reference = Arc::new(reference);
    let http = reqwest::Client::new();
    // Fewer requests when each takes long; the first one also warms the
    // page cache.
    let path = "/v2/_catalog?n=100";
    let first = timed(&reference, &http, None, path, 1).await[0];
    let count = if first > Duration::from_millis(20) {
        50
    } else {
        500
    };
    let mut times = timed(&reference, &http, None, path, count).await;
    let catalog = (quantile(&mut times, 0.5), quantile(&mut times, 0.99), count);
    let collection = if size.dangling > 0 {
        let dangling_root = root.clone();
        tokio::task::spawn_blocking(move || write_dangling(&dangling_root, size.dangling))
            .await
            .unwrap();
        let config = reference.dir.path().join("config.yml");
        // Offline, as the reference requires: the server stopped first.
        let dir = reference.stop();
        let started = Instant::now();
        let status = Command::new("/usr/bin/docker-registry")
            .arg("garbage-collect")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await
            .expect("docker-registry garbage-collect runs");
        let took = started.elapsed();
        assert!(status.success(), "docker-registry garbage-collect failed");
        let left = count_dangling_left(&root, size.dangling);
        drop(dir);
        Some((took, size.dangling - left))
    } else {
        None
    };
    Some(Reference {
        catalog,
        collection,
        layout_written_in,
    })
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// A blob's data under the reference's layout.
fn blob_path(root: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    root.join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]))
}

/// The same repositories as Berth's, one image each (shared), tagged
/// once: what the catalog walk (a repository is a directory holding
/// `_layers`) and the collector's mark (each repository's manifest
/// revisions) read.
fn write_layout(root: &Path, size: Size) {
    let (config, layer, manifest) = image(1);
    let digests = [sha256(&config), sha256(&layer), sha256(manifest.as_bytes())];
    for (bytes, digest) in [&config[..], &layer[..], manifest.as_bytes()]
        .iter()
        .zip(&digests)
    {
        write(&blob_path(root, digest), bytes);
    }
    let manifest_hex = digests[2].trim_start_matches("sha256:").to_string();
    for index in 0..size.repositories {
        let repository = root
            .join("repositories")
            .join(bulk_repository_name(NAMESPACE, index as u64));
        for digest in &digests[..2] {
            let hex = digest.trim_start_matches("sha256:");
            write(
                &repository.join(format!("_layers/sha256/{hex}/link")),
                digest.as_bytes(),
            );
        }
        let manifests = repository.join("_manifests");
        let link = digests[2].as_bytes();
        write(
            &manifests.join(format!("revisions/sha256/{manifest_hex}/link")),
            link,
        );
        let tag = manifests.join(format!("tags/{}", bulk_tag_name(0)));
        write(&tag.join("current/link"), link);
        write(&tag.join(format!("index/sha256/{manifest_hex}/link")), link);
    }
}

/// Bytes of the reference's dangling blob `index` (not Berth's: each
/// registry collects its own).
fn reference_dangling(index: usize) -> Vec<u8> {
    format!("reference dangling blob {index}\n").into_bytes()
}

fn write_dangling(root: &Path, count: usize) {
    for index in 0..count {
        let bytes = reference_dangling(index);
        write(&blob_path(root, &sha256(&bytes)), &bytes);
    }
}

fn count_dangling_left(root: &Path, count: usize) -> usize {
    (0..count)
        .filter(|&index| blob_path(root, &sha256(&reference_dangling(index))).exists())
        .count()
}

fn goal(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

fn print_results(
    big: Size,
    small: Size,
    requests: usize,
    results: &[(&str, Duration, Measured, Measured, Collection)],
    reference: Option<&Reference>,
) {
    println!(
        "\nBerth at scale: {} repositories, {} tags, {} layer blobs, {} tags in scale/big, {} dangling blobs;",
        big.repositories, big.tags, big.blobs, big.big_tags, big.dangling
    );
    println!(
        "against {} repositories, {} tags, {} blobs, {} tags in scale/big. Latencies in ms to the last byte,",
        small.repositories, small.tags, small.blobs, small.big_tags
    );
    println!(
        "{requests} requests one at a time, then {requests} from {CONNECTIONS} connections, after {WARM_UP} to warm up.\n"
    );
    for (engine, empty_start, small_figures, big_figures, collection) in results {
        println!("{engine}\n");
        println!("| row | small | big | big / small | goal |");
        println!("| --- | ---: | ---: | ---: | --- |");
        println!(
            "| load (berth bench-load) | {:.1} s | {:.1} s | | |",
            small_figures.load.as_secs_f64(),
            big_figures.load.as_secs_f64()
        );
        let big_start = big_figures.start_up.as_secs_f64() * 1000.0;
        let empty = empty_start.as_secs_f64() * 1000.0;
        println!(
            "| start-up until /v2/ answers (empty: {empty:.0} ms) | {:.0} ms | {big_start:.0} ms | {:.2}x empty | at most 2x empty: {} |",
            small_figures.start_up.as_secs_f64() * 1000.0,
            big_start / empty,
            goal(big_start <= 2.0 * empty)
        );
        for (index, (label, _)) in big.workloads().iter().enumerate() {
            let (s, b) = (small_figures.latencies[index], big_figures.latencies[index]);
            for (how, s, b) in [
                ("one at a time", s.sequential, b.sequential),
                ("8 connections", s.concurrent, b.concurrent),
            ] {
                println!(
                    "| {label}, {how}: p50 / p99 | {:.2} / {:.2} | {:.2} / {:.2} | {:.2}x p99 | p99 at most 1.5x: {} |",
                    s.0,
                    s.1,
                    b.0,
                    b.1,
                    b.1 / s.1,
                    goal(b.1 <= 1.5 * s.1)
                );
            }
        }
        println!(
            "| peak resident memory after the requests | {:.0} MiB | {:.0} MiB | {:.2}x | flat (at most 1.5x): {} |",
            small_figures.peak_rss_mib,
            big_figures.peak_rss_mib,
            big_figures.peak_rss_mib / small_figures.peak_rss_mib,
            goal(big_figures.peak_rss_mib <= 1.5 * small_figures.peak_rss_mib)
        );
        let kept = collection.pushes_during / collection.pushes_before;
        println!(
            "| small images pushed by {PUSHERS} clients: before / during the pass | | {:.0} / {:.0} images/s | {:.0}% kept | at least 80%: {} |",
            collection.pushes_before,
            collection.pushes_during,
            kept * 100.0,
            goal(kept >= 0.8)
        );
        let berth_rate = collection.blobs as f64 / collection.pass.as_secs_f64();
        let versus = reference
            .and_then(|r| r.collection)
            .map(|(took, collected)| (collected as f64 / took.as_secs_f64(), took, collected));
        match versus {
            Some((rate, took, collected)) => println!(
                "| garbage collection, online pass / reference offline | | {berth_rate:.0} blobs/s ({} in {:.1} s) / {rate:.0} blobs/s ({collected} in {:.1} s) | {:.1}x | at least 10x: {} |",
                collection.blobs,
                collection.pass.as_secs_f64(),
                took.as_secs_f64(),
                berth_rate / rate,
                goal(berth_rate >= 10.0 * rate)
            ),
            None => println!(
                "| garbage collection, online pass | | {berth_rate:.0} blobs/s ({} in {:.1} s) | | (no reference) |",
                collection.blobs,
                collection.pass.as_secs_f64()
            ),
        }
        if let Some(reference) = reference {
            let (p50, p99, count) = reference.catalog;
            let berth = big_figures.latencies[0].sequential.0;
            println!(
                "| _catalog?n=100, first page: reference p50 / p99 ({count} requests) vs Berth p50 | | {p50:.2} / {p99:.2} vs {berth:.2} | {:.0}x faster | at least 100x: {} |",
                p50 / berth,
                goal(p50 >= 100.0 * berth)
            );
        }
        println!();
    }
    if let Some(reference) = reference {
        println!(
            "(the reference's {} repositories written to its layout in {:.1} s; its garbage-collect ran offline, \
             marking the repositories' manifests before sweeping the blobs)",
            big.repositories,
            reference.layout_written_in.as_secs_f64()
        );
    }
}
