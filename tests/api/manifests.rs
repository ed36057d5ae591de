//! Manifests by tag and digest, indexes, artifacts, referrers, tags, the
//! catalog and deletion.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::TestApp;
use crate::support::*;

async fn image_manifest_round_trips_byte_for_byte(app: TestApp) {
    let manifest = push_image_blobs(&app, "alice/app", "v1").await;
    // Odd but valid formatting must survive untouched.
    let manifest = [b"{ \"x-custom\": [1, 2],\n".as_slice(), &manifest[1..]].concat();
    let digest = sha256(&manifest);
    let response = put_manifest(&app, "alice/app", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "docker-content-digest"), digest);
    assert_eq!(
        header(&response, "location"),
        format!("/v2/alice/app/manifests/{digest}")
    );

    for reference in ["v1", digest.as_str()] {
        let get = app
            .get(&format!("/v2/alice/app/manifests/{reference}"))
            .await;
        assert_eq!(get.status(), StatusCode::OK);
        assert_eq!(header(&get, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&get, "docker-content-digest"), digest);
        assert_eq!(get.bytes().await.unwrap().as_ref(), manifest.as_slice());

        let head = app
            .head(&format!("/v2/alice/app/manifests/{reference}"))
            .await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, "content-length"), manifest.len().to_string());
        assert_eq!(header(&head, "docker-content-digest"), digest);
    }
    assert_error(
        app.get("/v2/alice/app/manifests/v2").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_error(
        app.get(&format!("/v2/bob/app/manifests/{digest}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
}

async fn manifests_with_unknown_references_are_refused(app: TestApp) {
    let config = push_blob(&app, "alice/app", b"{}").await;
    let missing_layer = b"layer never pushed";
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
        "layers": [descriptor("application/vnd.docker.image.rootfs.diff.tar.gzip", missing_layer)],
    });
    let response = put_manifest(
        &app,
        "alice/app",
        "v1",
        DOCKER_MANIFEST,
        manifest.to_string().as_bytes(),
    )
    .await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_eq!(body["errors"][0]["detail"]["digest"], sha256(missing_layer));

    // A blob of another repository does not count.
    push_blob(&app, "bob/app", missing_layer).await;
    let response = put_manifest(
        &app,
        "alice/app",
        "v1",
        DOCKER_MANIFEST,
        manifest.to_string().as_bytes(),
    )
    .await;
    assert_error(response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;

    // A non-distributable layer with urls may be absent.
    let foreign = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config, "size": 2},
        "layers": [{
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": sha256(b"windows base"), "size": 12,
            "urls": ["https://example.com/layer"]
        }],
    });
    let response = put_manifest(
        &app,
        "alice/app",
        "win",
        DOCKER_MANIFEST,
        foreign.to_string().as_bytes(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        app.get("/v2/alice/app/tags/list").await.json_value().await["tags"],
        json!(["win"])
    );
}

/// More layers than the registry checks in one database statement (500):
/// the references past the first batch are checked and recorded too.
async fn manifests_with_hundreds_of_layers(app: TestApp) {
    const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    let config = push_blob(&app, "alice/big", b"{}").await;
    let layers: Vec<Vec<u8>> = (0..520)
        .map(|n| format!("layer {n}").into_bytes())
        .collect();
    for (n, layer) in layers.iter().enumerate() {
        if n != 510 {
            push_blob(&app, "alice/big", layer).await;
        }
    }
    let manifest = |layers: &[&Vec<u8>]| {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": layers.iter().map(|l| descriptor(LAYER, l)).collect::<Vec<_>>(),
        })
        .to_string()
    };
    let all: Vec<&Vec<u8>> = layers.iter().collect();
    let response = put_manifest(
        &app,
        "alice/big",
        "v1",
        OCI_MANIFEST,
        manifest(&all).as_bytes(),
    )
    .await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_eq!(body["errors"][0]["detail"]["digest"], sha256(&layers[510]));

    // Without the missing layer, and with one layer listed twice (as empty layers are).
    let mut present: Vec<&Vec<u8>> = all.clone();
    present.remove(510);
    present.push(&layers[0]);
    let response = put_manifest(
        &app,
        "alice/big",
        "v1",
        OCI_MANIFEST,
        manifest(&present).as_bytes(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    for n in [0, 499, 519] {
        let in_use = app
            .delete(&format!("/v2/alice/big/blobs/{}", sha256(&layers[n])))
            .await;
        let body = assert_error(in_use, StatusCode::FORBIDDEN, "DENIED").await;
        assert_eq!(body["errors"][0]["detail"]["digest"], sha256(&layers[n]));
    }
}

async fn malformed_and_oversized_manifests_are_refused(app: TestApp) {
    for body in [
        b"not json".to_vec(),
        b"{}".to_vec(),
        br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "layers": []}"#.to_vec(),
        br#"{"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}"#.to_vec(),
    ] {
        let response = put_manifest(&app, "alice/app", "bad", OCI_MANIFEST, &body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    }
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let response = put_manifest(&app, "alice/app", "huge", OCI_MANIFEST, &huge).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    // A chunked body without Content-Length is limited as well.
    let stream = futures_util::stream::iter(
        (0..5).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024 * 1024]))),
    );
    let response = app
        .request(Method::PUT, "/v2/alice/app/manifests/huge")
        .header("content-type", OCI_MANIFEST)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID").await;
    assert_error(
        app.get("/v2/alice/app/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
}

async fn push_by_digest_checks_the_digest_and_adds_tags(app: TestApp) {
    let manifest = push_image_blobs(&app, "alice/app", "by-digest").await;
    let wrong = sha256(b"another manifest");
    let response = put_manifest(&app, "alice/app", &wrong, OCI_MANIFEST, &manifest).await;
    assert_error(response, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;

    let digest = sha256(&manifest);
    let response = app
        .request(
            Method::PUT,
            &format!("/v2/alice/app/manifests/{digest}?tag=a&tag=b"),
        )
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let tags: Vec<_> = response
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(tags, ["a", "b"]);
    let listed = app.get("/v2/alice/app/tags/list").await.json_value().await;
    assert_eq!(listed, json!({"name": "alice/app", "tags": ["a", "b"]}));
}

async fn indexes_need_their_children(app: TestApp) {
    let amd64 = push_image_blobs(&app, "alice/multi", "amd64").await;
    let arm64 = push_image_blobs(&app, "alice/multi", "arm64").await;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": sha256(&amd64), "size": amd64.len(), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": OCI_MANIFEST, "digest": sha256(&arm64), "size": arm64.len(), "platform": {"os": "linux", "architecture": "arm64"}},
        ],
    })
    .to_string();
    let response = put_manifest(&app, "alice/multi", "1.0", OCI_INDEX, index.as_bytes()).await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    assert_eq!(body["errors"][0]["detail"]["digest"], sha256(&amd64));

    let amd64_digest = sha256(&amd64);
    for manifest in [&amd64, &arm64] {
        let response = put_manifest(
            &app,
            "alice/multi",
            &sha256(manifest),
            OCI_MANIFEST,
            manifest,
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let response = put_manifest(&app, "alice/multi", "1.0", OCI_INDEX, index.as_bytes()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let get = app.get("/v2/alice/multi/manifests/1.0").await;
    assert_eq!(header(&get, "content-type"), OCI_INDEX);
    assert_eq!(get.bytes().await.unwrap().as_ref(), index.as_bytes());

    // A child cannot be deleted while the index lists it: 403 as the spec
    // pairs with DENIED, naming the index and what to do instead.
    let response = app
        .delete(&format!("/v2/alice/multi/manifests/{amd64_digest}"))
        .await;
    let body = assert_error(response, StatusCode::FORBIDDEN, "DENIED").await;
    let index_digest = sha256(index.as_bytes());
    assert_eq!(
        body["errors"][0]["detail"],
        json!({"digest": amd64_digest, "referenced_by": [index_digest]})
    );
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains(&index_digest)
            && message.contains("delete the tag by name instead, or delete the index first"),
        "{message}"
    );
    assert_eq!(
        app.delete(&format!("/v2/alice/multi/manifests/{index_digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.delete(&format!("/v2/alice/multi/manifests/{amd64_digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );

    // Docker manifest lists work the same way.
    let list = json!({
        "schemaVersion": 2,
        "mediaType": DOCKER_LIST,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha256(&arm64), "size": arm64.len(), "platform": {"os": "linux", "architecture": "arm64"}}],
    })
    .to_string();
    let response = put_manifest(&app, "alice/multi", "list", DOCKER_LIST, list.as_bytes()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(
            &app.head("/v2/alice/multi/manifests/list").await,
            "content-type"
        ),
        DOCKER_LIST
    );
}

async fn artifacts_and_referrers(app: TestApp) {
    let subject = push_image(&app, "alice/app", "v1").await;
    let subject_size = app
        .get(&format!("/v2/alice/app/manifests/{subject}"))
        .await
        .bytes()
        .await
        .unwrap()
        .len();
    let empty = push_blob(&app, "alice/app", b"{}").await;
    let mut referrers = Vec::new();
    for (kind, payload) in [
        ("application/vnd.example.sbom", "sbom"),
        ("application/vnd.example.signature", "sig"),
    ] {
        let blob = push_blob(&app, "alice/app", payload.as_bytes()).await;
        let artifact = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": kind,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/octet-stream", "digest": blob, "size": payload.len()}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": subject_size},
            "annotations": {"org.example.kind": payload},
        })
        .to_string();
        let digest = sha256(artifact.as_bytes());
        let response = put_manifest(
            &app,
            "alice/app",
            &digest,
            OCI_MANIFEST,
            artifact.as_bytes(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(header(&response, "oci-subject"), subject);
        referrers.push((digest, kind, artifact.len()));
    }

    let response = app.get(&format!("/v2/alice/app/referrers/{subject}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "content-type"), OCI_INDEX);
    assert!(response.headers().get("oci-filters-applied").is_none());
    let index = response.json_value().await;
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let listed = index["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for (digest, kind, size) in &referrers {
        let entry = listed
            .iter()
            .find(|m| m["digest"] == *digest)
            .expect("referrer listed");
        assert_eq!(entry["artifactType"], *kind);
        assert_eq!(entry["size"], *size);
        assert_eq!(entry["mediaType"], OCI_MANIFEST);
        assert!(entry["annotations"]["org.example.kind"].is_string());
    }

    let filtered = app
        .get(&format!(
            "/v2/alice/app/referrers/{subject}?artifactType=application/vnd.example.sbom"
        ))
        .await;
    assert_eq!(header(&filtered, "oci-filters-applied"), "artifactType");
    let filtered = filtered.json_value().await;
    assert_eq!(filtered["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["manifests"][0]["digest"], referrers[0].0);

    // An unknown subject has an empty list, not an error.
    let none = app
        .get(&format!("/v2/alice/app/referrers/{}", sha256(b"nothing")))
        .await;
    assert_eq!(none.status(), StatusCode::OK);
    assert_eq!(none.json_value().await["manifests"], json!([]));
    assert_error(
        app.get("/v2/alice/app/referrers/sha256:bad").await,
        StatusCode::BAD_REQUEST,
        "DIGEST_INVALID",
    )
    .await;
}

async fn a_subject_may_be_pushed_after_its_referrer(app: TestApp) {
    let empty = push_blob(&app, "alice/app", b"{}").await;
    let future_subject = sha256(b"a manifest pushed later");
    let artifact = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.example.config", "digest": empty, "size": 2},
        "layers": [],
        "subject": {"mediaType": OCI_MANIFEST, "digest": future_subject, "size": 10},
    })
    .to_string();
    let response = put_manifest(
        &app,
        "alice/app",
        &sha256(artifact.as_bytes()),
        OCI_MANIFEST,
        artifact.as_bytes(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "oci-subject"), future_subject);
    let index = app
        .get(&format!("/v2/alice/app/referrers/{future_subject}"))
        .await
        .json_value()
        .await;
    // Without artifactType, the config media type stands in for it.
    assert_eq!(
        index["manifests"][0]["artifactType"],
        "application/vnd.example.config"
    );
}

async fn tags_move_list_and_paginate(app: TestApp) {
    let first = push_image(&app, "alice/app", "latest").await;
    let second = push_image(&app, "alice/app", "other").await;
    let manifest = app
        .get(&format!("/v2/alice/app/manifests/{second}"))
        .await
        .bytes()
        .await
        .unwrap();
    // Moving a tag points it at the new manifest.
    let response = put_manifest(&app, "alice/app", "latest", OCI_MANIFEST, &manifest).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        header(
            &app.head("/v2/alice/app/manifests/latest").await,
            "docker-content-digest"
        ),
        second
    );
    assert_eq!(
        header(
            &app.head(&format!("/v2/alice/app/manifests/{first}")).await,
            "docker-content-digest"
        ),
        first
    );

    for tag in ["b", "a", "C", "c", "_z", "1.0"] {
        let response = put_manifest(&app, "alice/app", tag, OCI_MANIFEST, &manifest).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let all = app.get("/v2/alice/app/tags/list").await;
    assert!(all.headers().get("link").is_none());
    assert_eq!(
        all.json_value().await["tags"],
        json!(["1.0", "C", "_z", "a", "b", "c", "latest", "other"])
    );

    let mut seen = Vec::new();
    let mut next = Some("/v2/alice/app/tags/list?n=3".to_string());
    while let Some(path) = next.take() {
        let page = app.get(&path).await;
        assert_eq!(page.status(), StatusCode::OK);
        next = page.headers().get("link").map(|link| {
            let link = link.to_str().unwrap();
            assert!(link.ends_with(">; rel=\"next\""), "{link}");
            link[1..link.find('>').unwrap()].to_string()
        });
        let body = page.json_value().await;
        let tags = body["tags"].as_array().unwrap();
        assert!(tags.len() <= 3);
        seen.extend(tags.iter().map(|t| t.as_str().unwrap().to_string()));
    }
    assert_eq!(seen, ["1.0", "C", "_z", "a", "b", "c", "latest", "other"]);

    let after = app
        .get("/v2/alice/app/tags/list?last=b")
        .await
        .json_value()
        .await;
    assert_eq!(after["tags"], json!(["c", "latest", "other"]));
    let none = app.get("/v2/alice/app/tags/list?n=0").await;
    assert!(none.headers().get("link").is_none());
    assert_eq!(none.json_value().await["tags"], json!([]));
    assert_error(
        app.get("/v2/alice/app/tags/list?n=x").await,
        StatusCode::BAD_REQUEST,
        "UNSUPPORTED",
    )
    .await;
    assert_error(
        app.get("/v2/nobody/tags/list").await,
        StatusCode::NOT_FOUND,
        "NAME_UNKNOWN",
    )
    .await;
}

async fn catalog_lists_repositories_with_pagination(app: TestApp) {
    assert_eq!(
        app.get("/v2/_catalog").await.json_value().await,
        json!({"repositories": []})
    );
    for repo in ["zed/app", "alice/app", "bob/tools/cli", "alice/web"] {
        push_image(&app, repo, "v1").await;
    }
    // A repository holding only an unfinished upload is not listed.
    push_blob(&app, "empty/repo", b"just a blob").await;
    let all = app.get("/v2/_catalog").await.json_value().await;
    assert_eq!(
        all["repositories"],
        json!(["alice/app", "alice/web", "bob/tools/cli", "zed/app"])
    );
    let first = app.get("/v2/_catalog?n=2").await;
    assert_eq!(
        header(&first, "link"),
        "</v2/_catalog?n=2&last=alice%2Fweb>; rel=\"next\""
    );
    assert_eq!(
        first.json_value().await["repositories"],
        json!(["alice/app", "alice/web"])
    );
    let second = app.get("/v2/_catalog?n=2&last=alice%2Fweb").await;
    assert!(second.headers().get("link").is_none());
    assert_eq!(
        second.json_value().await["repositories"],
        json!(["bob/tools/cli", "zed/app"])
    );
}

async fn deleting_tags_and_manifests(app: TestApp) {
    let digest = push_image(&app, "alice/app", "v1").await;
    let manifest = app
        .get(&format!("/v2/alice/app/manifests/{digest}"))
        .await
        .bytes()
        .await
        .unwrap();
    put_manifest(&app, "alice/app", "v2", OCI_MANIFEST, &manifest).await;

    // Deleting a tag leaves the manifest and its other tags.
    assert_eq!(
        app.delete("/v2/alice/app/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        app.get("/v2/alice/app/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    assert_eq!(
        app.get(&format!("/v2/alice/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::OK
    );
    assert_error(
        app.delete("/v2/alice/app/manifests/v1").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;

    // Deleting by digest removes the manifest and every tag on it.
    assert_eq!(
        app.delete(&format!("/v2/alice/app/manifests/{digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_error(
        app.get(&format!("/v2/alice/app/manifests/{digest}")).await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let tags: Value = app.get("/v2/alice/app/tags/list").await.json_value().await;
    assert_eq!(tags["tags"], json!([]));

    // Pushing the same content again works at once.
    let response = put_manifest(&app, "alice/app", "v1", OCI_MANIFEST, &manifest).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(header(&response, "docker-content-digest"), digest);
}

/// Tag lists are served from a per-instance cache keyed by a version the
/// database bumps on every change of tag names, however it happens.
async fn tag_lists_follow_every_change(app: TestApp) {
    let first = push_image_blobs(&app, "alice/app", "first").await;
    let second = push_image_blobs(&app, "alice/app", "second").await;
    for (tag, body) in [("a", &first), ("b", &first), ("c", &second)] {
        let response = put_manifest(&app, "alice/app", tag, OCI_MANIFEST, body).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let list =
        || async { app.get("/v2/alice/app/tags/list").await.json_value().await["tags"].clone() };
    assert_eq!(list().await, json!(["a", "b", "c"]));
    // Moving a tag keeps the names.
    let moved = put_manifest(&app, "alice/app", "a", OCI_MANIFEST, &second).await;
    assert_eq!(moved.status(), StatusCode::CREATED);
    assert_eq!(list().await, json!(["a", "b", "c"]));
    // Deleting a manifest takes its tags with it (a cascade inside the database).
    let deleted = app
        .request(
            Method::DELETE,
            &format!("/v2/alice/app/manifests/{}", sha256(&first)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);
    assert_eq!(list().await, json!(["a", "c"]));
    let untagged = app
        .request(Method::DELETE, "/v2/alice/app/manifests/c")
        .send()
        .await
        .unwrap();
    assert_eq!(untagged.status(), StatusCode::ACCEPTED);
    assert_eq!(list().await, json!(["a"]));
    let retagged = put_manifest(&app, "alice/app", "b", OCI_MANIFEST, &second).await;
    assert_eq!(retagged.status(), StatusCode::CREATED);
    assert_eq!(list().await, json!(["a", "b"]));
}

backend_tests!(
    tag_lists_follow_every_change,
    image_manifest_round_trips_byte_for_byte,
    manifests_with_unknown_references_are_refused,
    manifests_with_hundreds_of_layers,
    malformed_and_oversized_manifests_are_refused,
    push_by_digest_checks_the_digest_and_adds_tags,
    indexes_need_their_children,
    artifacts_and_referrers,
    a_subject_may_be_pushed_after_its_referrer,
    tags_move_list_and_paginate,
    catalog_lists_repositories_with_pagination,
    deleting_tags_and_manifests,
);
