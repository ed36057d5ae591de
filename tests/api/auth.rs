//! Login and access control: challenges, the token endpoint (GET and the
//! OAuth2 POST), namespaces, organizations, access tokens, public
//! repositories, the catalog, failed-login limits, the account API, and
//! forged or misused tokens.

use std::net::IpAddr;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, Backend, TestApp};
use crate::secured_backend_tests;
use crate::support::*;

const ALICE: (&str, &str) = ("alice", "alice-password");
const BOB: (&str, &str) = ("bob", "bob-password");

async fn with_users(app: &TestApp) {
    create_user(app, ALICE.0, ALICE.1).await;
    create_user(app, BOB.0, BOB.1).await;
}

/// Parses `Bearer realm="..",service="..",scope=".."` into its parameters.
fn challenge(response: &reqwest::Response) -> std::collections::HashMap<String, String> {
    let value = header(response, "www-authenticate");
    let params = value.strip_prefix("Bearer ").expect("a Bearer challenge");
    params
        .split("\",")
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key.to_string(), value.trim_matches('"').to_string())
        })
        .collect()
}

async fn requests_without_a_token_are_challenged_with_the_scope_they_need(app: TestApp) {
    let base = app.get("/v2/").await;
    let params = challenge(&base);
    assert_eq!(params["realm"], format!("{}/token", app.base));
    assert_eq!(params["service"], "berth-test");
    assert!(!params.contains_key("scope"));
    assert_error(base, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    let cases = [
        (
            Method::GET,
            "/v2/alice/app/tags/list",
            "repository:alice/app:pull",
        ),
        (
            Method::HEAD,
            "/v2/alice/app/manifests/1",
            "repository:alice/app:pull",
        ),
        (
            Method::PUT,
            "/v2/alice/app/manifests/1",
            "repository:alice/app:pull,push",
        ),
        (
            Method::DELETE,
            "/v2/alice/app/manifests/sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "repository:alice/app:delete",
        ),
        (
            Method::POST,
            "/v2/alice/app/blobs/uploads/",
            "repository:alice/app:pull,push",
        ),
        (Method::GET, "/v2/_catalog", "registry:catalog:*"),
    ];
    for (method, path, scope) in cases {
        let response = app.request(method.clone(), path).send().await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        assert_eq!(challenge(&response)["scope"], scope, "{method} {path}");
    }
}

async fn a_login_grants_only_what_the_user_may_do(mut app: TestApp) {
    with_users(&app).await;
    let asked = [
        "repository:alice/app:pull,push,delete",
        "repository:bob/app:pull",
        "registry:catalog:*",
    ];
    let response = request_token(&app, Some(ALICE), &asked).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "cache-control"), "no-store");
    let body = response.json_value().await;
    assert_eq!(body["expires_in"], 300);
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(body.get("refresh_token").is_none());
    let token = body["token"].as_str().unwrap().to_string();
    let claims = claims(&token);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["aud"], "berth-test");
    assert_eq!(claims["iss"], "berth");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        300
    );
    assert!(claims["jti"].is_string() && claims["nbf"].is_u64());
    assert_eq!(
        claims["access"],
        json!([
            {"type": "repository", "name": "alice/app", "actions": ["pull", "push", "delete"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );

    // The key id is the key's RFC 7638 thumbprint, published in the JWKS.
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    let jwks = app.get("/token/jwks.json").await.json_value().await;
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid in JWKS");
    let thumbprint_input = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk["x"].as_str().unwrap(),
        jwk["y"].as_str().unwrap()
    );
    use base64::Engine;
    use sha2::Digest;
    let thumbprint = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(thumbprint_input.as_bytes()));
    assert_eq!(kid, thumbprint);
    assert_eq!(
        app.get("/.well-known/jwks.json").await.json_value().await,
        jwks
    );

    app.bearer = Some(token.clone());
    assert_eq!(app.get("/v2/").await.status(), StatusCode::OK);
    push_image(&app, "alice/app", "1").await;
    let tags = app.get("/v2/alice/app/tags/list").await.json_value().await;
    assert_eq!(tags["tags"], json!(["1"]));
    let other = app.get("/v2/bob/app/tags/list").await;
    assert_eq!(challenge(&other)["error"], "insufficient_scope");
    assert_error(other, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    let wrong = request_token(&app, Some(("alice", "wrong-password")), &asked).await;
    assert_error(wrong, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let unknown = request_token(&app, Some(("nobody", "whatever1")), &asked).await;
    assert_error(unknown, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let other_service = app
        .client
        .get(app.url("/token?service=elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(other_service.status(), StatusCode::BAD_REQUEST);
}

async fn users_push_only_into_namespaces_they_own_or_belong_to(mut app: TestApp) {
    with_users(&app).await;
    create_user(&app, "carol", "carol-password").await;
    let bob_token = token(
        &app,
        Some(BOB),
        &[
            "repository:alice/app:pull,push",
            "repository:bob/app:pull,push",
        ],
    )
    .await;
    assert_eq!(
        claims(&bob_token)["access"],
        json!([{"type": "repository", "name": "bob/app", "actions": ["pull", "push"]}])
    );
    app.bearer = Some(bob_token);
    let refused = app
        .request(Method::POST, "/v2/alice/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_error(refused, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    push_image(&app, "bob/app", "1").await;

    // alice creates an organization through the API, bob writes, carol reads.
    let api = |method: Method, path: &str, user: (&str, &str)| {
        app.client
            .request(method, app.url(path))
            .basic_auth(user.0, Some(user.1))
    };
    let created = api(Method::POST, "/api/v1/orgs", ALICE)
        .json(&json!({"name": "team"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = created.json_value().await;
    assert_eq!(
        created["members"],
        json!([{"user": "alice", "role": "admin"}])
    );
    let added = api(Method::PUT, "/api/v1/orgs/team/members/bob", ALICE)
        .json(&json!({"role": "write"}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::NO_CONTENT);
    let added = api(Method::PUT, "/api/v1/orgs/team/members/carol", ALICE)
        .json(&json!({"role": "read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::NO_CONTENT);
    let not_admin = api(Method::PUT, "/api/v1/orgs/team/members/carol", BOB)
        .json(&json!({"role": "admin"}))
        .send()
        .await
        .unwrap();
    assert_error(not_admin, StatusCode::FORBIDDEN, "DENIED").await;
    let taken = api(Method::POST, "/api/v1/orgs", BOB)
        .json(&json!({"name": "alice"}))
        .send()
        .await
        .unwrap();
    assert_error(taken, StatusCode::CONFLICT, "CONFLICT").await;

    app.bearer = Some(token(&app, Some(BOB), &["repository:team/app:pull,push,delete"]).await);
    assert_eq!(
        claims(app.bearer.as_ref().unwrap())["access"][0]["actions"],
        json!(["pull", "push"])
    );
    push_image(&app, "team/app", "1").await;
    let carol = token(
        &app,
        Some(("carol", "carol-password")),
        &["repository:team/app:pull,push"],
    )
    .await;
    assert_eq!(claims(&carol)["access"][0]["actions"], json!(["pull"]));
}

/// A `POST /token` with an OAuth2 form.
fn token_form(app: &TestApp, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    app.client.post(app.url("/token")).form(&fields)
}

/// What `docker login` asks for, and what Docker, Harbor and GitLab answer:
/// no refresh token, so Docker stores the password (which podman, skopeo
/// and every other client can read), not an identity token.
async fn logins_get_no_refresh_token_by_default(app: TestApp) {
    with_users(&app).await;
    let docker_login = app
        .client
        .get(app.url("/token?account=alice&client_id=docker&offline_token=true&service=berth-test"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(docker_login.status(), StatusCode::OK);
    let docker_login = docker_login.json_value().await;
    assert!(docker_login["token"].is_string());
    assert!(
        docker_login.get("refresh_token").is_none(),
        "{docker_login}"
    );

    // The OAuth2 form logs in with a password, and follows the same setting.
    let login = token_form(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
            ("service", "berth-test"),
            ("client_id", "docker"),
            ("access_type", "offline"),
            ("scope", "repository:alice/app:pull,push"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let login = login.json_value().await;
    assert!(login.get("refresh_token").is_none(), "{login}");
    assert_eq!(
        claims(login["access_token"].as_str().unwrap())["access"],
        json!([{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}])
    );
}

/// With `auth.refresh_tokens` on, both login forms that ask for offline
/// access get a refresh token, which survives a restart; switched off
/// again, the refresh tokens already out there (identity tokens in users'
/// `config.json`) keep working, and no new ones are issued.
async fn refresh_tokens_when_enabled_outlive_a_restart_and_the_setting(backend: Backend) {
    let mut app = TestApp::start_with(backend, |config| {
        config.auth.enabled = true;
        config.auth.admin_password = Some(ADMIN_PASSWORD.into());
        config.auth.refresh_tokens = true;
    })
    .await;
    with_users(&app).await;
    let login = token_form(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
            ("service", "berth-test"),
            ("client_id", "docker"),
            ("access_type", "offline"),
            (
                "scope",
                "repository:alice/app:pull,push repository:alice/db:pull",
            ),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let login = login.json_value().await;
    let refresh_token = login["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_string();
    assert_eq!(
        claims(login["access_token"].as_str().unwrap())["access"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Without offline access asked for, none.
    let online = token_form(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-password"),
        ],
    )
    .send()
    .await
    .unwrap()
    .json_value()
    .await;
    assert!(online.get("refresh_token").is_none(), "{online}");

    // Docker's GET login with offline_token=true also returns one.
    let docker_login = app
        .client
        .get(app.url("/token?account=alice&client_id=docker&offline_token=true&service=berth-test"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert!(docker_login["refresh_token"].is_string());

    // Switched off: the refresh token issued before still logs in.
    app.config.auth.refresh_tokens = false;
    app.restart().await;
    let docker_login = app
        .client
        .get(app.url("/token?account=alice&client_id=docker&offline_token=true&service=berth-test"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert!(
        docker_login.get("refresh_token").is_none(),
        "{docker_login}"
    );
    let refreshed = token_form(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
            ("service", "berth-test"),
            ("client_id", "docker"),
            ("scope", "repository:alice/app:pull,push"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_eq!(refreshed.status(), StatusCode::OK);
    let refreshed = refreshed.json_value().await;
    app.bearer = Some(refreshed["access_token"].as_str().unwrap().to_string());
    push_image(&app, "alice/app", "after-restart").await;

    let bad = token_form(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", "berth_rt_forged"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_error(bad, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let bad_password = token_form(
        &app,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "nope-nope"),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_error(bad_password, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let unsupported = token_form(&app, &[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(unsupported.status(), StatusCode::BAD_REQUEST);

    // A password change ends stored logins.
    let changed = app
        .client
        .put(app.url("/api/v1/users/alice/password"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"password": "a-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::NO_CONTENT);
    let stale = token_form(
        &app,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh_token),
        ],
    )
    .send()
    .await
    .unwrap();
    assert_error(stale, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

#[tokio::test]
async fn refresh_tokens_when_enabled_on_sqlite() {
    refresh_tokens_when_enabled_outlive_a_restart_and_the_setting(Backend::Sqlite).await;
}

#[tokio::test]
async fn refresh_tokens_when_enabled_on_postgres() {
    refresh_tokens_when_enabled_outlive_a_restart_and_the_setting(Backend::Postgres).await;
}

async fn access_tokens_are_limited_to_their_scope_and_revocable(mut app: TestApp) {
    with_users(&app).await;
    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"scopes": ["repository:alice/web*:pull,push"], "description": "CI", "expires": "30d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = created.json_value().await;
    let secret = created["secret"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(created["expires_at"].as_i64().unwrap() > created["created_at"].as_i64().unwrap());

    let ci = token(
        &app,
        Some(("alice", &secret)),
        &["repository:alice/web:pull,push", "repository:alice/db:pull"],
    )
    .await;
    assert_eq!(
        claims(&ci)["access"],
        json!([{"type": "repository", "name": "alice/web", "actions": ["pull", "push"]}])
    );
    app.bearer = Some(ci);
    push_image(&app, "alice/web", "1").await;
    // The token is not a way into the account API's administration.
    let api = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("alice", Some(&secret))
        .json(&json!({"scopes": ["repository:alice/*:pull,push,delete"]}))
        .send()
        .await
        .unwrap();
    assert_error(api, StatusCode::FORBIDDEN, "DENIED").await;
    // Another user's name with alice's token is refused.
    assert_eq!(
        request_token(&app, Some(("bob", &secret)), &[])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let listed = app
        .client
        .get(app.url("/api/v1/tokens"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(listed["tokens"][0]["id"], id.as_str());
    assert!(listed["tokens"][0].get("secret").is_none());
    let bobs_view = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .basic_auth("bob", Some("bob-password"))
        .send()
        .await
        .unwrap();
    assert_error(bobs_view, StatusCode::NOT_FOUND, "NOT_FOUND").await;
    let revoked = app
        .client
        .delete(app.url(&format!("/api/v1/tokens/{id}")))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let after = request_token(
        &app,
        Some(("alice", &secret)),
        &["repository:alice/web:pull"],
    )
    .await;
    assert_error(after, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
}

async fn public_repositories_are_pulled_anonymously_and_never_pushed(mut app: TestApp) {
    with_users(&app).await;
    app.bearer = Some(
        token(
            &app,
            Some(ALICE),
            &[
                "repository:alice/site:pull,push",
                "repository:alice/private:pull,push",
            ],
        )
        .await,
    );
    let digest = push_image(&app, "alice/site", "1").await;
    push_image(&app, "alice/private", "1").await;

    let not_owner = app
        .client
        .put(app.url("/api/v1/visibility/alice/site"))
        .basic_auth("bob", Some("bob-password"))
        .json(&json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert_error(not_owner, StatusCode::FORBIDDEN, "DENIED").await;
    let made_public = app
        .client
        .put(app.url("/api/v1/visibility/alice/site"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(made_public.status(), StatusCode::NO_CONTENT);
    let shown = app
        .client
        .get(app.url("/api/v1/visibility/alice/site"))
        .basic_auth("bob", Some("bob-password"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(shown["public"], true);

    let anonymous = token(
        &app,
        None,
        &[
            "repository:alice/site:pull,push",
            "repository:alice/private:pull",
            "registry:catalog:*",
        ],
    )
    .await;
    assert_eq!(claims(&anonymous)["sub"], "");
    assert_eq!(
        claims(&anonymous)["access"],
        json!([{"type": "repository", "name": "alice/site", "actions": ["pull"]}])
    );
    app.bearer = Some(anonymous);
    let pulled = app.get("/v2/alice/site/manifests/1").await;
    assert_eq!(pulled.status(), StatusCode::OK);
    assert_eq!(header(&pulled, "docker-content-digest"), digest);
    let push = app
        .request(Method::POST, "/v2/alice/site/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(push.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/v2/_catalog").await.status(),
        StatusCode::UNAUTHORIZED
    );

    // The catalog shows each caller what they may pull.
    app.bearer = Some(
        token(
            &app,
            Some(BOB),
            &["repository:bob/app:pull,push", "registry:catalog:*"],
        )
        .await,
    );
    push_image(&app, "bob/app", "1").await;
    let catalog = app.get("/v2/_catalog").await.json_value().await;
    assert_eq!(catalog["repositories"], json!(["alice/site", "bob/app"]));
    let first = app.get("/v2/_catalog?n=1").await;
    assert!(header(&first, "link").contains("last=alice%2Fsite"));
    assert_eq!(
        first.json_value().await["repositories"],
        json!(["alice/site"])
    );
    app.bearer = Some(
        token(
            &app,
            Some(("admin", ADMIN_PASSWORD)),
            &["registry:catalog:*"],
        )
        .await,
    );
    let everything = app.get("/v2/_catalog").await.json_value().await;
    assert_eq!(
        everything["repositories"],
        json!(["alice/private", "alice/site", "bob/app"])
    );
}

/// A client bound to one loopback address, to stand for one machine.
fn client_from(address: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(address.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Failed logins are counted per user and address, and per address: a
/// stranger guessing from one machine locks only that machine out, never
/// the user elsewhere; an empty password is a client's mistake, not a
/// guess, and counts nowhere.
async fn failed_logins_lock_out_the_guessing_address_not_the_user(app: TestApp) {
    with_users(&app).await;
    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"scopes": ["repository:alice/*:pull"]}))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let secret = created["secret"].as_str().unwrap().to_string();
    let login = |client: &reqwest::Client, user: &str, password: &str| {
        client
            .get(app.url("/token?service=berth-test"))
            .basic_auth(user, Some(password))
            .send()
    };
    let attacker = client_from("127.0.0.2");
    for _ in 0..10 {
        assert_eq!(
            login(&attacker, "alice", "guess-guess")
                .await
                .unwrap()
                .status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = login(&attacker, "alice", "guess-guess").await.unwrap();
    assert!(header(&limited, "retry-after").parse::<u64>().unwrap() > 0);
    assert_error(limited, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    // From the guessing address even the right password waits...
    assert_eq!(
        login(&attacker, "alice", "alice-password")
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...while alice, from her own machine, logs in with either.
    let owner = client_from("127.0.0.3");
    assert_eq!(
        login(&owner, "alice", "alice-password")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        login(&owner, "alice", &secret).await.unwrap().status(),
        StatusCode::OK
    );
    // Other users from the attacker's address are not locked yet.
    assert_eq!(
        login(&attacker, "bob", "bob-password")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // Empty passwords never count, however many, and never log anyone in.
    let naive = client_from("127.0.0.4");
    for _ in 0..40 {
        let empty = login(&naive, "alice", "").await.unwrap();
        assert_error(empty, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    }
    assert_eq!(
        login(&naive, "alice", "alice-password")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let no_password = naive
        .get(app.url("/token?service=berth-test"))
        .basic_auth("alice", None::<&str>)
        .send()
        .await
        .unwrap();
    assert_error(no_password, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // One address guessing across many names is stopped too (30 failures).
    let sprayer = client_from("127.0.0.5");
    for n in 0..30 {
        let status = login(&sprayer, &format!("user{n}"), "guess-guess")
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    assert_eq!(
        login(&sprayer, "bob", "bob-password")
            .await
            .unwrap()
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login(&owner, "bob", "bob-password").await.unwrap().status(),
        StatusCode::OK
    );
}

async fn the_account_api_checks_who_asks(app: TestApp) {
    with_users(&app).await;
    let anonymous = app
        .client
        .get(app.url("/api/v1/users"))
        .send()
        .await
        .unwrap();
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;
    let not_admin = app
        .client
        .get(app.url("/api/v1/users"))
        .basic_auth("bob", Some("bob-password"))
        .send()
        .await
        .unwrap();
    assert_error(not_admin, StatusCode::FORBIDDEN, "DENIED").await;
    let users = app
        .client
        .get(app.url("/api/v1/users"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "alice", "bob"]);
    assert!(users["users"][0].get("password_hash").is_none());
    let post = |body: Value| {
        app.client
            .post(app.url("/api/v1/users"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&body)
            .send()
    };
    assert_error(
        post(json!({"name": "alice", "password": "long-enough"}))
            .await
            .unwrap(),
        StatusCode::CONFLICT,
        "CONFLICT",
    )
    .await;
    assert_error(
        post(json!({"name": "Bad Name", "password": "long-enough"}))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    )
    .await;
    assert_error(
        post(json!({"name": "dave", "password": "short"}))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    )
    .await;
    assert_error(
        post(json!({"nom": "dave"})).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
    )
    .await;
    let me = app
        .client
        .get(app.url("/api/v1/me"))
        .basic_auth("bob", Some("bob-password"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(me["name"], "bob");
    let removed = app
        .client
        .delete(app.url("/api/v1/users/bob"))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        request_token(&app, Some(BOB), &[]).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// Signs `claims` with this registry's own current key.
async fn sign_with_registry_key(app: &TestApp, claims: &Value) -> String {
    let stores = berth::metadata::connect(&app.config.database_url, 1)
        .await
        .unwrap();
    let keys = stores.accounts.signing_keys().await.unwrap();
    let key = keys.last().unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(key.kid.clone());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(key.private_key_pem.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn forged_and_misused_tokens_are_refused(mut app: TestApp) {
    with_users(&app).await;
    let genuine = token(&app, Some(ALICE), &["repository:alice/app:pull"]).await;
    app.bearer = Some(genuine.clone());
    let base = claims(&genuine);
    let now = base["iat"].as_u64().unwrap();
    let kid = jsonwebtoken::decode_header(&genuine).unwrap().kid.unwrap();
    let b64 = |bytes: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    };
    let with = |changes: Value| {
        let mut claims = base.clone();
        for (key, value) in changes.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    let push_scope =
        json!([{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}]);

    let mut forged = Vec::new();
    // alg none, with the genuine claims.
    forged.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            genuine.split('.').nth(1).unwrap()
        ),
    ));
    // Signed by a key of our own making, once under our own kid, once under the registry's.
    let other_pem = berth::auth::keys::SigningKey::generate_pem();
    let other = berth::auth::keys::SigningKey::from_pem(&other_pem).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(other.kid.clone());
    forged.push((
        "unknown key",
        jsonwebtoken::encode(
            &header,
            &with(json!({"access": push_scope})),
            &other.encoding,
        )
        .unwrap(),
    ));
    header.kid = Some(kid.clone());
    forged.push((
        "registry kid, other key",
        jsonwebtoken::encode(
            &header,
            &with(json!({"access": push_scope})),
            &other.encoding,
        )
        .unwrap(),
    ));
    // HS256 keyed with the published public key.
    let jwks = app.get("/token/jwks.json").await.json_value().await;
    let public = serde_json::to_vec(&jwks["keys"][0]).unwrap();
    let mut hs = Header::new(Algorithm::HS256);
    hs.kid = Some(kid.clone());
    forged.push((
        "HS256 with the public key",
        jsonwebtoken::encode(
            &hs,
            &with(json!({"access": push_scope})),
            &EncodingKey::from_secret(&public),
        )
        .unwrap(),
    ));
    // Correctly signed, but expired, for another audience or from another issuer.
    forged.push((
        "expired",
        sign_with_registry_key(
            &app,
            &with(
                json!({"exp": now - 120, "nbf": now - 600, "iat": now - 600, "access": push_scope}),
            ),
        )
        .await,
    ));
    forged.push((
        "wrong audience",
        sign_with_registry_key(
            &app,
            &with(json!({"aud": "another-registry", "access": push_scope})),
        )
        .await,
    ));
    forged.push((
        "wrong issuer",
        sign_with_registry_key(&app, &with(json!({"iss": "mallory", "access": push_scope}))).await,
    ));
    forged.push((
        "not yet valid",
        sign_with_registry_key(
            &app,
            &with(json!({"nbf": now + 3600, "access": push_scope})),
        )
        .await,
    ));
    forged.push((
        "tampered payload",
        format!(
            "{}.{}.{}",
            genuine.split('.').next().unwrap(),
            b64(&serde_json::to_vec(&with(json!({"access": push_scope}))).unwrap()),
            genuine.split('.').nth(2).unwrap()
        ),
    ));
    for (what, token) in forged {
        let response = with_token(&app, Method::POST, "/v2/alice/app/blobs/uploads/", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
        let pull = with_token(&app, Method::GET, "/v2/alice/app/tags/list", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(pull.status(), StatusCode::UNAUTHORIZED, "{what}");
    }
    // A correctly signed token of ours still works, so the refusals above were for the forgery.
    let resigned = sign_with_registry_key(&app, &with(json!({"access": push_scope}))).await;
    let accepted = with_token(
        &app,
        Method::POST,
        "/v2/alice/app/blobs/uploads/",
        &resigned,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(accepted.status(), StatusCode::ACCEPTED);

    // Genuine tokens used beyond what they grant.
    let pull_only = with_token(&app, Method::POST, "/v2/alice/app/blobs/uploads/", &genuine)
        .send()
        .await
        .unwrap();
    assert_eq!(
        pull_only.status(),
        StatusCode::UNAUTHORIZED,
        "a pull token used to push"
    );
    let elsewhere = with_token(&app, Method::GET, "/v2/bob/app/tags/list", &genuine)
        .send()
        .await
        .unwrap();
    assert_eq!(
        elsewhere.status(),
        StatusCode::UNAUTHORIZED,
        "a token for alice/app used on bob/app"
    );
    let delete = with_token(&app, Method::DELETE, "/v2/alice/app/manifests/1", &genuine)
        .send()
        .await
        .unwrap();
    assert_eq!(
        delete.status(),
        StatusCode::UNAUTHORIZED,
        "a pull token used to delete"
    );

    // Path tricks never reach another repository's scope.
    app.bearer = Some(token(&app, Some(BOB), &["repository:bob/app:pull,push"]).await);
    for path in [
        "/v2/bob/app/../../alice/app/tags/list",
        "/v2/bob/app%2F..%2F..%2Falice%2Fapp/tags/list",
        "/v2/bob%2Fapp/tags/list",
        "/v2/bob/app/..%2F..%2Falice/app/tags/list",
    ] {
        let status = raw_status(&app, "GET", path).await;
        assert!(matches!(status, 400 | 401 | 404), "{path} gave {status}");
    }
    // A token request for a malformed name grants nothing.
    let odd = token(
        &app,
        Some(BOB),
        &[
            "repository:bob/../alice/app:pull",
            "repository:bob%2F..%2Falice:pull",
        ],
    )
    .await;
    assert_eq!(claims(&odd)["access"], json!([]));
}

async fn a_rotated_key_signs_new_tokens_while_old_ones_stay_valid(mut app: TestApp) {
    with_users(&app).await;
    let old = token(&app, Some(ALICE), &["repository:alice/app:pull,push"]).await;
    let old_kid = jsonwebtoken::decode_header(&old).unwrap().kid.unwrap();
    let stores = berth::metadata::connect(&app.config.database_url, 1)
        .await
        .unwrap();
    let new_kid = berth::auth::keys::KeyRing::rotate(&stores.accounts)
        .await
        .unwrap();
    assert_ne!(new_kid, old_kid);
    app.restart().await;
    let new = token(&app, Some(ALICE), &["repository:alice/app:pull,push"]).await;
    assert_eq!(
        jsonwebtoken::decode_header(&new).unwrap().kid.unwrap(),
        new_kid
    );
    for token in [&old, &new] {
        let response = with_token(&app, Method::POST, "/v2/alice/app/blobs/uploads/", token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let jwks = app.get("/token/jwks.json").await.json_value().await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
}

secured_backend_tests!(
    requests_without_a_token_are_challenged_with_the_scope_they_need,
    a_login_grants_only_what_the_user_may_do,
    users_push_only_into_namespaces_they_own_or_belong_to,
    logins_get_no_refresh_token_by_default,
    access_tokens_are_limited_to_their_scope_and_revocable,
    public_repositories_are_pulled_anonymously_and_never_pushed,
    failed_logins_lock_out_the_guessing_address_not_the_user,
    the_account_api_checks_who_asks,
    forged_and_misused_tokens_are_refused,
    a_rotated_key_signs_new_tokens_while_old_ones_stay_valid,
);

/// Tokens signed by a key from `signing_key_file` verify on a second
/// instance given the same file, and the JWKS publishes it.
#[tokio::test]
async fn a_configured_key_file_is_shared_by_instances() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("signing.pem");
    std::fs::write(&key_file, berth::auth::keys::SigningKey::generate_pem()).unwrap();
    let configure = |config: &mut berth::config::Config| {
        config.auth.enabled = true;
        config.auth.admin_password = Some(ADMIN_PASSWORD.into());
        config.auth.signing_key_file = Some(key_file.clone());
    };
    let first = TestApp::start_with(Backend::Sqlite, configure).await;
    let second = TestApp::start_with(Backend::Sqlite, configure).await;
    let issued = token(
        &first,
        Some(("admin", ADMIN_PASSWORD)),
        &["repository:team/app:pull"],
    )
    .await;
    let response = with_token(&second, Method::GET, "/v2/team/app/tags/list", &issued)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "authorized, and the repository is unknown"
    );
    let kid = jsonwebtoken::decode_header(&issued).unwrap().kid.unwrap();
    let jwks = second.get("/token/jwks.json").await.json_value().await;
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k["kid"] == kid.as_str())
    );
}
