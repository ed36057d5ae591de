//! `berth bench-load`, the `scale` benchmark's loader: what it writes is
//! served as pushed content is (catalog, tag lists, manifests, blobs), and
//! its dangling blobs are what the next collection pass takes.

use berth::metadata::{bulk_layer_bytes, bulk_repository_name};
use reqwest::StatusCode;
use serde_json::Value;

use crate::cli::berth;
use crate::harness::{Backend, TestApp};
use crate::support::{header, sha256};

/// Runs the binary's `args` on the app's database and data directory.
async fn run(app: &TestApp, args: &[&str]) -> String {
    let output = berth()
        .args(args)
        .arg("--data-dir")
        .arg(&app.config.data_dir)
        .args(["--database-url", &app.config.database_url])
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "berth {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

async fn json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.json().await.unwrap()
}

async fn loaded_content_is_served_and_dangling_blobs_collected(app: TestApp) {
    // Three repositories: `scale/big` with 5 tags, two more sharing the
    // other 5 (3 and 2), 7 layers shared out 3, 2, 2.
    let printed = run(
        &app,
        &[
            "bench-load",
            "--repositories=3",
            "--tags=10",
            "--big-repository-tags=5",
            "--blobs=7",
            "--dangling-blobs=4",
        ],
    )
    .await;
    assert!(printed.contains("loaded 3 repositories"), "{printed}");

    let catalog = json(&app, "/v2/_catalog").await;
    assert_eq!(
        catalog["repositories"],
        serde_json::json!(["scale/big", "scale/r000001", "scale/r000002"])
    );
    assert_eq!(
        json(&app, "/v2/_catalog?n=1&last=scale/big").await["repositories"],
        serde_json::json!(["scale/r000001"])
    );
    let big = json(&app, "/v2/scale/big/tags/list").await;
    assert_eq!(
        big["tags"],
        serde_json::json!(["t000000", "t000001", "t000002", "t000003", "t000004"])
    );
    let page = json(&app, "/v2/scale/big/tags/list?n=2&last=t000001").await;
    assert_eq!(page["tags"], serde_json::json!(["t000002", "t000003"]));
    let small = json(&app, "/v2/scale/r000001/tags/list").await;
    assert_eq!(
        small["tags"],
        serde_json::json!(["t000000", "t000001", "t000002"])
    );

    let name = bulk_repository_name("scale", 2);
    let response = app.get(&format!("/v2/{name}/manifests/t000001")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let digest = header(&response, "docker-content-digest").to_string();
    let body = response.bytes().await.unwrap();
    assert_eq!(digest, sha256(&body), "the digest is the body's");
    let manifest: Value = serde_json::from_slice(&body).unwrap();
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    let expected = [sha256(&bulk_layer_bytes(5)), sha256(&bulk_layer_bytes(6))];
    assert_eq!(layers, expected, "repository 2 holds layers 5 and 6");
    // By digest too, and its blobs: the config's bytes are in storage,
    // a layer is known to metadata.
    let by_digest = app.get(&format!("/v2/{name}/manifests/{digest}")).await;
    assert_eq!(by_digest.status(), StatusCode::OK);
    let config = manifest["config"]["digest"].as_str().unwrap();
    let config_bytes = app
        .get(&format!("/v2/{name}/blobs/{config}"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256(&config_bytes), config);
    let layer = app.head(&format!("/v2/{name}/blobs/{}", layers[0])).await;
    assert_eq!(layer.status(), StatusCode::OK);
    assert_eq!(
        header(&layer, "content-length"),
        bulk_layer_bytes(5).len().to_string()
    );
    // A layer of another repository is not readable here.
    let foreign = sha256(&bulk_layer_bytes(0));
    let response = app.head(&format!("/v2/{name}/blobs/{foreign}")).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // The config and the 4 dangling blobs are the store's objects; a pass
    // with the default grace takes the dangling ones and nothing loaded.
    assert_eq!(crate::gc::stored_blobs(&app).await, 5);
    let collected = run(&app, &["gc"]).await;
    assert!(
        collected.contains("0 manifests, 4 blob links, 4 blobs"),
        "{collected}"
    );
    assert_eq!(crate::gc::stored_blobs(&app).await, 1);
    let response = app.get(&format!("/v2/{name}/manifests/t000001")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(&app, "/v2/_catalog").await, catalog);
}

#[tokio::test]
async fn sqlite() {
    loaded_content_is_served_and_dangling_blobs_collected(TestApp::start(Backend::Sqlite).await)
        .await;
}

#[tokio::test]
async fn postgres() {
    loaded_content_is_served_and_dangling_blobs_collected(TestApp::start(Backend::Postgres).await)
        .await;
}
