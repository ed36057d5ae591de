//! Upstream `02_push_test.go`: streamed, monolithic and chunked uploads,
//! cross-repository mounts, manifest uploads.

use reqwest::{Method, StatusCode};

use super::client::{Client, Reply};
use super::fixtures::{ChunkedBlob, Fixtures};
use super::*;

pub async fn specs(run: &mut Run, client: &Client, fx: &mut Fixtures, config: &Config) {
    run.workflow("Push");
    let mut last: Option<Reply> = None;
    let mut previous: Option<Reply> = None;
    let mut empty_layer_manifest_pushed = false;
    let start_upload = || client.request(Method::POST, "/v2/<name>/blobs/uploads/");
    let uploads = "/v2/<name>/blobs/uploads/";
    let blob_path = "/v2/<name>/blobs/<digest>";

    // Upstream's Setup is empty.

    run.context("Blob Upload Streamed");
    run.spec(
        "PATCH request with blob in body should yield 202 response",
        async {
            let session = client.send(start_upload()).await;
            assert!(!session.header("location").is_empty(), "{session:?}");
            let request = client
                .request(Method::PATCH, &session.relative_location())
                .header("content-type", OCTET_STREAM)
                .body(&fx.blob_a.content);
            let reply = client.send(request).await;
            assert_status(&reply, StatusCode::ACCEPTED);
            last = Some(reply);
        },
    )
    .await;
    run.spec(
        "PUT request to session URL with digest should yield 201 response",
        async {
            let session = last.as_ref().expect("no PATCH response");
            // Upstream sets `Content-Length` to the blob's size yet sends no
            // body; Go sends `Content-Length: 0` regardless.
            let request = client
                .request(Method::PUT, &session.relative_location())
                .query("digest", &fx.blob_a.digest)
                .header("content-type", OCTET_STREAM);
            let reply = client.send(request).await;
            assert_status(&reply, StatusCode::CREATED);
            assert!(!reply.header("location").is_empty(), "{reply:?}");
        },
    )
    .await;

    run.context("Blob Upload Monolithic");
    run.spec(
        "GET nonexistent blob should result in 404 response",
        async {
            let request = client
                .request(Method::GET, blob_path)
                .digest(&fx.dummy_digest);
            assert_status(&client.send(request).await, StatusCode::NOT_FOUND);
        },
    )
    .await;
    run.spec(
        "POST request with digest and blob should yield a 201 or 202",
        async {
            let request = start_upload()
                .header("content-type", OCTET_STREAM)
                .query("digest", &fx.configs[1].digest)
                .body(&fx.configs[1].content);
            let reply = client.send(request).await;
            assert!(!reply.header("location").is_empty(), "{reply:?}");
            assert_status_in(&reply, &[StatusCode::CREATED, StatusCode::ACCEPTED]);
            let status = reply.status;
            last = Some(reply);
            // Berth: the blob is stored at once.
            assert_eq!(status, StatusCode::CREATED);
        },
    )
    .await;
    run.spec(
        "GET request to blob URL from prior request should yield 200 or 404 based on response code",
        async {
            let posted = last.as_ref().expect("no POST response");
            let request = client
                .request(Method::GET, blob_path)
                .digest(&fx.configs[1].digest);
            let reply = client.send(request).await;
            if posted.status == StatusCode::ACCEPTED {
                assert_status(&reply, StatusCode::NOT_FOUND);
            } else {
                assert_status(&reply, StatusCode::OK);
            }
        },
    )
    .await;
    run.spec("POST request should yield a session ID", async {
        let reply = client.send(start_upload()).await;
        assert_status(&reply, StatusCode::ACCEPTED);
        last = Some(reply);
    })
    .await;
    run.spec("PUT upload of a blob should yield a 201 Response", async {
        let session = last.as_ref().expect("no POST response");
        let request = client
            .request(Method::PUT, &session.relative_location())
            .header("content-type", OCTET_STREAM)
            .query("digest", &fx.configs[1].digest)
            .body(&fx.configs[1].content);
        let reply = client.send(request).await;
        assert!(!reply.header("location").is_empty(), "{reply:?}");
        assert_status(&reply, StatusCode::CREATED);
    })
    .await;
    run.spec(
        "GET request to existing blob should yield 200 response",
        async {
            let request = client
                .request(Method::GET, blob_path)
                .digest(&fx.configs[1].digest);
            assert_status(&client.send(request).await, StatusCode::OK);
        },
    )
    .await;
    run.spec(
        "PUT upload of a layer blob should yield a 201 Response",
        async {
            let session = client.send(start_upload()).await;
            let request = client
                .request(Method::PUT, &session.relative_location())
                .header("content-type", OCTET_STREAM)
                .query("digest", &fx.layer.digest)
                .body(&fx.layer.content);
            let reply = client.send(request).await;
            assert!(!reply.header("location").is_empty(), "{reply:?}");
            assert_status(&reply, StatusCode::CREATED);
        },
    )
    .await;
    run.spec(
        "GET request to existing layer should yield 200 response",
        async {
            let request = client
                .request(Method::GET, blob_path)
                .digest(&fx.layer.digest);
            assert_status(&client.send(request).await, StatusCode::OK);
        },
    )
    .await;

    run.context("Blob Upload Chunked");
    run.spec("Out-of-order blob upload should return 416", async {
        let session = client.send(start_upload()).await;
        assert!(!session.header("location").is_empty(), "{session:?}");
        // A store with a minimum chunk size (S3: 5 MiB) gets chunks that big.
        let min_length = session.header("oci-chunk-min-length");
        if !min_length.is_empty() {
            let min: usize = min_length
                .parse()
                .expect("OCI-Chunk-Min-Length is a number");
            if min > fx.chunked.chunk1.len() {
                fx.chunked = ChunkedBlob::new(min * 2 - 2, fx.seed.wrapping_add(2));
            }
        }
        let request = client
            .request(Method::PATCH, &session.relative_location())
            .header("content-type", OCTET_STREAM)
            .header("content-range", &fx.chunked.chunk2_range)
            .body(&fx.chunked.chunk2);
        assert_status(
            &client.send(request).await,
            StatusCode::RANGE_NOT_SATISFIABLE,
        );
    })
    .await;
    run.spec("PATCH request with first chunk should return 202", async {
        let session = client.send(start_upload()).await;
        assert!(!session.header("location").is_empty(), "{session:?}");
        let request = client
            .request(Method::PATCH, &session.relative_location())
            .header("content-type", OCTET_STREAM)
            .header("content-range", &fx.chunked.chunk1_range)
            .body(&fx.chunked.chunk1);
        previous = Some(session);
        let reply = client.send(request).await;
        assert_status(&reply, StatusCode::ACCEPTED);
        assert_eq!(reply.header("range"), fx.chunked.chunk1_range, "{reply:?}");
        last = Some(reply);
    })
    .await;
    run.spec("Retry previous blob chunk should return 416", async {
        let session = previous.as_ref().expect("no session");
        let request = client
            .request(Method::PATCH, &session.relative_location())
            .header("content-type", OCTET_STREAM)
            .header("content-range", &fx.chunked.chunk1_range)
            .body(&fx.chunked.chunk1);
        assert_status(
            &client.send(request).await,
            StatusCode::RANGE_NOT_SATISFIABLE,
        );
    })
    .await;
    run.spec(
        "Get on stale blob upload should return 204 with a range and location",
        async {
            let session = previous.as_ref().expect("no session");
            let request = client.request(Method::GET, &session.relative_location());
            let reply = client.send(request).await;
            assert_status(&reply, StatusCode::NO_CONTENT);
            assert!(!reply.header("location").is_empty(), "{reply:?}");
            assert_eq!(reply.header("range"), fx.chunked.chunk1_range, "{reply:?}");
            last = Some(reply);
        },
    )
    .await;
    run.spec("PATCH request with second chunk should return 202", async {
        let status = last.as_ref().expect("no status response");
        let request = client
            .request(Method::PATCH, &status.relative_location())
            .header("content-range", &fx.chunked.chunk2_range)
            .header("content-type", OCTET_STREAM)
            .body(&fx.chunked.chunk2);
        let reply = client.send(request).await;
        assert_status(&reply, StatusCode::ACCEPTED);
        assert!(!reply.header("location").is_empty(), "{reply:?}");
        last = Some(reply);
    })
    .await;
    run.spec("PUT request with digest should return 201", async {
        let chunk = last.as_ref().expect("no PATCH response");
        let request = client
            .request(Method::PUT, &chunk.relative_location())
            .header("content-type", OCTET_STREAM)
            .query("digest", &fx.chunked.blob.digest);
        let reply = client.send(request).await;
        assert_status(&reply, StatusCode::CREATED);
        assert!(!reply.header("location").is_empty(), "{reply:?}");
    })
    .await;

    run.context("Cross-Repository Blob Mount");
    let crossmount = config.crossmount_namespace.as_str();
    run.spec(
        "Cross-mounting of a blob without the from argument should yield session id",
        async {
            let request = start_upload()
                .name(crossmount)
                .query("mount", &fx.dummy_digest);
            let reply = client.send(request).await;
            assert_status(&reply, StatusCode::ACCEPTED);
            assert!(!reply.absolute_location().is_empty(), "{reply:?}");
        },
    )
    .await;
    run.spec(
        "POST request to mount another repository's blob should return 201 or 202",
        async {
            let request = start_upload()
                .name(crossmount)
                .query("mount", &fx.blob_a.digest)
                .query("from", &config.namespace);
            let reply = client.send(request).await;
            assert_status_in(&reply, &[StatusCode::CREATED, StatusCode::ACCEPTED]);
            let status = reply.status;
            last = Some(reply);
            // Berth: the caller may pull `from`, so the blob is mounted.
            assert_eq!(status, StatusCode::CREATED, "the blob was not mounted");
        },
    )
    .await;
    let mounted = last
        .as_ref()
        .is_some_and(|r| r.status == StatusCode::CREATED);
    run.spec(
        "GET request to test digest within cross-mount namespace should return 200",
        async {
            assert!(mounted, "the mount above was not answered 201");
            let mount = last.as_ref().unwrap();
            assert_eq!(
                mount.relative_location(),
                format!("/v2/{crossmount}/blobs/{}", fx.blob_a.digest),
                "{mount:?}"
            );
            let request = client.request(Method::GET, &mount.relative_location());
            assert_status(&client.send(request).await, StatusCode::OK);
        },
    )
    .await;
    run.spec(
        "Cross-mounting of nonexistent blob should yield session id",
        async {
            // Upstream checks the mount above when it was answered 202; Berth
            // answered 201, so this mounts a blob `from` does not hold.
            let session = if mounted {
                let request = start_upload()
                    .name(crossmount)
                    .query("mount", &fx.dummy_digest)
                    .query("from", &config.namespace);
                let reply = client.send(request).await;
                assert_status(&reply, StatusCode::ACCEPTED);
                reply
            } else {
                last.take().expect("no mount response")
            };
            let location = session.relative_location();
            assert!(
                location.starts_with(&format!("/v2/{crossmount}/blobs/uploads/")),
                "{session:?}"
            );
        },
    )
    .await;
    let automatic = config.automatic_crossmount.unwrap_or(false);
    run.spec(
        "Cross-mounting without from, and automatic content discovery enabled should return a 201",
        async {
            // Upstream runs this only after a 201 above; here it runs
            // regardless, so that it fails for its own reason only.
            assert!(automatic, "Berth discovers mounts without `from`");
            let request = start_upload()
                .name(crossmount)
                .query("mount", &fx.blob_a.digest);
            assert_status(&client.send(request).await, StatusCode::CREATED);
        },
    )
    .await;
    // Berth: with discovery on, a caller who may read no repository holding
    // the blob is where it finds nothing (see the module doc of the suite).
    if let Some((stranger, own)) = &config.stranger {
        run.spec(
            "Cross-mounting without from, and automatic content discovery disabled should return a 202",
            async {
                let request = stranger
                    .request(Method::POST, uploads)
                    .name(own)
                    .query("mount", &fx.blob_a.digest);
                assert_status(&stranger.send(request).await, StatusCode::ACCEPTED);
            },
        )
        .await;
    }

    run.context("Manifest Upload");
    run.spec("GET nonexistent manifest should return 404", async {
        let request = client
            .request(Method::GET, "/v2/<name>/manifests/<reference>")
            .reference(fx.nonexistent_manifest);
        assert_status(&client.send(request).await, StatusCode::NOT_FOUND);
    })
    .await;
    run.spec("PUT should accept a manifest upload", async {
        for i in 0..4 {
            let reply = put_manifest(
                client,
                &format!("test{i}"),
                OCI_MANIFEST,
                &fx.manifests[1].content,
            )
            .await;
            assert!(!reply.header("location").is_empty(), "{reply:?}");
            assert_status(&reply, StatusCode::CREATED);
        }
    })
    .await;
    run.spec(
        "Registry should accept a manifest upload with no layers",
        async {
            let reply = put_manifest(
                client,
                EMPTY_LAYER_TEST_TAG,
                OCI_MANIFEST,
                &fx.empty_layer_manifest.content,
            )
            .await;
            if reply.status == StatusCode::CREATED {
                assert!(!reply.header("location").is_empty(), "{reply:?}");
                empty_layer_manifest_pushed = true;
            }
            // Berth: accepted (upstream only warns otherwise).
            assert_status(&reply, StatusCode::CREATED);
        },
    )
    .await;
    run.spec(
        "GET request to manifest URL (digest) should yield 200 response",
        async {
            let request = client
                .request(Method::GET, "/v2/<name>/manifests/<digest>")
                .digest(&fx.manifests[1].digest)
                .header("accept", OCI_MANIFEST);
            assert_status(&client.send(request).await, StatusCode::OK);
        },
    )
    .await;

    run.context("Teardown");
    run.spec("Delete manifest created in tests", async {
        let reply = delete(
            client,
            "/v2/<name>/manifests/<digest>",
            &fx.manifests[1].digest,
        )
        .await;
        assert_success_or(&reply, &[StatusCode::METHOD_NOT_ALLOWED]);
        if empty_layer_manifest_pushed {
            let request = client
                .request(Method::DELETE, "/v2/<name>/manifests/<reference>")
                .reference(&fx.empty_layer_manifest.digest);
            let reply = client.send(request).await;
            assert_success_or(&reply, &[StatusCode::METHOD_NOT_ALLOWED]);
        }
    })
    .await;
    for (digest, name) in [
        (&fx.configs[1].digest, "Delete config blob created in tests"),
        (&fx.layer.digest, "Delete layer blob created in setup"),
    ] {
        run.spec(name, async {
            let reply = delete(client, blob_path, digest).await;
            assert_success_or(
                &reply,
                &[StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED],
            );
        })
        .await;
    }
}
