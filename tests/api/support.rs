//! Client-side helpers: digests, blob and manifest pushes, and assertions on
//! the spec's error bodies.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::harness::TestApp;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("response has no {name} header: {:?}", response.headers()))
        .to_str()
        .unwrap()
}

/// Asserts status and the spec's error body `{"errors":[{"code":..}]}`.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    assert_eq!(header(&response, "content-type"), "application/json");
    let body: Value = response.json_value().await;
    let errors = body["errors"].as_array().expect("errors array");
    assert_eq!(errors[0]["code"], code, "body: {body}");
    assert!(errors[0]["message"].is_string(), "body: {body}");
    assert!(errors[0].get("detail").is_some(), "body: {body}");
    body
}

pub trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.unwrap();
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
    }
}

/// Sends a blob in one request (`POST` with `?digest=` and the body);
/// returns the response, whatever it is.
pub async fn post_blob(app: &TestApp, repo: &str, bytes: &[u8]) -> Response {
    app.request(
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/?digest={}", sha256(bytes)),
    )
    .body(bytes.to_vec())
    .send()
    .await
    .unwrap()
}

/// A `GET` of `path` with a `Range` header.
pub async fn get_range(app: &TestApp, path: &str, range: &str) -> Response {
    app.request(Method::GET, path)
        .header("range", range)
        .send()
        .await
        .unwrap()
}

/// Pushes a blob in one request; returns its digest.
pub async fn push_blob(app: &TestApp, repo: &str, bytes: &[u8]) -> String {
    let response = post_blob(app, repo, bytes).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "push blob to {repo}"
    );
    sha256(bytes)
}

pub async fn put_manifest(
    app: &TestApp,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &[u8],
) -> Response {
    app.request(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))
        .header("content-type", media_type)
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

pub fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": sha256(bytes), "size": bytes.len()})
}

/// An image with a config and one layer, blobs pushed; returns the manifest bytes.
pub async fn push_image_blobs(app: &TestApp, repo: &str, seed: &str) -> Vec<u8> {
    let config = json!({"architecture": "amd64", "os": "linux", "seed": seed}).to_string();
    let layer = format!("layer for {seed}");
    push_blob(app, repo, config.as_bytes()).await;
    push_blob(app, repo, layer.as_bytes()).await;
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config.as_bytes()),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", layer.as_bytes())],
    })
    .to_string()
    .into_bytes()
}

/// Pushes a whole image under `tag`; returns the manifest's digest.
pub async fn push_image(app: &TestApp, repo: &str, tag: &str) -> String {
    let manifest = push_image_blobs(app, repo, &format!("{repo}:{tag}")).await;
    let response = put_manifest(app, repo, tag, OCI_MANIFEST, &manifest).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    sha256(&manifest)
}

/// Sends a request byte for byte, bypassing the client's URL normalisation
/// (which would resolve `..` before it left), and returns the status code.
/// Carries `app.bearer` like [`TestApp::request`].
pub async fn raw_status(app: &TestApp, method: &str, path: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let authorization = app
        .bearer
        .as_ref()
        .map(|token| format!("Authorization: Bearer {token}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{authorization}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text}"))
}

/// Creates a user through the account API, as the test registry's admin.
pub async fn create_user(app: &TestApp, name: &str, password: &str) {
    let response = app
        .client
        .post(app.url("/api/v1/users"))
        .basic_auth("admin", Some(crate::harness::ADMIN_PASSWORD))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "creating user {name}"
    );
}

/// `GET /token` as `user` (anonymously when `None`) for `scopes`; returns the response.
pub async fn request_token(app: &TestApp, user: Option<(&str, &str)>, scopes: &[&str]) -> Response {
    let mut query: Vec<(&str, &str)> = vec![("service", "berth-test")];
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    let mut request = app.client.get(app.url("/token")).query(&query);
    if let Some((name, password)) = user {
        request = request.basic_auth(name, Some(password));
    }
    request.send().await.unwrap()
}

/// A registry token for `scopes`, which must be issued.
pub async fn token(app: &TestApp, user: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let response = request_token(app, user, scopes).await;
    assert_eq!(response.status(), StatusCode::OK, "token request");
    let body = response.json_value().await;
    assert_eq!(body["token"], body["access_token"]);
    body["token"].as_str().expect("token").to_string()
}

/// The claims of a JWT, read without verifying it.
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// A request carrying a bearer token.
pub fn with_token(
    app: &TestApp,
    method: Method,
    path: &str,
    token: &str,
) -> reqwest::RequestBuilder {
    app.client.request(method, app.url(path)).bearer_auth(token)
}
