//! Immutable tags: once pushed, a tag matching a rule of its repository or
//! namespace cannot be moved or deleted (403 `DENIED`); other tags move freely.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::TestApp;
use crate::secured_backend_tests;
use crate::support::*;

fn manifest(seed: &str) -> Vec<u8> {
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", b"tag rules config"),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", b"tag rules layer")],
        "annotations": {"seed": seed},
    })
    .to_string()
    .into_bytes()
}

async fn immutable_tags_cannot_move_or_go(mut app: TestApp) {
    create_user(&app, "alice", "alice-password").await;
    create_user(&app, "bob", "bob-password").await;
    let (client, base) = (app.client.clone(), app.base.clone());
    let rule = |user: (&'static str, &'static str), method: Method, path: &str| {
        client
            .request(
                method,
                format!("{base}/api/v1/immutable-tags/{path}?pattern=v*"),
            )
            .basic_auth(user.0, Some(user.1))
            .send()
    };
    let refused = rule(("bob", "bob-password"), Method::PUT, "alice/app")
        .await
        .unwrap();
    assert_error(refused, StatusCode::FORBIDDEN, "DENIED").await;
    let added = rule(("alice", "alice-password"), Method::PUT, "alice")
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::NO_CONTENT);
    let listed = app
        .client
        .get(app.url("/api/v1/immutable-tags"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        listed["immutable_tags"],
        json!([{"path": "alice", "pattern": "v*"}])
    );
    // Another user's rules are not theirs to read: they name repositories.
    let strangers = app
        .client
        .get(app.url("/api/v1/immutable-tags"))
        .basic_auth("bob", Some("bob-password"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(strangers["immutable_tags"], json!([]));

    app.bearer = Some(
        token(
            &app,
            Some(("alice", "alice-password")),
            &["repository:alice/app:pull,push,delete"],
        )
        .await,
    );
    push_blob(&app, "alice/app", b"tag rules config").await;
    push_blob(&app, "alice/app", b"tag rules layer").await;
    let (first, second) = (manifest("1"), manifest("2"));
    for tag in ["v1", "latest"] {
        assert_eq!(
            put_manifest(&app, "alice/app", tag, OCI_MANIFEST, &first)
                .await
                .status(),
            StatusCode::CREATED
        );
    }
    // Pushing the same content again is not a move.
    assert_eq!(
        put_manifest(&app, "alice/app", "v1", OCI_MANIFEST, &first)
            .await
            .status(),
        StatusCode::CREATED
    );
    let moved = put_manifest(&app, "alice/app", "v1", OCI_MANIFEST, &second).await;
    let body = assert_error(moved, StatusCode::FORBIDDEN, "DENIED").await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("`v1` is immutable in alice/app by the rule `v*` on `alice`"),
        "{body}"
    );
    assert_eq!(
        put_manifest(&app, "alice/app", "latest", OCI_MANIFEST, &second)
            .await
            .status(),
        StatusCode::CREATED
    );
    let body = assert_error(
        app.delete("/v2/alice/app/manifests/v1").await,
        StatusCode::FORBIDDEN,
        "DENIED",
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("by the rule `v*` on `alice`: it cannot be deleted"),
        "{body}"
    );
    let by_digest = app
        .delete(&format!("/v2/alice/app/manifests/{}", sha256(&first)))
        .await;
    assert_error(by_digest, StatusCode::FORBIDDEN, "DENIED").await;
    assert_eq!(
        header(
            &app.get("/v2/alice/app/manifests/v1").await,
            "docker-content-digest"
        ),
        sha256(&first)
    );
    assert_eq!(
        app.delete("/v2/alice/app/manifests/latest").await.status(),
        StatusCode::ACCEPTED
    );

    let lifted = rule(("alice", "alice-password"), Method::DELETE, "alice")
        .await
        .unwrap();
    assert_eq!(lifted.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.delete("/v2/alice/app/manifests/v1").await.status(),
        StatusCode::ACCEPTED
    );
}

secured_backend_tests!(immutable_tags_cannot_move_or_go);
