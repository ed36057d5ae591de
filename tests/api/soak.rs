//! Soak: concurrent pushers and pullers while the collector runs in the
//! background with a grace period of zero. Afterwards every image a client
//! saw pushed and still tagged pulls completely with correct digests, and
//! everything unreferenced is gone from metadata and blob storage. On one
//! instance per backend, and on two instances sharing PostgreSQL and S3.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, TestApp};
use crate::support::*;

const PUSHERS: usize = 4;
const ROUNDS: usize = 12;
const PULLERS: usize = 2;
const ATTEMPTS: usize = 50;

/// Talks to one or several instances, spreading requests over them.
#[derive(Clone)]
struct Client {
    bases: Vec<String>,
    token: Option<String>,
    http: reqwest::Client,
    next: Arc<AtomicUsize>,
}

impl Client {
    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let base = &self.bases[self.next.fetch_add(1, Ordering::Relaxed) % self.bases.len()];
        let request = self.http.request(method, format!("{base}{path}"));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Pushes a blob unless the registry says it has it (as real clients do).
    async fn ensure_blob(&self, repo: &str, bytes: &[u8]) -> bool {
        let digest = sha256(bytes);
        let head = self
            .request(Method::HEAD, &format!("/v2/{repo}/blobs/{digest}"))
            .send()
            .await
            .unwrap();
        if head.status() == StatusCode::OK {
            return true;
        }
        let pushed = self
            .request(
                Method::POST,
                &format!("/v2/{repo}/blobs/uploads/?digest={digest}"),
            )
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap();
        pushed.status() == StatusCode::CREATED
    }

    /// Pushes an image, retrying as a client would when a layer it saw
    /// vanished before its manifest arrived (with a grace period of zero the
    /// collector may take a layer the moment it is uploaded). Returns the
    /// manifest digest, or `None` when the push never got through.
    async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        config: &[u8],
        layers: &[Vec<u8>],
    ) -> Option<String> {
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": layers.iter().map(|l| descriptor("application/vnd.oci.image.layer.v1.tar", l)).collect::<Vec<_>>(),
        })
        .to_string();
        for _attempt in 0..ATTEMPTS {
            let mut ready = self.ensure_blob(repo, config).await;
            for layer in layers {
                ready &= self.ensure_blob(repo, layer).await;
            }
            if !ready {
                continue;
            }
            let put = self
                .request(Method::PUT, &format!("/v2/{repo}/manifests/{tag}"))
                .header("content-type", OCI_MANIFEST)
                .body(manifest.clone())
                .send()
                .await
                .unwrap();
            match put.status() {
                StatusCode::CREATED => return Some(sha256(manifest.as_bytes())),
                StatusCode::BAD_REQUEST => {
                    let body = put.json_value().await;
                    assert_eq!(body["errors"][0]["code"], "MANIFEST_BLOB_UNKNOWN", "{body}");
                }
                other => panic!("manifest push answered {other}"),
            }
        }
        None
    }

    /// Pulls an image by tag; every blob must be there with its digest.
    async fn pull(&self, repo: &str, tag: &str) -> Vec<String> {
        let manifest = self
            .request(Method::GET, &format!("/v2/{repo}/manifests/{tag}"))
            .send()
            .await
            .unwrap();
        assert_eq!(manifest.status(), StatusCode::OK, "{repo}:{tag}");
        let body: serde_json::Value =
            serde_json::from_slice(&manifest.bytes().await.unwrap()).unwrap();
        let mut digests = vec![body["config"]["digest"].as_str().unwrap().to_string()];
        digests.extend(
            body["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string()),
        );
        for digest in &digests {
            let blob = self
                .request(Method::GET, &format!("/v2/{repo}/blobs/{digest}"))
                .send()
                .await
                .unwrap();
            assert_eq!(blob.status(), StatusCode::OK, "{repo}:{tag} blob {digest}");
            assert_eq!(&sha256(&blob.bytes().await.unwrap()), digest);
        }
        digests
    }
}

/// Runs the soak; returns the images that must have survived.
async fn soak(client: Client) -> Vec<(String, String)> {
    let kept: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for pusher in 0..PUSHERS {
        let (client, kept, done) = (client.clone(), kept.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let repo = format!("soak/repo{}", pusher % 2);
            // Shared by every image: pushed, dropped and pushed again all the time.
            let base = b"base layer shared by everything".to_vec();
            for round in 0..ROUNDS {
                let config = format!("config {pusher}-{round}").into_bytes();
                let own =
                    format!("layer {pusher}-{round} {}", "x".repeat(round * 100)).into_bytes();
                let tag = format!("p{pusher}-r{round}");
                let pushed = client
                    .push_image(&repo, &tag, &config, &[base.clone(), own])
                    .await;
                if pushed.is_none() {
                    // Never seen as pushed: nothing to check for it.
                    continue;
                }
                if round % 2 == 1 {
                    // A temporary image: untagged again, so its data becomes garbage.
                    let deleted = client
                        .request(Method::DELETE, &format!("/v2/{repo}/manifests/{tag}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
                } else {
                    kept.lock().unwrap().push((repo.clone(), tag));
                }
            }
            done.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for _ in 0..PULLERS {
        let (client, kept, done) = (client.clone(), kept.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut pulls = 0;
            while done.load(Ordering::SeqCst) < PUSHERS || pulls == 0 {
                let images = kept.lock().unwrap().clone();
                for (repo, tag) in images {
                    client.pull(&repo, &tag).await;
                    pulls += 1;
                }
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a soak client failed");
    }
    let kept = Arc::try_unwrap(kept).unwrap().into_inner().unwrap();
    assert!(!kept.is_empty(), "no push got through at all");
    eprintln!(
        "soak: {} of {} kept images got through",
        kept.len(),
        PUSHERS * ROUNDS / 2
    );
    kept
}

/// After the soak and a final collection: what survived pulls, and storage
/// holds exactly the blobs the surviving images use.
async fn verify(client: &Client, kept: &[(String, String)], stored: usize) {
    let mut used = std::collections::BTreeSet::new();
    for (repo, tag) in kept {
        for digest in client.pull(repo, tag).await {
            used.insert((repo.clone(), digest));
        }
    }
    let distinct: std::collections::BTreeSet<&String> = used.iter().map(|(_, d)| d).collect();
    assert_eq!(
        stored,
        distinct.len(),
        "blob objects in storage vs blobs the surviving images use"
    );
    for pusher in 0..PUSHERS {
        for round in (1..ROUNDS).step_by(2) {
            let repo = format!("soak/repo{}", pusher % 2);
            let gone = client
                .request(
                    Method::GET,
                    &format!("/v2/{repo}/manifests/p{pusher}-r{round}"),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(gone.status(), StatusCode::NOT_FOUND);
        }
    }
}

async fn soak_one_instance(backend: Backend) {
    let app = TestApp::start_with(backend, |config| {
        config.gc = berth::gc::GcConfig {
            interval: Some(Duration::from_millis(100)),
            grace: Duration::ZERO,
            upload_expiry: Duration::from_secs(3600),
        };
    })
    .await;
    let client = Client {
        bases: vec![app.base.clone()],
        token: None,
        http: reqwest::Client::new(),
        next: Arc::default(),
    };
    let kept = soak(client.clone()).await;
    // Let the background collector finish, then one more pass of our own.
    crate::gc::collect(&app, Duration::ZERO, false).await;
    let report = crate::gc::collect(&app, Duration::ZERO, false).await;
    assert_eq!(
        report.collected.manifests + report.collected.blobs,
        0,
        "{report:?}"
    );
    verify(&client, &kept, crate::gc::stored_blobs(&app).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_on_sqlite_and_filesystem() {
    soak_one_instance(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_on_postgres_and_s3() {
    soak_one_instance(Backend::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak_on_two_instances_sharing_postgres_and_s3() {
    let database = crate::harness::PostgresDatabase::create().await;
    let prefix = format!("soak-{}", uuid::Uuid::new_v4().simple());
    let mut s3 = crate::harness::s3_config();
    let storage = format!("s3://{}/{prefix}", s3.bucket);
    s3.prefix = prefix;
    let instances = crate::instances::start_instances_with(
        2,
        &database.url,
        &storage,
        &[("BERTH_GC_INTERVAL", "100ms"), ("BERTH_GC_GRACE", "0s")],
    )
    .await;
    let token = crate::instances::admin_token(
        &instances[0],
        &[
            "repository:soak/repo0:pull,push,delete",
            "repository:soak/repo1:pull,push,delete",
        ],
    )
    .await;
    let client = Client {
        bases: instances.iter().map(|i| i.base.clone()).collect(),
        token: Some(token),
        http: reqwest::Client::new(),
        next: Arc::default(),
    };
    let kept = soak(client.clone()).await;
    // A final pass with the `berth gc` command, as an operator would run it.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["--database-url", &database.url, "gc", "--grace", "0s"])
        .env("BERTH_STORAGE_LOCATION", &storage)
        .env("AWS_ENDPOINT", s3.endpoint.clone().unwrap())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", s3.access_key_id.clone().unwrap())
        .env(
            "AWS_SECRET_ACCESS_KEY",
            s3.secret_access_key.clone().unwrap(),
        )
        .env("AWS_ALLOW_HTTP", "true")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("collected:"));
    let stored = crate::harness::s3_objects(&s3, "blobs/").await.len();
    verify(&client, &kept, stored).await;
}
