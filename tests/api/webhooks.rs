//! Webhooks and the audit log, against a real HTTP receiver on loopback:
//! events arrive in the reference registry's envelope, signed as Standard
//! Webhooks sign (checked with `openssl`, an independent HMAC), retried with
//! the same id until the receiver takes them, filtered per endpoint; and
//! the audit log records pushes, refusals and logins, readable by the
//! namespace's admins only.

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::harness::{ADMIN_PASSWORD, Backend, TestApp};
use crate::support::*;

const SECRET: &str = "a-plain-secret-for-tests";

/// One request the receiver took: the hook's path, headers and body.
type Received = (String, HeaderMap, Vec<u8>);

/// What the receiver was sent: headers and body of every request.
#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    /// Listens on loopback; answers every request with the current status.
    async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.status.store(200, Ordering::SeqCst);
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/{hook}",
            axum::routing::post(
                move |axum::extract::Path(hook): axum::extract::Path<String>,
                      headers: HeaderMap,
                      body: axum::body::Bytes| {
                    let state = state.clone();
                    async move {
                        state
                            .seen
                            .lock()
                            .unwrap()
                            .push((hook, headers, body.to_vec()));
                        StatusCode::from_u16(state.status.load(Ordering::SeqCst)).unwrap()
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (receiver, format!("http://{address}"))
    }

    /// What `hook` received, bodies parsed as JSON.
    fn requests(&self, hook: &str) -> Vec<(HeaderMap, Value)> {
        self.raw(hook)
            .into_iter()
            .map(|(headers, body)| (headers, serde_json::from_slice(&body).unwrap()))
            .collect()
    }

    fn raw(&self, hook: &str) -> Vec<(HeaderMap, Vec<u8>)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, _, _)| h == hook)
            .map(|(_, headers, body)| (headers.clone(), body.clone()))
            .collect()
    }

    /// Waits until `done` holds for what `hook` received.
    async fn wait_for(&self, hook: &str, done: impl Fn(&[(HeaderMap, Value)]) -> bool) {
        for _ in 0..200 {
            if done(&self.requests(hook)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{hook} never received what was expected: {:?}",
            self.requests(hook)
        );
    }
}

fn endpoint(
    name: &str,
    url: String,
    repositories: &[&str],
    actions: &[&str],
) -> berth::metadata::EndpointSpec {
    let mut spec = berth::metadata::EndpointSpec {
        namespace: String::new(),
        name: name.into(),
        url,
        secret: SECRET.into(),
        format: berth::metadata::EventFormat::Reference,
        repositories: repositories.iter().map(|s| s.to_string()).collect(),
        actions: actions.iter().map(|s| s.to_string()).collect(),
        ignore_media_types: vec![],
        headers: vec![("X-Team".into(), "registry".into())],
        timeout_ms: 2000,
    };
    berth::events::endpoint::check(&mut spec).unwrap();
    spec
}

async fn start_with_hooks(backend: Backend, base: &str, secured: bool) -> TestApp {
    let hooks = vec![
        endpoint("all", format!("{base}/all"), &[], &[]),
        endpoint("team", format!("{base}/team"), &["team/*"], &["push"]),
    ];
    TestApp::start_with(backend, move |config| {
        config.events.webhooks = hooks;
        config.events.settings.poll_interval = Duration::from_millis(50);
        config.events.settings.retry_initial = Duration::from_millis(100);
        config.events.settings.retry_max = Duration::from_millis(200);
        if secured {
            config.auth.enabled = true;
            config.auth.admin_password = Some(ADMIN_PASSWORD.into());
        }
    })
    .await
}

/// The signature as `openssl` computes it: HMAC-SHA256 in base64.
fn openssl_signature(id: &str, timestamp: &str, body: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-binary", "-hmac", SECRET])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{id}.{timestamp}.").as_bytes())
        .unwrap();
    stdin.write_all(body).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    use base64::Engine;
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(output.stdout)
    )
}

async fn events_arrive_signed_in_the_reference_envelope(backend: Backend) {
    let (receiver, base) = Receiver::start().await;
    // Refused at first: the events wait in the outbox and are retried.
    receiver.status.store(503, Ordering::SeqCst);
    let app = start_with_hooks(backend, &base, false).await;
    let digest = push_image(&app, "alice/app", "v1").await;
    receiver
        .wait_for("all", |requests| requests.len() >= 4)
        .await;
    receiver.status.store(204, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let requests = receiver.requests("all");
    // Every attempt at one event carries the same id.
    let mut ids: Vec<String> = requests
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        2,
        "repository.created and manifest.pushed: {ids:?}"
    );
    assert!(requests.len() > 2, "the refused deliveries were retried");

    let push = requests
        .iter()
        .map(|(_, body)| &body["events"][0])
        .find(|e| e["action"] == "push")
        .expect("a push event");
    assert_eq!(push["target"]["repository"], "alice/app");
    assert_eq!(push["target"]["digest"], digest.as_str());
    assert_eq!(push["target"]["tag"], "v1");
    assert_eq!(push["target"]["mediaType"], OCI_MANIFEST);
    assert!(push["target"]["size"].as_u64().unwrap() > 0);
    assert_eq!(push["target"]["length"], push["target"]["size"]);
    assert!(
        push["target"]["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v2/alice/app/manifests/{digest}"))
    );
    assert_eq!(push["request"]["method"], "PUT");
    assert!(!push["request"]["id"].as_str().unwrap().is_empty());
    assert!(!push["source"]["instanceID"].as_str().unwrap().is_empty());
    assert!(push["timestamp"].as_str().unwrap().ends_with('Z'));

    for (headers, body) in receiver.raw("all") {
        assert_eq!(
            headers["content-type"],
            "application/vnd.docker.distribution.events.v2+json"
        );
        assert_eq!(headers["x-team"], "registry");
        let id = headers["webhook-id"].to_str().unwrap();
        let timestamp = headers["webhook-timestamp"].to_str().unwrap();
        assert_eq!(
            headers["webhook-signature"].to_str().unwrap(),
            openssl_signature(id, timestamp, &body)
        );
    }
    // Filtered to team/* and pushes: nothing about alice/app.
    assert!(receiver.requests("team").is_empty());
    receiver.seen.lock().unwrap().clear();
    push_image(&app, "team/app", "v1").await;
    app.delete("/v2/team/app/manifests/v1").await;
    receiver
        .wait_for("all", |r| {
            r.iter().any(|(_, b)| b["events"][0]["action"] == "delete")
        })
        .await;
    let team = receiver.requests("team");
    assert_eq!(team.len(), 1, "{team:?}");
    assert_eq!(team[0].1["events"][0]["action"], "push");
    assert_eq!(team[0].1["events"][0]["target"]["repository"], "team/app");
    let deleted = receiver
        .requests("all")
        .into_iter()
        .find(|(_, b)| b["events"][0]["action"] == "delete")
        .unwrap();
    let target = deleted.1["events"][0]["target"]
        .as_object()
        .unwrap()
        .clone();
    let mut keys: Vec<&str> = target.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["digest", "repository", "tag"]);
}

#[tokio::test]
async fn events_arrive_signed_in_the_reference_envelope_sqlite() {
    events_arrive_signed_in_the_reference_envelope(Backend::Sqlite).await;
}

#[tokio::test]
async fn events_arrive_signed_in_the_reference_envelope_postgres() {
    events_arrive_signed_in_the_reference_envelope(Backend::Postgres).await;
}

/// An event waiting in the outbox survives a restart of the registry.
#[tokio::test]
async fn an_undelivered_event_survives_a_restart() {
    let (receiver, base) = Receiver::start().await;
    receiver.status.store(500, Ordering::SeqCst);
    let mut app = start_with_hooks(Backend::Sqlite, &base, false).await;
    push_image(&app, "team/app", "v1").await;
    receiver.wait_for("team", |r| !r.is_empty()).await;
    app.restart().await;
    receiver.status.store(200, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let ids: std::collections::HashSet<String> = receiver
        .requests("team")
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one logical event");
    let response = app
        .client
        .get(app.url("/api/v1/webhooks/team/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.json_value().await;
    assert_eq!(body["deliveries"][0]["state"], "delivered", "{body}");
}

async fn audit(app: &TestApp, user: (&str, &str), query: &str) -> reqwest::Response {
    app.client
        .get(app.url(&format!("/api/v1/audit?{query}")))
        .basic_auth(user.0, Some(user.1))
        .send()
        .await
        .unwrap()
}

async fn the_audit_log_says_who_did_what(backend: Backend) {
    let (_receiver, base) = Receiver::start().await;
    let mut app = start_with_hooks(backend, &base, true).await;
    create_user(&app, "alice", "alice-password").await;
    create_user(&app, "bob", "bob-password").await;
    let admin = ("admin", ADMIN_PASSWORD);
    // A push with an access token.
    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"scopes": ["repository:alice/*:pull,push"], "description": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = created.json_value().await;
    let secret = created["secret"].as_str().unwrap().to_string();
    let token_id = created["id"].as_str().unwrap().to_string();
    app.bearer = Some(
        token(
            &app,
            Some(("alice", &secret)),
            &["repository:alice/app:pull,push"],
        )
        .await,
    );
    push_image(&app, "alice/app", "v1").await;
    // A failed login.
    let refused = request_token(&app, Some(("alice", "wrong-password")), &[]).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    // A refused overwrite of an immutable tag.
    let rule = app
        .client
        .put(app.url("/api/v1/immutable-tags/alice?pattern=v*"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(rule.status(), StatusCode::NO_CONTENT);
    let moved = push_image_blobs(&app, "alice/app", "another").await;
    let response = put_manifest(&app, "alice/app", "v1", OCI_MANIFEST, &moved).await;
    assert_error(response, StatusCode::FORBIDDEN, "DENIED").await;
    // A tag deleted by an administrator.
    let admin_token = token(
        &app,
        Some(admin),
        &["repository:alice/app:pull,push,delete"],
    )
    .await;
    push_image(&app, "alice/app", "latest").await;
    let deleted = with_token(
        &app,
        Method::DELETE,
        "/v2/alice/app/manifests/latest",
        &admin_token,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(deleted.status(), StatusCode::ACCEPTED);

    let rows = audit(&app, admin, "n=500").await;
    assert_eq!(rows.status(), StatusCode::OK);
    let rows = rows.json_value().await["entries"]
        .as_array()
        .unwrap()
        .clone();
    let find = |action: &str, outcome: &str| {
        rows.iter()
            .find(|r| r["action"] == action && r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} in {rows:#?}"))
            .clone()
    };
    let pushed = find("manifest.pushed", "ok");
    assert_eq!(pushed["actor"], "alice");
    assert_eq!(pushed["auth_method"], "access_token");
    assert_eq!(pushed["access_token"], token_id.as_str());
    assert_eq!(pushed["repository"], "alice/app");
    assert!(
        pushed["client_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1")
    );
    assert!(pushed["request_id"].as_str().is_some());
    let failed = find("login", "failed");
    assert_eq!(failed["actor"], "alice");
    let denied = find("manifest.push", "denied");
    assert!(
        denied["detail"]["message"]
            .as_str()
            .unwrap()
            .contains("immutable"),
        "{denied}"
    );
    let tag_deleted = find("tag.deleted", "ok");
    assert_eq!(tag_deleted["actor"], "admin");
    assert_eq!(tag_deleted["target"].as_str().unwrap().len(), 71);
    find("access_token.created", "ok");
    find("user.created", "ok");

    // Namespace admins read their namespace; nobody else's.
    let own = audit(&app, ("alice", "alice-password"), "namespace=alice").await;
    assert_eq!(own.status(), StatusCode::OK);
    let own = own.json_value().await;
    assert!(
        own["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["namespace"] == "alice")
    );
    let other = audit(&app, ("bob", "bob-password"), "namespace=alice").await;
    assert_error(other, StatusCode::FORBIDDEN, "DENIED").await;
    let whole = audit(&app, ("bob", "bob-password"), "").await;
    assert_error(whole, StatusCode::FORBIDDEN, "DENIED").await;
    let bad = audit(&app, admin, "since=yesterday").await;
    assert_error(bad, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
}

#[tokio::test]
async fn the_audit_log_says_who_did_what_sqlite() {
    the_audit_log_says_who_did_what(Backend::Sqlite).await;
}

#[tokio::test]
async fn the_audit_log_says_who_did_what_postgres() {
    the_audit_log_says_who_did_what(Backend::Postgres).await;
}

/// A namespace's admin adds a hook for it through `/api/v1`, tries it,
/// and another user cannot see it.
#[tokio::test]
async fn namespace_webhooks_are_managed_by_their_admins() {
    let (receiver, base) = Receiver::start().await;
    let app = start_with_hooks(Backend::Sqlite, &base, true).await;
    create_user(&app, "alice", "alice-password").await;
    create_user(&app, "bob", "bob-password").await;
    let added = app
        .client
        .post(app.url("/api/v1/namespaces/alice/webhooks"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"name": "deploy", "url": format!("{base}/deploy"), "format": "cloudevents"}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::CREATED);
    let added = added.json_value().await;
    let secret = added["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    let listed = app
        .client
        .get(app.url("/api/v1/namespaces/alice/webhooks"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(listed["webhooks"][0]["name"], "deploy");
    assert!(listed["webhooks"][0].get("secret").is_none());
    let refused = app
        .client
        .get(app.url("/api/v1/namespaces/alice/webhooks"))
        .basic_auth("bob", Some("bob-password"))
        .send()
        .await
        .unwrap();
    assert_error(refused, StatusCode::FORBIDDEN, "DENIED").await;
    let tested = app
        .client
        .post(app.url("/api/v1/namespaces/alice/webhooks/deploy/test"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(tested.status(), StatusCode::CREATED);
    receiver.wait_for("deploy", |r| !r.is_empty()).await;
    let (headers, body) = &receiver.requests("deploy")[0];
    assert_eq!(headers["content-type"], "application/cloudevents+json");
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["type"], "io.berth.test");
    // The config file's endpoints did not hear the test.
    assert!(
        receiver
            .requests("all")
            .iter()
            .all(|(_, b)| b["events"][0]["action"] != "test")
    );
    let bad = app
        .client
        .post(app.url("/api/v1/namespaces/alice/webhooks"))
        .basic_auth("alice", Some("alice-password"))
        .json(&json!({"name": "x", "url": "file:///etc/passwd"}))
        .send()
        .await
        .unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "INVALID_REQUEST").await;
}

/// Pushes a small image through `instance` with `token`; returns the manifest's digest.
async fn push_through(
    instance: &crate::instances::Instance,
    token: &str,
    repo: &str,
    tag: &str,
) -> String {
    let http = reqwest::Client::new();
    let config = format!(r#"{{"architecture":"amd64","os":"linux","tag":"{tag}"}}"#);
    let layer = format!("layer of {repo}:{tag}");
    for blob in [config.as_bytes(), layer.as_bytes()] {
        let pushed = http
            .post(format!(
                "{}/v2/{repo}/blobs/uploads/?digest={}",
                instance.base,
                sha256(blob)
            ))
            .bearer_auth(token)
            .body(blob.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(pushed.status(), StatusCode::CREATED);
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config.as_bytes()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer.as_bytes())],
    })
    .to_string();
    let put = http
        .put(format!("{}/v2/{repo}/manifests/{tag}", instance.base))
        .bearer_auth(token)
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::CREATED);
    sha256(manifest.as_bytes())
}

/// `berth serve` processes with `[[webhooks]]` in their config file.
async fn instances_with_hook(
    count: usize,
    database_url: &str,
    dir: &std::path::Path,
    base: &str,
) -> Vec<crate::instances::Instance> {
    let config = dir.join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "[events]\npoll_interval = \"50ms\"\nretry_initial = \"100ms\"\nretry_max = \"200ms\"\n\n\
             [[webhooks]]\nname = \"ci\"\nurl = \"{base}/ci\"\nsecret = \"{SECRET}\"\nactions = [\"push\"]\n"
        ),
    )
    .unwrap();
    let storage = dir.join("blobs");
    crate::instances::start_instances_with(
        count,
        database_url,
        storage.to_str().unwrap(),
        &[("BERTH_CONFIG", config.to_str().unwrap())],
    )
    .await
}

/// Two instances on one PostgreSQL deliver every push once by id; an
/// instance killed (SIGKILL) while its events wait leaves them to the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_deliver_every_event_once_and_a_killed_one_loses_none() {
    let database = crate::harness::PostgresDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let (receiver, base) = Receiver::start().await;
    let instances = instances_with_hook(2, &database.url, dir.path(), &base).await;
    let token =
        crate::instances::admin_token(&instances[0], &["repository:team/app:pull,push"]).await;
    let mut digests = Vec::new();
    for i in 0..20 {
        let instance = &instances[i % 2];
        digests.push(push_through(instance, &token, "team/app", &format!("v{i}")).await);
    }
    receiver.wait_for("ci", |r| r.len() >= 20).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let requests = receiver.requests("ci");
    let ids: std::collections::HashSet<String> = requests
        .iter()
        .map(|(h, _)| h["webhook-id"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(requests.len(), 20, "no event delivered twice");
    assert_eq!(ids.len(), 20);
    let tags: std::collections::HashSet<String> = requests
        .iter()
        .map(|(_, b)| {
            b["events"][0]["target"]["tag"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tags.len(), 20, "every push reported");

    // The receiver is down; the push's event waits; the instances die by SIGKILL.
    receiver.status.store(503, Ordering::SeqCst);
    receiver.seen.lock().unwrap().clear();
    push_through(&instances[0], &token, "team/app", "after-crash").await;
    receiver.wait_for("ci", |r| !r.is_empty()).await;
    let waiting = receiver.requests("ci")[0].0["webhook-id"].clone();
    drop(instances);
    receiver.seen.lock().unwrap().clear();
    receiver.status.store(200, Ordering::SeqCst);
    let restarted = instances_with_hook(1, &database.url, dir.path(), &base).await;
    receiver.wait_for("ci", |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = receiver.requests("ci");
    assert_eq!(after.len(), 1, "delivered once it was taken: {after:?}");
    assert_eq!(after[0].0["webhook-id"], waiting, "the same event, by id");
    assert_eq!(after[0].1["events"][0]["target"]["tag"], "after-crash");
    drop(restarted);
}

/// An endpoint that asks for pulls hears them; a delivery refused past
/// `max_age` is dead, listed, and delivered once redelivered.
#[tokio::test]
async fn pulls_dead_letters_and_redelivery() {
    let (receiver, base) = Receiver::start().await;
    receiver.status.store(500, Ordering::SeqCst);
    let hook = endpoint("pulls", format!("{base}/pulls"), &[], &["pull"]);
    let app = TestApp::start_with(Backend::Sqlite, move |config| {
        config.events.webhooks = vec![hook];
        config.events.settings.poll_interval = Duration::from_millis(50);
        config.events.settings.retry_initial = Duration::from_millis(50);
        config.events.settings.retry_max = Duration::from_millis(100);
        config.events.settings.max_age = Duration::from_millis(300);
    })
    .await;
    let digest = push_image(&app, "alice/app", "v1").await;
    assert_eq!(
        app.head("/v2/alice/app/manifests/v1").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get("/v2/alice/app/manifests/v1").await.status(),
        StatusCode::OK
    );
    receiver.wait_for("pulls", |r| !r.is_empty()).await;
    let (_, body) = &receiver.requests("pulls")[0];
    assert_eq!(body["events"][0]["action"], "pull");
    assert_eq!(body["events"][0]["target"]["digest"], digest.as_str());
    let deliveries = |dead: bool| {
        let app = &app;
        async move {
            app.get(&format!("/api/v1/webhooks/pulls/deliveries?dead={dead}"))
                .await
                .json_value()
                .await["deliveries"]
                .as_array()
                .unwrap()
                .clone()
        }
    };
    let mut dead = Vec::new();
    for _ in 0..100 {
        dead = deliveries(true).await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // One pull (the HEAD is not one), given up on, with its last answer.
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["last_status"], 500);
    assert!(dead[0]["attempts"].as_i64().unwrap() >= 2);
    receiver.status.store(200, Ordering::SeqCst);
    receiver.seen.lock().unwrap().clear();
    let id = dead[0]["id"].as_i64().unwrap();
    let redelivered = app
        .request(
            Method::POST,
            &format!("/api/v1/webhooks/pulls/deliveries/{id}/redeliver"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(redelivered.status(), StatusCode::NO_CONTENT);
    receiver.wait_for("pulls", |r| !r.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(deliveries(false).await[0]["state"], "delivered");
    let again = app
        .request(
            Method::POST,
            &format!("/api/v1/webhooks/pulls/deliveries/{id}/redeliver"),
        )
        .send()
        .await
        .unwrap();
    assert_error(again, StatusCode::NOT_FOUND, "NOT_FOUND").await;
}
