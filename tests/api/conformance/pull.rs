//! Upstream `01_pull_test.go`: blobs and manifests by digest and tag, what
//! is absent, and an error body.

use reqwest::{Method, StatusCode};

use super::client::Client;
use super::fixtures::Fixtures;
use super::*;

pub async fn specs(run: &mut Run, client: &Client, fx: &Fixtures) {
    run.workflow("Pull");
    let mut tag = String::new();

    run.context("Setup");
    for config in &fx.configs[..2] {
        run.spec("Populate registry with test blob", async {
            assert_success_or(&post_then_put(client, &config.content).await, &[]);
        })
        .await;
    }
    run.spec("Populate registry with test layer", async {
        assert_success_or(&post_then_put(client, &fx.layer.content).await, &[]);
    })
    .await;
    run.spec("Populate registry with test manifest", async {
        tag = TEST_TAG_NAME.into();
        let reply = put_manifest(client, &tag, OCI_MANIFEST, &fx.manifests[0].content).await;
        assert_success_or(&reply, &[]);
    })
    .await;
    run.spec("Populate registry with test manifest", async {
        let manifest = &fx.manifests[1];
        let reply = put_manifest(client, &manifest.digest, OCI_MANIFEST, &manifest.content).await;
        assert_success_or(&reply, &[]);
    })
    .await;

    run.context("Pull blobs");
    run.spec(
        "HEAD request to nonexistent blob should result in 404 response",
        async {
            let request = client
                .request(Method::HEAD, "/v2/<name>/blobs/<digest>")
                .digest(&fx.dummy_digest);
            assert_status(&client.send(request).await, StatusCode::NOT_FOUND);
        },
    )
    .await;
    run.spec("HEAD request to existing blob should yield 200", async {
        let request = client
            .request(Method::HEAD, "/v2/<name>/blobs/<digest>")
            .digest(&fx.configs[0].digest);
        let reply = client.send(request).await;
        assert_status(&reply, StatusCode::OK);
        assert_digest_if_sent(&reply, &fx.configs[0].digest);
    })
    .await;
    run.spec(
        "GET nonexistent blob should result in 404 response",
        async {
            let request = client
                .request(Method::GET, "/v2/<name>/blobs/<digest>")
                .digest(&fx.dummy_digest);
            assert_status(&client.send(request).await, StatusCode::NOT_FOUND);
        },
    )
    .await;
    run.spec("GET request to existing blob URL should yield 200", async {
        let request = client
            .request(Method::GET, "/v2/<name>/blobs/<digest>")
            .digest(&fx.configs[0].digest);
        assert_status(&client.send(request).await, StatusCode::OK);
    })
    .await;

    run.context("Pull manifests");
    run.spec(
        "HEAD request to nonexistent manifest should return 404",
        async {
            let request = client
                .request(Method::HEAD, "/v2/<name>/manifests/<reference>")
                .reference(fx.nonexistent_manifest);
            assert_status(&client.send(request).await, StatusCode::NOT_FOUND);
        },
    )
    .await;
    for (i, name) in [
        "HEAD request to manifest[0] path (digest) should yield 200 response",
        "HEAD request to manifest[1] path (digest) should yield 200 response",
    ]
    .into_iter()
    .enumerate()
    {
        run.spec(name, async {
            let reply = get_manifest(client, Method::HEAD, &fx.manifests[i].digest).await;
            assert_status(&reply, StatusCode::OK);
            assert_digest_if_sent(&reply, &fx.manifests[i].digest);
        })
        .await;
    }
    run.spec(
        "HEAD request to manifest path (tag) should yield 200 response",
        async {
            assert!(!tag.is_empty(), "no tag was pushed in the setup");
            let reply = get_manifest(client, Method::HEAD, &tag).await;
            assert_status(&reply, StatusCode::OK);
            assert_digest_if_sent(&reply, &fx.manifests[0].digest);
        },
    )
    .await;
    run.spec("GET nonexistent manifest should return 404", async {
        let request = client
            .request(Method::GET, "/v2/<name>/manifests/<reference>")
            .reference(fx.nonexistent_manifest);
        assert_status(&client.send(request).await, StatusCode::NOT_FOUND);
    })
    .await;
    for (i, name) in [
        "GET request to manifest[0] path (digest) should yield 200 response",
        "GET request to manifest[1] path (digest) should yield 200 response",
    ]
    .into_iter()
    .enumerate()
    {
        run.spec(name, async {
            let reply = get_manifest(client, Method::GET, &fx.manifests[i].digest).await;
            assert_status(&reply, StatusCode::OK);
        })
        .await;
    }
    run.spec(
        "GET request to manifest path (tag) should yield 200 response",
        async {
            assert!(!tag.is_empty(), "no tag was pushed in the setup");
            let reply = get_manifest(client, Method::GET, &tag).await;
            assert_status(&reply, StatusCode::OK);
        },
    )
    .await;

    run.context("Error codes");
    run.spec(
        "400 response body should contain OCI-conforming JSON message",
        async {
            let request = client
                .request(Method::GET, "/v2/<name>/manifests/<reference>")
                .reference("sha256:totallywrong")
                .header("content-type", OCI_MANIFEST)
                .body(fx.invalid_manifest_content);
            let reply = client.send(request).await;
            assert_status_in(&reply, &[StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND]);
            if reply.status == StatusCode::BAD_REQUEST {
                let errors = reply.errors().unwrap_or_else(|e| panic!("{e}: {reply:?}"));
                assert!(
                    ERROR_CODES.contains(&errors[0].code.as_str()),
                    "not a code of the spec: {reply:?}"
                );
            }
        },
    )
    .await;

    run.context("Teardown");
    for (i, name) in [
        "Delete manifest[0] created in setup",
        "Delete manifest[1] created in setup",
    ]
    .into_iter()
    .enumerate()
    {
        run.spec(name, async {
            let reply = delete(
                client,
                "/v2/<name>/manifests/<digest>",
                &fx.manifests[i].digest,
            )
            .await;
            assert_success_or(&reply, &[StatusCode::METHOD_NOT_ALLOWED]);
        })
        .await;
    }
    for (digest, name) in [
        (
            &fx.configs[0].digest,
            "Delete config[0] blob created in setup",
        ),
        (
            &fx.configs[1].digest,
            "Delete config[1] blob created in setup",
        ),
        (&fx.layer.digest, "Delete layer blob created in setup"),
    ] {
        run.spec(name, async {
            let reply = delete(client, "/v2/<name>/blobs/<digest>", digest).await;
            assert_success_or(
                &reply,
                &[StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED],
            );
        })
        .await;
    }
}

/// The codes the spec defines (upstream `errorCodes`).
const ERROR_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "MANIFEST_UNVERIFIED",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "TAG_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
];

/// A manifest by tag or digest, asking for the OCI manifest type.
async fn get_manifest(client: &Client, method: Method, reference: &str) -> client::Reply {
    let request = client
        .request(method, "/v2/<name>/manifests/<reference>")
        .reference(reference)
        .header("accept", OCI_MANIFEST);
    client.send(request).await
}

/// Upstream checks `Docker-Content-Digest` only where it is sent.
#[track_caller]
fn assert_digest_if_sent(reply: &client::Reply, digest: &str) {
    let sent = reply.header("docker-content-digest");
    if !sent.is_empty() {
        assert_eq!(sent, digest, "{reply:?}");
    }
}
