//! What a security review found a hostile client could do, each answered
//! now with a clear 4xx in the spec's error shape: media types that would
//! become response headers (HTML, line breaks, 100 KB), strings PostgreSQL
//! cannot store (a NUL) reaching a query, wrong methods and unreadable
//! bodies answered in plain text, and responses a browser could render.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, TestApp};
use crate::support::*;
use crate::{backend_tests, secured_backend_tests};

/// An image manifest of `alice/app` (blobs pushed) with `fields` merged in.
async fn image_with(app: &TestApp, fields: Value) -> Vec<u8> {
    let mut manifest: Value =
        serde_json::from_slice(&push_image_blobs(app, "alice/app", "x").await).unwrap();
    for (key, value) in fields.as_object().unwrap() {
        if value.is_null() {
            manifest.as_object_mut().unwrap().remove(key);
        } else {
            manifest[key] = value.clone();
        }
    }
    manifest.to_string().into_bytes()
}

/// A `PUT` of `body` as tag `tag` of `alice/app`, with `content_type` if any.
async fn push(app: &TestApp, tag: &str, content_type: Option<&str>, body: &[u8]) -> Response {
    let mut request = app.request(Method::PUT, &format!("/v2/alice/app/manifests/{tag}"));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    request.body(body.to_vec()).send().await.unwrap()
}

fn message(body: &Value) -> &str {
    body["errors"][0]["message"].as_str().unwrap()
}

async fn manifests_must_be_of_a_manifest_type(app: TestApp) {
    let html = image_with(&app, json!({"mediaType": "text/html"})).await;
    let refused = push(&app, "html", Some("text/html"), &html).await;
    assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    // Without a mediaType the Content-Type would name it.
    let untyped = image_with(&app, json!({"mediaType": null})).await;
    let refused = push(&app, "html", Some("text/html; charset=utf-8"), &untyped).await;
    assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    assert_error(
        app.get("/v2/alice/app/manifests/html").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;

    // A line break would have broken every later GET of the tag.
    let broken = image_with(
        &app,
        json!({"mediaType": format!("{OCI_MANIFEST}\r\nX-Injected: 1")}),
    )
    .await;
    let refused = push(&app, "crlf", None, &broken).await;
    assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
    assert_error(
        app.get("/v2/alice/app/manifests/crlf").await,
        StatusCode::NOT_FOUND,
        "MANIFEST_UNKNOWN",
    )
    .await;
    let huge = format!("application/{}", "x".repeat(100 * 1024));
    let oversized = image_with(&app, json!({"mediaType": huge})).await;
    let body = assert_error(
        push(&app, "huge", None, &oversized).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    assert!(message(&body).len() < 1024, "the message echoes it whole");
    assert_error(
        push(&app, "huge", Some(&huge), &untyped).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;

    // The body and the Content-Type must agree, unless the latter is generic.
    let oci = image_with(&app, json!({})).await;
    let body = assert_error(
        push(&app, "v1", Some(DOCKER_MANIFEST), &oci).await,
        StatusCode::BAD_REQUEST,
        "MANIFEST_INVALID",
    )
    .await;
    assert_eq!(
        body["errors"][0]["detail"],
        json!({"mediaType": OCI_MANIFEST, "contentType": DOCKER_MANIFEST})
    );
    assert!(message(&body).contains(OCI_MANIFEST) && message(&body).contains(DOCKER_MANIFEST));
    for agreeing in [
        None,
        Some("application/json"),
        Some("application/octet-stream"),
        Some("Application/VND.OCI.Image.Manifest.v1+JSON; charset=utf-8"),
    ] {
        let pushed = push(&app, "v1", agreeing, &oci).await;
        assert_eq!(pushed.status(), StatusCode::CREATED, "{agreeing:?}");
    }
    let pushed = push(
        &app,
        "untyped",
        Some("application/vnd.docker.distribution.manifest.v2+json"),
        &untyped,
    )
    .await;
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let get = app.get("/v2/alice/app/manifests/untyped").await;
    assert_eq!(header(&get, "content-type"), DOCKER_MANIFEST);
}

async fn artifact_types_follow_the_media_type_grammar(app: TestApp) {
    for fields in [
        json!({"artifactType": "text/html\u{0}"}),
        json!({"artifactType": "not a media type"}),
        json!({"config": {"mediaType": "config\r\ntype", "digest": sha256(b"{}"), "size": 2}}),
    ] {
        let manifest = image_with(&app, fields.clone()).await;
        push_blob(&app, "alice/app", b"{}").await;
        let refused = push(&app, "artifact", Some(OCI_MANIFEST), &manifest).await;
        let body = assert_error(refused, StatusCode::BAD_REQUEST, "MANIFEST_INVALID").await;
        assert!(message(&body).contains("media type"), "{fields}: {body}");
    }
    // Any grammatical config or layer type is the artifact's own business.
    push_blob(&app, "alice/app", b"{}").await;
    let artifact = image_with(
        &app,
        json!({
            "config": {"mediaType": "application/vnd.example.thing.v1+json", "digest": sha256(b"{}"), "size": 2},
            "layers": [{"mediaType": "application/x.anything", "digest": sha256(b"{}"), "size": 2}],
        }),
    )
    .await;
    let pushed = push(&app, "artifact", Some(OCI_MANIFEST), &artifact).await;
    assert_eq!(pushed.status(), StatusCode::CREATED);

    let subject = sha256(&artifact);
    for filter in [
        "%00",
        "text%2Fhtml%0D%0AX:%201",
        "nonsense",
        &"a".repeat(60_000),
    ] {
        let refused = app
            .get(&format!(
                "/v2/alice/app/referrers/{subject}?artifactType={filter}"
            ))
            .await;
        assert_error(refused, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    }
}

/// Media types stored before they were checked may be anything; they are
/// served as bytes, never as a page or a broken header.
async fn unservable_stored_media_types_are_served_as_bytes(app: TestApp) {
    let metadata = berth::metadata::connect(&app.config.database_url, 2)
        .await
        .unwrap();
    for (tag, stored) in [
        ("html", "text/html"),
        (
            "crlf",
            "application/vnd.oci.image.manifest.v1+json\r\nX-Injected: 1",
        ),
    ] {
        let manifest = push_image_blobs(&app, "alice/app", tag).await;
        let mut parsed = berth::oci::manifest::parse(&manifest, None).unwrap();
        parsed.media_type = stored.to_string();
        let new = berth::metadata::NewManifest {
            digest: sha256(&manifest).parse().unwrap(),
            payload: manifest.clone().into(),
            parsed,
            facts: Default::default(),
        };
        metadata
            .registry
            .put_manifest(
                &berth::metadata::Origin::system(),
                &"alice/app".parse().unwrap(),
                new,
                &[tag.parse().unwrap()],
            )
            .await
            .unwrap();
        for method in [Method::GET, Method::HEAD] {
            let served = app
                .request(method.clone(), &format!("/v2/alice/app/manifests/{tag}"))
                .send()
                .await
                .unwrap();
            assert_eq!(served.status(), StatusCode::OK, "{method} {tag}");
            assert_eq!(header(&served, "content-type"), "application/octet-stream");
            assert_eq!(header(&served, "docker-content-digest"), sha256(&manifest));
            if method == Method::GET {
                assert_eq!(served.bytes().await.unwrap().as_ref(), manifest.as_slice());
            }
        }
    }
    metadata.close().await;
}

fn assert_not_a_page(response: &Response, what: &str) {
    assert_eq!(
        header(response, "x-content-type-options"),
        "nosniff",
        "{what}"
    );
    let policy = header(response, "content-security-policy");
    assert!(
        policy.contains("default-src 'none'") && policy.contains("sandbox"),
        "{what}: {policy}"
    );
    assert_eq!(header(response, "referrer-policy"), "no-referrer", "{what}");
}

async fn nothing_served_is_a_page(app: TestApp) {
    let html = b"<html><script>alert(document.domain)</script></html>";
    let blob = push_blob(&app, "alice/app", html).await;
    let get = app.get(&format!("/v2/alice/app/blobs/{blob}")).await;
    assert_eq!(get.status(), StatusCode::OK);
    assert_eq!(header(&get, "content-type"), "application/octet-stream");
    assert_not_a_page(&get, "blob GET");
    let head = app.head(&format!("/v2/alice/app/blobs/{blob}")).await;
    assert_eq!(header(&head, "content-type"), "application/octet-stream");
    assert_not_a_page(&head, "blob HEAD");

    push_image(&app, "alice/app", "v1").await;
    let manifest = app.get("/v2/alice/app/manifests/v1").await;
    assert_eq!(manifest.status(), StatusCode::OK);
    assert_not_a_page(&manifest, "manifest GET");

    for (path, status) in [
        ("/v2/", StatusCode::OK),
        ("/v2/alice/app/manifests/absent", StatusCode::NOT_FOUND),
        ("/no/such/endpoint", StatusCode::NOT_FOUND),
        ("/token", StatusCode::NOT_FOUND),
        ("/api/v1/me", StatusCode::OK),
        ("/api/v1/nothing", StatusCode::NOT_FOUND),
        ("/metrics", StatusCode::OK),
        ("/healthz", StatusCode::OK),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), status, "{path}");
        assert_not_a_page(&response, path);
    }
}

/// A status below 500 and, when it is an error, the spec's error body.
async fn assert_answered(response: Response, what: &str) -> StatusCode {
    let status = response.status();
    assert!(status.as_u16() < 500, "{what}: {status}");
    if status.is_client_error() {
        assert_eq!(
            header(&response, "content-type"),
            "application/json",
            "{what}"
        );
        let body = response.json_value().await;
        assert!(body["errors"][0]["code"].is_string(), "{what}: {body}");
    }
    status
}

fn basic(app: &TestApp, path: &str, user: &str, password: &str) -> reqwest::RequestBuilder {
    app.client
        .get(app.url(path))
        .basic_auth(user, Some(password))
}

/// A name with a NUL (or any control character) is an unknown user: 401,
/// counted by the login limiter, never a database error.
async fn impossible_login_names_are_bad_credentials(app: TestApp) {
    let long = "a".repeat(60_000);
    for user in ["ad\0min", "admin\0", "\0", "ad\nmin", long.as_str()] {
        for path in ["/token?service=berth-test", "/api/v1/me"] {
            let response = basic(&app, path, user, ADMIN_PASSWORD)
                .send()
                .await
                .unwrap();
            assert_error(response, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
        }
        let form = app
            .client
            .post(app.url("/token"))
            .form(&[
                ("grant_type", "password"),
                ("username", user),
                ("password", ADMIN_PASSWORD),
                ("service", "berth-test"),
            ])
            .send()
            .await
            .unwrap();
        assert_error(form, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }

    // The rest of the OAuth2 form and the query: never a 5xx.
    for fields in [
        vec![("grant_type", "refresh_token"), ("refresh_token", "\0")],
        vec![
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin\0password"),
        ],
        vec![
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", ADMIN_PASSWORD),
            ("scope", "repository:ad\0min/app:pull"),
        ],
        vec![("grant_type", "password"), ("service", "berth\0")],
        vec![("grant_type", "\0")],
    ] {
        let response = app
            .client
            .post(app.url("/token"))
            .form(&fields)
            .send()
            .await
            .unwrap();
        assert_answered(response, &format!("{fields:?}")).await;
    }
    for query in [
        "service=berth%00",
        "service=berth-test&scope=repository:a%00/b:pull",
        "service=berth-test&scope=registry:catalog:%00",
        "service=berth-test&offline_token=%00",
    ] {
        let response = basic(&app, &format!("/token?{query}"), "admin", ADMIN_PASSWORD)
            .send()
            .await
            .unwrap();
        assert_answered(response, query).await;
    }

    // Each counts as a failure from its address.
    let attacker = reqwest::Client::builder()
        .local_address("127.0.0.5".parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let mut limited = None;
    for _ in 0..100 {
        let response = attacker
            .get(app.url("/token?service=berth-test"))
            .basic_auth("ad\0min", Some(ADMIN_PASSWORD))
            .send()
            .await
            .unwrap();
        if response.status() != StatusCode::UNAUTHORIZED {
            limited = Some(response);
            break;
        }
    }
    let limited = limited.expect("the limiter never stepped in");
    assert_error(limited, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
}

/// An admin's request to the account API.
fn admin(app: &TestApp, method: Method, path: &str) -> reqwest::RequestBuilder {
    app.client
        .request(method, app.url(path))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
}

async fn nul_in_account_api_values_is_refused(app: TestApp) {
    create_user(&app, "alice", "alice-password").await;
    let created = admin(&app, Method::POST, "/api/v1/orgs")
        .json(&json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let paths = [
        (Method::DELETE, "/api/v1/users/al%00ice", None),
        (
            Method::PUT,
            "/api/v1/users/al%00ice/password",
            Some(json!({"password": "long enough"})),
        ),
        (
            Method::PUT,
            "/api/v1/orgs/te%00am/members/alice",
            Some(json!({"role": "read"})),
        ),
        (
            Method::PUT,
            "/api/v1/orgs/team/members/al%00ice",
            Some(json!({"role": "read"})),
        ),
        (Method::DELETE, "/api/v1/orgs/team/members/al%00ice", None),
        (Method::GET, "/api/v1/tokens?user=al%00ice", None),
        (Method::DELETE, "/api/v1/tokens/tok_%00", None),
        (Method::GET, "/api/v1/visibility/alice/a%00pp", None),
        (
            Method::PUT,
            "/api/v1/visibility/alice/a%00pp",
            Some(json!({"public": true})),
        ),
        (
            Method::PUT,
            "/api/v1/immutable-tags/alice?pattern=v%00",
            None,
        ),
        (
            Method::DELETE,
            "/api/v1/immutable-tags/al%00ice?pattern=v*",
            None,
        ),
        (Method::GET, "/api/v1/quotas/al%00ice", None),
        (Method::DELETE, "/api/v1/quotas/al%00ice", None),
        (Method::DELETE, "/api/v1/retention/al%00ice", None),
        (
            Method::PUT,
            "/api/v1/retention/alice",
            Some(json!({"keep_last": 1, "exclude": ["v\u{0}"]})),
        ),
        (
            Method::POST,
            "/api/v1/users",
            Some(json!({"name": "bob", "password": "pass\u{0}word"})),
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"user": "al\u{0}ice", "scopes": ["repository:alice/*:pull"]})),
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"scopes": ["repository:alice/*:pull"], "description": "ci\u{0}"})),
        ),
        (
            Method::POST,
            "/api/v1/tokens",
            Some(json!({"scopes": ["repository:al\u{0}ice/*:pull"]})),
        ),
        (
            Method::POST,
            "/api/v1/orgs",
            Some(json!({"name": "x".repeat(10_000)})),
        ),
    ];
    for (method, path, body) in paths {
        let mut request = admin(&app, method.clone(), path);
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let what = format!("{method} {path} {body:?}");
        let body = assert_error(response, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
        assert!(message(&body).contains('`'), "{what}: {body}");
    }
}

async fn nul_in_registry_queries_is_refused(app: TestApp) {
    push_image(&app, "alice/app", "v1").await;
    let long = "a".repeat(60_000);
    for (path, code) in [
        ("/v2/_catalog?last=%00".to_string(), "NAME_INVALID"),
        ("/v2/_catalog?n=1&last=alice%00".to_string(), "NAME_INVALID"),
        (format!("/v2/_catalog?last={long}"), "NAME_INVALID"),
        (
            "/v2/alice/app/tags/list?last=%00".to_string(),
            "TAG_INVALID",
        ),
        (
            format!("/v2/alice/app/tags/list?last={long}"),
            "TAG_INVALID",
        ),
        (
            format!("/v2/alice/app/referrers/{}?artifactType=%00", sha256(b"x")),
            "INVALID_REQUEST",
        ),
    ] {
        let response = app.get(&path).await;
        assert_error(response, StatusCode::BAD_REQUEST, code).await;
    }
    // What a page's Link names still works.
    let page = app.get("/v2/_catalog?n=1&last=alice%2Fapp").await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = app.get("/v2/alice/app/tags/list?last=").await;
    assert_eq!(page.json_value().await["tags"], json!(["v1"]));
}

async fn wrong_methods_and_unreadable_requests_get_the_error_shape(app: TestApp) {
    for (method, path, allowed) in [
        (Method::PATCH, "/api/v1/users", "GET,HEAD,POST"),
        (Method::POST, "/api/v1/me", "GET,HEAD"),
        (Method::POST, "/api/v1/quotas/alice", "GET,HEAD,PUT,DELETE"),
        (Method::GET, "/api/v1/users/alice", "DELETE"),
        (Method::PUT, "/token", "GET,HEAD,POST"),
        (Method::DELETE, "/token/jwks.json", "GET,HEAD"),
        (Method::POST, "/healthz", "GET,HEAD"),
        (Method::POST, "/v2/", "GET,HEAD"),
        (Method::DELETE, "/v2/_catalog", "GET,HEAD"),
        (
            Method::POST,
            "/v2/alice/app/manifests/v1",
            "GET,HEAD,PUT,DELETE",
        ),
        (Method::PATCH, "/v2/alice/app/blobs/uploads/", "POST"),
    ] {
        let response = admin(&app, method.clone(), path).send().await.unwrap();
        let what = format!("{method} {path}");
        let mut allow: Vec<String> = header(&response, "allow")
            .split(',')
            .map(|m| m.trim().to_string())
            .collect();
        allow.sort();
        let mut expected: Vec<&str> = allowed.split(',').collect();
        expected.sort();
        assert_eq!(allow, expected, "{what}");
        let body = assert_error(response, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
        assert!(message(&body).contains("method"), "{what}: {body}");
    }

    // Bodies and queries axum cannot read.
    let not_json = admin(&app, Method::POST, "/api/v1/users")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_error(not_json, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    let wrong_shape = admin(&app, Method::POST, "/api/v1/users")
        .json(&json!({"name": 7}))
        .send()
        .await
        .unwrap();
    assert_error(wrong_shape, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    let too_large = admin(&app, Method::POST, "/api/v1/users")
        .header("content-type", "application/json")
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_error(too_large, StatusCode::PAYLOAD_TOO_LARGE, "INVALID_REQUEST").await;
    let no_pattern = admin(&app, Method::PUT, "/api/v1/immutable-tags/alice")
        .send()
        .await
        .unwrap();
    assert_error(no_pattern, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
    let bad_utf8 = admin(&app, Method::DELETE, "/api/v1/users/%FF")
        .send()
        .await
        .unwrap();
    assert_error(bad_utf8, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
}

backend_tests!(
    manifests_must_be_of_a_manifest_type,
    artifact_types_follow_the_media_type_grammar,
    unservable_stored_media_types_are_served_as_bytes,
    nothing_served_is_a_page,
    nul_in_registry_queries_is_refused,
    wrong_methods_and_unreadable_requests_get_the_error_shape,
);

/// The realm is built from `Host`; one that is not a plain `host[:port]`
/// cannot add parameters to the challenge or send clients elsewhere.
async fn a_hostile_host_cannot_rewrite_the_challenge(app: TestApp) {
    for host in [
        "evil\",realm=\"http://attacker.example/token",
        "user@attacker.example",
        "attacker.example/token?",
    ] {
        let response = app
            .client
            .get(app.url("/v2/"))
            .header(reqwest::header::HOST, host)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{host}");
        let challenge = response.headers()[reqwest::header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.starts_with("Bearer realm=\"http://localhost/token\","),
            "{host}: {challenge}"
        );
        assert_eq!(challenge.matches("realm=").count(), 1, "{challenge}");
        assert!(!challenge.contains("attacker"), "{challenge}");
    }
    let named = app
        .client
        .get(app.url("/v2/"))
        .header(reqwest::header::HOST, "registry.example:5000")
        .send()
        .await
        .unwrap();
    let challenge = named.headers()[reqwest::header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(
        challenge.starts_with("Bearer realm=\"http://registry.example:5000/token\","),
        "{challenge}"
    );
}

mod secured {
    use super::*;

    secured_backend_tests!(
        impossible_login_names_are_bad_credentials,
        a_hostile_host_cannot_rewrite_the_challenge,
        nul_in_account_api_values_is_refused,
    );
}
