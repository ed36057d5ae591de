//! The web UI end to end in a real browser: each test starts a secured
//! registry, seeds it through the registry and `/api/v1` (an admin,
//! `alice`, the organization `team` with `bob` as a read-only member, a
//! two-platform image index, a tag pair on one digest, an image whose
//! labels and annotations hold markup), then runs one scenario from
//! `tests/browser/` in Debian's chromium through playwright-core, and checks
//! its exit status, the JSON lines it printed (what it copied from a page,
//! the token it created, axe-core's findings per page), and what the
//! registry and the real Docker engine say afterwards.
//!
//! `scripts/test.sh` installs chromium and Node.js, runs `npm ci` in
//! `tests/browser` and sets `BERTH_TEST_CHROMIUM`; without them these tests
//! fail, loudly, saying what to install. Screenshots of every page go to
//! `target/browser-artifacts/<test>/` (or `$BERTH_TEST_ARTIFACTS/<test>/`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::harness::{ADMIN_PASSWORD, Backend, TestApp};
use crate::real_clients::{DOCKER, docker_login, require_docker, run};
use crate::support::*;

const ALICE: (&str, &str) = ("alice", "alice-password");
const BOB: (&str, &str) = ("bob", "bob-password");
/// The image index of two platforms (`tests/api/fixtures/make-oci-layout.sh`).
const MULTI: &str = "alice/multi";
/// Two tags on one digest, in the organization: one is deleted from a page.
const TEAM_APP: &str = "team/app";
const DELETED_TAG: &str = "1.0";
const KEPT_TAG: &str = "stable";
const HOSTILE: &str = "alice/hostile";
/// What a scenario may take, start to end, before it counts as hung.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// Pushed strings that must reach the page as text, never as markup.
const HOSTILE_LABEL: &str = "<script>alert('label')</script>";
const HOSTILE_MARKUP: &str = "<b>bold</b><img src=x onerror=\"alert('img')\">";
const HOSTILE_ANNOTATION: &str = "<script>alert('annotation')</script>";
const HOSTILE_LINK: &str = "<a href=\"javascript:alert('link')\">click me</a>";

/// Debian's chromium, or `BERTH_TEST_CHROMIUM`; panics with what to install.
fn chromium() -> String {
    let path = std::env::var("BERTH_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&path).exists() {
        panic!(
            "no browser at {path}: the browser tests need Debian's chromium and Node.js. \
             Run the suite with scripts/test.sh, which installs them (apt-get install chromium nodejs npm), \
             runs npm ci in tests/browser and sets BERTH_TEST_CHROMIUM"
        );
    }
    path
}

/// `tests/browser`, with its npm packages installed; panics with the command that installs them.
fn scenarios_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    for package in ["playwright-core", "axe-core"] {
        if !dir.join("node_modules").join(package).exists() {
            panic!(
                "{package} is not installed in {}: run `npm ci` there (scripts/test.sh does)",
                dir.display()
            );
        }
    }
    dir
}

/// Where one test's screenshots go, emptied first.
fn artifacts_dir(test: &str) -> PathBuf {
    let root = std::env::var_os("BERTH_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts"));
    let dir = root.join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What a scenario printed, one JSON object per line.
struct Report {
    events: Vec<Value>,
}

impl Report {
    /// The events named `event`.
    fn all(&self, event: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["event"] == event).collect()
    }

    /// The one value of `field` the scenario reported with `event`.
    fn value(&self, event: &str, field: &str) -> String {
        let found = self.all(event);
        assert_eq!(
            found.len(),
            1,
            "expected one {event} event: {:?}",
            self.events
        );
        found[0][field]
            .as_str()
            .unwrap_or_else(|| panic!("{event} has no {field}: {}", found[0]))
            .to_string()
    }

    /// The one number `field` the scenario reported with `event`.
    fn value_number(&self, event: &str, field: &str) -> u64 {
        let found = self.all(event);
        assert_eq!(
            found.len(),
            1,
            "expected one {event} event: {:?}",
            self.events
        );
        found[0][field]
            .as_u64()
            .unwrap_or_else(|| panic!("{event} has no number {field}: {}", found[0]))
    }

    /// The pages the scenario checked, by label.
    fn pages(&self) -> Vec<String> {
        self.all("page")
            .iter()
            .map(|p| p["label"].as_str().unwrap().to_string())
            .collect()
    }

    /// axe-core's serious and critical findings on every page checked.
    fn assert_accessible(&self) {
        let mut findings = Vec::new();
        for page in self.all("page") {
            for violation in page["violations"].as_array().unwrap() {
                if matches!(violation["impact"].as_str(), Some("serious" | "critical")) {
                    findings.push(format!(
                        "{} ({}): {} [{}] {}: {}",
                        page["label"].as_str().unwrap(),
                        page["url"].as_str().unwrap(),
                        violation["id"].as_str().unwrap(),
                        violation["impact"].as_str().unwrap(),
                        violation["help"].as_str().unwrap(),
                        violation["targets"]
                    ));
                }
            }
        }
        assert!(
            findings.is_empty(),
            "axe-core found serious or critical violations:\n{}",
            findings.join("\n")
        );
    }

    /// No dialog opened, nothing logged to the console: no script ran but Berth's own.
    fn assert_no_script_ran(&self) {
        let dialogs = self.all("dialog");
        assert!(dialogs.is_empty(), "a page opened dialogs: {dialogs:?}");
        let console = self.all("console");
        assert!(
            console.is_empty(),
            "pages logged to the console: {console:?}"
        );
    }
}

/// A seeded registry and what scenarios are told about it.
struct Seeded {
    app: TestApp,
    host: String,
}

impl Seeded {
    async fn new(backend: Backend) -> Seeded {
        let mut app = TestApp::start_secured(backend).await;
        create_user(&app, ALICE.0, ALICE.1).await;
        create_user(&app, BOB.0, BOB.1).await;
        let created = api(&app, Method::POST, "/orgs", ALICE, json!({"name": "team"})).await;
        assert_eq!(created.status(), StatusCode::CREATED, "creating team");
        let member = api(
            &app,
            Method::PUT,
            "/orgs/team/members/bob",
            ALICE,
            json!({"role": "read"}),
        )
        .await;
        assert!(member.status().is_success(), "adding bob to team");

        app.bearer = Some(
            token(
                &app,
                Some(ALICE),
                &[
                    &format!("repository:{MULTI}:pull,push"),
                    &format!("repository:{TEAM_APP}:pull,push"),
                    &format!("repository:{HOSTILE}:pull,push"),
                ],
            )
            .await,
        );
        push_layout(&app, MULTI).await;
        let app_image = image_manifest(&app, TEAM_APP, "amd64", json!({}), json!({})).await;
        for tag in [DELETED_TAG, KEPT_TAG] {
            let pushed = put_manifest(&app, TEAM_APP, tag, OCI_MANIFEST, &app_image).await;
            assert_eq!(pushed.status(), StatusCode::CREATED, "{TEAM_APP}:{tag}");
        }
        let hostile = image_manifest(
            &app,
            HOSTILE,
            "amd64",
            json!({
                "org.example.script": HOSTILE_LABEL,
                "org.example.markup": HOSTILE_MARKUP,
            }),
            json!({
                "org.opencontainers.image.description": HOSTILE_ANNOTATION,
                "org.example.link": HOSTILE_LINK,
            }),
        )
        .await;
        let pushed = put_manifest(&app, HOSTILE, "1", OCI_MANIFEST, &hostile).await;
        assert_eq!(pushed.status(), StatusCode::CREATED, "{HOSTILE}:1");
        app.bearer = None;
        let host = app.base.trim_start_matches("http://").to_string();
        Seeded { app, host }
    }

    /// What a scenario is told: where the registry is, the users'
    /// passwords, and what was seeded.
    fn input(&self, artifacts: &Path) -> Value {
        json!({
            "url": self.app.base,
            "host": self.host,
            "chromium": chromium(),
            "artifacts": artifacts,
            "users": {
                "admin": ADMIN_PASSWORD,
                ALICE.0: ALICE.1,
                BOB.0: BOB.1,
            },
            "multi": {"repository": MULTI, "tag": "1", "platforms": ["linux/amd64", "linux/arm64"]},
            "team": {"repository": TEAM_APP, "deleted": DELETED_TAG, "kept": KEPT_TAG},
            "hostile": {
                "repository": HOSTILE,
                "tag": "1",
                "texts": [HOSTILE_LABEL, HOSTILE_MARKUP, HOSTILE_ANNOTATION, HOSTILE_LINK],
            },
        })
    }

    /// Runs `tests/browser/<name>.mjs` against this registry; panics unless it
    /// exits 0, with what it printed.
    async fn scenario(&self, name: &str, test: &str) -> Report {
        let dir = scenarios_dir();
        let artifacts = artifacts_dir(test);
        eprintln!("browser artifacts of {test}: {}", artifacts.display());
        let input = self.input(&artifacts);
        let node = std::env::var("BERTH_TEST_NODE").unwrap_or_else(|_| "node".into());
        // Its output goes to files beside the screenshots, so a hung
        // scenario still leaves what it did.
        let (stdout_path, stderr_path) = (
            artifacts.join(format!("{name}.jsonl")),
            artifacts.join(format!("{name}.log")),
        );
        let mut child = Command::new(&node)
            .arg(dir.join(format!("{name}.mjs")))
            .arg(input.to_string())
            .current_dir(&dir)
            .stdout(std::fs::File::create(&stdout_path).unwrap())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {node}: {e}: the browser tests need Node.js (apt-get install nodejs npm)")
            });
        let status = tokio::time::timeout(SCENARIO_TIMEOUT, child.wait()).await;
        let stdout = std::fs::read_to_string(&stdout_path).unwrap();
        let stderr = std::fs::read_to_string(&stderr_path).unwrap();
        let status = status
            .unwrap_or_else(|_| {
                panic!("scenario {name} took over {SCENARIO_TIMEOUT:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
            })
            .unwrap();
        assert!(
            status.success(),
            "scenario {name} failed ({status}); screenshots in {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            artifacts.display()
        );
        let events = stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("scenario {name} printed a line that is not JSON ({e}): {line}")
                })
            })
            .collect();
        let report = Report { events };
        assert_eq!(
            report.value("done", "scenario"),
            name,
            "scenario {name} did not finish"
        );
        report
    }

    /// The tags of `repository`, as the registry API lists them to alice.
    async fn tags(&self, repository: &str) -> Value {
        let bearer = token(
            &self.app,
            Some(ALICE),
            &[&format!("repository:{repository}:pull")],
        )
        .await;
        let list = with_token(
            &self.app,
            Method::GET,
            &format!("/v2/{repository}/tags/list"),
            &bearer,
        )
        .send()
        .await
        .unwrap();
        assert_eq!(list.status(), StatusCode::OK);
        list.json_value().await["tags"].clone()
    }
}

/// A `/api/v1` request with Basic credentials.
async fn api(
    app: &TestApp,
    method: Method,
    path: &str,
    user: (&str, &str),
    body: Value,
) -> reqwest::Response {
    app.client
        .request(method, app.url(&format!("/api/v1{path}")))
        .basic_auth(user.0, Some(user.1))
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// Pushes the OCI layout `make-oci-layout.sh` writes (an index of two
/// runnable single-layer images) to `repository` as tag `1`, as skopeo
/// would: blobs, each image by digest, then the index.
async fn push_layout(app: &TestApp, repository: &str) {
    let layout = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/fixtures/make-oci-layout.sh"
    );
    let index_digest = run("bash", &[script, layout.path().to_str().unwrap()], &[]).await;
    let blob = |digest: &str| {
        let hex = digest.trim().trim_start_matches("sha256:");
        std::fs::read(layout.path().join("blobs/sha256").join(hex)).unwrap()
    };
    let index_bytes = blob(&index_digest);
    let index: Value = serde_json::from_slice(&index_bytes).unwrap();
    for child in index["manifests"].as_array().unwrap() {
        let digest = child["digest"].as_str().unwrap();
        let manifest_bytes = blob(digest);
        let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        for descriptor in layers.iter().chain([&manifest["config"]]) {
            push_blob(
                app,
                repository,
                &blob(descriptor["digest"].as_str().unwrap()),
            )
            .await;
        }
        let pushed = put_manifest(app, repository, digest, OCI_MANIFEST, &manifest_bytes).await;
        assert_eq!(
            pushed.status(),
            StatusCode::CREATED,
            "{repository}@{digest}"
        );
    }
    let pushed = put_manifest(app, repository, "1", OCI_INDEX, &index_bytes).await;
    assert_eq!(pushed.status(), StatusCode::CREATED, "{repository}:1");
}

/// A one-layer image whose config is a real image config (platform,
/// creation time, command, labels, history); returns the manifest bytes,
/// its blobs pushed.
async fn image_manifest(
    app: &TestApp,
    repository: &str,
    architecture: &str,
    labels: Value,
    annotations: Value,
) -> Vec<u8> {
    let layer = format!("layer of {repository}").into_bytes();
    let config = json!({
        "created": "2026-11-30T12:00:00Z",
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Cmd": ["/app", "--serve"],
            "Env": ["PATH=/usr/bin"],
            "ExposedPorts": {"8080/tcp": {}},
            "Labels": labels,
        },
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
        "history": [{"created": "2026-11-30T12:00:00Z", "created_by": "COPY app /app"}],
    })
    .to_string()
    .into_bytes();
    push_blob(app, repository, &config).await;
    push_blob(app, repository, &layer).await;
    json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", &config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &layer)],
        "annotations": annotations,
    })
    .to_string()
    .into_bytes()
}

/// A private Docker credential store for one test, so no login leaks.
struct DockerConfig {
    dir: tempfile::TempDir,
}

impl DockerConfig {
    fn new() -> DockerConfig {
        DockerConfig {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("DOCKER_CONFIG", self.dir.path().to_str().unwrap())]
    }
}

/// Runs the words of a command copied from a page (`docker pull …`) with
/// the Docker engine, as a user pasting it into a shell would.
async fn run_copied(command: &str, env: &[(&str, &str)]) -> String {
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(
        words.first(),
        Some(&"docker"),
        "not a docker command: {command}"
    );
    run("docker", &words[1..], env).await
}

async fn sign_in_and_out(backend: Backend) {
    let seeded = Seeded::new(backend).await;
    let report = seeded
        .scenario("sign-in", &format!("sign-in-{backend:?}"))
        .await;
    assert_eq!(
        report.pages(),
        [
            "home-anonymous",
            "sign-in",
            "sign-in-refused",
            "signed-in",
            "signed-out"
        ]
    );
    report.assert_accessible();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_out_on_sqlite() {
    sign_in_and_out(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_and_out_on_postgres() {
    sign_in_and_out(Backend::Postgres).await;
}

/// Browse, search, both platforms of the index with their sizes, and the
/// pull command copied from the page pulls the image with Docker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browsing_shows_both_platforms_and_the_copied_pull_command_pulls() {
    let seeded = Seeded::new(Backend::Sqlite).await;
    let report = seeded.scenario("browse", "browse").await;
    report.assert_accessible();
    let command = report.value("pull-command", "command");
    assert_eq!(command, format!("docker pull {}/{MULTI}:1", seeded.host));

    require_docker().await;
    let _turn = DOCKER.lock().await;
    let docker = DockerConfig::new();
    let login = docker_login(&seeded.host, ALICE.0, ALICE.1, &docker.env()).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let pulled = run_copied(&command, &docker.env()).await;
    assert!(pulled.contains("Downloaded newer image"), "{pulled}");
    let image = command.trim_start_matches("docker pull ");
    let architecture = run(
        "docker",
        &[
            "image",
            "inspect",
            "--format",
            "{{.Os}}/{{.Architecture}}",
            image,
        ],
        &docker.env(),
    )
    .await;
    assert!(architecture.trim().starts_with("linux/"), "{architecture}");
    run("docker", &["rmi", image], &docker.env()).await;
}

/// A tag deleted after its confirmation page is gone from
/// `tags/list`; the other tag on the same digest stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tag_deleted_after_confirming_is_gone_and_its_twin_stays() {
    let seeded = Seeded::new(Backend::Sqlite).await;
    assert_eq!(seeded.tags(TEAM_APP).await, json!([DELETED_TAG, KEPT_TAG]));
    let report = seeded.scenario("delete-tag", "delete-tag").await;
    report.assert_accessible();
    assert_eq!(seeded.tags(TEAM_APP).await, json!([KEPT_TAG]));
    let twin = with_token(
        &seeded.app,
        Method::HEAD,
        &format!("/v2/{TEAM_APP}/manifests/{KEPT_TAG}"),
        &token(
            &seeded.app,
            Some(ALICE),
            &[&format!("repository:{TEAM_APP}:pull")],
        )
        .await,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(twin.status(), StatusCode::OK);
}

/// A read-only member is shown no delete control, and the delete form
/// posted by hand with their own session is 403; nothing is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_member_sees_no_delete_and_a_forged_form_is_refused() {
    let seeded = Seeded::new(Backend::Sqlite).await;
    let report = seeded.scenario("read-only", "read-only").await;
    report.assert_accessible();
    assert_eq!(report.value_number("forged-post", "status"), 403);
    assert_eq!(seeded.tags(TEAM_APP).await, json!([DELETED_TAG, KEPT_TAG]));
}

/// A token created on the account page logs the Docker engine in, and pulls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_created_on_the_account_page_works_for_docker_login() {
    let seeded = Seeded::new(Backend::Sqlite).await;
    let report = seeded.scenario("account-token", "account-token").await;
    report.assert_accessible();
    let secret = report.value("token", "secret");

    require_docker().await;
    let _turn = DOCKER.lock().await;
    let docker = DockerConfig::new();
    let login = docker_login(&seeded.host, ALICE.0, &secret, &docker.env()).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert!(String::from_utf8_lossy(&login.stdout).contains("Login Succeeded"));
    let image = format!("{}/{MULTI}:1", seeded.host);
    let pulled = run("docker", &["pull", &image], &docker.env()).await;
    assert!(pulled.contains("Downloaded newer image"), "{pulled}");
    run("docker", &["rmi", &image], &docker.env()).await;
    let wrong = docker_login(
        &seeded.host,
        ALICE.0,
        "berth_pat_not-a-token",
        &docker.env(),
    )
    .await;
    assert!(!wrong.status.success(), "a made-up token logged in");
}

/// Labels and annotations holding `<script>` and markup render as text,
/// and no script runs: no dialog, nothing on the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_in_labels_and_annotations_renders_as_text() {
    let seeded = Seeded::new(Backend::Sqlite).await;
    let report = seeded.scenario("hostile", "hostile").await;
    report.assert_no_script_ran();
    report.assert_accessible();
}

/// axe-core on every page, signed out and as the administrator: no serious
/// or critical violation.
async fn every_page_is_accessible(backend: Backend) {
    let seeded = Seeded::new(backend).await;
    let report = seeded.scenario("tour", &format!("tour-{backend:?}")).await;
    assert_eq!(report.pages().len(), 17, "{:?}", report.pages());
    report.assert_accessible();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_accessible_on_sqlite() {
    every_page_is_accessible(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_accessible_on_postgres() {
    every_page_is_accessible(Backend::Postgres).await;
}

/// Not a test: a seeded registry kept up for `BERTH_TEST_HOLD_SECS` (600 by
/// default), its scenario input written to
/// `target/browser-artifacts/hold/input.json`, for writing a scenario
/// against: `node tests/browser/<scenario>.mjs "$(cat …/input.json)"`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "holds a seeded registry open for developing scenarios"]
async fn hold_a_seeded_registry() {
    let seeded = Seeded::new(Backend::Sqlite).await;
    let artifacts = artifacts_dir("hold");
    let input = artifacts.join("input.json");
    std::fs::write(&input, seeded.input(&artifacts).to_string()).unwrap();
    let seconds = std::env::var("BERTH_TEST_HOLD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    eprintln!(
        "registry at {} for {seconds}s; input in {}",
        seeded.app.base,
        input.display()
    );
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}
