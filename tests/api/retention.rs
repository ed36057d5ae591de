//! Retention policies: the collector untags what a policy lets go (newest N
//! and recent tags kept, excluded patterns and immutable tags never touched)
//! and then collects what those tags held; a dry run only lists it.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::backend_tests;
use crate::harness::TestApp;
use crate::support::*;

/// Makes `tag` look pushed `days` ago (push time is when a tag last moved).
async fn age_tag(app: &TestApp, tag: &str, days: i64) {
    use sqlx::Connection;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        - days * 24 * 3600;
    let sql = "UPDATE tags SET updated_at = $1 WHERE name = $2";
    let url = &app.config.database_url;
    if let Some(path) = url.strip_prefix("sqlite:") {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        conn.execute(sql, rusqlite::params![at, tag]).unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql)
            .bind(at)
            .bind(tag)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

async fn retention_untags_the_old_and_collects_what_they_held(app: TestApp) {
    for (tag, days) in [
        ("old1", 100),
        ("old2", 90),
        ("v1", 80),
        ("new1", 0),
        ("new2", 0),
    ] {
        push_image(&app, "team/app", tag).await;
        age_tag(&app, tag, days).await;
    }
    push_image(&app, "other/app", "old").await;
    age_tag(&app, "old", 100).await;
    let policy = app
        .request(Method::PUT, "/api/v1/retention/team")
        .json(&json!({"keep_last": 2, "exclude": ["v*"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(policy.status(), StatusCode::NO_CONTENT);
    let bad = app
        .request(Method::PUT, "/api/v1/retention/team")
        .json(&json!({"exclude": ["v*"]}))
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    let listed = app.get("/api/v1/retention").await.json_value().await;
    assert_eq!(
        listed["retention"],
        json!([{"path": "team", "keep_last": 2, "keep_days": null, "exclude": ["v*"]}])
    );

    let dry = crate::gc::collect(&app, std::time::Duration::ZERO, true).await;
    let mut expired = dry.expired_tags.clone();
    expired.sort();
    let expected = vec![
        ("team/app".to_string(), "old1".to_string()),
        ("team/app".to_string(), "old2".to_string()),
    ];
    assert_eq!(expired, expected);
    assert_eq!(
        app.get("/v2/team/app/manifests/old1").await.status(),
        StatusCode::OK
    );
    // Listed (and so cached) before the collector untags behind the API's back.
    let tags = app.get("/v2/team/app/tags/list").await.json_value().await;
    assert_eq!(tags["tags"], json!(["new1", "new2", "old1", "old2", "v1"]));

    let report = crate::gc::collect(&app, std::time::Duration::ZERO, false).await;
    let mut expired = report.expired_tags.clone();
    expired.sort();
    assert_eq!(expired, expected);
    assert_eq!(report.collected.manifests, 2, "{report:?}");
    assert_eq!(report.collected.blobs, 4, "{report:?}");
    for tag in ["old1", "old2"] {
        assert_eq!(
            app.get(&format!("/v2/team/app/manifests/{tag}"))
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }
    let tags = app.get("/v2/team/app/tags/list").await.json_value().await;
    assert_eq!(tags["tags"], json!(["new1", "new2", "v1"]));
    assert_eq!(
        app.get("/v2/other/app/manifests/old").await.status(),
        StatusCode::OK,
        "no policy covers it"
    );

    let removed = app
        .request(Method::DELETE, "/api/v1/retention/team")
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert!(
        crate::gc::collect(&app, std::time::Duration::ZERO, false)
            .await
            .expired_tags
            .is_empty()
    );
}

backend_tests!(retention_untags_the_old_and_collects_what_they_held);
