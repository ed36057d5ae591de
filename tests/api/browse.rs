//! `/api/v1/repositories…`, the pages' rows as JSON: what each kind of
//! caller sees (anonymous, password, access token as a password or as a
//! bearer, a token's scopes), tags with platforms, sizes and push times,
//! a manifest's details, pagination by cursor and `Link`, refusals in the
//! API's error shape, and summaries of manifests stored before Berth
//! recorded them filled in by the background pass.

use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, Backend, TestApp};
use crate::secured_backend_tests;
use crate::support::*;
use crate::ui_browse::push_index;

secured_backend_tests!(
    callers_see_the_repositories_they_may_pull,
    tags_carry_platforms_sizes_and_push_times_a_page_at_a_time,
    a_manifest_shows_its_config_layers_and_platforms,
    hidden_and_missing_repositories_answer_alike,
    bad_queries_are_refused_in_the_api_shape,
);

const ADMIN: (&str, &str) = ("admin", ADMIN_PASSWORD);
const ALICE: (&str, &str) = ("alice", "alice-password");
const BOB: (&str, &str) = ("bob", "bob-password");

enum Credentials<'a> {
    Anonymous,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
}

fn authorized(request: RequestBuilder, credentials: &Credentials<'_>) -> RequestBuilder {
    match credentials {
        Credentials::Anonymous => request,
        Credentials::Basic(user, password) => request.basic_auth(user, Some(password)),
        Credentials::Bearer(secret) => request.bearer_auth(secret),
    }
}

async fn get(app: &TestApp, path: &str, credentials: Credentials<'_>) -> reqwest::Response {
    authorized(app.client.get(app.url(path)), &credentials)
        .send()
        .await
        .unwrap()
}

/// The answer to `path`, which must be 200 JSON.
async fn get_json(app: &TestApp, path: &str, credentials: Credentials<'_>) -> Value {
    let response = get(app, path, credentials).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    assert!(
        header(&response, "content-type").starts_with("application/json"),
        "{path}"
    );
    response.json_value().await
}

fn names(listing: &Value) -> Vec<&str> {
    listing["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

/// Pushes `tag` of `repository` as the admin.
async fn push_as_admin(app: &mut TestApp, repository: &str, tag: &str) -> String {
    app.bearer = Some(
        token(
            app,
            Some(ADMIN),
            &[&format!("repository:{repository}:pull,push")],
        )
        .await,
    );
    let digest = push_image(app, repository, tag).await;
    app.bearer = None;
    digest
}

async fn make_public(app: &TestApp, repository: &str) {
    let response = app
        .client
        .put(app.url(&format!("/api/v1/visibility/{repository}")))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

/// An access token of `user` limited to `scopes`; returns its secret.
async fn access_token(app: &TestApp, user: (&str, &str), scopes: &[&str]) -> String {
    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth(user.0, Some(user.1))
        .json(&json!({"scopes": scopes, "description": "browse test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    created.json_value().await["secret"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn callers_see_the_repositories_they_may_pull(mut app: TestApp) {
    create_user(&app, ALICE.0, ALICE.1).await;
    create_user(&app, BOB.0, BOB.1).await;
    push_as_admin(&mut app, "alice/web", "1").await;
    push_as_admin(&mut app, "alice/db", "1").await;
    push_as_admin(&mut app, "bob/site", "1").await;
    make_public(&app, "bob/site").await;

    let anonymous = get_json(
        &app,
        "/api/v1/repositories?sort=name",
        Credentials::Anonymous,
    )
    .await;
    assert_eq!(names(&anonymous), ["bob/site"]);
    assert_eq!(anonymous["repositories"][0]["public"], true);
    assert_eq!(anonymous["repositories"][0]["tag_count"], 1);
    assert_eq!(
        anonymous["repositories"][0]["platforms"],
        json!([{"os": "linux", "architecture": "amd64"}])
    );
    assert!(anonymous["repositories"][0]["size"].as_u64().unwrap() > 0);
    assert!(
        anonymous["repositories"][0]["last_pushed_at"]
            .as_i64()
            .unwrap()
            > 1_700_000_000
    );
    assert_eq!(anonymous["next"], Value::Null);

    let alice = get_json(
        &app,
        "/api/v1/repositories?sort=name",
        Credentials::Basic(ALICE.0, ALICE.1),
    )
    .await;
    assert_eq!(names(&alice), ["alice/db", "alice/web", "bob/site"]);
    assert_eq!(alice["repositories"][0]["public"], false);
    let bob = get_json(
        &app,
        "/api/v1/repositories?sort=name",
        Credentials::Basic(BOB.0, BOB.1),
    )
    .await;
    assert_eq!(names(&bob), ["bob/site"]);

    // A token sees what its scopes allow, sent as a password or as a bearer;
    // as on `/v2/`, its scopes bound public repositories too.
    let web_only = access_token(&app, ALICE, &["repository:alice/web:pull"]).await;
    for credentials in [
        Credentials::Basic(ALICE.0, &web_only),
        Credentials::Bearer(&web_only),
    ] {
        let listed = get_json(&app, "/api/v1/repositories?sort=name", credentials).await;
        assert_eq!(names(&listed), ["alice/web"]);
    }
    let hidden = get(
        &app,
        "/api/v1/repositories/alice/db/-/tags",
        Credentials::Bearer(&web_only),
    )
    .await;
    assert_error(hidden, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;

    // Wrong credentials are refused, never taken for an anonymous caller.
    for credentials in [
        Credentials::Basic(ALICE.0, "wrong"),
        Credentials::Bearer("berth_pat_not-a-token"),
        Credentials::Bearer("eyJhbGciOi.not.a-jwt"),
    ] {
        let refused = get(&app, "/api/v1/repositories", credentials).await;
        assert_error(refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }

    // Search by name, and most recent first.
    let searched = get_json(
        &app,
        "/api/v1/repositories?q=WEB",
        Credentials::Basic(ALICE.0, ALICE.1),
    )
    .await;
    assert_eq!(names(&searched), ["alice/web"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    push_as_admin(&mut app, "alice/web", "2").await;
    let recent = get_json(
        &app,
        "/api/v1/repositories",
        Credentials::Basic(ALICE.0, ALICE.1),
    )
    .await;
    assert_eq!(names(&recent)[0], "alice/web");

    let one = get_json(
        &app,
        "/api/v1/repositories/alice/web",
        Credentials::Basic(ALICE.0, ALICE.1),
    )
    .await;
    assert_eq!(one["name"], "alice/web");
    assert_eq!(one["tag_count"], 2);
    assert_eq!(one["public"], false);
}

async fn tags_carry_platforms_sizes_and_push_times_a_page_at_a_time(mut app: TestApp) {
    let (amd, arm) = push_index(&mut app, "admin/multi", "1.0").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let single = push_as_admin(&mut app, "admin/multi", "2.0").await;
    let admin = || Credentials::Basic(ADMIN.0, ADMIN.1);

    let tags = get_json(&app, "/api/v1/repositories/admin/multi/-/tags", admin()).await;
    assert_eq!(tags["name"], "admin/multi");
    let rows = tags["tags"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // Most recent first: the single image, then the index.
    assert_eq!(rows[0]["tag"], "2.0");
    assert_eq!(rows[0]["digest"], single.as_str());
    assert_eq!(rows[0]["images"].as_array().unwrap().len(), 1);
    assert_eq!(rows[1]["tag"], "1.0");
    assert_eq!(
        rows[1]["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(rows[0]["pushed_at"].as_i64().unwrap() > rows[1]["pushed_at"].as_i64().unwrap());
    let images = rows[1]["images"].as_array().unwrap();
    let platforms: Vec<(&str, &str)> = images
        .iter()
        .map(|i| {
            (
                i["platform"]["architecture"].as_str().unwrap(),
                i["digest"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        platforms,
        [("amd64", amd.as_str()), ("arm64", arm.as_str())]
    );
    for image in images {
        // The config and the 5,000-byte layer: compressed size, as Docker Hub shows it.
        let size = image["size"].as_u64().unwrap();
        assert!(size > 5000 && size < 6000, "{image}");
    }

    // One a page by name: a cursor in the body and the next page's URL in `Link`.
    let first = get(
        &app,
        "/api/v1/repositories/admin/multi/-/tags?sort=name&n=1",
        admin(),
    )
    .await;
    assert_eq!(first.status(), StatusCode::OK);
    let link = header(&first, "link").to_string();
    let first = first.json_value().await;
    assert_eq!(first["tags"][0]["tag"], "1.0");
    let cursor = first["next"].as_str().unwrap();
    let next_url = link
        .strip_prefix('<')
        .and_then(|l| l.split_once(">; rel=\"next\""))
        .map(|(url, _)| url.to_string())
        .unwrap_or_else(|| panic!("Link: {link}"));
    assert!(next_url.contains("cursor="), "{next_url}");
    let second = get_json(&app, &next_url, admin()).await;
    assert_eq!(second["tags"][0]["tag"], "2.0");
    assert_eq!(second["next"], Value::Null);
    let by_cursor = get_json(
        &app,
        &format!(
            "/api/v1/repositories/admin/multi/-/tags?sort=name&n=1&cursor={}",
            urlencode(cursor)
        ),
        admin(),
    )
    .await;
    assert_eq!(by_cursor["tags"], second["tags"]);

    let filtered = get_json(
        &app,
        "/api/v1/repositories/admin/multi/-/tags?q=2.",
        admin(),
    )
    .await;
    assert_eq!(filtered["tags"].as_array().unwrap().len(), 1);

    // Moving 2.0 away leaves its image untagged: listed on its own.
    push_as_admin(&mut app, "admin/multi", "2.0-again").await;
    let retag = put_manifest_as_admin(&mut app, "admin/multi", "2.0", &amd).await;
    assert_eq!(retag, StatusCode::CREATED);
    let untagged = get_json(&app, "/api/v1/repositories/admin/multi/-/untagged", admin()).await;
    let digests: Vec<&str> = untagged["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [single.as_str()]);
}

/// Tags `digest` (already stored in `repository`) as `tag`; returns the status.
async fn put_manifest_as_admin(
    app: &mut TestApp,
    repository: &str,
    tag: &str,
    digest: &str,
) -> StatusCode {
    app.bearer = Some(
        token(
            app,
            Some(ADMIN),
            &[&format!("repository:{repository}:pull,push")],
        )
        .await,
    );
    let manifest = app
        .get(&format!("/v2/{repository}/manifests/{digest}"))
        .await;
    let media_type = header(&manifest, "content-type").to_string();
    let bytes = manifest.bytes().await.unwrap();
    let status = put_manifest(app, repository, tag, &media_type, &bytes)
        .await
        .status();
    app.bearer = None;
    status
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

async fn a_manifest_shows_its_config_layers_and_platforms(mut app: TestApp) {
    let (amd, _) = push_index(&mut app, "admin/multi", "1.0").await;
    let admin = || Credentials::Basic(ADMIN.0, ADMIN.1);

    let index = get_json(
        &app,
        "/api/v1/repositories/admin/multi/-/manifests/1.0",
        admin(),
    )
    .await;
    assert_eq!(index["name"], "admin/multi");
    assert_eq!(
        index["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["tags"], json!(["1.0"]));
    let children = index["manifests"].as_array().unwrap();
    assert_eq!(children.len(), 2);
    assert_eq!(children[0]["digest"], amd.as_str());
    assert_eq!(children[0]["platform"]["architecture"], "amd64");
    assert_eq!(children[0]["stored"], true);

    let image = get_json(
        &app,
        &format!("/api/v1/repositories/admin/multi/-/manifests/{amd}"),
        admin(),
    )
    .await;
    assert_eq!(image["digest"], amd.as_str());
    // An image is no artifact, whatever the referrers API falls back to.
    assert_eq!(image["artifact_type"], Value::Null);
    assert_eq!(image["platform"]["architecture"], "amd64");
    assert_eq!(image["platform"]["os"], "linux");
    // 2026-11-30T10:00:00Z, from the config.
    assert_eq!(image["created"], 1_796_032_800);
    assert_eq!(image["config"]["entrypoint"], json!(["/server"]));
    assert_eq!(image["config"]["cmd"], json!(["--port", "8080"]));
    assert_eq!(image["config"]["exposed_ports"], json!(["8080/tcp"]));
    assert_eq!(image["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        image["layers"][0]["media_type"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    assert_eq!(image["layers"][0]["size"], 5000);
}

async fn hidden_and_missing_repositories_answer_alike(mut app: TestApp) {
    create_user(&app, BOB.0, BOB.1).await;
    push_as_admin(&mut app, "admin/secret", "1").await;
    for path in [
        "/api/v1/repositories/admin/secret",
        "/api/v1/repositories/admin/secret/-/tags",
        "/api/v1/repositories/admin/secret/-/untagged",
        "/api/v1/repositories/admin/secret/-/manifests/1",
        "/api/v1/repositories/admin/nothing/-/tags",
    ] {
        for credentials in [Credentials::Anonymous, Credentials::Basic(BOB.0, BOB.1)] {
            let hidden = get(&app, path, credentials).await;
            assert_error(hidden, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
        }
    }
    let missing_tag = get(
        &app,
        "/api/v1/repositories/admin/secret/-/manifests/2",
        Credentials::Basic(ADMIN.0, ADMIN.1),
    )
    .await;
    assert_error(missing_tag, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
}

async fn bad_queries_are_refused_in_the_api_shape(mut app: TestApp) {
    push_as_admin(&mut app, "admin/web", "1").await;
    let admin = || Credentials::Basic(ADMIN.0, ADMIN.1);
    for (path, status, code) in [
        (
            "/api/v1/repositories?sort=size",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            "/api/v1/repositories?cursor=n:Not%20A%20Name",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            "/api/v1/repositories?cursor=r:x:admin/web",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            "/api/v1/repositories?n=-1",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            "/api/v1/repositories?q=%00",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            "/api/v1/repositories?unknown=1",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            "/api/v1/repositories/Admin/Web/-/tags",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "/api/v1/repositories/admin/web/-/tags?cursor=u:1:2",
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
        ),
        (
            "/api/v1/repositories/admin/web/-/manifests/sha256:short",
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "/api/v1/repositories/admin/web/-/elsewhere",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
    ] {
        let refused = get(&app, path, admin()).await;
        assert_eq!(
            header(&refused, "x-content-type-options"),
            "nosniff",
            "{path}"
        );
        let body = assert_error(refused, status, code).await;
        assert!(body["errors"][0]["message"].is_string(), "{path}: {body}");
    }
    // Far more than a page asks for is cut to the most a page holds.
    let big = get_json(&app, "/api/v1/repositories?n=100000", admin()).await;
    assert_eq!(names(&big), ["admin/web"]);
}

/// Manifests stored before summaries were recorded (as after the upgrade
/// that added them) get their platform and config filled in by the
/// background pass that every start runs.
async fn summaries_of_stored_manifests_are_filled_in_the_background(backend: Backend) {
    let mut app = TestApp::start_secured(backend).await;
    let digest = push_as_admin(&mut app, "admin/old", "1").await;
    forget_summaries(&app).await;
    app.restart().await;
    let admin = || Credentials::Basic(ADMIN.0, ADMIN.1);
    let path = format!("/api/v1/repositories/admin/old/-/manifests/{digest}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let detail = get_json(&app, &path, admin()).await;
        if detail["platform"]["architecture"] == "amd64" {
            assert_eq!(detail["platform"]["os"], "linux");
            let tags = get_json(&app, "/api/v1/repositories/admin/old/-/tags", admin()).await;
            assert_eq!(tags["tags"][0]["images"][0]["platform"]["os"], "linux");
            assert!(tags["tags"][0]["images"][0]["size"].as_u64().unwrap() > 0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the background pass did not fill the summary in 30 s: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Puts every manifest back to "summary pending", as the migration leaves
/// manifests stored before it.
async fn forget_summaries(app: &TestApp) {
    const FORGET: &str = "UPDATE manifests SET summary_state = 0, image_os = NULL, \
        image_architecture = NULL, image_variant = NULL, image_created = NULL, \
        image_summary = NULL, content_size = NULL";
    let url = &app.config.database_url;
    if let Some(path) = url.strip_prefix("sqlite:") {
        let connection = rusqlite::Connection::open(path).unwrap();
        let changed = connection.execute(FORGET, []).unwrap();
        assert!(changed > 0);
    } else {
        use sqlx::Connection;
        let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
        let changed = sqlx::query(FORGET).execute(&mut connection).await.unwrap();
        assert!(changed.rows_affected() > 0);
    }
}

/// A caller who may see few of many repositories is answered a short page
/// and a cursor where the scan stopped, never a scan of every row: here an
/// anonymous visitor, 5,200 private repositories and one public one after them.
#[tokio::test]
async fn a_page_of_few_visible_repositories_among_many_stops_its_scan() {
    let mut app = TestApp::start_secured(Backend::Sqlite).await;
    push_as_admin(&mut app, "zz/public", "1").await;
    make_public(&app, "zz/public").await;
    let path = app
        .config
        .database_url
        .strip_prefix("sqlite:")
        .unwrap()
        .to_string();
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 5199) \
             INSERT INTO repositories (name, created_at) SELECT printf('admin/r%05d', i), 1 FROM n; \
             INSERT INTO manifests (repository_id, digest, media_type, payload, created_at, summary_state) \
             SELECT r.id, m.digest, m.media_type, m.payload, 1, 2 FROM repositories r, \
             (SELECT * FROM manifests LIMIT 1) m WHERE r.name LIKE 'admin/r%';",
        )
        .unwrap();

    let first = get_json(
        &app,
        "/api/v1/repositories?sort=name",
        Credentials::Anonymous,
    )
    .await;
    assert_eq!(names(&first), Vec::<&str>::new(), "{first}");
    let cursor = first["next"]
        .as_str()
        .expect("a cursor where the scan stopped");
    let second = get_json(
        &app,
        &format!(
            "/api/v1/repositories?sort=name&cursor={}",
            urlencode(cursor)
        ),
        Credentials::Anonymous,
    )
    .await;
    assert_eq!(names(&second), ["zz/public"]);
    assert_eq!(second["next"], Value::Null);
    // The admin sees a full page at once.
    let admin = get_json(
        &app,
        "/api/v1/repositories?sort=name&n=3",
        Credentials::Basic(ADMIN.0, ADMIN.1),
    )
    .await;
    assert_eq!(
        names(&admin),
        ["admin/r00000", "admin/r00001", "admin/r00002"]
    );
    // The page says so, and links on.
    let home = crate::ui_support::WebClient::new(&app)
        .page("/?sort=name")
        .await;
    assert!(home.contains("the next page looks further"), "{home}");
    assert!(home.contains("Next page"), "{home}");
}

#[tokio::test]
async fn summaries_of_stored_manifests_are_filled_in_the_background_on_sqlite() {
    summaries_of_stored_manifests_are_filled_in_the_background(Backend::Sqlite).await;
}

#[tokio::test]
async fn summaries_of_stored_manifests_are_filled_in_the_background_on_postgres() {
    summaries_of_stored_manifests_are_filled_in_the_background(Backend::Postgres).await;
}
