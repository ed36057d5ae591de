//! Blob reads, ranges, mounts and deletes.

use reqwest::{Method, StatusCode};

use crate::backend_tests;
use crate::harness::TestApp;
use crate::support::*;

async fn blobs_are_read_back_with_headers_and_ranges(app: TestApp) {
    let data = b"0123456789abcdef";
    let digest = push_blob(&app, "alice/app", data).await;
    let path = format!("/v2/alice/app/blobs/{digest}");

    let head = app.head(&path).await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), "16");
    assert_eq!(header(&head, "docker-content-digest"), digest);
    assert_eq!(header(&head, "content-type"), "application/octet-stream");

    let get = app.get(&path).await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(header(&get, "docker-content-digest"), digest);
    assert_eq!(get.bytes().await.unwrap().as_ref(), data);

    for (range, expected, content_range) in [
        ("bytes=2-5", &b"2345"[..], "bytes 2-5/16"),
        ("bytes=10-", &b"abcdef"[..], "bytes 10-15/16"),
        ("bytes=-3", &b"def"[..], "bytes 13-15/16"),
    ] {
        let partial = get_range(&app, &path, range).await;
        assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&partial, "content-range"), content_range);
        assert_eq!(partial.bytes().await.unwrap().as_ref(), expected);
    }
    let beyond = get_range(&app, &path, "bytes=16-").await;
    assert_eq!(header(&beyond, "content-range"), "bytes */16");
    assert_error(beyond, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
}

/// Every odd `Range` a client may send, as RFC 9110 reads it: a range that
/// cannot be served (past the end, ending before it starts, an empty
/// suffix) is 416 with the size; one that overshoots is cut to the blob;
/// several ranges and malformed values are ignored (200, the whole blob).
async fn odd_ranges_are_refused_or_ignored_never_failed(app: TestApp) {
    let data = b"0123456789abcdef";
    let digest = push_blob(&app, "alice/app", data).await;
    let path = format!("/v2/alice/app/blobs/{digest}");
    for range in [
        "bytes=500-0",
        "bytes=5-2",
        "bytes=16-20",
        "bytes=500-",
        "bytes=-0",
    ] {
        let refused = get_range(&app, &path, range).await;
        assert_eq!(header(&refused, "content-range"), "bytes */16", "{range}");
        assert_error(refused, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
    }
    for (range, expected, content_range) in [
        ("bytes=0-0", &b"0"[..], "bytes 0-0/16"),
        ("bytes=15-15", &b"f"[..], "bytes 15-15/16"),
        ("bytes=12-500", &b"cdef"[..], "bytes 12-15/16"),
        ("bytes=-100", &data[..], "bytes 0-15/16"),
        ("bytes=0-", &data[..], "bytes 0-15/16"),
    ] {
        let partial = get_range(&app, &path, range).await;
        assert_eq!(partial.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(header(&partial, "content-range"), content_range, "{range}");
        assert_eq!(partial.bytes().await.unwrap().as_ref(), expected, "{range}");
    }
    for range in [
        "bytes=0-1,4-5",
        "bytes=abc",
        "bytes=",
        "bytes=-",
        "bytes=1-2-3",
        "bytes=99999999999999999999-",
        "items=0-1",
        "0-1",
    ] {
        let whole = get_range(&app, &path, range).await;
        assert_eq!(whole.status(), StatusCode::OK, "{range}");
        assert!(whole.headers().get("content-range").is_none(), "{range}");
        assert_eq!(whole.bytes().await.unwrap().as_ref(), data, "{range}");
    }
    let empty = push_blob(&app, "alice/app", b"").await;
    let nothing = get_range(&app, &format!("/v2/alice/app/blobs/{empty}"), "bytes=0-").await;
    assert_eq!(header(&nothing, "content-range"), "bytes */0");
    assert_error(nothing, StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID").await;
}

async fn blobs_are_only_readable_through_their_repository(app: TestApp) {
    let digest = push_blob(&app, "alice/app", b"private layer").await;
    assert_eq!(
        app.head(&format!("/v2/bob/app/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    let body = assert_error(
        app.get(&format!("/v2/bob/app/blobs/{digest}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
    assert_eq!(body["errors"][0]["detail"]["digest"], digest);
    let unknown = sha256(b"never pushed");
    assert_error(
        app.get(&format!("/v2/alice/app/blobs/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;
}

async fn cross_repository_mount_links_without_copying(app: TestApp) {
    let digest = push_blob(&app, "alice/base", b"shared base layer").await;
    let mount = app
        .request(
            Method::POST,
            &format!("/v2/alice/app/blobs/uploads/?mount={digest}&from=alice/base"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(mount.status(), StatusCode::CREATED);
    assert_eq!(
        header(&mount, "location"),
        format!("/v2/alice/app/blobs/{digest}")
    );
    assert_eq!(header(&mount, "docker-content-digest"), digest);
    let get = app.get(&format!("/v2/alice/app/blobs/{digest}")).await;
    assert_eq!(get.bytes().await.unwrap().as_ref(), b"shared base layer");

    // A source without the blob: a normal upload session instead.
    let missing = sha256(b"not there");
    for query in [
        format!("mount={missing}&from=alice/base"),
        format!("mount={digest}&from=nobody/here"),
        format!("mount={missing}"),
        format!("mount={digest}&from=Not_Valid"),
    ] {
        let fallback = app
            .request(
                Method::POST,
                &format!("/v2/carol/app/blobs/uploads/?{query}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(fallback.status(), StatusCode::ACCEPTED, "{query}");
        assert!(header(&fallback, "location").starts_with("/v2/carol/app/blobs/uploads/"));
    }
    assert_eq!(
        app.head(&format!("/v2/carol/app/blobs/{digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );

    // Without `from` (OCI 1.1) the blob is mounted from wherever it is.
    let anywhere = app
        .request(
            Method::POST,
            &format!("/v2/carol/app/blobs/uploads/?mount={digest}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(anywhere.status(), StatusCode::CREATED);
    assert_eq!(
        header(&anywhere, "location"),
        format!("/v2/carol/app/blobs/{digest}")
    );
    assert_eq!(header(&anywhere, "docker-content-digest"), digest);
    let get = app.get(&format!("/v2/carol/app/blobs/{digest}")).await;
    assert_eq!(get.bytes().await.unwrap().as_ref(), b"shared base layer");
}

async fn deleting_a_blob_unlinks_it_unless_a_manifest_uses_it(app: TestApp) {
    let manifest = push_image_blobs(&app, "alice/app", "v1").await;
    let config_digest = {
        let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
        m["config"]["digest"].as_str().unwrap().to_string()
    };
    assert_eq!(
        put_manifest(&app, "alice/app", "v1", OCI_MANIFEST, &manifest)
            .await
            .status(),
        StatusCode::CREATED
    );
    let in_use = app
        .delete(&format!("/v2/alice/app/blobs/{config_digest}"))
        .await;
    let body = assert_error(in_use, StatusCode::FORBIDDEN, "DENIED").await;
    let manifest_digest = sha256(&manifest);
    assert_eq!(
        body["errors"][0]["detail"],
        serde_json::json!({"digest": config_digest, "referenced_by": [manifest_digest]})
    );
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "used by manifest {manifest_digest}: delete the manifest first"
            )),
        "{body}"
    );

    let loose = push_blob(&app, "alice/app", b"loose blob").await;
    assert_eq!(
        app.delete(&format!("/v2/alice/app/blobs/{loose}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.head(&format!("/v2/alice/app/blobs/{loose}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_error(
        app.delete(&format!("/v2/alice/app/blobs/{loose}")).await,
        StatusCode::NOT_FOUND,
        "BLOB_UNKNOWN",
    )
    .await;

    // Once the manifest is gone its blobs can be deleted, and pushed again.
    assert_eq!(
        app.delete(&format!("/v2/alice/app/manifests/{manifest_digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.delete(&format!("/v2/alice/app/blobs/{config_digest}"))
            .await
            .status(),
        StatusCode::ACCEPTED
    );
    assert_eq!(
        app.get(&format!("/v2/alice/app/blobs/{config_digest}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(push_blob(&app, "alice/app", b"loose blob").await, loose);
    assert_eq!(
        app.get(&format!("/v2/alice/app/blobs/{loose}"))
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"loose blob"
    );
}

async fn manifests_are_readable_through_the_blob_endpoint(app: TestApp) {
    let digest = push_image(&app, "alice/app", "v1").await;
    let response = app.get(&format!("/v2/alice/app/blobs/{digest}")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    assert_eq!(sha256(&body), digest);
}

backend_tests!(
    blobs_are_read_back_with_headers_and_ranges,
    odd_ranges_are_refused_or_ignored_never_failed,
    blobs_are_only_readable_through_their_repository,
    cross_repository_mount_links_without_copying,
    deleting_a_blob_unlinks_it_unless_a_manifest_uses_it,
    manifests_are_readable_through_the_blob_endpoint,
);
