//! The pull-through cache against real upstreams on loopback: the reference
//! registry (`docker-registry`, htpasswd Basic auth) and a second Berth
//! (Bearer tokens), each loaded with a multi-architecture image. What the
//! upstream served is read from its own access log (the reference's) or
//! audit log (Berth's logins).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::harness::{ADMIN_PASSWORD, Backend, TestApp};
use crate::real_clients::{DOCKER, build_context, docker_login, require_docker, run};
use crate::support::*;

const UPSTREAM_USER: (&str, &str) = ("puller", "puller-password");

/// The reference registry, serving on a free loopback port with htpasswd
/// Basic auth; its access log goes to a file.
pub struct ReferenceRegistry {
    pub base: String,
    pub host: String,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ReferenceRegistry {
    pub async fn start() -> Self {
        let binary = ["/usr/bin/docker-registry", "/usr/sbin/docker-registry"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "the reference registry is not installed: run the suite with scripts/test.sh, which installs docker-registry",
            );
        let dir = tempfile::tempdir().unwrap();
        let htpasswd = run("htpasswd", &["-Bbn", UPSTREAM_USER.0, UPSTREAM_USER.1], &[]).await;
        std::fs::write(dir.path().join("htpasswd"), htpasswd.trim()).unwrap();
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: upstream\n    path: {htpasswd}\n",
            root = dir.path().join("data").display(),
            htpasswd = dir.path().join("htpasswd").display(),
        );
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = dir.path().join("registry.log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .kill_on_drop(true)
            .spawn()
            .expect("docker-registry starts");
        let host = format!("127.0.0.1:{port}");
        let base = format!("http://{host}");
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("{base}/v2/")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        ReferenceRegistry {
            base,
            host,
            child: Some(child),
            log,
            _dir: dir,
        }
    }

    /// How many `GET`s of `path` (`/v2/...`) it has served (answered 200;
    /// a client's first request, before it knows how to log in, gets 401).
    /// A line is written once its response has been sent, which may be
    /// after the client saw the end: the count is read until it holds
    /// still for 300 ms.
    pub async fn gets(&self, path: &str) -> usize {
        let needle = format!("\"GET {path} HTTP/1.1\" 200 ");
        let count = || {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            log.lines().filter(|line| line.contains(&needle)).count()
        };
        let mut last = count();
        loop {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = count();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Flips the first byte of a stored blob, as a disk or a proxy might.
    pub fn corrupt(&self, digest: &str) {
        let hex = digest.trim_start_matches("sha256:");
        let path = self._dir.path().join(format!(
            "data/docker/registry/v2/blobs/sha256/{}/{hex}/data",
            &hex[..2]
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }

    /// Uploads `bytes` as a blob of `repository`.
    pub async fn push_blob(&self, repository: &str, bytes: &[u8]) -> String {
        let client = reqwest::Client::new();
        let digest = sha256(bytes);
        let started = client
            .post(format!("{}/v2/{repository}/blobs/uploads/", self.base))
            .basic_auth(UPSTREAM_USER.0, Some(UPSTREAM_USER.1))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), StatusCode::ACCEPTED);
        let location = header(&started, "location").to_string();
        let location = if location.starts_with("http") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = client
            .put(format!("{location}{separator}digest={digest}"))
            .basic_auth(UPSTREAM_USER.0, Some(UPSTREAM_USER.1))
            .header("content-type", "application/octet-stream")
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(done.status(), StatusCode::CREATED);
        digest
    }

    /// Puts `manifest` under `reference`.
    pub async fn put_manifest(&self, repository: &str, reference: &str, manifest: &Value) {
        let response = reqwest::Client::new()
            .put(format!(
                "{}/v2/{repository}/manifests/{reference}",
                self.base
            ))
            .basic_auth(UPSTREAM_USER.0, Some(UPSTREAM_USER.1))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(manifest.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
}

/// The multi-architecture index of `fixtures/make-oci-layout.sh` copied to
/// `destination` (`docker://host/name:1`) with `creds`; returns its digest.
async fn load_index(destination: &str, creds: &str) -> String {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let policy = work.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/fixtures/make-oci-layout.sh"
    );
    let digest = run("bash", &[script, source.to_str().unwrap()], &[])
        .await
        .trim()
        .to_string();
    run(
        "skopeo",
        &[
            "--policy",
            policy.to_str().unwrap(),
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            creds,
            &format!("oci:{}:1", source.display()),
            destination,
        ],
        &[],
    )
    .await;
    digest
}

/// A `[[proxy]]` entry for tests.
fn proxy(namespace: &str, upstream: &str) -> berth::cache::ProxySettings {
    berth::cache::ProxySettings {
        namespace: namespace.into(),
        upstream: upstream.into(),
        upstream_namespace: None,
        mirror_of: None,
        username: Some(UPSTREAM_USER.0.into()),
        password: Some(UPSTREAM_USER.1.into()),
        password_file: None,
        password_env: None,
        tag_ttl: Duration::from_secs(3600),
        evict_after: Duration::from_secs(30 * 24 * 3600),
    }
}

/// A secured Berth whose `proxies` are checked as `berth serve` would.
async fn start_with_proxies(
    backend: Backend,
    proxies: Vec<berth::cache::ProxySettings>,
) -> TestApp {
    TestApp::start_with(backend, move |config| {
        config.auth.enabled = true;
        config.auth.admin_password = Some(ADMIN_PASSWORD.into());
        config.cache = berth::cache::CacheSettings {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            ..Default::default()
        }
        .check(&proxies)
        .expect("valid proxies");
    })
    .await
}

async fn get_as_admin(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    with_token(app, Method::GET, path, token)
        .send()
        .await
        .unwrap()
}

/// The index's children, as (platform architecture, digest).
fn children(index: &Value) -> Vec<(String, String)> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["platform"]["architecture"].as_str().unwrap().to_string(),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn blobs_of(manifest: &Value) -> Vec<String> {
    let mut blobs = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
    blobs.extend(
        manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string()),
    );
    blobs
}

/// Pull-through from the reference registry: only the asked platform is
/// fetched, twenty clients fetch a blob once, writes are refused, a moved
/// tag is seen after `tag_ttl` and not before, and a stopped upstream
/// leaves what is cached pullable and the rest failing clearly.
async fn proxy_serves_the_reference_registry(backend: Backend) {
    let mut upstream = ReferenceRegistry::start().await;
    let creds = format!("{}:{}", UPSTREAM_USER.0, UPSTREAM_USER.1);
    let index_digest = load_index(
        &format!("docker://{}/library/multi:1", upstream.host),
        &creds,
    )
    .await;
    let big = (0..24 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect::<Vec<u8>>();
    let big_digest = upstream.push_blob("library/multi", &big).await;
    let mut hub = proxy("hub", &upstream.base);
    hub.tag_ttl = Duration::from_secs(3);
    hub.mirror_of = Some("docker.io".into());
    let mut app = start_with_proxies(backend, vec![hub]).await;
    let token = token(
        &app,
        Some(("admin", ADMIN_PASSWORD)),
        &[
            "repository:hub/library/multi:pull,push",
            "repository:hub/library/other:pull",
        ],
    )
    .await;

    // The index, then one platform's manifest and blobs.
    let index = get_as_admin(&app, "/v2/hub/library/multi/manifests/1", &token).await;
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(
        header(&index, "content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(header(&index, "docker-content-digest"), index_digest);
    let index_bytes = index.bytes().await.unwrap();
    assert_eq!(sha256(&index_bytes), index_digest, "the bytes as upstream");
    let index: Value = serde_json::from_slice(&index_bytes).unwrap();
    let platforms = children(&index);
    let (_, amd64) = platforms.iter().find(|(a, _)| a == "amd64").unwrap();
    let (_, arm64) = platforms.iter().find(|(a, _)| a == "arm64").unwrap();
    let manifest = get_as_admin(
        &app,
        &format!("/v2/hub/library/multi/manifests/{amd64}"),
        &token,
    )
    .await;
    assert_eq!(manifest.status(), StatusCode::OK);
    let manifest: Value = manifest.json().await.unwrap();
    for blob in blobs_of(&manifest) {
        let response =
            get_as_admin(&app, &format!("/v2/hub/library/multi/blobs/{blob}"), &token).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(sha256(&response.bytes().await.unwrap()), blob);
        // Cached now: a second pull is served here.
        let again =
            get_as_admin(&app, &format!("/v2/hub/library/multi/blobs/{blob}"), &token).await;
        assert_eq!(sha256(&again.bytes().await.unwrap()), blob);
        assert_eq!(
            upstream
                .gets(&format!("/v2/library/multi/blobs/{blob}"))
                .await,
            1
        );
    }
    // Nothing of the other platform was fetched.
    assert_eq!(
        upstream
            .gets(&format!("/v2/library/multi/manifests/{arm64}"))
            .await,
        0
    );
    let arm_manifest = upstream_manifest(&upstream, arm64).await;
    for blob in blobs_of(&arm_manifest) {
        assert_eq!(
            upstream
                .gets(&format!("/v2/library/multi/blobs/{blob}"))
                .await,
            0
        );
    }

    // Twenty clients at once for a manifest not cached yet: one upstream GET.
    let path = format!("/v2/library/multi/manifests/{arm64}");
    let direct = upstream.gets(&path).await;
    let urls = vec![app.url(&format!("/v2/hub/library/multi/manifests/{arm64}")); 20];
    for pulled in pull_at_once(&app.client, urls, &token).await {
        assert_eq!(&pulled, arm64);
    }
    assert_eq!(upstream.gets(&path).await, direct + 1);

    // Twenty clients at once, for a 24 MiB blob nobody fetched yet: one
    // upstream GET, every client the whole blob.
    let urls = vec![app.url(&format!("/v2/hub/library/multi/blobs/{big_digest}")); 20];
    for pulled in pull_at_once(&app.client, urls, &token).await {
        assert_eq!(pulled, big_digest);
    }
    assert_eq!(
        upstream
            .gets(&format!("/v2/library/multi/blobs/{big_digest}"))
            .await,
        1
    );
    // Held here for one repository, the blob is not served through another
    // unless the upstream has it there too.
    let elsewhere = get_as_admin(
        &app,
        &format!("/v2/hub/library/other/blobs/{big_digest}"),
        &token,
    )
    .await;
    assert_error(elsewhere, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    // A blob whose bytes upstream do not match its digest: the download
    // breaks off, nothing is cached, and the next pull asks again.
    let honest = vec![7u8; 1024 * 1024];
    let corrupt_digest = upstream.push_blob("library/multi", &honest).await;
    upstream.corrupt(&corrupt_digest);
    for attempt in 1..=2 {
        let response = get_as_admin(
            &app,
            &format!("/v2/hub/library/multi/blobs/{corrupt_digest}"),
            &token,
        )
        .await;
        if response.status() == StatusCode::OK {
            assert!(
                response.bytes().await.is_err(),
                "a corrupt body must not end cleanly"
            );
        } else {
            assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(
            upstream
                .gets(&format!("/v2/library/multi/blobs/{corrupt_digest}"))
                .await,
            attempt
        );
    }
    // A range of a cached blob.
    let range = with_token(
        &app,
        Method::GET,
        &format!("/v2/hub/library/multi/blobs/{big_digest}"),
        &token,
    )
    .header("range", "bytes=10-19")
    .send()
    .await
    .unwrap();
    assert_eq!(range.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.bytes().await.unwrap().as_ref(), &big[10..20]);

    // As a mirror: the unprefixed name is the proxy's, unless it is local.
    let mirror_token = crate::support::token(
        &app,
        Some(("admin", ADMIN_PASSWORD)),
        &[
            "repository:library/multi:pull",
            "repository:admin/app:pull,push",
        ],
    )
    .await;
    let mirrored = get_as_admin(
        &app,
        "/v2/library/multi/manifests/1?ns=docker.io",
        &mirror_token,
    )
    .await;
    assert_eq!(mirrored.status(), StatusCode::OK);
    assert_eq!(header(&mirrored, "docker-content-digest"), index_digest);
    let other_registry = get_as_admin(
        &app,
        "/v2/library/multi/manifests/1?ns=quay.io",
        &mirror_token,
    )
    .await;
    assert_eq!(
        other_registry.status(),
        StatusCode::NOT_FOUND,
        "no proxy mirrors quay.io"
    );
    app.bearer = Some(mirror_token.clone());
    push_image(&app, "admin/app", "1").await;
    app.bearer = None;
    let local = get_as_admin(&app, "/v2/admin/app/manifests/1", &mirror_token).await;
    assert_eq!(local.status(), StatusCode::OK);
    let absent = get_as_admin(&app, "/v2/admin/app/manifests/2", &mirror_token).await;
    assert_error(absent, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    assert_eq!(
        upstream.gets("/v2/admin/app/manifests/2").await,
        0,
        "local names never go upstream"
    );

    // A cache is read-only, even for the administrator.
    let push = with_token(
        &app,
        Method::POST,
        "/v2/hub/library/multi/blobs/uploads/",
        &token,
    )
    .send()
    .await
    .unwrap();
    let body = assert_error(push, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("pull-through cache"),
        "{body}"
    );

    // A tag moves upstream: the cached digest is served until the tag is
    // stale, then the new one, found by a HEAD.
    let amd_manifest = upstream_manifest(&upstream, amd64).await;
    upstream
        .put_manifest("library/multi", "moving", &amd_manifest)
        .await;
    // Re-serialized, so not the fixture's bytes: a digest of its own.
    let first = sha256(amd_manifest.to_string().as_bytes());
    let before = get_as_admin(&app, "/v2/hub/library/multi/manifests/moving", &token).await;
    assert_eq!(header(&before, "docker-content-digest"), first);
    upstream
        .put_manifest("library/multi", "moving", &arm_manifest)
        .await;
    let moved = sha256(arm_manifest.to_string().as_bytes());
    let fresh = get_as_admin(&app, "/v2/hub/library/multi/manifests/moving", &token).await;
    assert_eq!(header(&fresh, "docker-content-digest"), first);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let renewed = get_as_admin(&app, "/v2/hub/library/multi/manifests/moving", &token).await;
    assert_eq!(renewed.status(), StatusCode::OK);
    assert_eq!(header(&renewed, "docker-content-digest"), moved);

    // The upstream stops: what is cached is still served (the tag stale),
    // what is not fails with a clear error.
    upstream.stop().await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let stale = get_as_admin(&app, "/v2/hub/library/multi/manifests/moving", &token).await;
    assert_eq!(stale.status(), StatusCode::OK);
    assert_eq!(header(&stale, "docker-content-digest"), moved);
    let index = get_as_admin(&app, "/v2/hub/library/multi/manifests/1", &token).await;
    assert_eq!(header(&index, "docker-content-digest"), index_digest);
    let by_digest = get_as_admin(
        &app,
        &format!("/v2/hub/library/multi/manifests/{amd64}"),
        &token,
    )
    .await;
    assert_eq!(by_digest.status(), StatusCode::OK);
    let blob = get_as_admin(
        &app,
        &format!("/v2/hub/library/multi/blobs/{big_digest}"),
        &token,
    )
    .await;
    assert_eq!(sha256(&blob.bytes().await.unwrap()), big_digest);
    let never = get_as_admin(&app, "/v2/hub/library/multi/manifests/never-cached", &token).await;
    let body = assert_error(never, StatusCode::SERVICE_UNAVAILABLE, "UNAVAILABLE").await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("not cached") && message.contains(&upstream.base),
        "{message}"
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    for kind in ["hit", "miss", "stale"] {
        assert!(
            metrics.contains(&format!(
                "berth_cache_requests_total{{namespace=\"hub\",kind=\"{kind}\"}}"
            )),
            "{kind} in {metrics}"
        );
    }
    assert!(
        metrics
            .contains("berth_cache_upstream_errors_total{namespace=\"hub\",kind=\"unreachable\"}")
    );
}

/// `GET`s every URL at once with `token`; each must answer 200. Returns
/// the SHA-256 of each body.
async fn pull_at_once(client: &reqwest::Client, urls: Vec<String>, token: &str) -> Vec<String> {
    let pulls = urls.into_iter().map(|url| {
        let (client, token) = (client.clone(), token.to_string());
        tokio::spawn(async move {
            let response = client.get(url).bearer_auth(token).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            sha256(&response.bytes().await.unwrap())
        })
    });
    futures_util::future::join_all(pulls)
        .await
        .into_iter()
        .map(|pull| pull.unwrap())
        .collect()
}

/// A manifest straight from the upstream (with its credentials).
async fn upstream_manifest(upstream: &ReferenceRegistry, digest: &str) -> Value {
    reqwest::Client::new()
        .get(format!(
            "{}/v2/library/multi/manifests/{digest}",
            upstream.base
        ))
        .basic_auth(UPSTREAM_USER.0, Some(UPSTREAM_USER.1))
        .header("accept", "application/vnd.oci.image.manifest.v1+json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_serves_the_reference_registry_on_sqlite() {
    proxy_serves_the_reference_registry(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_serves_the_reference_registry_on_postgres_and_s3() {
    proxy_serves_the_reference_registry(Backend::S3).await;
}

/// A second Berth as the upstream, with Bearer tokens: fetched through the
/// token flow with one login however many requests, a quota that stops new
/// blobs but keeps serving cached ones, and eviction by the collector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn berth_upstream_with_tokens_quota_and_eviction() {
    let upstream = TestApp::start_secured(Backend::Sqlite).await;
    create_user(&upstream, UPSTREAM_USER.0, UPSTREAM_USER.1).await;
    let host = upstream.base.trim_start_matches("http://").to_string();
    let creds = format!("{}:{}", UPSTREAM_USER.0, UPSTREAM_USER.1);
    let index_digest = load_index(&format!("docker://{host}/puller/multi:1"), &creds).await;
    let mut up = proxy("up", &upstream.base);
    up.upstream_namespace = Some("puller".into());
    up.evict_after = Duration::from_secs(1);
    let app = start_with_proxies(Backend::Postgres, vec![up]).await;
    let token = token(
        &app,
        Some(("admin", ADMIN_PASSWORD)),
        &["repository:up/multi:pull"],
    )
    .await;
    let logins_before = upstream_logins(&upstream).await;
    let index = get_as_admin(&app, "/v2/up/multi/manifests/1", &token).await;
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(header(&index, "docker-content-digest"), index_digest);
    let index: Value = index.json().await.unwrap();
    let platforms = children(&index);
    let (_, amd64) = platforms.iter().find(|(a, _)| a == "amd64").unwrap();
    let (_, arm64) = platforms.iter().find(|(a, _)| a == "arm64").unwrap();
    let amd: Value = get_as_admin(&app, &format!("/v2/up/multi/manifests/{amd64}"), &token)
        .await
        .json()
        .await
        .unwrap();
    let first = blobs_of(&amd)[1].clone();
    let layer = get_as_admin(&app, &format!("/v2/up/multi/blobs/{first}"), &token).await;
    assert_eq!(layer.status(), StatusCode::OK);
    assert_eq!(sha256(&layer.bytes().await.unwrap()), first);
    // Four requests upstream, one token: logins are what Berth audits.
    let logins = upstream_logins(&upstream).await - logins_before;
    assert_eq!(logins, 1, "one token for the repository's pulls");

    // A quota that the cached blob fills: the next blob is refused clearly,
    // the cached one still served.
    let api = |method: Method, path: &str| {
        app.client
            .request(method, app.url(&format!("/api/v1{path}")))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
    };
    let set = api(Method::PUT, "/quotas/up")
        .json(&json!({"limit": "1B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    let arm: Value = get_as_admin(&app, &format!("/v2/up/multi/manifests/{arm64}"), &token)
        .await
        .json()
        .await
        .unwrap();
    let refused = get_as_admin(
        &app,
        &format!("/v2/up/multi/blobs/{}", blobs_of(&arm)[1]),
        &token,
    )
    .await;
    let body = assert_error(refused, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("quota of namespace `up`"),
        "{body}"
    );
    let cached = get_as_admin(&app, &format!("/v2/up/multi/blobs/{first}"), &token).await;
    assert_eq!(cached.status(), StatusCode::OK);
    let removed = api(Method::DELETE, "/quotas/up").send().await.unwrap();
    assert!(removed.status().is_success());

    // Not pulled for `evict_after`: the collector takes it (grace 0), and
    // the next pull fetches it again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let config = berth::gc::GcConfig {
        grace: Duration::ZERO,
        ..berth::gc::GcConfig::default()
    };
    let report = crate::gc::collect_with_evictions(&app, config).await;
    assert!(report.evicted >= 2, "{report:?}");
    assert!(report.collected.blobs >= 1, "{report:?}");
    let refetched = get_as_admin(&app, &format!("/v2/up/multi/blobs/{first}"), &token).await;
    assert_eq!(refetched.status(), StatusCode::OK);
    assert_eq!(sha256(&refetched.bytes().await.unwrap()), first);
}

/// The successful logins of the proxy's user on the upstream Berth.
async fn upstream_logins(upstream: &TestApp) -> usize {
    let audit: Value = upstream
        .client
        .get(upstream.url("/api/v1/audit?action=login&n=100"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    audit["entries"]
        .as_array()
        .unwrap_or_else(|| panic!("{audit}"))
        .iter()
        .filter(|e| e["actor"] == UPSTREAM_USER.0 && e["outcome"] == "ok")
        .count()
}

/// The Docker engine pulls through the proxy namespace and runs the image;
/// a second engine with `--registry-mirror` pulls plain `busybox` (Docker
/// Hub is unreachable here: only the mirror can serve it); containerd
/// pulls it through a `hosts.toml` mirror, which adds `?ns=docker.io`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_and_containerd_pull_through_the_proxy_and_the_mirror() {
    require_docker().await;
    let _turn = DOCKER.lock().await;
    let upstream = ReferenceRegistry::start().await;
    let docker_config = tempfile::tempdir().unwrap();
    let env = [("DOCKER_CONFIG", docker_config.path().to_str().unwrap())];
    let greeting = format!("hello through the cache {}", uuid::Uuid::new_v4());
    let context = tempfile::tempdir().unwrap();
    build_context(context.path(), &greeting).await;
    let source = format!("{}/library/busybox:latest", upstream.host);
    let build_env = [env[0], ("DOCKER_BUILDKIT", "0")];
    run(
        "docker",
        &["build", "-t", &source, context.path().to_str().unwrap()],
        &build_env,
    )
    .await;
    let login = docker_login(&upstream.host, UPSTREAM_USER.0, UPSTREAM_USER.1, &env).await;
    assert!(login.status.success(), "{login:?}");
    run("docker", &["push", &source], &env).await;
    run("docker", &["rmi", &source], &env).await;

    let mut hub = proxy("hub", &upstream.base);
    hub.mirror_of = Some("docker.io".into());
    let app = start_with_proxies(Backend::Sqlite, vec![hub]).await;
    // Anyone may pull the cache; `docker pull` needs no login.
    let public = app
        .client
        .put(app.url("/api/v1/visibility/hub"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert!(public.status().is_success(), "{}", public.status());
    let host = app.base.trim_start_matches("http://").to_string();

    let through = format!("{host}/hub/library/busybox:latest");
    run("docker", &["pull", &through], &env).await;
    let output = run(
        "docker",
        &["run", "--rm", "--network", "none", &through],
        &env,
    )
    .await;
    assert!(output.contains(&greeting), "{output}");
    run("docker", &["rmi", &through], &env).await;

    // A second engine whose mirror is Berth.
    let second = SecondDocker::start(&app.base).await;
    let pulled = second.docker(&["pull", "busybox"]).await;
    assert!(
        pulled.contains("Downloaded newer image") || pulled.contains("Status"),
        "{pulled}"
    );
    let output = second
        .docker(&["run", "--rm", "--network", "none", "busybox"])
        .await;
    assert!(output.contains(&greeting), "{output}");
    drop(second);

    // containerd with a hosts.toml mirror for docker.io.
    let hosts = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(hosts.path().join("docker.io")).unwrap();
    std::fs::write(
        hosts.path().join("docker.io/hosts.toml"),
        format!(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ),
    )
    .unwrap();
    let namespace = format!("berth-{}", uuid::Uuid::new_v4().simple());
    let socket = crate::real_clients::containerd_socket();
    run(
        "ctr",
        &[
            "-a",
            socket,
            "-n",
            &namespace,
            "images",
            "pull",
            "--hosts-dir",
            hosts.path().to_str().unwrap(),
            "docker.io/library/busybox:latest",
        ],
        &[],
    )
    .await;
    run(
        "ctr",
        &[
            "-a",
            socket,
            "-n",
            &namespace,
            "images",
            "rm",
            "docker.io/library/busybox:latest",
        ],
        &[],
    )
    .await;
    // The mirror's reads went through the cache: one upstream GET per blob.
    let manifest_gets = upstream.gets("/v2/library/busybox/manifests/latest").await;
    assert_eq!(
        manifest_gets, 1,
        "the tag was fetched once and then served fresh"
    );
}

/// A Docker daemon of its own (data, exec root, socket, bridge), with
/// Berth as its registry mirror; stopped when dropped. Its bridge is its
/// own: one started with `--bridge none` deletes the first daemon's
/// `docker0`, which shares the network namespace.
struct SecondDocker {
    socket: String,
    child: Option<std::process::Child>,
    _dir: tempfile::TempDir,
}

impl SecondDocker {
    async fn start(mirror: &str) -> Self {
        // Short paths: unix sockets are limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("bd")
            .tempdir_in("/tmp")
            .unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let socket = path("d.sock");
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        if !Path::new("/sys/class/net/berthbr0").exists() {
            for args in [
                &["link", "add", "name", "berthbr0", "type", "bridge"][..],
                &["addr", "add", "172.31.250.1/24", "dev", "berthbr0"],
                &["link", "set", "berthbr0", "up"],
            ] {
                run("ip", args, &[]).await;
            }
        }
        let child = std::process::Command::new("dockerd")
            .args([
                "--data-root",
                &path("data"),
                "--exec-root",
                &path("x"),
                "--pidfile",
                &path("d.pid"),
                "--host",
                &format!("unix://{socket}"),
                "--registry-mirror",
                mirror,
                "--bridge",
                "berthbr0",
                "--iptables=false",
                "--ip6tables=false",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("a second dockerd starts");
        let second = SecondDocker {
            socket,
            child: Some(child),
            _dir: dir,
        };
        for _ in 0..300 {
            let info = Command::new("docker")
                .args(["-H", &format!("unix://{}", second.socket), "info"])
                .output()
                .await
                .unwrap();
            if info.status.success() {
                return second;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log =
            std::fs::read_to_string(second._dir.path().join("dockerd.log")).unwrap_or_default();
        panic!("the second dockerd did not start:\n{log}");
    }

    async fn docker(&self, args: &[&str]) -> String {
        let host = format!("unix://{}", self.socket);
        let mut all = vec!["-H", &host];
        all.extend_from_slice(args);
        run("docker", &all, &[]).await
    }
}

impl Drop for SecondDocker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM, so it stops its containerd and unmounts.
            let _ = std::process::Command::new("kill")
                .arg(child.id().to_string())
                .status();
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Two instances on one database: twenty clients spread over both fetch an
/// uncached blob once from the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_fetch_a_blob_once() {
    let upstream = ReferenceRegistry::start().await;
    let blob = (0..8 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(40503) >> 7) as u8)
        .collect::<Vec<u8>>();
    let digest = upstream.push_blob("library/shared", &blob).await;
    let database = crate::harness::PostgresDatabase::create().await;
    let prefix = format!("cache-{}", uuid::Uuid::new_v4().simple());
    let storage = format!("s3://{}/{prefix}", crate::harness::s3_config().bucket);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[[proxy]]\nnamespace = \"hub\"\nupstream = \"{}\"\nusername = \"{}\"\npassword = \"{}\"\n",
            upstream.base, UPSTREAM_USER.0, UPSTREAM_USER.1
        ),
    )
    .unwrap();
    let instances = crate::instances::start_instances_with(
        2,
        &database.url,
        &storage,
        &[("BERTH_CONFIG", config.to_str().unwrap())],
    )
    .await;
    let token =
        crate::instances::admin_token(&instances[0], &["repository:hub/library/shared:pull"]).await;
    let client = reqwest::Client::new();
    let urls = (0..20)
        .map(|i| {
            format!(
                "{}/v2/hub/library/shared/blobs/{digest}",
                instances[i % 2].base
            )
        })
        .collect();
    for pulled in pull_at_once(&client, urls, &token).await {
        assert_eq!(pulled, digest);
    }
    assert_eq!(
        upstream
            .gets(&format!("/v2/library/shared/blobs/{digest}"))
            .await,
        1
    );
}

/// `berth proxy list` prints the configured proxies and never a password.
#[tokio::test]
async fn proxy_list_names_the_proxies_without_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("berth.toml");
    std::fs::write(
        &config,
        "[[proxy]]\nnamespace = \"hub\"\nupstream = \"https://registry-1.docker.io\"\nmirror_of = \"docker.io\"\nusername = \"me\"\npassword = \"hunter2-secret\"\ntag_ttl = \"1h\"\n\n[[proxy]]\nnamespace = \"gh\"\nupstream = \"https://ghcr.io\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "--config",
            config.to_str().unwrap(),
            "proxy",
            "list",
            "--json",
        ])
        .env("BERTH_DATA_DIR", dir.path())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("hunter2"), "{text}");
    let proxies: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(proxies[0]["namespace"], "hub");
    assert_eq!(proxies[0]["mirror_of"], "docker.io");
    assert_eq!(proxies[0]["username"], "me");
    assert_eq!(proxies[1]["upstream"], "https://ghcr.io");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[proxy]]\nnamespace = \"hub/x\"\nupstream = \"https://a.example\"\n",
    )
    .unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--config", bad.to_str().unwrap(), "proxy", "list"])
        .env("BERTH_DATA_DIR", dir.path())
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("proxy.namespace"));
}
