//! What a security review found a hostile client could do, each answered
//! now with a clear 4xx in the spec's error shape: media types that would
//! become response headers (HTML, line breaks, 100 KB), and responses a
//! browser could render.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::TestApp;
use crate::support::*;

/// An image manifest of `alice/app` (blobs pushed) with `fields` merged in.
async fn image_with(app: &TestApp, fields: Value) -> Vec<u8> {
    let mut manifest: Value =
        serde_json::from_slice(&push_image_blobs(app, "alice/app", "x").await).unwrap();
    for (key, value) in fields.as_object().unwrap() {
        if value.is_null() {
            manifest.as_object_mut().unwrap().remove(key);
        } else {
            manifest[key] = value.clone();
        }
    }
    manifest.to_string().into_bytes()
}

/// A `PUT` of `body` as tag `tag` of `alice/app`, with `content_type` if any.
async fn push(app: &TestApp, tag: &str, content_type: Option<&str>, body: &[u8]) -> Response {
    let mut request = app.request(Method::PUT, &format!("/v2/alice/app/manifests/{tag}"));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(body.to_vec()).send().await.unwrap()
}

fn message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap()
}

async fn manifests_must_be_of_a_manifest_type(app: TestApp) {
    let html = image_with(&app, json!({"mediaType": "text/html"})).await;
    let refused = push(&app, "html", Some("text/html"), &html).await;
    assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    // Without a mediaType the Content-Type would name it.
    let untyped = image_with(&app, json!({"mediaType": null})).await;
    let refused = push(&app, "html", Some("text/html; charset=utf-8"), &untyped).await;
    assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    assert_error(
        app.get("/v2/alice/app/manifests/html").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;

    // A line break would have broken every later GET of the tag.
    let broken = image_with(
        &app,
        json!({"mediaType": format!("{OCI_MANIFEST}\r\nX-Injected: 1")}),
    )
    .await;
    let refused = push(&app, "crlf", None, &broken).await;
    assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    assert_error(
        app.get("/v2/alice/app/manifests/crlf").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let huge = format!("application/{}", "x".repeat(100 * 1024));
    let oversized = image_with(&app, json!({"mediaType": huge})).await;
    let body = assert_error(
        push(&app, "huge", None, &oversized).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    assert!(message(&body).len() < 1024, "the message echoes it whole");
    assert_error(
        push(&app, "huge", Some(&huge), &untyped).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;

    // The body and the Content-Type must agree, unless the latter is generic.
    let oci = image_with(&app, json!({})).await;
    let body = assert_error(
        push(&app, "v1", Some(DOCKER_MANIFEST), &oci).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    assert_eq!(
        body["errors"][0]["detail"],
        json!({"mediaType": OCI_MANIFEST, "contentType": DOCKER_MANIFEST})
    );
    assert!(message(&body).contains(OCI_MANIFEST) && message(&body).contains(DOCKER_MANIFEST));
    for agreeing in [
        None,
        Some("application/json"),
        Some("application/octet-stream"),
        Some("Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8"),
    ] {
        let pushed = push(&app, "v1", agreeing, &oci).await;
        assert_eq!(pushed.status(), StatusCode::CREATED, "{agreeing:?}");
    }
    let pushed = push(
        &app,
        "untyped",
        Some("application/vnd.docker.distribution.manifest.v2+json"),
        &untyped,
    )
    .await;
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let get = app.get("/v2/alice/app/manifests/untyped").await;
    assert_eq!(header(&get, "content-type"), DOCKER_MANIFEST);
}

async fn artifact_types_follow_the_media_type_grammar(app: TestApp) {
    for fields in [
        json!({"artifactType": "text/html\u{0}"}),
        json!({"artifactType": "not a media type"}),
        json!({"config": {"mediaType": "config\r\ntype", "digest": sha256(b"{}"), "size": 2}}),
    ] {
        let manifest = image_with(&app, fields.clone()).await;
        push_blob(&app, "alice/app", b"{}").await;
        let refused = push(&app, "artifact", Some(OCI_MANIFEST), &manifest).await;
        let body = assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        assert!(message(&body).contains("media type"), "{fields}: {body}");
    }
    // Any grammatical config or layer type is the artifact's own business.
    push_blob(&app, "alice/app", b"{}").await;
    let artifact = image_with(
        &app,
        json!({
            "config": {"mediaType": "application/vnd.example.thing.v1+json", "digest": sha256(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/x.anything", "digest": sha256(b"{}"), "size": 2}],
        }),
    )
    .await;
    let pushed = push(&app, "artifact", Some(OCI_MANIFEST), &artifact).await;
    assert_eq!(pushed.status(), StatusCode::CREATED);

    let subject = sha256(&artifact);
    for filter in [
        "%00",
        "text%2Fhtml%0D%0AX:%201",
        "nonsense",
        &"a".repeat(60_000),
    ] {
        let refused = app
            .get(&format!(
                "/v2/alice/app/referrers/{subject}?artifactType={filter}"
            ))
            .await;
        assert_error(refused, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
}

/// Media types stored before they were checked may be anything; they are
/// served as bytes, never as a page or a broken header.
async fn unservable_stored_media_types_are_served_as_bytes(app: TestApp) {
    let metadata = berth::metadata::connect(&app.config.database_url, 2)
        .await
        .unwrap();
    for (tag, stored) in [
        ("html", "text/html"),
        (
            "crlf",
            "application/vnd.oci.image.manifest.v1+json\r\nX-Injected: 1",
        ),
    ] {
        let manifest = push_image_blobs(&app, "alice/app", tag).await;
        let mut parsed = berth::oci::manifest::parse(&manifest, None).unwrap();
        parsed.media_type = stored.to_string();
        let new = berth::metadata::NewManifest {
            digest: sha256(&manifest).parse().unwrap(),
            payload: manifest.clone().into(),
            parsed,
        };
        metadata
            .registry
            .put_manifest(&"alice/app".parse().unwrap(), new, &[tag.parse().unwrap()])
            .await
            .unwrap();
        for method in [Method::GET, Method::HEAD] {
            let served = app
                .request(method.clone(), &format!("/v2/alice/app/manifests/{tag}"))
                .send()
                .await
                .unwrap();
            assert_eq!(served.status(), StatusCode::OK, "{method} {tag}");
            assert_eq!(header(&served, "content-type"), "application/octet-stream");
            assert_eq!(header(&served, "docker-content-digest"), sha256(&manifest));
            if method == Method::GET {
                assert_eq!(served.bytes().await.unwrap().as_ref(), manifest.as_slice());
            }
        }
    }
    metadata.close().await;
}

fn assert_not_a_page(response: &Response, what: &str) {
    assert_eq!(
        header(response, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    let policy = header(response, "content-security-policy");
    assert!(
        policy.contains("default-src 'none'") && policy.contains("sandbox"),
        "{what}: {policy}"
    );
    assert_eq!(header(response, "referrer-policy"), "no-referrer", "{what}");
}

async fn nothing_served_is_a_page(app: TestApp) {
    let html = b"<html><script>alert(document.domain)</script></html>";
    let blob = push_blob(&app, "alice/app", html).await;
    let get = app.get(&format!("/v2/alice/app/blobs/{blob}")).await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(header(&get, "content-type"), "application/octet-stream");
    assert_not_a_page(&get, "blob GET");
    let head = app.head(&format!("/v2/alice/app/blobs/{blob}")).await;
    assert_eq!(header(&head, "content-type"), "application/octet-stream");
    assert_not_a_page(&head, "blob HEAD");

    push_image(&app, "alice/app", "v1").await;
    let manifest = app.get("/v2/alice/app/manifests/v1").await;
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_not_a_page(&manifest, "manifest GET");

    for (path, status) in [
        ("/v2/", StatusCode::OK),
        ("/v2/alice/app/manifests/absent", StatusCode::NOT_FOUND),
        ("/no/such/endpoint", StatusCode::NOT_FOUND),
        ("/token", StatusCode::NOT_FOUND),
        ("/api/v1/me", StatusCode::OK),
        ("/api/v1/nothing", StatusCode::NOT_FOUND),
        ("/metrics", StatusCode::OK),
        ("/healthz", StatusCode::OK),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        assert_not_a_page(&response, path);
    }
}

backend_tests!(
    manifests_must_be_of_a_manifest_type,
    artifact_types_follow_the_media_type_grammar,
    unservable_stored_media_types_are_served_as_bytes,
    nothing_served_is_a_page,
);
