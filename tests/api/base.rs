//! `/v2/`, unknown routes, wrong methods and name validation.

use reqwest::{Method, StatusCode};

use crate::backend_tests;
use crate::harness::TestApp;
use crate::support::*;

async fn api_base_announces_the_version(app: TestApp) {
    let response = app.get("/v2/").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "docker-distribution-api-version"),
        "registry/2.0"
    );
    assert_eq!(app.get("/v2").await.status(), StatusCode::OK);
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

async fn unknown_routes_and_methods_get_json_errors(app: TestApp) {
    assert_error(
        app.get("/nothing").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    assert_error(
        app.get("/v2/a/unknown/thing").await,
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
    )
    .await;
    let patch_manifest = app
        .request(Method::PATCH, "/v2/a/manifests/latest")
        .send()
        .await
        .unwrap();
    assert_error(
        patch_manifest,
        StatusCode::METHOD_NOT_ALLOWED,
        "UNSUPPORTED",
    )
    .await;
    let post_catalog = app
        .request(Method::POST, "/v2/_catalog")
        .send()
        .await
        .unwrap();
    assert_error(post_catalog, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    let delete_base = app.request(Method::DELETE, "/v2/").send().await.unwrap();
    assert_error(delete_base, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
}

async fn names_tags_and_digests_are_validated(app: TestApp) {
    for bad in ["Alice/app", "a%2Fb", "a..b", "-a", &"a".repeat(256)] {
        let response = app
            .request(Method::POST, &format!("/v2/{bad}/blobs/uploads/"))
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    }
    // Path tricks, sent raw: never a different repository, never a file path.
    for path in [
        "/v2/a/../b/blobs/uploads/",
        "/v2/a/%2E%2E/b/blobs/uploads/",
        "/v2/../v2/a/blobs/uploads/",
    ] {
        assert_eq!(raw_status(&app, "POST", path).await, 400, "{path}");
    }
    assert_eq!(
        raw_status(&app, "GET", "/v2/a/blobs/sha256:..%2F..%2Fetc").await,
        400
    );
    let bad_digest = app.head("/v2/a/blobs/sha256:1234").await;
    assert_eq!(bad_digest.status(), StatusCode::BAD_REQUEST);
    assert_error(
        app.get("/v2/a/blobs/md5:abc").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
    let long_tag = "t".repeat(129);
    for bad_tag in ["-bad-tag", ".INVALID_MANIFEST_NAME", &long_tag] {
        let path = format!("/v2/a/manifests/{bad_tag}");
        let pushed = put_manifest(&app, "a", bad_tag, OCI_MANIFEST, b"{}").await;
        assert_error(pushed, StatusCode::BAD_REQUEST, "TAG_INVALID").await;
        // No manifest has such a tag: reading or deleting one finds none.
        assert_error(
            app.get(&path).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
        assert_error(
            app.delete(&path).await,
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        )
        .await;
        assert_eq!(app.head(&path).await.status(), StatusCode::NOT_FOUND);
    }
}

async fn public_url_makes_locations_absolute(mut app: TestApp) {
    let relative = app
        .request(Method::POST, "/v2/alice/web/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert!(header(&relative, "location").starts_with("/v2/alice/web/blobs/uploads/"));

    app.config.public_url = Some("https://registry.example:8443".into());
    app.restart().await;
    let started = app
        .request(Method::POST, "/v2/alice/web/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = header(&started, "location").to_string();
    assert!(
        location.starts_with("https://registry.example:8443/v2/alice/web/blobs/uploads/"),
        "{location}"
    );
    let body = b"public";
    let digest = sha256(body);
    let path = location.trim_start_matches("https://registry.example:8443");
    let finished = app
        .request(Method::PUT, &format!("{path}?digest={digest}"))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), StatusCode::CREATED);
    assert_eq!(
        header(&finished, "location"),
        format!("https://registry.example:8443/v2/alice/web/blobs/{digest}")
    );
}

backend_tests!(
    api_base_announces_the_version,
    metrics_count_requests_bytes_uploads_and_connections,
    public_url_makes_locations_absolute,
    unknown_routes_and_methods_get_json_errors,
    names_tags_and_digests_are_validated,
);

/// Waits (bounded) until `/metrics` shows every `needle`: a request is
/// counted when its response body has been sent, an instant after the
/// client has it.
async fn metrics_showing(app: &TestApp, needles: &[&str]) -> String {
    let mut text = String::new();
    for _ in 0..100 {
        text = app.get("/metrics").await.text().await.unwrap();
        if needles.iter().all(|n| text.contains(n)) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("metrics never showed {needles:?}:\n{text}");
}

async fn metrics_count_requests_bytes_uploads_and_connections(app: TestApp) {
    push_image(&app, "team/app", "1").await;
    let open = app
        .request(Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(open.status(), StatusCode::ACCEPTED);
    app.get("/v2/team/app/manifests/1")
        .await
        .bytes()
        .await
        .unwrap();
    let metrics = app.get("/metrics").await;
    assert!(header(&metrics, "content-type").starts_with("application/openmetrics-text"));
    let text = metrics_showing(
        &app,
        &[
            r#"berth_http_requests_total{route="manifest",method="PUT",status="201"} 1"#,
            r#"berth_http_requests_total{route="manifest",method="GET",status="200"} 1"#,
            r#"berth_http_request_duration_seconds_bucket{"#,
            r#"berth_http_received_bytes_total{route="upload_start",method="POST"}"#,
            r#"berth_http_sent_bytes_total{route="manifest",method="GET"}"#,
            "berth_uploads_in_progress 1",
            r#"berth_database_connections{state="idle"}"#,
        ],
    )
    .await;
    assert!(!text.contains("team/app"), "no raw paths in labels");
}
