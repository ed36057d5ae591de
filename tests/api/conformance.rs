//! The OCI distribution-spec conformance suite, ported from Go to Rust and
//! run against Berth on every backend, with authentication off and on.
//!
//! Upstream: github.com/opencontainers/distribution-spec, directory
//! `conformance/`, the v1.1 line (ginkgo v2, referrers, `OCI_AUTOMATIC_CROSSMOUNT`)
//! at commit b5f09ebe541c65857e8721d51a7a3d0e2f1d8749 (`setup.go`,
//! `03_discovery_test.go`), with each other file as last changed before it:
//! `00_conformance_suite_test.go` 81bb239e0c8e, `01_pull_test.go` 47008ca930b5,
//! `02_push_test.go` 11b8e3fba7d2, `04_management_test.go` 3c7a4ac8186f,
//! `image.go` 3ec8a56d897b, `reporter.go` 4d091a9c7814.
//!
//! Every `Specify` of the four workflows is a [`Run::spec`] here, under the
//! same workflow, context and spec names, in the same order, so a failure
//! names the upstream spec. As under ginkgo, a failed spec does not stop the
//! run: the specs after it run on whatever state it left, and the test fails
//! at the end listing every failed spec (upstream's `reporter.go`).
//!
//! Upstream is configured by environment variables; the port fixes them:
//! `OCI_TEST_PULL/PUSH/CONTENT_DISCOVERY/CONTENT_MANAGEMENT=1` (all four
//! workflows), `OCI_DELETE_MANIFEST_BEFORE_BLOBS=true` (the default: Berth
//! refuses to delete a blob a manifest uses), `OCI_AUTOMATIC_CROSSMOUNT=true`
//! (Berth mounts a blob without `from` from a repository the caller may
//! read), `OCI_NAMESPACE` and `OCI_CROSSMOUNT_NAMESPACE` in [`Config`], and,
//! with auth on, `OCI_USERNAME/OCI_PASSWORD` as the client's credentials: an
//! ordinary user, `conformance`, who owns both repositories. Not ported: the
//! alternatives for a registry populated beforehand (`OCI_TAG_NAME`,
//! `OCI_TAG_LIST`, `OCI_MANIFEST_DIGEST`, `OCI_BLOB_DIGEST`: the specs "Get
//! tag name from environment" and "Populate registry with test tags (no
//! push)"), the teardown order for registries that delete manifests last, and
//! the HTML and JUnit reports.
//!
//! With authentication on, requests go through [`client::Client`], which
//! answers Bearer challenges as Docker does; that is what exercises a mount's
//! challenge for both repositories.
//!
//! Where upstream lets a registry choose (201 or 202, a warning instead of a
//! failure), the port holds Berth to its choice, each marked `Berth:` below:
//! a monolithic `POST ?digest=` and a mount the caller may read are 201; a
//! manifest without layers is accepted; referrers apply the `artifactType`
//! filter; deletes of tags, manifests and unused blobs are 202. Specs that
//! upstream runs only after the other choice run here on a state that calls
//! for them: "Cross-mounting of nonexistent blob should yield session id"
//! mounts a blob `from` does not hold; the two "Cross-mounting without
//! from" specs run whatever the mount before them answered, and the one for
//! "automatic content discovery disabled" mounts as a second user, who may
//! read no repository holding the blob. That one runs with auth on only:
//! with auth off every caller reads everything, so discovery always finds it.

mod client;
mod discovery;
mod fixtures;
mod management;
mod pull;
mod push;

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use reqwest::{Method, StatusCode};

use crate::harness::{Backend, TestApp};
use client::{Client, Reply};
use fixtures::Fixtures;

/// What upstream reads from its environment.
pub struct Config {
    /// `OCI_NAMESPACE`: the repository the workflows push to.
    pub namespace: String,
    /// `OCI_CROSSMOUNT_NAMESPACE`: where blobs are mounted to
    /// (upstream's default: `conformance-<uuid>`).
    pub crossmount_namespace: String,
    /// `OCI_AUTOMATIC_CROSSMOUNT`, when set.
    pub automatic_crossmount: Option<bool>,
    /// Berth: another user, who may read none of `namespace`, with a
    /// repository of their own (auth on only).
    pub stranger: Option<(Client, String)>,
}

/// The tag the pull and discovery workflows push (upstream `testTagName`).
pub const TEST_TAG_NAME: &str = "tagtest0";
/// The tag of the manifest without layers (upstream `emptyLayerTestTag`).
pub const EMPTY_LAYER_TEST_TAG: &str = "emptylayer";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCTET_STREAM: &str = "application/octet-stream";

/// A tag list's body (upstream `TagList`).
#[derive(serde::Deserialize)]
pub struct TagList {
    pub tags: Vec<String>,
}

/// The outcome of every spec so far, as upstream's reporter collects them.
pub struct Run {
    seed: u64,
    workflow: &'static str,
    context: &'static str,
    passed: usize,
    failures: Vec<String>,
}

impl Run {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            workflow: "",
            context: "",
            passed: 0,
            failures: Vec::new(),
        }
    }

    /// Starts a workflow (upstream's `g.Context(titlePull, ...)`).
    pub fn workflow(&mut self, title: &'static str) {
        self.workflow = title;
        self.context = "";
    }

    /// Starts a context within the workflow (`g.Context("Setup", ...)`).
    pub fn context(&mut self, title: &'static str) {
        self.context = title;
    }

    /// Runs one spec (`g.Specify(name, ...)`); a panic fails it alone.
    pub async fn spec(&mut self, name: &str, body: impl Future<Output = ()>) {
        match AssertUnwindSafe(body).catch_unwind().await {
            Ok(()) => self.passed += 1,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panicked".into());
                self.failures.push(format!(
                    "{} › {} › {name}\n    {}",
                    self.workflow,
                    self.context,
                    message.replace('\n', "\n    ")
                ));
            }
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} of {} conformance specs failed (fixture seed {}):\n{}",
            self.failures.len(),
            self.failures.len() + self.passed,
            self.seed,
            self.failures.join("\n")
        );
    }
}

/// Asserts the status is `expected`.
#[track_caller]
pub fn assert_status(reply: &Reply, expected: StatusCode) {
    assert_status_in(reply, &[expected]);
}

/// Asserts the status is one of `allowed`.
#[track_caller]
pub fn assert_status_in(reply: &Reply, allowed: &[StatusCode]) {
    assert!(
        allowed.contains(&reply.status),
        "expected {}, got {reply:?}",
        allowed
            .iter()
            .map(|s| s.as_u16().to_string())
            .collect::<Vec<_>>()
            .join(" or ")
    );
}

/// Asserts a 2xx status, or one of `allowed`.
#[track_caller]
pub fn assert_success_or(reply: &Reply, allowed: &[StatusCode]) {
    assert!(
        reply.status.is_success() || allowed.contains(&reply.status),
        "expected 2xx{}, got {reply:?}",
        allowed
            .iter()
            .map(|s| format!(" or {}", s.as_u16()))
            .collect::<String>()
    );
}

/// The setups' way to store a blob: `POST` a session, then `PUT` the whole
/// blob to its location with `?digest=`.
pub async fn post_then_put(client: &Client, content: &[u8]) -> Reply {
    let session = client
        .send(client.request(Method::POST, "/v2/<name>/blobs/uploads/"))
        .await;
    let put = client
        .request(Method::PUT, &session.relative_location())
        .query("digest", &crate::support::sha256(content))
        .header("content-type", OCTET_STREAM)
        .body(content);
    client.send(put).await
}

/// `PUT /v2/<name>/manifests/<reference>` with `content_type`.
pub async fn put_manifest(
    client: &Client,
    reference: &str,
    content_type: &str,
    content: &[u8],
) -> Reply {
    let request = client
        .request(Method::PUT, "/v2/<name>/manifests/<reference>")
        .reference(reference)
        .header("content-type", content_type)
        .body(content);
    client.send(request).await
}

/// `DELETE` of `path` with `<digest>` (which upstream also fills with tags).
pub async fn delete(client: &Client, path: &str, digest: &str) -> Reply {
    client
        .send(client.request(Method::DELETE, path).digest(digest))
        .await
}

async fn run_suite(app: TestApp, authenticated: bool) {
    let (client, config) = if authenticated {
        let password = "conformance-password";
        crate::support::create_user(&app, "conformance", password).await;
        crate::support::create_user(&app, "stranger", password).await;
        let client = Client::new(
            &app.base,
            "conformance/oci",
            Some(("conformance", password)),
        );
        let stranger = Client::new(&app.base, "stranger/own", Some(("stranger", password)));
        let config = Config {
            namespace: "conformance/oci".into(),
            // The user may push only under their own namespace.
            crossmount_namespace: format!("conformance/crossmount-{}", uuid::Uuid::new_v4()),
            automatic_crossmount: Some(true),
            stranger: Some((stranger, "stranger/own".into())),
        };
        (client, config)
    } else {
        let config = Config {
            namespace: "conformance/oci".into(),
            crossmount_namespace: format!("conformance-{}", uuid::Uuid::new_v4()),
            automatic_crossmount: Some(true),
            stranger: None,
        };
        (Client::new(&app.base, &config.namespace, None), config)
    };
    let seed = rand::random();
    let mut fixtures = Fixtures::new(seed);
    let mut run = Run::new(seed);
    pull::specs(&mut run, &client, &fixtures).await;
    push::specs(&mut run, &client, &mut fixtures, &config).await;
    discovery::specs(&mut run, &client, &fixtures).await;
    management::specs(&mut run, &client, &fixtures).await;
    run.finish();
}

/// Authentication off: every request is allowed.
mod open {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        run_suite(TestApp::start(Backend::Sqlite).await, false).await;
    }

    #[tokio::test]
    async fn postgres() {
        run_suite(TestApp::start(Backend::Postgres).await, false).await;
    }

    #[tokio::test]
    async fn s3() {
        run_suite(TestApp::start(Backend::S3).await, false).await;
    }
}

/// Authentication on, as a user with their own namespace.
mod secured {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        run_suite(TestApp::start_secured(Backend::Sqlite).await, true).await;
    }

    #[tokio::test]
    async fn postgres() {
        run_suite(TestApp::start_secured(Backend::Postgres).await, true).await;
    }

    #[tokio::test]
    async fn s3() {
        run_suite(TestApp::start_secured(Backend::S3).await, true).await;
    }
}
