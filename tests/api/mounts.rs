//! Cross-repository mounts on a private registry: a token that does not
//! name the source is challenged for the wider scope when its user may read
//! the source, and a mount the user may not make is an ordinary upload
//! that tells nothing about the source; a mount without `from` finds the
//! blob wherever its user may read it.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::harness::TestApp;
use crate::secured_backend_tests;
use crate::support::*;

const ALICE: (&str, &str) = ("alice", "alice-password");
const BOB: (&str, &str) = ("bob", "bob-password");

async fn mount(app: &TestApp, token: &str, name: &str, query: &str) -> Response {
    with_token(
        app,
        Method::POST,
        &format!("/v2/{name}/blobs/uploads/?{query}"),
        token,
    )
    .send()
    .await
    .unwrap()
}

/// A mount that became an ordinary upload session in `name`.
fn assert_upload_session(response: &Response, name: &str, what: &str) {
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{what}");
    assert!(
        header(response, "location").starts_with(&format!("/v2/{name}/blobs/uploads/")),
        "{what}"
    );
    assert!(
        response.headers().get("www-authenticate").is_none(),
        "{what}"
    );
}

/// A mount that linked `digest` into `name`.
fn assert_mounted(response: &Response, name: &str, digest: &str, what: &str) {
    assert_eq!(response.status(), StatusCode::CREATED, "{what}");
    assert_eq!(
        header(response, "location"),
        format!("/v2/{name}/blobs/{digest}"),
        "{what}"
    );
    assert_eq!(header(response, "docker-content-digest"), digest, "{what}");
}

async fn a_mount_asks_for_the_source_scope_the_token_lacks(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    create_user(&app, BOB.0, BOB.1).await;
    let base_token = token(&app, Some(ALICE), &["repository:alice/base:pull,push"]).await;
    app.bearer = Some(base_token);
    let digest = push_blob(&app, "alice/base", b"alice's base layer").await;
    app.bearer = None;

    // Docker's first try: a token for the target only.
    let narrow = token(&app, Some(ALICE), &["repository:alice/app:pull,push"]).await;
    let query = format!("mount={digest}&from=alice/base");
    let challenged = mount(&app, &narrow, "alice/app", &query).await;
    assert_eq!(challenged.status(), StatusCode::UNAUTHORIZED);
    let value = header(&challenged, "www-authenticate").to_string();
    assert!(
        value.contains("scope=\"repository:alice/app:pull,push repository:alice/base:pull\""),
        "{value}"
    );
    assert!(value.contains("error=\"insufficient_scope\""), "{value}");
    assert!(value.starts_with("Bearer realm=\""), "{value}");
    assert_error(challenged, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // The retry with the token the challenge asked for mounts.
    let wide = token(
        &app,
        Some(ALICE),
        &[
            "repository:alice/app:pull,push",
            "repository:alice/base:pull",
        ],
    )
    .await;
    let mounted = mount(&app, &wide, "alice/app", &query).await;
    assert_mounted(&mounted, "alice/app", &digest, "with the wider token");
    let read = with_token(
        &app,
        Method::GET,
        &format!("/v2/alice/app/blobs/{digest}"),
        &wide,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(read.bytes().await.unwrap().as_ref(), b"alice's base layer");

    // A source alice may read but without that blob: an upload, no challenge.
    let missing = sha256(b"never pushed");
    let absent = mount(
        &app,
        &narrow,
        "alice/app",
        &format!("mount={missing}&from=alice/base"),
    )
    .await;
    assert_upload_session(&absent, "alice/app", "blob not in the source");

    // bob may not read alice/base: whether it exists or not, he gets the same
    // ordinary upload, even with a token that asked for it.
    let bobs = token(
        &app,
        Some(BOB),
        &["repository:bob/app:pull,push", "repository:alice/base:pull"],
    )
    .await;
    assert_eq!(
        claims(&bobs)["access"],
        json!([{"type": "repository", "name": "bob/app", "actions": ["pull", "push"]}])
    );
    for from in ["alice/base", "alice/nothing-here"] {
        let response = mount(
            &app,
            &bobs,
            "bob/app",
            &format!("mount={digest}&from={from}"),
        )
        .await;
        assert_upload_session(&response, "bob/app", from);
    }
    let head = with_token(
        &app,
        Method::HEAD,
        &format!("/v2/bob/app/blobs/{digest}"),
        &bobs,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    // Once alice/base is public, bob may read it, so he is asked to widen too.
    let made_public = app
        .client
        .put(app.url("/api/v1/visibility/alice/base"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .json(&json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(made_public.status(), StatusCode::NO_CONTENT);
    let bob_narrow = token(&app, Some(BOB), &["repository:bob/app:pull,push"]).await;
    let challenged = mount(&app, &bob_narrow, "bob/app", &query).await;
    assert_eq!(challenged.status(), StatusCode::UNAUTHORIZED);
    assert!(
        header(&challenged, "www-authenticate")
            .contains("scope=\"repository:bob/app:pull,push repository:alice/base:pull\"")
    );
    let bob_wide = token(
        &app,
        Some(BOB),
        &["repository:bob/app:pull,push", "repository:alice/base:pull"],
    )
    .await;
    let mounted = mount(&app, &bob_wide, "bob/app", &query).await;
    assert_mounted(&mounted, "bob/app", &digest, "from a public source");
}

async fn a_mount_without_from_finds_only_what_its_user_may_read(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    create_user(&app, BOB.0, BOB.1).await;
    let base_token = token(&app, Some(ALICE), &["repository:alice/base:pull,push"]).await;
    app.bearer = Some(base_token);
    let digest = push_blob(&app, "alice/base", b"alice's private layer").await;
    app.bearer = None;

    // alice's token names only the target; the source is found by her rights.
    let alices = token(&app, Some(ALICE), &["repository:alice/other:pull,push"]).await;
    let mounted = mount(&app, &alices, "alice/other", &format!("mount={digest}")).await;
    assert_mounted(&mounted, "alice/other", &digest, "alice, without from");

    // bob cannot read either of alice's repositories: an ordinary upload.
    let bobs = token(&app, Some(BOB), &["repository:bob/app:pull,push"]).await;
    let refused = mount(&app, &bobs, "bob/app", &format!("mount={digest}")).await;
    assert_upload_session(&refused, "bob/app", "bob, without from");
    let head = with_token(
        &app,
        Method::HEAD,
        &format!("/v2/bob/app/blobs/{digest}"),
        &bobs,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(head.status(), StatusCode::NOT_FOUND);

    // An access token limited to one repository reads nothing beyond it.
    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth(ALICE.0, Some(ALICE.1))
        .json(&json!({"scopes": ["repository:alice/ci:pull,push"]}))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let secret = created["secret"].as_str().unwrap();
    let ci = token(
        &app,
        Some((ALICE.0, secret)),
        &["repository:alice/ci:pull,push"],
    )
    .await;
    let limited = mount(&app, &ci, "alice/ci", &format!("mount={digest}")).await;
    assert_upload_session(&limited, "alice/ci", "a token limited to alice/ci");
}

secured_backend_tests!(
    a_mount_asks_for_the_source_scope_the_token_lacks,
    a_mount_without_from_finds_only_what_its_user_may_read,
);
