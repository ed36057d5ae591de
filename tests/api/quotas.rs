//! Storage quotas per namespace: each distinct blob counted once, a push
//! that would exceed the quota refused with 403 `DENIED` naming it, and the
//! usage visible in the account API.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{ADMIN_PASSWORD, TestApp};
use crate::secured_backend_tests;
use crate::support::*;

async fn quotas_refuse_what_would_not_fit(mut app: TestApp) {
    create_user(&app, "alice", "alice-password").await;
    create_user(&app, "bob", "bob-password").await;
    let (client, base) = (app.client.clone(), app.base.clone());
    let api = move |user: (&'static str, &'static str), method: Method, path: &str| {
        client
            .request(method, format!("{base}/api/v1{path}"))
            .basic_auth(user.0, Some(user.1))
    };
    let admin = ("admin", ADMIN_PASSWORD);
    let alice = ("alice", "alice-password");
    let not_admin = api(alice, Method::PUT, "/quotas/alice")
        .json(&json!({"limit": "1GiB"}))
        .send()
        .await
        .unwrap();
    assert_error(not_admin, StatusCode::FORBIDDEN, "DENIED").await;
    let bad = api(admin, Method::PUT, "/quotas/alice")
        .json(&json!({"limit": "lots"}))
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    let set = api(admin, Method::PUT, "/quotas/alice")
        .json(&json!({"limit": "100B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    let usage = api(alice, Method::GET, "/quotas/alice")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        usage,
        json!({"namespace": "alice", "limit_bytes": 100, "used_bytes": 0})
    );
    let others = api(("bob", "bob-password"), Method::GET, "/quotas/alice")
        .send()
        .await
        .unwrap();
    assert_error(others, StatusCode::FORBIDDEN, "DENIED").await;

    app.bearer = Some(
        token(
            &app,
            Some(alice),
            &[
                "repository:alice/app:pull,push",
                "repository:alice/copy:pull,push",
            ],
        )
        .await,
    );
    let sixty = vec![b'6'; 60];
    push_blob(&app, "alice/app", &sixty).await;
    // The same content in another repository of the namespace counts once.
    push_blob(&app, "alice/copy", &sixty).await;
    let mounted = app
        .request(
            Method::POST,
            &format!(
                "/v2/alice/copy/blobs/uploads/?mount={}&from=alice/app",
                sha256(&sixty)
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(mounted.status(), StatusCode::CREATED);
    let fifty = vec![b'5'; 50];
    let refused = post_blob(&app, "alice/app", &fifty).await;
    let body = assert_error(refused, StatusCode::FORBIDDEN, "DENIED").await;
    let message = body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("quota of namespace `alice` (100 bytes)")
            && message.contains("60 bytes used"),
        "{message}"
    );
    assert_eq!(
        app.head(&format!("/v2/alice/app/blobs/{}", sha256(&fifty)))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        crate::gc::stored_blobs(&app).await,
        1,
        "one copy of the first blob, nothing of the refused one"
    );
    assert_eq!(crate::uploads::staged_files(&app).await, 0);
    let usage = api(alice, Method::GET, "/quotas/alice")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(usage["used_bytes"], 60);

    let listed = api(admin, Method::GET, "/quotas")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(
        listed["quotas"],
        json!([{"namespace": "alice", "limit_bytes": 100, "used_bytes": 60}])
    );
    let removed = api(admin, Method::DELETE, "/quotas/alice")
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    push_blob(&app, "alice/app", &fifty).await;
}

/// A repository may be named like its namespace (`alice`, pushed by an
/// administrator); its blobs count toward the quota like any other, and
/// only the blob being pushed is counted as already there.
async fn a_repository_named_like_its_namespace_counts_too(mut app: TestApp) {
    create_user(&app, "alice", "alice-password").await;
    app.bearer = Some(
        token(
            &app,
            Some(("admin", ADMIN_PASSWORD)),
            &["repository:alice:pull,push"],
        )
        .await,
    );
    push_blob(&app, "alice", &[b'6'; 60]).await;
    let set = app
        .client
        .put(format!("{}/api/v1/quotas/alice", app.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&json!({"limit": "100B"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::NO_CONTENT);
    let refused = post_blob(&app, "alice", &[b'5'; 50]).await;
    assert_error(refused, StatusCode::FORBIDDEN, "DENIED").await;
}

secured_backend_tests!(
    quotas_refuse_what_would_not_fit,
    a_repository_named_like_its_namespace_counts_too
);
