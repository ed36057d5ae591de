//! Upstream `04_management_test.go`: deleting a tag, a manifest and blobs.

use reqwest::{Method, StatusCode};

use super::client::Client;
use super::fixtures::Fixtures;
use super::*;

pub async fn specs(run: &mut Run, client: &Client, fx: &Fixtures) {
    run.workflow("Content Management");
    let default_tag_name = "tagtest0";
    let mut tag_to_delete = String::new();
    let mut num_tags = 0;
    let mut blob_delete_allowed = true;
    let tags_path = "/v2/<name>/tags/list";

    run.context("Setup");
    run.spec("Populate registry with test config blob", async {
        assert_success_or(&post_then_put(client, &fx.configs[3].content).await, &[]);
    })
    .await;
    run.spec("Populate registry with test layer", async {
        assert_success_or(&post_then_put(client, &fx.layer.content).await, &[]);
    })
    .await;
    run.spec("Populate registry with test tag", async {
        tag_to_delete = default_tag_name.into();
        let reply = put_manifest(
            client,
            &tag_to_delete,
            OCI_MANIFEST,
            &fx.manifests[3].content,
        )
        .await;
        assert_success_or(&reply, &[]);
    })
    .await;
    run.spec(
        "Check how many tags there are before anything gets deleted",
        async {
            let reply = client.send(client.request(Method::GET, tags_path)).await;
            assert_status(&reply, StatusCode::OK);
            num_tags = reply.json::<TagList>().tags.len();
        },
    )
    .await;

    run.context("Manifest delete");
    run.spec(
        "DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)",
        async {
            let request = client
                .request(Method::DELETE, "/v2/<name>/manifests/<reference>")
                .reference(&tag_to_delete);
            let reply = client.send(request).await;
            assert_status_in(
                &reply,
                &[
                    StatusCode::BAD_REQUEST,
                    StatusCode::ACCEPTED,
                    StatusCode::METHOD_NOT_ALLOWED,
                ],
            );
            if reply.status == StatusCode::BAD_REQUEST {
                let errors = reply.errors().unwrap_or_else(|e| panic!("{e}: {reply:?}"));
                assert_eq!(errors[0].code, "UNSUPPORTED", "{reply:?}");
            }
            // Berth: tags may be deleted.
            assert_status(&reply, StatusCode::ACCEPTED);
        },
    )
    .await;
    run.spec(
        "DELETE request to manifest (digest) should yield 202 response unless already deleted",
        async {
            let reply = delete(
                client,
                "/v2/<name>/manifests/<digest>",
                &fx.manifests[3].digest,
            )
            .await;
            // In the case that the previous request was accepted, this may or may not fail (which is ok).
            assert_status_in(&reply, &[StatusCode::ACCEPTED, StatusCode::NOT_FOUND]);
        },
    )
    .await;
    run.spec(
        "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed",
        async {
            let request = client
                .request(Method::GET, "/v2/<name>/manifests/<digest>")
                .digest(&fx.manifests[3].digest);
            let reply = client.send(request).await;
            assert_status_in(&reply, &[StatusCode::NOT_FOUND, StatusCode::OK]);
            // Berth: manifests may be deleted.
            assert_status(&reply, StatusCode::NOT_FOUND);
        },
    )
    .await;
    run.spec(
        "GET request to tags list should reflect manifest deletion",
        async {
            let reply = client.send(client.request(Method::GET, tags_path)).await;
            assert_status(&reply, StatusCode::OK);
            let tags = reply.json::<TagList>().tags;
            assert!(tags.len() < num_tags, "{tags:?}, {num_tags} before");
        },
    )
    .await;

    run.context("Blob delete");
    run.spec(
        "DELETE request to blob URL should yield 202 response",
        async {
            let allowed = [
                StatusCode::ACCEPTED,
                StatusCode::NOT_FOUND,
                StatusCode::METHOD_NOT_ALLOWED,
            ];
            let config = delete(client, "/v2/<name>/blobs/<digest>", &fx.configs[3].digest).await;
            assert_status_in(&config, &allowed);
            let layer = delete(client, "/v2/<name>/blobs/<digest>", &fx.layer.digest).await;
            assert_status_in(&layer, &allowed);
            if layer.status == StatusCode::METHOD_NOT_ALLOWED {
                blob_delete_allowed = false;
            }
            // Berth: blobs no manifest uses may be deleted.
            assert_status(&config, StatusCode::ACCEPTED);
            assert_status(&layer, StatusCode::ACCEPTED);
        },
    )
    .await;
    run.spec(
        "GET request to deleted blob URL should yield 404 response",
        async {
            assert!(blob_delete_allowed, "blob deletes are refused");
            let request = client
                .request(Method::GET, "/v2/<name>/blobs/<digest>")
                .digest(&fx.configs[3].digest);
            assert_status(&client.send(request).await, StatusCode::NOT_FOUND);
        },
    )
    .await;

    // Upstream's Teardown is empty.
}
