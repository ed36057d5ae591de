//! Who may claim a namespace: a user may create an organization only under
//! a name nothing in the registry uses yet (no repository, upload, quota,
//! visibility, tag or retention rule), so no one can take over what an
//! administrator pushed or configured; an administrator may, deliberately.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, TestApp};
use crate::secured_backend_tests;
use crate::support::*;

const ALICE: (&str, &str) = ("alice", "alice-password");
const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);

async fn api(
    app: &TestApp,
    method: Method,
    path: &str,
    user: (&str, &str),
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = app
        .client
        .request(method, app.url(&format!("/api/v1{path}")))
        .basic_auth(user.0, Some(user.1));
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn create_org(app: &TestApp, user: (&str, &str), name: &str) -> reqwest::Response {
    api(
        app,
        Method::POST,
        "/orgs",
        user,
        Some(json!({"name": name})),
    )
    .await
}

async fn a_user_cannot_claim_a_namespace_that_is_in_use(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    // An administrator pushes library/alpine, before anyone owns `library`.
    app.bearer = Some(
        token(
            &app,
            Some(ADMIN),
            &[
                "repository:library/alpine:pull,push",
                "repository:drafts/app:pull,push",
            ],
        )
        .await,
    );
    push_image(&app, "library/alpine", "3.20").await;
    // ... and starts an upload into `drafts`, which holds nothing else.
    let started = app
        .request(Method::POST, "/v2/drafts/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    app.bearer = None;
    // Namespaces that only a rule names.
    let rules = [
        ("/quotas/quoted", json!({"limit": "1GiB"})),
        ("/visibility/shown", json!({"public": true})),
        ("/visibility/parts/app", json!({"public": true})),
        ("/retention/kept", json!({"keep_last": 3})),
    ];
    for (path, body) in rules {
        let set = api(&app, Method::PUT, path, ADMIN, Some(body)).await;
        assert_eq!(set.status(), StatusCode::NO_CONTENT, "{path}");
    }
    let frozen = api(
        &app,
        Method::PUT,
        "/immutable-tags/frozen?pattern=v*",
        ADMIN,
        None,
    )
    .await;
    assert_eq!(frozen.status(), StatusCode::NO_CONTENT);

    for name in [
        "library", "drafts", "quoted", "shown", "parts", "kept", "frozen",
    ] {
        let refused = create_org(&app, ALICE, name).await;
        let body = assert_error(refused, StatusCode::FORBIDDEN, "DENIED").await;
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("administrator"), "{name}: {message}");
    }
    // No way round it by spelling: names are lowercase, one component.
    for name in [
        "Library",
        "LIBRARY",
        "library/",
        "library/alpine",
        " library",
    ] {
        let invalid = create_org(&app, ALICE, name).await;
        assert_error(invalid, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
    // alice gained nothing in `library`.
    let asked = token(
        &app,
        Some(ALICE),
        &["repository:library/alpine:pull,push,delete"],
    )
    .await;
    assert_eq!(claims(&asked)["access"], json!([]));
    let orgs = api(&app, Method::GET, "/orgs", ALICE, None)
        .await
        .json_value()
        .await;
    assert_eq!(orgs["organizations"], json!([]));

    // A name nothing uses is hers to create; a prefix of a used one is unused.
    for name in ["team", "librar", "library2"] {
        assert_eq!(
            create_org(&app, ALICE, name).await.status(),
            StatusCode::CREATED,
            "{name}"
        );
    }
    // An administrator may hand a used namespace to an organization.
    let handed = create_org(&app, ADMIN, "library").await;
    assert_eq!(handed.status(), StatusCode::CREATED);
    assert_eq!(
        create_org(&app, ALICE, "library").await.status(),
        StatusCode::CONFLICT
    );
}

async fn a_removed_users_namespace_is_not_inherited_by_a_stranger(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    create_user(&app, "bob", "bob-password").await;
    app.bearer = Some(
        token(
            &app,
            Some(("bob", "bob-password")),
            &["repository:bob/app:pull,push"],
        )
        .await,
    );
    push_image(&app, "bob/app", "1").await;
    app.bearer = None;
    let removed = api(&app, Method::DELETE, "/users/bob", ADMIN, None).await;
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);

    // bob's repositories stay; alice cannot claim them under bob's old name.
    let refused = create_org(&app, ALICE, "bob").await;
    assert_error(refused, StatusCode::FORBIDDEN, "DENIED").await;
    let asked = token(&app, Some(ALICE), &["repository:bob/app:pull"]).await;
    assert_eq!(claims(&asked)["access"], json!([]));

    // An administrator re-creating `bob` gives the new bob what is there.
    let recreated = api(
        &app,
        Method::POST,
        "/users",
        ADMIN,
        Some(json!({"name": "bob", "password": "new-bob-password"})),
    )
    .await;
    assert_eq!(recreated.status(), StatusCode::CREATED);
    // The old password and its logins are gone with the old account.
    assert_eq!(
        request_token(&app, Some(("bob", "bob-password")), &[])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let new_bob = token(
        &app,
        Some(("bob", "new-bob-password")),
        &["repository:bob/app:pull"],
    )
    .await;
    assert_eq!(
        claims(&new_bob)["access"],
        json!([{"type": "repository", "name": "bob/app", "actions": ["pull"]}])
    );
}

secured_backend_tests!(
    a_user_cannot_claim_a_namespace_that_is_in_use,
    a_removed_users_namespace_is_not_inherited_by_a_stranger,
);
