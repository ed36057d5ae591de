//! The production backends: `BERTH_BENCH_PROFILE=postgres` and `s3`.
//!
//! - **postgres**: the small-request rows of the default run (small images
//!   pushed, blob `HEAD`, manifest `GET`, tag list) with Berth's metadata in
//!   PostgreSQL (a fresh database on `BERTH_BENCH_POSTGRES_URL`, by default
//!   the test suite's `postgres://berth:berth@127.0.0.1:5432/postgres`),
//!   beside Berth on SQLite, the reference and the bare server, in turns.
//! - **s3**: a 512 MiB push and pull with blobs in S3 (SeaweedFS on
//!   `BERTH_BENCH_S3_ENDPOINT`, by default the test suite's
//!   `http://127.0.0.1:8333`, bucket `berth`), Berth against the reference
//!   on its S3 driver on the same server (redirects off, as Berth's default,
//!   so both serve the bytes themselves), and the ceiling: a plain multipart
//!   upload of the same bytes in Berth's part size (8 MiB, or
//!   `BERTH_BENCH_S3_PART_MIB` for both), one part at a time, and a plain
//!   `GET` of the object, by `object_store` in this process.
//!
//! Medians of `BERTH_BENCH_ROUNDS` rounds (3). Either profile fails loudly
//! when its service cannot be reached.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::multipart::MultipartStore;
use object_store::path::Path;

use super::pages::PostgresDatabase;
use super::{
    Row, Target, env_usize, in_turns_with_cpu, large_blob, median, print_rounds, pull_once,
    push_monolithic, settle, sha256, small_request_rows, start_bare, start_berth, start_berth_with,
    start_reference, start_reference_with, variant,
};

const S3_BUCKET: &str = "berth";
const S3_ACCESS_KEY_ID: &str = "berthtest";
const S3_SECRET_ACCESS_KEY: &str = "berthtestsecret";
/// The part size of Berth and of the plain upload: Berth's default
/// `s3.part_size` unless `BERTH_BENCH_S3_PART_MIB` names another.
fn s3_part() -> usize {
    env_usize("BERTH_BENCH_S3_PART_MIB", 8) * 1024 * 1024
}

pub async fn postgres_profile() {
    let rounds = env_usize("BERTH_BENCH_ROUNDS", 3).max(1);
    let admin_url = std::env::var("BERTH_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://berth:berth@127.0.0.1:5432/postgres".into());
    let database = PostgresDatabase::create(&admin_url, "postgres").await;
    let env = [("BERTH_DATABASE_URL".to_string(), database.url.clone())];
    let postgres = Arc::new(start_berth_with(true, &env, "berth, postgres").await);
    let sqlite = Arc::new(start_berth(true).await);
    let reference = start_reference().await.map(Arc::new);
    if reference.is_none() {
        eprintln!(
            "docker-registry is not installed (apt-get install docker-registry): no reference"
        );
    }
    let bare = Arc::new(start_bare().await);
    let writers: Vec<Arc<Target>> = [
        Some(postgres.clone()),
        Some(sqlite.clone()),
        reference.clone(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut answering = writers.clone();
    answering.push(bare.clone());
    let rows = small_request_rows(&writers, &answering, &writers, rounds).await;
    let names = ["berth, postgres", "berth", "reference", "bare server"];
    println!("\nSmall requests with metadata in PostgreSQL, medians of {rounds} rounds\n");
    println!(
        "| row | unit | {} | postgres / reference | postgres / bare | postgres / sqlite |",
        names.join(" | ")
    );
    println!("| --- | --- |{}", " ---: |".repeat(names.len() + 3));
    for row in &rows {
        print_row(
            row,
            &names,
            "berth, postgres",
            &[("reference", false), ("bare server", true), ("berth", true)],
        );
    }
    print_rounds(&rows);
    drop((writers, answering));
    for target in [postgres, sqlite, bare].into_iter().chain(reference) {
        let _files = target.stop();
    }
    database.drop().await;
}

pub async fn s3_profile() {
    let rounds = env_usize("BERTH_BENCH_ROUNDS", 3).max(1);
    let endpoint =
        std::env::var("BERTH_BENCH_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:8333".into());
    // One prefix per run, so runs never read each other's objects.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let plain = plain_store(&endpoint);
    plain
        .put(&Path::from(format!("bench-{run}/ping")), Bytes::from_static(b"ping").into())
        .await
        .unwrap_or_else(|e| {
            panic!("the s3 profile needs an S3 server at {endpoint} with bucket {S3_BUCKET} (BERTH_BENCH_S3_ENDPOINT; scripts/test.sh starts SeaweedFS): {e}")
        });
    let env: Vec<(String, String)> = [
        (
            "BERTH_STORAGE_LOCATION",
            format!("s3://{S3_BUCKET}/bench-{run}/berth"),
        ),
        ("BERTH_S3_ENDPOINT", endpoint.clone()),
        ("BERTH_S3_REGION", "us-east-1".into()),
        ("BERTH_S3_ACCESS_KEY_ID", S3_ACCESS_KEY_ID.into()),
        ("BERTH_S3_SECRET_ACCESS_KEY", S3_SECRET_ACCESS_KEY.into()),
        ("BERTH_S3_ALLOW_HTTP", "true".into()),
        ("BERTH_S3_PART_SIZE", format!("{}MiB", s3_part() >> 20)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let berth = Arc::new(start_berth_with(true, &env, "berth, s3").await);
    let reference_driver = |_: &std::path::Path| {
        format!(
            "  s3:\n    accesskey: {S3_ACCESS_KEY_ID}\n    secretkey: {S3_SECRET_ACCESS_KEY}\n    region: us-east-1\n    regionendpoint: {endpoint}\n    bucket: {S3_BUCKET}\n    rootdirectory: /bench-{run}/reference\n    secure: false\n    v4auth: true\n  redirect:\n    disable: true\n"
        )
    };
    let Some(reference) = start_reference_with(reference_driver).await else {
        panic!("the s3 profile needs the reference registry: apt-get install docker-registry");
    };
    let reference = Arc::new(reference);
    let servers = [berth.clone(), reference.clone()];
    let large = large_blob();
    let mib = large.len() / 1048576;
    let blobs: Vec<Bytes> = (0..rounds)
        .map(|r| variant(&large, 0x20 | r as u8))
        .collect();
    let http = reqwest::Client::new();

    let (mut pushes, push_cpu) = in_turns_with_cpu(&servers, rounds, 1, |target, round| {
        let (http, blob) = (&http, &blobs[round]);
        async move { push_monolithic(&target, http, "bench/large", blob).await }
    })
    .await;
    let mut plain_pushes = Vec::new();
    for (round, blob) in blobs.iter().enumerate() {
        settle().await;
        plain_pushes.push(plain_upload(&plain, &format!("bench-{run}/plain/{round}"), blob).await);
    }
    pushes.push(("plain multipart upload", plain_pushes));
    let push_row = Row::new(format!("push {mib} MiB to S3, monolithic"), "MiB/s", pushes);

    let digest = sha256(&blobs[0]);
    let (mut pulls, pull_cpu) = in_turns_with_cpu(&servers, rounds, 1, |target, _| {
        let digest = &digest;
        async move { pull_once(&target, "bench/large", digest).await }
    })
    .await;
    let mut plain_pulls = Vec::new();
    for _ in 0..rounds {
        plain_pulls.push(plain_get(&plain, &format!("bench-{run}/plain/0")).await);
    }
    pulls.push(("plain multipart upload", plain_pulls));
    let pull_row = Row::new(format!("pull {mib} MiB from S3"), "MiB/s", pulls);

    let names = ["berth, s3", "reference", "plain multipart upload"];
    println!("\nBlobs in S3 ({endpoint}), medians of {rounds} rounds; the ceiling is a plain");
    println!(
        "multipart upload of the same bytes in {} MiB parts, one at a time, and a plain GET\n",
        s3_part() >> 20
    );
    println!("| row | unit | berth | reference | plain S3 | berth / reference | berth / plain |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    let ratios = [("reference", false), ("plain multipart upload", true)];
    print_row(&push_row, &names, "berth, s3", &ratios);
    print_row(&pull_row, &names, "berth, s3", &ratios);
    let cpu = |samples: &[(&'static str, Vec<f64>)], name: &str| {
        samples
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0.0, |(_, s)| median(s))
    };
    println!(
        "\nserver CPU per push: berth {:.0} ms, reference {:.0} ms; per pull: berth {:.0} ms, reference {:.0} ms",
        cpu(&push_cpu, "berth, s3"),
        cpu(&push_cpu, "reference"),
        cpu(&pull_cpu, "berth, s3"),
        cpu(&pull_cpu, "reference"),
    );
    print_rounds(&[push_row, pull_row]);
    drop(servers);
    let _files = (berth.stop(), reference.stop());
    // The run's objects are left in the bucket: the suite's SeaweedFS keeps
    // its data under /tmp, and listing and deleting a few GiB would only
    // lengthen the run.
}

fn plain_store(endpoint: &str) -> AmazonS3 {
    AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(S3_BUCKET)
        .with_region("us-east-1")
        .with_access_key_id(S3_ACCESS_KEY_ID)
        .with_secret_access_key(S3_SECRET_ACCESS_KEY)
        .with_allow_http(true)
        .build()
        .expect("an S3 client for the ceiling")
}

/// A multipart upload of `blob` in Berth's part size, one part at a time,
/// as Berth sends them; MiB/s.
async fn plain_upload(store: &AmazonS3, key: &str, blob: &Bytes) -> f64 {
    let start = Instant::now();
    let path = Path::from(key);
    let id = store
        .create_multipart(&path)
        .await
        .expect("create multipart");
    let mut parts = Vec::new();
    let part_size = s3_part();
    for (index, offset) in (0..blob.len()).step_by(part_size).enumerate() {
        let part = blob.slice(offset..(offset + part_size).min(blob.len()));
        parts.push(
            store
                .put_part(&path, &id, index, part.into())
                .await
                .expect("put part"),
        );
    }
    store
        .complete_multipart(&path, &id, parts)
        .await
        .expect("complete multipart");
    blob.len() as f64 / 1048576.0 / start.elapsed().as_secs_f64()
}

/// A plain GET of the object at `key`, read to the end; MiB/s.
async fn plain_get(store: &AmazonS3, key: &str) -> f64 {
    let start = Instant::now();
    let mut stream = store
        .get(&Path::from(key))
        .await
        .expect("get")
        .into_stream();
    let mut read = 0usize;
    while let Some(chunk) = stream.next().await {
        read += chunk.expect("read the object").len();
    }
    read as f64 / 1048576.0 / start.elapsed().as_secs_f64()
}

/// One markdown row: `row`'s figure for each of `names`, then `ours`
/// against each of `against` (`true`: as a share of it, `false`: as times it).
fn print_row(row: &Row, names: &[&str], ours: &str, against: &[(&str, bool)]) {
    let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let figures: Vec<String> = names.iter().map(|n| show(row.figure(n))).collect();
    let ratios: Vec<String> = against
        .iter()
        .map(
            |(other, share)| match (row.figure(ours), row.figure(other)) {
                (Some(a), Some(b)) if b > 0.0 && *share => format!("{:.0}%", a / b * 100.0),
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
                _ => "-".into(),
            },
        )
        .collect();
    println!(
        "| {} | {} | {} | {} |",
        row.name,
        row.unit,
        figures.join(" | "),
        ratios.join(" | ")
    );
}
