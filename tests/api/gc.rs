//! Garbage collection: what is unreferenced goes (from metadata and from
//! blob storage), what is referenced stays, grace periods and dry runs, idle
//! uploads expire, and the races with concurrent pushes, forced step by step.

use std::time::Duration;

use berth::gc::{Collector, GcConfig, GcReport};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::harness::{Backend, TestApp};
use crate::support::*;

/// Runs one collection pass on the app's stores.
pub async fn collect(app: &TestApp, grace: Duration, dry_run: bool) -> GcReport {
    collect_with(
        app,
        GcConfig {
            interval: None,
            grace,
            upload_expiry: Duration::from_secs(24 * 3600),
        },
        dry_run,
    )
    .await
}

async fn collect_with(app: &TestApp, config: GcConfig, dry_run: bool) -> GcReport {
    collector(app, config)
        .await
        .run_pass(dry_run)
        .await
        .unwrap()
}

/// A pass with `config`, evicting what the app's proxies hold as `berth gc` does.
pub async fn collect_with_evictions(app: &TestApp, config: GcConfig) -> GcReport {
    collector(app, config)
        .await
        .with_evictions(berth::cache::Cache::evictions(&app.config.cache))
        .run_pass(false)
        .await
        .unwrap()
}

/// A collector on the app's database and blob store, as `berth gc` opens them.
async fn collector(app: &TestApp, config: GcConfig) -> Collector {
    let stores = berth::metadata::connect(&app.config.database_url, 2)
        .await
        .unwrap();
    let blobs = berth::server::open_blob_store(&app.config).await.unwrap();
    Collector::new(
        stores.collector.clone(),
        stores.policy.clone(),
        blobs,
        config,
        None,
    )
}

/// Blob objects in storage (committed blobs only, not staging).
pub async fn stored_blobs(app: &TestApp) -> usize {
    match &app.config.storage {
        berth::config::StorageConfig::Filesystem(root) => walk(&root.join("blobs")),
        berth::config::StorageConfig::S3(s3) => {
            crate::harness::s3_objects(s3, "blobs/").await.len()
        }
    }
}

fn walk(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { walk(&p) } else { 1 })
        .sum()
}

const NOW: Duration = Duration::ZERO;

fn layer_manifest(config: &[u8], layer: &[u8]) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer)],
    })
    .to_string()
    .into_bytes()
}

/// Pushes config + layer + manifest; returns the manifest bytes.
async fn push(app: &TestApp, repo: &str, reference: &str, config: &[u8], layer: &[u8]) -> Vec<u8> {
    push_blob(app, repo, config).await;
    push_blob(app, repo, layer).await;
    let manifest = layer_manifest(config, layer);
    let response = put_manifest(app, repo, reference, OCI_MANIFEST, &manifest).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    manifest
}

async fn blob_status(app: &TestApp, repo: &str, digest: &str) -> StatusCode {
    app.head(&format!("/v2/{repo}/blobs/{digest}"))
        .await
        .status()
}

async fn pulls_completely(app: &TestApp, repo: &str, reference: &str) {
    let manifest = app.get(&format!("/v2/{repo}/manifests/{reference}")).await;
    assert_eq!(manifest.status(), StatusCode::OK, "{repo}:{reference}");
    let body: serde_json::Value = serde_json::from_slice(&manifest.bytes().await.unwrap()).unwrap();
    let mut digests = vec![];
    if let Some(config) = body.get("config") {
        digests.push(config["digest"].as_str().unwrap().to_string());
    }
    for layer in body["layers"].as_array().into_iter().flatten() {
        digests.push(layer["digest"].as_str().unwrap().to_string());
    }
    for child in body["manifests"].as_array().into_iter().flatten() {
        let digest = child["digest"].as_str().unwrap();
        Box::pin(pulls_completely(app, repo, digest)).await;
    }
    for digest in digests {
        let blob = app.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        assert_eq!(blob.status(), StatusCode::OK, "{repo} blob {digest}");
        assert_eq!(sha256(&blob.bytes().await.unwrap()), digest);
    }
}

async fn unreferenced_data_goes_and_referenced_data_stays(app: TestApp) {
    push(&app, "team/app", "keep", b"config keep", b"layer shared").await;
    let gone = push(&app, "team/app", "gone", b"config gone", b"layer gone").await;
    assert_eq!(
        app.delete("/v2/team/app/manifests/gone").await.status(),
        StatusCode::ACCEPTED
    );
    let aborted = push_blob(&app, "team/app", b"an upload no manifest followed").await;
    // A multi-platform image: its child manifest is untagged but must stay.
    let child = push(
        &app,
        "team/app",
        &sha256(&layer_manifest(b"config child", b"layer child")),
        b"config child",
        b"layer child",
    )
    .await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&child), "size": child.len(),
                       "platform": {"architecture": "arm64", "os": "linux"}}],
    })
    .to_string();
    assert_eq!(
        put_manifest(&app, "team/app", "multi", OCI_INDEX, index.as_bytes())
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(stored_blobs(&app).await, 7);

    let report = collect(&app, NOW, false).await;
    assert_eq!(report.collected.manifests, 1, "{report:?}");
    assert_eq!(report.collected.blobs, 3, "{report:?}");
    let freed = [
        "config gone",
        "layer gone",
        "an upload no manifest followed",
    ]
    .iter()
    .map(|s| s.len() as u64)
    .sum::<u64>();
    assert_eq!(report.collected.bytes, freed);
    assert_eq!(report.objects_deleted, 3);
    assert_eq!(
        app.get(&format!("/v2/team/app/manifests/{}", sha256(&gone)))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    for blob in [sha256(b"config gone"), sha256(b"layer gone"), aborted] {
        assert_eq!(
            blob_status(&app, "team/app", &blob).await,
            StatusCode::NOT_FOUND
        );
    }
    pulls_completely(&app, "team/app", "keep").await;
    pulls_completely(&app, "team/app", "multi").await;
    assert_eq!(stored_blobs(&app).await, 4);
    let again = collect(&app, NOW, false).await;
    assert_eq!((again.collected.manifests, again.collected.blobs), (0, 0));

    // Untagging the index frees it, then its child, then their blobs, in one pass.
    assert_eq!(
        app.delete("/v2/team/app/manifests/multi").await.status(),
        StatusCode::ACCEPTED
    );
    let report = collect(&app, NOW, false).await;
    assert_eq!(report.collected.manifests, 2, "{report:?}");
    assert_eq!(report.collected.blobs, 2, "{report:?}");
    pulls_completely(&app, "team/app", "keep").await;
    assert_eq!(stored_blobs(&app).await, 2);
}

async fn grace_and_dry_run_delete_nothing(app: TestApp) {
    push(&app, "team/app", "1", b"config one", b"layer one").await;
    assert_eq!(
        app.delete("/v2/team/app/manifests/1").await.status(),
        StatusCode::ACCEPTED
    );
    let waiting = collect(&app, Duration::from_secs(3600), false).await;
    assert_eq!(waiting.collected.manifests, 0);
    assert_eq!(waiting.collected.blobs, 0);
    let dry = collect(&app, NOW, true).await;
    assert_eq!(
        (dry.collected.manifests, dry.collected.blobs),
        (1, 2),
        "{dry:?}"
    );
    assert_eq!(
        dry.collected.bytes,
        (b"config one".len() + b"layer one".len()) as u64
    );
    assert_eq!(stored_blobs(&app).await, 2);
    assert_eq!(
        blob_status(&app, "team/app", &sha256(b"layer one")).await,
        StatusCode::OK
    );
    let real = collect(&app, NOW, false).await;
    assert_eq!((real.collected.manifests, real.collected.blobs), (1, 2));
    assert_eq!(stored_blobs(&app).await, 0);
}

async fn deleted_then_pushed_again_is_kept(app: TestApp) {
    push(&app, "team/app", "1", b"config again", b"layer again").await;
    let digest = sha256(&layer_manifest(b"config again", b"layer again"));
    assert_eq!(
        app.delete(&format!("/v2/team/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    // The client sees the layers still there and pushes only the manifest.
    assert_eq!(
        blob_status(&app, "team/app", &sha256(b"layer again")).await,
        StatusCode::OK
    );
    let manifest = layer_manifest(b"config again", b"layer again");
    assert_eq!(
        put_manifest(&app, "team/app", "1", OCI_MANIFEST, &manifest)
            .await
            .status(),
        StatusCode::CREATED
    );
    let report = collect(&app, NOW, false).await;
    assert_eq!(
        (report.collected.manifests, report.collected.blobs),
        (0, 0),
        "{report:?}"
    );
    pulls_completely(&app, "team/app", "1").await;
}

/// The classic race, forced in order: the layer exists when the client
/// checks, is collected, then the manifest arrives. The manifest is refused
/// (nothing refers to a missing blob) and pushing the layer again fixes it.
async fn a_layer_collected_between_check_and_manifest_is_refused_not_lost(app: TestApp) {
    push_blob(&app, "team/app", b"config race").await;
    push_blob(&app, "team/app", b"layer race").await;
    assert_eq!(
        blob_status(&app, "team/app", &sha256(b"layer race")).await,
        StatusCode::OK
    );
    let report = collect(&app, NOW, false).await;
    assert_eq!(report.collected.blobs, 2);
    let manifest = layer_manifest(b"config race", b"layer race");
    let refused = put_manifest(&app, "team/app", "1", OCI_MANIFEST, &manifest).await;
    assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    push(&app, "team/app", "1", b"config race", b"layer race").await;
    collect(&app, NOW, false).await;
    pulls_completely(&app, "team/app", "1").await;
}

async fn referrers_go_with_their_subject(app: TestApp) {
    let subject = push(&app, "team/app", "1", b"config subject", b"layer subject").await;
    push_blob(&app, "team/app", b"signature config").await;
    push_blob(&app, "team/app", b"signature").await;
    let signature = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.signature",
        "config": descriptor("application/vnd.oci.empty.v1+json", b"signature config"),
        "layers": [descriptor("application/octet-stream", b"signature")],
        "subject": {"mediaType": OCI_MANIFEST, "digest": sha256(&subject), "size": subject.len()},
    })
    .to_string();
    let signature_digest = sha256(signature.as_bytes());
    let pushed = put_manifest(
        &app,
        "team/app",
        &signature_digest,
        OCI_MANIFEST,
        signature.as_bytes(),
    )
    .await;
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let kept = collect(&app, NOW, false).await;
    assert_eq!(
        kept.collected.manifests, 0,
        "an untagged referrer stays with its subject"
    );
    assert_eq!(
        app.delete(&format!("/v2/team/app/manifests/{}", sha256(&subject)))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    let report = collect(&app, NOW, false).await;
    assert_eq!(report.collected.manifests, 1, "{report:?}");
    assert_eq!(report.collected.blobs, 4, "{report:?}");
    assert_eq!(
        app.get(&format!("/v2/team/app/manifests/{signature_digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(stored_blobs(&app).await, 0);
}

async fn idle_uploads_expire_with_their_staging(app: TestApp) {
    let started = app
        .request(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    let location = header(&started, "location").to_string();
    let chunk = app
        .request(Method::PATCH, &location)
        .header("content-range", "0-9")
        .body(b"0123456789".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(chunk.status(), StatusCode::ACCEPTED);
    let fresh = collect_with(
        &app,
        GcConfig {
            interval: None,
            grace: NOW,
            upload_expiry: Duration::from_secs(3600),
        },
        false,
    )
    .await;
    assert_eq!(fresh.collected.uploads, 0);
    assert_eq!(app.get(&location).await.status(), StatusCode::NO_CONTENT);
    let expired = collect_with(
        &app,
        GcConfig {
            interval: None,
            grace: NOW,
            upload_expiry: Duration::ZERO,
        },
        false,
    )
    .await;
    assert_eq!(expired.collected.uploads, 1);
    assert_error(
        app.get(&location).await,
        StatusCode::NOT_FOUND,
        "BLOB_UPLOAD_UNKNOWN",
    )
    .await;
    let late = app
        .request(Method::PATCH, &location)
        .header("content-range", "10-19")
        .body(b"0123456789".to_vec())
        .send()
        .await
        .unwrap();
    assert_error(late, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
    assert_eq!(crate::uploads::staged_files(&app).await, 0);
}

/// A pass judges its items a batch at a time (200): hundreds of dangling
/// blobs, some linked into two repositories, all go in one pass, dry run
/// and real alike, and a manifest's blobs among them stay.
async fn more_than_a_batch_goes_in_one_pass(app: TestApp) {
    push(&app, "team/many", "kept", b"config kept", b"layer kept").await;
    for n in 0..400 {
        push_blob(&app, "team/many", format!("dangling {n}").as_bytes()).await;
    }
    for n in 0..50 {
        let bytes = format!("dangling in two {n}");
        push_blob(&app, "team/many", bytes.as_bytes()).await;
        push_blob(&app, "team/other", bytes.as_bytes()).await;
    }
    assert_eq!(stored_blobs(&app).await, 452);
    let dry = collect(&app, NOW, true).await;
    assert_eq!(
        (dry.collected.blob_links, dry.collected.blobs),
        (500, 450),
        "{dry:?}"
    );
    assert_eq!(stored_blobs(&app).await, 452);
    let real = collect(&app, NOW, false).await;
    assert_eq!(
        (
            real.collected.blob_links,
            real.collected.blobs,
            real.objects_deleted
        ),
        (500, 450, 450),
        "{real:?}"
    );
    assert_eq!(stored_blobs(&app).await, 2);
    pulls_completely(&app, "team/many", "kept").await;
    let digest = sha256(b"dangling in two 7");
    assert_eq!(
        blob_status(&app, "team/other", &digest).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(collect(&app, NOW, false).await.collected.reviewed, 0);
}

backend_tests!(
    more_than_a_batch_goes_in_one_pass,
    unreferenced_data_goes_and_referenced_data_stays,
    grace_and_dry_run_delete_nothing,
    deleted_then_pushed_again_is_kept,
    a_layer_collected_between_check_and_manifest_is_refused_not_lost,
    referrers_go_with_their_subject,
    idle_uploads_expire_with_their_staging,
);

/// On PostgreSQL a push locks the blob links it relies on. A collector
/// meeting such a lock skips the link instead of waiting (or deleting it),
/// and once the push has committed the link is referenced and stays. The
/// push's transaction is held open by hand, so the interleaving is exact.
#[tokio::test]
async fn a_collector_never_deletes_a_link_a_push_is_using() {
    use sqlx::Connection;
    let app = TestApp::start(Backend::Postgres).await;
    push_blob(&app, "team/app", b"config locked").await;
    let layer = push_blob(&app, "team/app", b"layer locked").await;
    let mut pusher = sqlx::PgConnection::connect(&app.config.database_url)
        .await
        .unwrap();
    let mut tx = pusher.begin().await.unwrap();
    let locked: Option<String> = sqlx::query_scalar(
        "SELECT rb.blob_digest FROM repository_blobs rb JOIN repositories r ON r.id = rb.repository_id \
         WHERE r.name = 'team/app' AND rb.blob_digest = $1 FOR SHARE",
    )
    .bind(&layer)
    .fetch_optional(&mut *tx)
    .await
    .unwrap();
    assert!(locked.is_some());

    let during = collect(&app, NOW, false).await;
    assert_eq!(
        during.collected.blob_links, 1,
        "only the unlocked config link goes: {during:?}"
    );
    assert_eq!(blob_status(&app, "team/app", &layer).await, StatusCode::OK);
    tx.rollback().await.unwrap();

    // The push's manifest arrives (the config blob comes back first).
    push(&app, "team/app", "1", b"config locked", b"layer locked").await;
    let after = collect(&app, NOW, false).await;
    assert_eq!(after.collected.blob_links, 0, "{after:?}");
    pulls_completely(&app, "team/app", "1").await;
}

/// A blob row a push holds on PostgreSQL (it links the blob in another
/// repository meanwhile) is skipped, not waited for: its unused link goes,
/// the blob stays queued, and the next pass collects it once the push has
/// let go.
#[tokio::test]
async fn a_collector_leaves_a_blob_a_push_holds_for_the_next_pass() {
    use sqlx::Connection;
    let app = TestApp::start(Backend::Postgres).await;
    let digest = push_blob(&app, "team/app", b"blob held").await;
    let mut pusher = sqlx::PgConnection::connect(&app.config.database_url)
        .await
        .unwrap();
    let mut tx = pusher.begin().await.unwrap();
    let held: Option<String> =
        sqlx::query_scalar("SELECT digest FROM blobs WHERE digest = $1 FOR SHARE")
            .bind(&digest)
            .fetch_optional(&mut *tx)
            .await
            .unwrap();
    assert!(held.is_some());

    let during = collect(&app, NOW, false).await;
    assert_eq!(
        (during.collected.blob_links, during.collected.blobs),
        (1, 0),
        "{during:?}"
    );
    assert_eq!(stored_blobs(&app).await, 1);
    tx.rollback().await.unwrap();

    let after = collect(&app, NOW, false).await;
    assert_eq!(after.collected.blobs, 1, "{after:?}");
    assert_eq!(stored_blobs(&app).await, 0);
}
