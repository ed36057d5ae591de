//! `cargo bench --bench registry`: Berth against the reference registry
//! (Debian's `docker-registry`, when installed) on this machine, driven by
//! the same client in the same run. Prints each figure for both and their
//! ratio. Berth runs as users run it: authentication on, a token per client.
//!
//! After the rates come the server's CPU time per large push and per pull,
//! for each server: a figure that does not depend on the client, which
//! shares the machine's two cores, and that moves less from run to run.
//!
//! The large blob's rows, blob `HEAD` and manifest `GET` are also run on a
//! bare server (`support/bare.rs`) that only receives and hashes, or sends
//! from memory, and its figures are
//! printed as the ceiling: how fast any server can go on this machine with
//! this client, and so which ratios against the reference are within reach.
//!
//! Sizes can be lowered for a quick look: `BERTH_BENCH_LARGE_MIB=128
//! BERTH_BENCH_HUGE_MIB=0 cargo bench --bench registry`;
//! `BERTH_BENCH_ONLY_BERTH=1` measures Berth with its defaults alone.
//!
//! `BERTH_BENCH_PROFILE=small-images` pushes only small images, to Berth
//! alone, `BERTH_BENCH_ROUNDS` rounds of 400 (10 by default), and prints
//! for each round the server's CPU time and context switches per image: the
//! figures a change to the push path should move, steadier on a noisy VM
//! than the rate. `small-images-as-docker` sends each blob as `docker push`
//! does (POST, PATCH with the body, PUT) instead of POST and PUT.
//! `pages` measures the web UI's pages beside the API requests that return
//! the same rows (`support/pages.rs`). `cache` measures pulls through the
//! pull-through cache against the upstream's own (`support/cache.rs`).
//! `postgres` runs the small-request rows with metadata in PostgreSQL and
//! `s3` a large push and pull with blobs in S3, against the reference on
//! its S3 driver and a plain multipart upload (`support/backends.rs`).
//! `scale` loads 100,000 repositories, 1,000,000 tags and blobs (`berth
//! bench-load`) into SQLite and PostgreSQL and measures start-up, catalog,
//! tag list and manifest latencies and memory against a registry of 100,
//! the reference's catalog on the same repositories, and garbage collection
//! of 100,000 dangling blobs while pushes go on (`support/scale.rs`).
//! `BERTH_BENCH_BIN` runs another build of Berth instead
//! (a copy of an earlier `target/release/berth`), to alternate two builds.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[path = "support/backends.rs"]
mod backends;
#[path = "support/bare.rs"]
mod bare;
#[path = "support/cache.rs"]
mod cache;
#[path = "support/disk.rs"]
mod disk;
#[path = "support/pages.rs"]
mod pages;
#[path = "support/scale.rs"]
mod scale;

const ADMIN_PASSWORD: &str = "bench-admin-password";
const CHUNK: usize = 16 * 1024 * 1024;
const MEASURE: Duration = Duration::from_secs(3);
/// The name of the disk's own figures in a row (`support/disk.rs`).
const DISK: &str = "disk";
const PULLS: usize = 5;
/// What `docker push` sends; the reference registry checks layer types of OCI manifests.
const MANIFEST_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The middle of `samples` (the upper one of an even count).
fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A server under test.
struct Target {
    name: &'static str,
    base: String,
    token: Option<String>,
    child: Child,
    dir: tempfile::TempDir,
    /// For Berth: when its process was started, and how long until `/v2/` answered.
    started: Option<(Instant, Duration)>,
}

impl Target {
    fn request(
        &self,
        http: &reqwest::Client,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        let request = http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Stops the server and hands back its files, to be deleted after the
    /// whole run: deleting thousands of files just before the next server's
    /// run slows that run's file creation on filesystems that hold freed
    /// inodes back for a while (ext4 without a journal, as on the machine
    /// the published figures come from).
    fn stop(self: Arc<Self>) -> tempfile::TempDir {
        let target = Arc::into_inner(self).expect("no request in flight");
        drop(target.child);
        target.dir
    }

    /// The server's CPU time so far (all its threads, living or not), and
    /// the context switches of its living threads so far. Threads that
    /// ended took theirs with them; over a round of a few seconds, few do
    /// (the blocking pool keeps an idle thread for 10 s).
    fn cpu_and_switches(&self) -> (Duration, u64) {
        let pid = self.child.id().expect("server runs");
        // Field 15 of /proc/PID/stat is `stime`, 14 `utime`, in clock ticks;
        // fields are counted after the parenthesised command name.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map_or(vec![], |(_, rest)| rest.split(' ').collect());
        let ticks: u64 = [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
            .sum();
        // SAFETY: sysconf only reads its argument.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let cpu = Duration::from_nanos(ticks * 1_000_000_000 / per_second);
        let mut switches = 0;
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
        {
            let status = task
                .and_then(|t| std::fs::read_to_string(t.path().join("status")))
                .unwrap_or_default();
            switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        (cpu, switches)
    }

    /// Peak resident memory of the server process so far, in MiB.
    fn peak_rss_mib(&self) -> f64 {
        let pid = self.child.id().expect("server runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

async fn wait_ready(base: &str) {
    let http = reqwest::Client::new();
    // Often, so that a start-up's time is measured to the few milliseconds.
    for _ in 0..6000 {
        if http.get(format!("{base}/v2/")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{base} did not come up");
}

/// Berth with its defaults; `fsync = false` leaves flushing blobs to disk
/// to the kernel, as the reference registry does.
async fn start_berth(fsync: bool) -> Target {
    start_berth_with(fsync, &[], if fsync { "berth" } else { "berth, no fsync" }).await
}

/// The Berth binary measured: this build's, or `BERTH_BENCH_BIN`.
fn berth_binary() -> String {
    std::env::var("BERTH_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_berth").to_string())
}

/// `BERTH_BENCH_SERVER_LOG`: a `RUST_LOG` filter for Berth, whose log is
/// then echoed to the bench's stderr (to see where a slow turn went).
fn server_log() -> Option<String> {
    std::env::var("BERTH_BENCH_SERVER_LOG").ok()
}

/// Berth with `env` added to its environment (another database, say),
/// which may override the defaults set here (`BERTH_GC_INTERVAL`).
async fn start_berth_with(fsync: bool, env: &[(String, String)], name: &'static str) -> Target {
    let dir = tempfile::tempdir().unwrap();
    let log = server_log();
    let spawned = Instant::now();
    let mut child = Command::new(berth_binary())
        .arg("serve")
        .current_dir(dir.path())
        // The flat names from before settings had sections: every build
        // reads them (newer ones with a warning), so `BERTH_BENCH_BIN` can
        // run an older build in turns with this one.
        .env("BERTH_FSYNC", fsync.to_string())
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .env("BERTH_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BERTH_TOKEN_LIFETIME", "1h")
        .env("BERTH_GC_INTERVAL", "off")
        .env("RUST_LOG", log.as_deref().unwrap_or("warn"))
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("berth starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // With RUST_LOG=warn the address line is not logged; find the port via the listener instead.
    let address = loop {
        if let Some(address) = listening_address(child.id().unwrap()) {
            break address;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let bound_in = spawned.elapsed();
    let echo = log.is_some();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("  {name}: {line}");
            }
        }
    });
    let base = format!("http://{address}");
    wait_ready(&base).await;
    let ready_in = spawned.elapsed();
    if echo {
        eprintln!("  {name}: socket bound within {bound_in:?}, /v2/ answered after {ready_in:?}");
    }
    let scopes = [
        "repository:bench/large:pull,push",
        "repository:bench/chunked:pull,push",
        "repository:bench/huge:pull,push",
        "repository:bench/small:pull,push",
        "repository:bench/tags:pull,push",
        "repository:bench/seed:pull,push",
        "repository:hub/library/large:pull",
    ];
    let mut query: Vec<(&str, &str)> = vec![("service", "berth")];
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    let token: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/token"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .query(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    Target {
        name,
        base,
        token: Some(token["token"].as_str().unwrap().to_string()),
        child,
        dir,
        started: Some((spawned, ready_in)),
    }
}

/// The TCP port a process listens on, from /proc.
fn listening_address(pid: u32) -> Option<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // State 0A is LISTEN.
        if fields.get(3) == Some(&"0A") && inodes.iter().any(|i| Some(&i.as_str()) == fields.get(9))
        {
            let port = u16::from_str_radix(fields[1].split(':').nth(1)?, 16).ok()?;
            Some(format!("127.0.0.1:{port}"))
        } else {
            None
        }
    })
}

async fn start_reference() -> Option<Target> {
    start_reference_with(|dir| {
        format!(
            "  filesystem:\n    rootdirectory: {}\n",
            dir.join("data").display()
        )
    })
    .await
}

/// The reference registry with the `storage:` driver block `driver` gives
/// for its directory (indented by two spaces), deletes enabled.
async fn start_reference_with(driver: impl FnOnce(&std::path::Path) -> String) -> Option<Target> {
    let binary = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "version: 0.1\nlog:\n  level: error\nstorage:\n{}  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
        driver(dir.path())
    );
    std::fs::write(dir.path().join("config.yml"), config).unwrap();
    let child = Command::new(binary)
        .arg("serve")
        .arg(dir.path().join("config.yml"))
        // Its AWS SDK refuses to start its S3 driver with a CA bundle named
        // in the environment ("HTTPClient's transport unsupported type").
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&base).await;
    Some(Target {
        name: "reference",
        base,
        token: None,
        child,
        dir,
        started: None,
    })
}

/// The large blob pushed and pulled, the same in the bare server's process.
fn large_blob() -> Bytes {
    random_bytes(env_usize("BERTH_BENCH_LARGE_MIB", 512) * 1048576, 42)
}

/// The bare server (see `support/bare.rs`): this benchmark's own binary,
/// run as another process as the real servers are.
async fn start_bare() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .arg("--bare-server")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the bare server starts");
    let address = loop {
        if let Some(address) = listening_address(child.id().unwrap()) {
            break address;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let base = format!("http://{address}");
    wait_ready(&base).await;
    Target {
        name: "bare server",
        base,
        token: None,
        child,
        dir,
        started: None,
    }
}

fn random_bytes(len: usize, seed: u64) -> Bytes {
    // xorshift: fast, incompressible enough, reproducible.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

/// The same bytes but the first (unless `mark` is 0), so each push is of a
/// blob the server does not have yet.
fn variant(blob: &Bytes, mark: u8) -> Bytes {
    let mut copy = blob.to_vec();
    copy[0] ^= mark;
    Bytes::from(copy)
}

fn location(target: &Target, response: &reqwest::Response) -> String {
    let location = response.headers()["location"].to_str().unwrap().to_string();
    location
        .strip_prefix(&target.base)
        .unwrap_or(&location)
        .to_string()
}

/// Opens an upload session; returns its location.
async fn start_upload(target: &Target, http: &reqwest::Client, repo: &str) -> String {
    let post = target
        .request(
            http,
            reqwest::Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), 202, "{}", target.name);
    location(target, &post)
}

/// An upload location with `digest=` added to its query.
fn with_digest(location: &str, digest: &str) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!("{location}{separator}digest={digest}")
}

async fn push_monolithic(target: &Target, http: &reqwest::Client, repo: &str, blob: &Bytes) -> f64 {
    let digest = sha256(blob);
    let started = Instant::now();
    // Two requests (POST, then PUT with the body), as the reference registry
    // does not take a body on POST; the same for both.
    let location = start_upload(target, http, repo).await;
    let put = target
        .request(http, reqwest::Method::PUT, &with_digest(&location, &digest))
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", target.name);
    blob.len() as f64 / 1048576.0 / started.elapsed().as_secs_f64()
}

async fn push_chunked(target: &Target, http: &reqwest::Client, repo: &str, blob: &Bytes) -> f64 {
    let digest = sha256(blob);
    let started = Instant::now();
    let mut location = start_upload(target, http, repo).await;
    let mut offset = 0;
    while offset < blob.len() {
        let end = (offset + CHUNK).min(blob.len());
        let patch = target
            .request(http, reqwest::Method::PATCH, &location)
            .header("content-type", "application/octet-stream")
            .header("content-range", format!("{offset}-{}", end - 1))
            .body(blob.slice(offset..end))
            .send()
            .await
            .unwrap();
        assert_eq!(patch.status(), 202, "{}", target.name);
        location = self::location(target, &patch);
        offset = end;
    }
    let put = target
        .request(http, reqwest::Method::PUT, &with_digest(&location, &digest))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201, "{}", target.name);
    blob.len() as f64 / 1048576.0 / started.elapsed().as_secs_f64()
}

/// The median of [`PULLS`] pulls: one pull takes a fraction of a second, and
/// on a shared 2-core machine a single sample swings by a third.
async fn pull(target: &Target, repo: &str, digest: &str) -> f64 {
    let mut rates = Vec::with_capacity(PULLS);
    for _ in 0..PULLS {
        rates.push(pull_once(target, repo, digest).await);
    }
    rates.sort_by(f64::total_cmp);
    rates[PULLS / 2]
}

/// One pull, read by a minimal HTTP/1.1 reader into one reused buffer, so
/// that the figure is the server's speed and not the client's: reqwest hands
/// out every read as a buffer of its own, which held pulls from Berth to
/// about 1.9 GB/s where `curl` reads 2.2-2.8 GB/s.
async fn pull_once(target: &Target, repo: &str, digest: &str) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = target.base.trim_start_matches("http://");
    let authorization = target
        .token
        .as_ref()
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let started = Instant::now();
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let request = format!(
        "GET /v2/{repo}/blobs/{digest} HTTP/1.1\r\nHost: {address}\r\n{authorization}Connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0u8; 1 << 20];
    let mut filled = 0;
    let body_start = loop {
        let read = stream.read(&mut buffer[filled..]).await.unwrap();
        assert!(
            read > 0,
            "{}: the response ended in its headers",
            target.name
        );
        filled += read;
        if let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..body_start]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{}: {head}", target.name);
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("{}: no Content-Length in {head}", target.name));
    let mut received = filled - body_start;
    while received < length {
        let read = stream.read(&mut buffer).await.unwrap();
        assert!(
            read > 0,
            "{}: the body ended after {received} bytes",
            target.name
        );
        received += read;
    }
    received as f64 / 1048576.0 / started.elapsed().as_secs_f64()
}

fn image(seed: usize) -> (Bytes, Bytes, String) {
    let config = Bytes::from(format!(
        r#"{{"architecture":"amd64","os":"linux","seed":{seed}}}"#
    ));
    let layer = random_bytes(2048, seed as u64 + 7);
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(&layer), "size": layer.len()}],
    })
    .to_string();
    (config, layer, manifest)
}

/// How a small image's blobs are sent: POST then PUT with the body, or as
/// `docker push` sends them, POST, PATCH with the body, then PUT.
#[derive(Clone, Copy, PartialEq)]
enum BlobPush {
    Monolithic,
    AsDocker,
}

async fn push_image(
    target: &Target,
    http: &reqwest::Client,
    repo: &str,
    tag: &str,
    seed: usize,
    how: BlobPush,
) {
    let (config, layer, manifest) = image(seed);
    for blob in [&config, &layer] {
        match how {
            BlobPush::Monolithic => push_monolithic(target, http, repo, blob).await,
            BlobPush::AsDocker => push_chunked(target, http, repo, blob).await,
        };
    }
    let put = target
        .request(
            http,
            reqwest::Method::PUT,
            &format!("/v2/{repo}/manifests/{tag}"),
        )
        .header("content-type", MANIFEST_TYPE)
        .body(manifest)
        .send()
        .await
        .unwrap();
    let status = put.status();
    assert_eq!(
        status,
        201,
        "{}: {}",
        target.name,
        put.text().await.unwrap_or_default()
    );
}

/// Pushes images `first..first + count`, each under a tag of its own.
async fn small_images_per_second(
    target: &Arc<Target>,
    first: usize,
    count: usize,
    how: BlobPush,
) -> f64 {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (target, next) = (target.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                if n >= count {
                    return;
                }
                let n = first + n;
                let tag = format!("t{n}");
                push_image(&target, &http, "bench/small", &tag, n + 1000, how).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    count as f64 / started.elapsed().as_secs_f64()
}

/// Rounds of 400 small images with the server's cost per image: the
/// `BERTH_BENCH_PROFILE=small-images` mode.
async fn profile_small_images(berth: &Arc<Target>, rounds: usize, how: BlobPush) {
    println!("round  images/s  server CPU per image  context switches per image");
    for round in 0..rounds {
        let (cpu_before, switches_before) = berth.cpu_and_switches();
        let rate = small_images_per_second(berth, round * 400, 400, how).await;
        let (cpu_after, switches_after) = berth.cpu_and_switches();
        println!(
            "{round:>5}  {rate:>8.0}  {:>17.0} µs  {:>26.1}",
            (cpu_after - cpu_before).as_secs_f64() * 1e6 / 400.0,
            switches_after.saturating_sub(switches_before) as f64 / 400.0
        );
    }
}

/// Requests per second from 32 concurrent connections during [`MEASURE`].
async fn rate(target: Arc<Target>, method: reqwest::Method, path: String) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + MEASURE;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (target, done, method, path) =
            (target.clone(), done.clone(), method.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            while Instant::now() < deadline {
                // What clients send; without it the reference falls back to schema 1.
                let response = target
                    .request(&http, method.clone(), &path)
                    .header("accept", MANIFEST_TYPE)
                    .send()
                    .await
                    .unwrap();
                assert!(
                    response.status().is_success(),
                    "{} {path}: {}",
                    target.name,
                    response.status()
                );
                response.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / MEASURE.as_secs_f64()
}

/// The servers measured: Berth as it ships, and unless only Berth is asked
/// for, Berth with `fsync = false`, the reference registry and the bare
/// server.
struct Servers {
    berth: Arc<Target>,
    unsynced: Option<Arc<Target>>,
    reference: Option<Arc<Target>>,
    bare: Option<Arc<Target>>,
}

impl Servers {
    /// All of them, for the rows that write or read blobs.
    fn all(&self) -> Vec<Arc<Target>> {
        [
            Some(&self.berth),
            self.unsynced.as_ref(),
            self.reference.as_ref(),
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    /// All of them and the bare server, for the large blob's rows.
    fn all_and_bare(&self) -> Vec<Arc<Target>> {
        let mut servers = self.all();
        servers.extend(self.bare.clone());
        servers
    }

    /// Berth as it ships, the reference and the bare server, for the small
    /// requests the bare server answers from memory (its figure is their ceiling).
    fn compared_and_bare(&self) -> Vec<Arc<Target>> {
        let mut servers = self.compared();
        servers.extend(self.bare.clone());
        servers
    }

    /// Berth as it ships and the reference, for the rows that do not touch
    /// blob storage, where flushing makes no difference.
    fn compared(&self) -> Vec<Arc<Target>> {
        [Some(&self.berth), self.reference.as_ref()]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

struct Row {
    name: String,
    unit: &'static str,
    /// Each measured server's name and figures, one per round.
    samples: Vec<(&'static str, Vec<f64>)>,
    /// True when smaller is better.
    lower_is_better: bool,
}

impl Row {
    fn new(
        name: impl Into<String>,
        unit: &'static str,
        samples: Vec<(&'static str, Vec<f64>)>,
    ) -> Self {
        Row {
            name: name.into(),
            unit,
            samples,
            lower_is_better: false,
        }
    }

    /// The median of a server's rounds.
    fn figure(&self, server: &str) -> Option<f64> {
        let (_, samples) = self.samples.iter().find(|(name, _)| *name == server)?;
        (!samples.is_empty()).then(|| median(samples))
    }
}

/// Runs `workload` on each server in turn, `rounds` times over. Taking turns
/// spreads this machine's drift (a neighbour's load, writeback, the page
/// cache) over every server alike, where measuring one server after the
/// other put a slow minute all on one side. The workload gets the round's
/// number, to push what that server does not have yet.
async fn in_turns<F, Fut>(
    servers: &[Arc<Target>],
    rounds: usize,
    workload: F,
) -> Vec<(&'static str, Vec<f64>)>
where
    F: FnMut(Arc<Target>, usize) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    in_turns_with_cpu(servers, rounds, 1, workload).await.0
}

/// As [`in_turns`], also returning the CPU time (ms) each server used in
/// each turn, divided by the turn's `operations`. A server's CPU per
/// operation does not depend on how fast the client, which shares this
/// machine's two cores, reads or writes, and it moves less than the rate
/// from run to run on this VM.
async fn in_turns_with_cpu<F, Fut>(
    servers: &[Arc<Target>],
    rounds: usize,
    operations: usize,
    mut workload: F,
) -> (Vec<(&'static str, Vec<f64>)>, Vec<(&'static str, Vec<f64>)>)
where
    F: FnMut(Arc<Target>, usize) -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let empty = || -> Vec<(&'static str, Vec<f64>)> {
        servers
            .iter()
            .map(|s| (s.name, Vec::with_capacity(rounds)))
            .collect()
    };
    let (mut rates, mut cpu) = (empty(), empty());
    for round in 0..rounds {
        for (index, server) in servers.iter().enumerate() {
            settle().await;
            let (before, _) = server.cpu_and_switches();
            rates[index].1.push(workload(server.clone(), round).await);
            let (after, _) = server.cpu_and_switches();
            cpu[index]
                .1
                .push((after - before).as_secs_f64() * 1000.0 / operations as f64);
        }
    }
    (rates, cpu)
}

/// Writes everything dirty to disk before a turn. The reference (and Berth
/// with `fsync = false`) leave a pushed blob to the kernel's writeback, which
/// would otherwise run during the next server's turn and be counted there.
async fn settle() {
    let status = Command::new("sync").status().await.expect("sync runs");
    assert!(status.success(), "sync failed");
}

/// Empties the page cache (when run as root), so that every push starts
/// with free memory: after a few rounds of 512 MiB pushes by three servers
/// the kernel would otherwise be reclaiming cache during the later turns
/// only, and on this machine that cost a third of a push's speed.
async fn forget_page_cache() {
    settle().await;
    // Not being allowed to (not root) leaves the figures noisier, not wrong.
    let _ = tokio::fs::write("/proc/sys/vm/drop_caches", "1").await;
}

async fn run(servers: &Servers, large: &Bytes, huge_mib: usize, rounds: usize) -> Vec<Row> {
    let http = reqwest::Client::new();
    let mut rows = Vec::new();
    let mib = large.len() / 1048576;
    // Round 0's monolithic push is `large` itself, which the pulls read.
    let monolithic: Vec<Bytes> = (0..rounds).map(|r| variant(large, r as u8)).collect();
    let chunked: Vec<Bytes> = (0..rounds)
        .map(|r| variant(large, 0x80 | r as u8))
        .collect();
    let (all, compared) = (servers.all(), servers.compared());
    let small_rows = servers.compared_and_bare();
    let large_rows = servers.all_and_bare();
    // Server CPU per operation of the large-blob rows, printed after the rates.
    let mut cpu_rows = Vec::new();
    let cpu_row = |name: String, samples| Row {
        lower_is_better: true,
        ..Row::new(name, "ms", samples)
    };
    // The page cache is emptied inside the turn, outside the server's CPU.
    let (rates, cpu) = in_turns_with_cpu(&large_rows, rounds, 1, |target, round| {
        let (http, blob) = (&http, &monolithic[round]);
        async move {
            forget_page_cache().await;
            push_monolithic(&target, http, "bench/large", blob).await
        }
    })
    .await;
    rows.push(Row::new(
        format!("push {mib} MiB, monolithic"),
        "MiB/s",
        rates,
    ));
    cpu_rows.push(cpu_row(
        format!("server CPU per {mib} MiB push, monolithic"),
        cpu,
    ));
    // The disk's own durable write of the same bytes, the push rows' other
    // ceiling; its file is read back for the cold pull's ceiling.
    let disk_dir = tempfile::tempdir().unwrap();
    let disk_file = disk::scratch_file(&disk_dir);
    let mut disk_writes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        forget_page_cache().await;
        let (path, blob) = (disk_file.clone(), large.clone());
        disk_writes.push(
            tokio::task::spawn_blocking(move || disk::durable_write(&path, &blob))
                .await
                .unwrap(),
        );
    }
    rows.last_mut()
        .unwrap()
        .samples
        .push((DISK, disk_writes.clone()));
    // The first pull of a blob within a second of its push: what a CI
    // pipeline does after it pushes. Its rate, and that of the push and the
    // pull together, the time a pipeline waits for both.
    let fresh: Vec<Bytes> = (0..rounds)
        .map(|r| variant(large, 0x40 | r as u8))
        .collect();
    let pulls_after_push = std::cell::RefCell::new(Vec::<(&'static str, Vec<f64>)>::new());
    let together = in_turns(&all, rounds, |target, round| {
        let (http, blob, pulls) = (&http, &fresh[round], &pulls_after_push);
        async move {
            let push = push_monolithic(&target, http, "bench/large", blob).await;
            let pull = pull_once(&target, "bench/large", &sha256(blob)).await;
            let mut pulls = pulls.borrow_mut();
            match pulls.iter_mut().find(|(name, _)| *name == target.name) {
                Some((_, rates)) => rates.push(pull),
                None => pulls.push((target.name, vec![pull])),
            }
            // MiB over the seconds of both: 1 / (1/push + 1/pull) per MiB.
            1.0 / (1.0 / push + 1.0 / pull)
        }
    })
    .await;
    rows.push(Row::new(
        format!("pull {mib} MiB right after its push"),
        "MiB/s",
        pulls_after_push.into_inner(),
    ));
    rows.push(Row::new(
        format!("push {mib} MiB and pull it, together"),
        "MiB/s",
        together,
    ));
    let (rates, cpu) = in_turns_with_cpu(&large_rows, rounds, 1, |target, round| {
        let (http, blob) = (&http, &chunked[round]);
        async move {
            forget_page_cache().await;
            push_chunked(&target, http, "bench/chunked", blob).await
        }
    })
    .await;
    let mut chunked_row = Row::new(format!("push {mib} MiB, 16 MiB chunks"), "MiB/s", rates);
    chunked_row.samples.push((DISK, disk_writes));
    rows.push(chunked_row);
    cpu_rows.push(cpu_row(
        format!("server CPU per {mib} MiB push, 16 MiB chunks"),
        cpu,
    ));
    let large_digest = sha256(large);
    let (rates, cpu) = in_turns_with_cpu(&large_rows, rounds, PULLS, |target, _| {
        let digest = &large_digest;
        async move { pull(&target, "bench/large", digest).await }
    })
    .await;
    rows.push(Row::new(format!("pull {mib} MiB"), "MiB/s", rates));
    cpu_rows.push(cpu_row(format!("server CPU per {mib} MiB pull"), cpu));
    let mut cold = Row::new(
        format!("pull {mib} MiB, page cache emptied"),
        "MiB/s",
        in_turns(&all, rounds, |target, _| {
            let digest = &large_digest;
            async move {
                forget_page_cache().await;
                pull_once(&target, "bench/large", digest).await
            }
        })
        .await,
    );
    let mut disk_reads = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        forget_page_cache().await;
        let path = disk_file.clone();
        disk_reads.push(
            tokio::task::spawn_blocking(move || disk::sequential_read(&path))
                .await
                .unwrap(),
        );
    }
    cold.samples.push((DISK, disk_reads));
    rows.push(cold);
    drop(disk_dir);
    rows.extend(small_request_rows(&all, &small_rows, &compared, rounds).await);
    let peak_rss = |compared: &[Arc<Target>]| {
        compared
            .iter()
            .map(|target| (target.name, vec![target.peak_rss_mib()]))
            .collect()
    };
    rows.push(Row {
        lower_is_better: true,
        ..Row::new(
            format!("peak resident memory (up to {mib} MiB blobs)"),
            "MiB",
            peak_rss(&compared),
        )
    });
    if huge_mib > 0 {
        for target in &compared {
            let huge = random_bytes(huge_mib * 1048576, 99 + target.name.len() as u64);
            push_chunked(target, &http, "bench/huge", &huge).await;
        }
        rows.push(Row {
            lower_is_better: true,
            ..Row::new(
                format!("peak resident memory after a {huge_mib} MiB push"),
                "MiB",
                peak_rss(&compared),
            )
        });
    }
    rows.extend(cpu_rows);
    rows
}

/// The rows of small requests: small images pushed by `writers`, then blob
/// `HEAD` and manifest `GET` on `answering` (which may hold the bare
/// server: it answers them from memory), and the tag list of 1,000 tags on
/// `listing`.
async fn small_request_rows(
    writers: &[Arc<Target>],
    answering: &[Arc<Target>],
    listing: &[Arc<Target>],
    rounds: usize,
) -> Vec<Row> {
    let mut rows = Vec::new();
    // Small images write blobs too; the other rows do not touch blob storage.
    rows.push(Row::new(
        "small images pushed, 16 clients",
        "images/s",
        in_turns(writers, rounds, |target, round| async move {
            small_images_per_second(&target, round * 400, 400, BlobPush::Monolithic).await
        })
        .await,
    ));
    let (config, _, _) = image(1000);
    let config_path = format!("/v2/bench/small/blobs/{}", sha256(&config));
    rows.push(Row::new(
        "blob HEAD, 32 connections",
        "req/s",
        in_turns(answering, rounds, |target, _| {
            rate(target, reqwest::Method::HEAD, config_path.clone())
        })
        .await,
    ));
    rows.push(Row::new(
        "manifest GET by tag, 32 connections",
        "req/s",
        in_turns(answering, rounds, |target, _| {
            rate(
                target,
                reqwest::Method::GET,
                "/v2/bench/small/manifests/t0".into(),
            )
        })
        .await,
    ));
    let http = reqwest::Client::new();
    for target in listing {
        put_many_tags(target, &http).await;
    }
    rows.push(Row::new(
        "tag list, 1,000 tags, 32 connections",
        "req/s",
        in_turns(listing, rounds, |target, _| {
            rate(
                target,
                reqwest::Method::GET,
                "/v2/bench/tags/tags/list".into(),
            )
        })
        .await,
    ));
    rows
}

/// One image tagged 1,000 times, for the tag-list row.
async fn put_many_tags(target: &Target, http: &reqwest::Client) {
    push_image(
        target,
        http,
        "bench/tags",
        "many0000",
        5000,
        BlobPush::Monolithic,
    )
    .await;
    let (_, _, manifest) = image(5000);
    for n in 1..1000 {
        let put = target
            .request(
                http,
                reqwest::Method::PUT,
                &format!("/v2/bench/tags/manifests/many{n:04}"),
            )
            .header("content-type", MANIFEST_TYPE)
            .body(manifest.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(put.status(), 201, "{}", target.name);
    }
}

fn print(rows: &[Row], servers: &Servers) {
    let (berth, unsynced) = (
        servers.berth.name,
        servers.unsynced.as_ref().map(|t| t.name),
    );
    let reference = servers.reference.as_ref().map(|t| t.name);
    println!(
        "\n{:<44} {:>8} {:>10} {:>10} {:>10} {:>8} {:>8}",
        "workload", "unit", "berth", "(no fsync)", "reference", "ratio", "(no fsync)"
    );
    for row in rows {
        let figure = |server: Option<&str>| server.and_then(|s| row.figure(s));
        let reference = figure(reference);
        let ratio = |berth: f64| match reference {
            Some(r) if r > 0.0 && row.lower_is_better => format!("{:.2}x", r / berth),
            Some(r) if r > 0.0 => format!("{:.2}x", berth / r),
            _ => "-".into(),
        };
        let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
        let berth = row.figure(berth).expect("berth is measured on every row");
        println!(
            "{:<44} {:>8} {:>10.1} {:>10} {:>10} {:>8} {:>8}",
            row.name,
            row.unit,
            berth,
            show(figure(unsynced)),
            show(reference),
            ratio(berth),
            figure(unsynced).map_or("-".into(), ratio)
        );
    }
    println!("\n(each figure is the median of its rounds, the servers taking turns;");
    println!(" ratio: how many times better Berth is; for memory and CPU, reference / berth;");
    println!(
        " server CPU: all of the server's threads, per push or per pull, whatever the client's speed;"
    );
    println!(
        " no fsync: Berth with fsync = false, which like the reference leaves flushing blobs to the kernel)"
    );
    print_ceiling(rows, servers);
    print_rounds(rows);
}

/// Every round of the rows measured more than once, server by server.
fn print_rounds(rows: &[Row]) {
    println!("\nrounds:");
    for row in rows
        .iter()
        .filter(|row| row.samples.iter().any(|(_, s)| s.len() > 1))
    {
        let samples: Vec<String> = row
            .samples
            .iter()
            .map(|(name, figures)| {
                let figures: Vec<String> = figures.iter().map(|f| format!("{f:.1}")).collect();
                format!("{name} {}", figures.join(" / "))
            })
            .collect();
        println!("  {}: {}", row.name, samples.join("; "));
    }
}

/// The ceilings: the bare server's figures and the disk's own, and how
/// close Berth comes to the lower of them. The bare server's ratio to the
/// reference is the highest ratio any server could show on this machine
/// with this client.
fn print_ceiling(rows: &[Row], servers: &Servers) {
    let bare = servers.bare.as_ref().map(|t| t.name);
    let reference = servers.reference.as_ref().map(|t| t.name);
    let unsynced = servers.unsynced.as_ref().map(|t| t.name);
    println!("\nceilings: the bare server (receives and hashes, or sends from memory; no HTTP");
    println!(" library, storage, authentication or database) and the disk (the same bytes written");
    println!(" with O_DIRECT and flushed, or read after emptying the page cache, by the bench):");
    println!(
        "  {:<44} {:>8} {:>10} {:>10} {:>14} {:>16} {:>16}",
        "workload", "unit", "bare", "disk", "berth/ceiling", "no fsync/bare", "bare/reference"
    );
    let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
    let percent = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0));
    for row in rows.iter().filter(|row| !row.lower_is_better) {
        let figure = |server: Option<&str>| server.and_then(|s| row.figure(s));
        let (bare, disk) = (figure(bare), row.figure(DISK));
        let ceiling = match (bare, disk) {
            (Some(b), Some(d)) => Some(b.min(d)),
            (b, d) => b.or(d),
        };
        let Some(ceiling) = ceiling else {
            continue;
        };
        let berth = row.figure(servers.berth.name).map(|b| b / ceiling);
        // Without fsync nothing waits for the disk's write, so the bare
        // server alone bounds it; the disk still bounds a cold read.
        let unsynced_ceiling = bare.or(disk).unwrap_or(ceiling);
        let unsynced = figure(unsynced).map(|u| u / unsynced_ceiling);
        let bare_ratio = match (bare, figure(reference)) {
            (Some(b), Some(r)) if r > 0.0 => format!("{:.2}x", b / r),
            _ => "-".into(),
        };
        println!(
            "  {:<44} {:>8} {:>10} {:>10} {:>14} {:>16} {:>16}",
            row.name,
            row.unit,
            show(bare),
            show(disk),
            percent(berth),
            percent(unsynced),
            bare_ratio
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--bare-server") {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let (config, _, manifest) = image(1000);
        runtime
            .block_on(bare::serve(large_blob(), config, manifest.into()))
            .unwrap();
        return;
    }
    // `cargo bench` passes `--bench`; `cargo test --all-targets` builds and
    // runs this binary too, where a multi-gigabyte benchmark has no place.
    if !std::env::args().any(|a| a == "--bench") {
        println!("benchmark skipped: run it with `cargo bench --bench registry`");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let fsync = std::env::var("BERTH_BENCH_FSYNC").map_or(true, |v| v != "false");
        if let Ok(profile) = std::env::var("BERTH_BENCH_PROFILE") {
            if profile == "pages" {
                pages::profile(env_usize("BERTH_BENCH_ROUNDS", 3).max(1)).await;
                return;
            }
            if profile == "cache" {
                cache::profile().await;
                return;
            }
            if profile == "postgres" {
                backends::postgres_profile().await;
                return;
            }
            if profile == "s3" {
                backends::s3_profile().await;
                return;
            }
            if profile == "scale" {
                scale::profile().await;
                return;
            }
            let how = match profile.as_str() {
                "small-images" => BlobPush::Monolithic,
                "small-images-as-docker" => BlobPush::AsDocker,
                _ => panic!(
                    "BERTH_BENCH_PROFILE is small-images, small-images-as-docker, pages, cache, postgres, s3 or scale"
                ),
            };
            let berth = Arc::new(start_berth(fsync).await);
            profile_small_images(&berth, env_usize("BERTH_BENCH_ROUNDS", 10).max(1), how).await;
            let _files = berth.stop();
            return;
        }
        let huge_mib = env_usize("BERTH_BENCH_HUGE_MIB", 2048);
        let rounds = env_usize("BERTH_BENCH_ROUNDS", 3).max(1);
        let large = large_blob();
        let only_berth = std::env::var_os("BERTH_BENCH_ONLY_BERTH").is_some();
        let berth = Arc::new(start_berth(fsync).await);
        // The reference never flushes blobs to disk; Berth does by default, so
        // the rows that write blobs are also measured on equal terms.
        let (unsynced, reference, bare) = if only_berth {
            (None, None, None)
        } else {
            let reference = start_reference().await;
            if reference.is_none() {
                eprintln!("docker-registry is not installed (apt-get install docker-registry): Berth figures only");
            }
            (
                Some(Arc::new(start_berth(false).await)),
                reference.map(Arc::new),
                Some(Arc::new(start_bare().await)),
            )
        };
        let servers = Servers {
            berth,
            unsynced,
            reference,
            bare,
        };
        let rows = run(&servers, &large, huge_mib, rounds).await;
        print(&rows, &servers);
        // Their files are deleted last: see `Target::stop`.
        let Servers {
            berth,
            unsynced,
            reference,
            bare,
        } = servers;
        let _files: Vec<tempfile::TempDir> = [Some(berth), unsynced, reference, bare]
            .into_iter()
            .flatten()
            .map(Target::stop)
            .collect();
    });
}
