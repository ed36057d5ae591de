//! Upstream `03_discovery_test.go`: tag lists with `n` and `last`, and
//! referrers, filtered by `artifactType` or not, of a subject pushed before
//! or after them or never.

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::client::{Client, Reply};
use super::fixtures::{Fixtures, TestBlob};
use super::*;

#[derive(Deserialize)]
struct Index {
    manifests: Vec<IndexEntry>,
}

#[derive(Deserialize)]
struct IndexEntry {
    digest: String,
    #[serde(default)]
    annotations: std::collections::HashMap<String, String>,
}

/// Upstream `getTagList`: the tags, or none when the body is not a tag list.
fn tag_list(reply: &Reply) -> Vec<String> {
    serde_json::from_slice::<TagList>(&reply.body)
        .map(|list| list.tags)
        .unwrap_or_default()
}

/// Asserts a referrers response: 200, an OCI index, and its entries.
#[track_caller]
fn referrers(reply: &Reply) -> Vec<IndexEntry> {
    assert_status(reply, StatusCode::OK);
    assert_eq!(reply.header("content-type"), OCI_INDEX, "{reply:?}");
    reply.json::<Index>().manifests
}

/// Each entry carries exactly the annotation its manifest was pushed with.
#[track_caller]
fn assert_annotations(entries: &[IndexEntry], fx: &Fixtures) {
    for entry in entries {
        assert_eq!(
            entry.annotations.len(),
            1,
            "annotations of {}",
            entry.digest
        );
        assert_eq!(
            entry.annotations.get(fx.annotation_key),
            fx.annotation_values.get(&entry.digest),
            "annotation of {}",
            entry.digest
        );
    }
}

async fn push_blob(client: &Client, content: &[u8]) {
    assert_success_or(&post_then_put(client, content).await, &[]);
}

/// Pushes a manifest with a subject by digest; `OCI-Subject` must name it.
async fn push_referrer(client: &Client, media_type: &str, manifest: &TestBlob, subject: &str) {
    let reply = put_manifest(client, &manifest.digest, media_type, &manifest.content).await;
    assert_success_or(&reply, &[]);
    assert_eq!(reply.header("oci-subject"), subject, "{reply:?}");
}

pub async fn specs(run: &mut Run, client: &Client, fx: &Fixtures) {
    run.workflow("Content Discovery");
    let mut num_tags = 4;
    let mut tag_list_seen: Vec<String> = Vec::new();
    let tags_path = "/v2/<name>/tags/list";
    let referrers_path = "/v2/<name>/referrers/<digest>";

    run.context("Setup");
    run.spec("Populate registry with test blob", async {
        assert_success_or(&post_then_put(client, &fx.configs[2].content).await, &[]);
    })
    .await;
    run.spec("Populate registry with test layer", async {
        assert_success_or(&post_then_put(client, &fx.layer.content).await, &[]);
    })
    .await;
    run.spec("Populate registry with test tags", async {
        for i in 0..num_tags {
            let tag = format!("test{i}");
            let reply = put_manifest(client, &tag, OCI_MANIFEST, &fx.manifests[2].content).await;
            assert_success_or(&reply, &[]);
            tag_list_seen.push(tag);
        }
        tag_list_seen = tag_list(&client.send(client.request(Method::GET, tags_path)).await);
    })
    .await;
    run.spec("References setup", async {
        assert_eq!(
            fx.empty_json.digest,
            "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
        let subject = &fx.manifests[4].digest;
        push_blob(client, &fx.empty_json.content).await;
        // Referrers pushed before their subject.
        push_blob(client, &fx.ref_blob_a.content).await;
        push_referrer(client, OCI_MANIFEST, &fx.refs_a_config, subject).await;
        push_referrer(client, OCI_MANIFEST, &fx.refs_a_layer, subject).await;
        push_referrer(client, OCI_INDEX, &fx.refs_index, subject).await;
        // The subject.
        push_blob(client, &fx.configs[4].content).await;
        push_blob(client, &fx.layer.content).await;
        let reply = put_manifest(
            client,
            TEST_TAG_NAME,
            OCI_MANIFEST,
            &fx.manifests[4].content,
        )
        .await;
        assert_success_or(&reply, &[]);
        // Referrers pushed after it, and one whose subject is never pushed.
        push_blob(client, &fx.ref_blob_b.content).await;
        push_referrer(client, OCI_MANIFEST, &fx.refs_b_config, subject).await;
        push_referrer(client, OCI_MANIFEST, &fx.refs_b_layer, subject).await;
        push_referrer(
            client,
            OCI_MANIFEST,
            &fx.refs_c_layer,
            &fx.manifests[3].digest,
        )
        .await;
    })
    .await;

    run.context("Test content discovery endpoints (listing tags)");
    run.spec(
        "GET request to list tags should yield 200 response",
        async {
            let reply = client.send(client.request(Method::GET, tags_path)).await;
            assert_status(&reply, StatusCode::OK);
            tag_list_seen = tag_list(&reply);
            num_tags = tag_list_seen.len();
        },
    )
    .await;
    run.spec(
        "GET number of tags should be limitable by `n` query parameter",
        async {
            let n = num_tags / 2;
            let request = client
                .request(Method::GET, tags_path)
                .query("n", &n.to_string());
            let reply = client.send(request).await;
            assert_status(&reply, StatusCode::OK);
            tag_list_seen = tag_list(&reply);
            assert_eq!(tag_list_seen.len(), n, "{reply:?}");
        },
    )
    .await;
    run.spec("GET start of tag is set by `last` query parameter", async {
        let n = num_tags / 2;
        let first = client
            .send(
                client
                    .request(Method::GET, tags_path)
                    .query("n", &n.to_string()),
            )
            .await;
        tag_list_seen = tag_list(&first);
        let last = tag_list_seen
            .get(n.wrapping_sub(1))
            .cloned()
            .unwrap_or_else(|| panic!("the first page has no tag {n}: {first:?}"));
        let request = client
            .request(Method::GET, tags_path)
            .query("n", &n.to_string())
            .query("last", &last);
        let reply = client.send(request).await;
        assert_status(&reply, StatusCode::OK);
        // Upstream's checks, which look at the first page only.
        assert!(tag_list_seen.len() <= n);
        assert!(tag_list_seen.contains(&last));
        // Berth: the second page holds what follows `last`, at most `n` of it.
        let next = tag_list(&reply);
        assert!(next.len() <= n && !next.is_empty(), "{reply:?}");
        assert!(next.iter().all(|tag| *tag > last), "{next:?} after {last}");
    })
    .await;

    run.context("Test content discovery endpoints (listing references)");
    run.spec(
        "GET request to nonexistent blob should result in empty 200 response",
        async {
            let request = client
                .request(Method::GET, referrers_path)
                .digest(&fx.dummy_digest);
            assert!(referrers(&client.send(request).await).is_empty());
        },
    )
    .await;
    run.spec("GET request to existing blob should yield 200", async {
        let request = client
            .request(Method::GET, referrers_path)
            .digest(&fx.manifests[4].digest);
        let entries = referrers(&client.send(request).await);
        assert_eq!(entries.len(), 5);
        assert_ne!(entries[0].digest, entries[1].digest);
        assert_annotations(&entries, fx);
    })
    .await;
    run.spec(
        "GET request to existing blob with filter should yield 200",
        async {
            let request = client
                .request(Method::GET, referrers_path)
                .digest(&fx.manifests[4].digest)
                .query("artifactType", fx.artifact_type_a);
            let reply = client.send(request).await;
            let entries = referrers(&reply);
            // Berth: the filter is applied (upstream only warns otherwise).
            assert_eq!(
                reply.header("oci-filters-applied"),
                "artifactType",
                "{reply:?}"
            );
            assert_eq!(entries.len(), 2);
            assert_annotations(&entries, fx);
        },
    )
    .await;
    run.spec("GET request to missing manifest should yield 200", async {
        let request = client
            .request(Method::GET, referrers_path)
            .digest(&fx.manifests[3].digest);
        let entries = referrers(&client.send(request).await);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].digest, fx.refs_c_layer.digest);
    })
    .await;

    run.context("Teardown");
    let manifest_path = "/v2/<name>/manifests/<digest>";
    run.spec("Delete created manifest & associated tags", async {
        for reference in [
            &fx.refs_index.digest,
            &fx.manifests[2].digest,
            &fx.manifests[4].digest,
            &fx.refs_a_config.digest,
            &fx.refs_a_layer.digest,
            &TEST_TAG_NAME.to_string(),
            &fx.refs_b_config.digest,
            &fx.refs_b_layer.digest,
            &fx.refs_c_layer.digest,
        ] {
            let reply = delete(client, manifest_path, reference).await;
            assert_success_or(
                &reply,
                &[StatusCode::METHOD_NOT_ALLOWED, StatusCode::NOT_FOUND],
            );
        }
    })
    .await;
    for (digest, name) in [
        (&fx.configs[2].digest, "Delete config blob created in tests"),
        (&fx.layer.digest, "Delete layer blob created in setup"),
    ] {
        run.spec(name, async {
            let reply = delete(client, "/v2/<name>/blobs/<digest>", digest).await;
            assert_success_or(&reply, &[StatusCode::METHOD_NOT_ALLOWED]);
        })
        .await;
    }
    run.spec("References teardown", async {
        let tolerated = [StatusCode::METHOD_NOT_ALLOWED, StatusCode::NOT_FOUND];
        for manifest in [
            &fx.refs_index,
            &fx.refs_a_config,
            &fx.refs_a_layer,
            &fx.manifests[4],
            &fx.refs_b_config,
            &fx.refs_b_layer,
        ] {
            let reply = delete(client, manifest_path, &manifest.digest).await;
            assert_success_or(&reply, &tolerated);
        }
        for blob in [
            &fx.configs[4],
            &fx.ref_blob_a,
            &fx.ref_blob_b,
            &fx.empty_json,
        ] {
            let reply = delete(client, "/v2/<name>/blobs/<digest>", &blob.digest).await;
            assert_success_or(&reply, &tolerated);
        }
    })
    .await;
}
