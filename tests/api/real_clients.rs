//! Real clients against a private registry: the Docker engine's login, push,
//! re-push, pull and run; skopeo and containerd copying an OCI image index
//! in and out with credentials.
//! `scripts/test.sh` starts dockerd; without it these tests fail, loudly.

use std::path::Path;

use reqwest::StatusCode;
use tokio::process::Command;
use tokio::sync::Mutex;

use crate::harness::{Backend, TestApp};
use crate::support::*;

/// Docker tests share one engine and its image store, so they take turns.
pub static DOCKER: Mutex<()> = Mutex::const_new(());

/// Runs a command, panicking with its output if it fails; returns stdout and stderr together.
pub async fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    run_expecting(true, program, args, env).await
}

/// Runs a command, panicking with its output unless it succeeds or fails as
/// `succeeds` says; returns stdout and stderr together.
async fn run_expecting(
    succeeds: bool,
    program: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> String {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let outcome = if succeeds { "failed" } else { "succeeded" };
    assert_eq!(
        output.status.success(),
        succeeds,
        "{program} {args:?} {outcome}:\n{text}"
    );
    text
}

pub async fn require_docker() {
    let info = Command::new("docker").arg("info").output().await;
    if !matches!(&info, Ok(o) if o.status.success()) {
        panic!(
            "the Docker engine is not reachable: run the suite with scripts/test.sh, which starts dockerd"
        );
    }
}

/// A build context for a tiny runnable image: a static binary printing
/// `greeting`, and a text file, in two layers on top of nothing.
pub async fn build_context(dir: &Path, greeting: &str) {
    let source =
        format!("#include <stdio.h>\nint main(void) {{ puts(\"{greeting}\"); return 0; }}\n");
    std::fs::write(dir.join("hello.c"), source).unwrap();
    let binary = dir.join("hello");
    run(
        "gcc",
        &[
            "-static",
            "-Os",
            "-o",
            binary.to_str().unwrap(),
            dir.join("hello.c").to_str().unwrap(),
        ],
        &[],
    )
    .await;
    std::fs::write(dir.join("message.txt"), format!("{greeting}\n")).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\nCOPY message.txt /message.txt\nCMD [\"/hello\"]\n",
    )
    .unwrap();
}

/// Runs a command that must fail; returns its output.
async fn run_fails(program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    run_expecting(false, program, args, env).await
}

/// `docker login` with the password on standard input.
pub async fn docker_login(
    host: &str,
    user: &str,
    password: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("docker")
        .args(["login", host, "-u", user, "--password-stdin"])
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(password.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

/// The user walk-through on a private registry: refused before login, a
/// wrong password refused, login, push, re-push skipping every layer, no
/// push into someone else's namespace, logout, anonymous pull of a public
/// repository, run; then an access token as the password.
async fn docker_push_skips_existing_layers_and_pulls_back(backend: Backend) {
    require_docker().await;
    let _turn = DOCKER.lock().await;
    let mut app = TestApp::start_secured(backend).await;
    create_user(&app, "alice", "alice-password").await;
    create_user(&app, "bob", "bob-password").await;
    let host = app.base.trim_start_matches("http://").to_string();
    // A private credential store, so no login leaks between tests.
    let docker_config = tempfile::tempdir().unwrap();
    let env = [("DOCKER_CONFIG", docker_config.path().to_str().unwrap())];
    let image = format!("{host}/alice/our-web-server");
    let (v1, v2) = (format!("{image}:0.0.1"), format!("{image}:0.0.2"));
    let stolen = format!("{host}/bob/our-web-server:0.0.1");
    let greeting = format!("hello from our-web-server {}", uuid::Uuid::new_v4());
    let context = tempfile::tempdir().unwrap();
    build_context(context.path(), &greeting).await;

    let build_env = [env[0], ("DOCKER_BUILDKIT", "0")];
    run(
        "docker",
        &["build", "-t", &v1, context.path().to_str().unwrap()],
        &build_env,
    )
    .await;
    let anonymous_push = run_fails("docker", &["push", &v1], &env).await;
    assert!(
        anonymous_push.contains("no basic auth credentials") || anonymous_push.contains("denied"),
        "{anonymous_push}"
    );
    let wrong = docker_login(&host, "alice", "not-her-password", &env).await;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("incorrect user name or password"));
    let login = docker_login(&host, "alice", "alice-password", &env).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    assert!(String::from_utf8_lossy(&login.stdout).contains("Login Succeeded"));
    // No refresh token was offered, so Docker stores the credentials as
    // `auth`, which podman, skopeo and every other client can read, and no
    // identity token, which they refuse.
    let stored = std::fs::read_to_string(docker_config.path().join("config.json")).unwrap();
    let stored: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let entry = &stored["auths"][host.as_str()];
    assert!(entry["auth"].is_string(), "{stored}");
    assert!(entry.get("identitytoken").is_none(), "{stored}");

    let first_push = run("docker", &["push", &v1], &env).await;
    assert_eq!(first_push.matches(": Pushed").count(), 2, "{first_push}");
    run("docker", &["tag", &v1, &v2], &env).await;
    let second_push = run("docker", &["push", &v2], &env).await;
    assert_eq!(
        second_push.matches("Layer already exists").count(),
        2,
        "{second_push}"
    );
    assert!(!second_push.contains(": Pushed"), "{second_push}");
    // Into another of alice's repositories the layers are mounted, not sent again.
    let copy = format!("{host}/alice/copy:0.0.1");
    run("docker", &["tag", &v1, &copy], &env).await;
    let copy_push = run("docker", &["push", &copy], &env).await;
    assert_eq!(
        copy_push
            .matches("Mounted from alice/our-web-server")
            .count(),
        2,
        "{copy_push}"
    );
    run("docker", &["tag", &v1, &stolen], &env).await;
    let refused = run_fails("docker", &["push", &stolen], &env).await;
    assert!(refused.contains("denied"), "{refused}");

    app.bearer = Some(
        token(
            &app,
            Some(("alice", "alice-password")),
            &["repository:alice/our-web-server:pull"],
        )
        .await,
    );
    let tags = app
        .get("/v2/alice/our-web-server/tags/list")
        .await
        .json_value()
        .await;
    assert_eq!(tags["tags"], serde_json::json!(["0.0.1", "0.0.2"]));
    let manifest = app.head("/v2/alice/our-web-server/manifests/0.0.1").await;
    assert_eq!(header(&manifest, "content-type"), DOCKER_MANIFEST);

    run("docker", &["logout", &host], &env).await;
    run("docker", &["rmi", &v1, &v2, &stolen, &copy], &env).await;
    let private_pull = run_fails("docker", &["pull", &v1], &env).await;
    assert!(
        private_pull.contains("denied") || private_pull.contains("unauthorized"),
        "{private_pull}"
    );
    let made_public = app
        .client
        .put(app.url("/api/v1/visibility/alice/our-web-server"))
        .basic_auth("alice", Some("alice-password"))
        .json(&serde_json::json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(made_public.status(), StatusCode::NO_CONTENT);
    let pull = run("docker", &["pull", &v1], &env).await;
    assert!(pull.contains("Downloaded newer image"), "{pull}");
    assert!(
        !pull.contains("Already exists"),
        "layers were not downloaded:\n{pull}"
    );
    let output = run("docker", &["run", "--rm", &v1], &env).await;
    assert_eq!(output.trim(), greeting);
    let anonymous_push = run_fails("docker", &["push", &v1], &env).await;
    assert!(
        !anonymous_push.contains("digest: sha256"),
        "{anonymous_push}"
    );

    // A CI machine logs in with an access token instead of the password.
    let created = app
        .client
        .post(app.url("/api/v1/tokens"))
        .basic_auth("alice", Some("alice-password"))
        .json(&serde_json::json!({"scopes": ["repository:alice/*:pull,push"], "description": "CI"}))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    let secret = created["secret"].as_str().unwrap();
    let login = docker_login(&host, "alice", secret, &env).await;
    assert!(
        login.status.success(),
        "{}",
        String::from_utf8_lossy(&login.stderr)
    );
    let v3 = format!("{image}:0.0.3");
    run("docker", &["tag", &v1, &v3], &env).await;
    let token_push = run("docker", &["push", &v3], &env).await;
    assert!(token_push.contains("digest: sha256"), "{token_push}");
    run("docker", &["logout", &host], &env).await;
    run("docker", &["rmi", &v1, &v3], &env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_round_trip_on_sqlite() {
    docker_push_skips_existing_layers_and_pulls_back(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_engine_round_trip_on_postgres() {
    docker_push_skips_existing_layers_and_pulls_back(Backend::Postgres).await;
}

async fn skopeo_copies_an_image_index_in_and_out(backend: Backend) {
    let mut app = TestApp::start_secured(backend).await;
    create_user(&app, "alice", "alice-password").await;
    let host = app.base.trim_start_matches("http://").to_string();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let copy = work.path().join("copy");
    let policy = work.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/fixtures/make-oci-layout.sh"
    );
    let index_digest = run("bash", &[script, source.to_str().unwrap()], &[])
        .await
        .trim()
        .to_string();

    let policy_arg = policy.to_str().unwrap();
    let remote = format!("docker://{host}/alice/multi:1");
    let source_ref = format!("oci:{}:1", source.display());
    let copy_ref = format!("oci:{}:1", copy.display());
    run(
        "skopeo",
        &[
            "--policy",
            policy_arg,
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-password",
            &source_ref,
            &remote,
        ],
        &[],
    )
    .await;

    app.bearer = Some(
        token(
            &app,
            Some(("alice", "alice-password")),
            &["repository:alice/multi:pull"],
        )
        .await,
    );
    let index = app.get("/v2/alice/multi/manifests/1").await;
    assert_eq!(index.status(), StatusCode::OK);
    assert_eq!(header(&index, "content-type"), OCI_INDEX);
    assert_eq!(header(&index, "docker-content-digest"), index_digest);

    run(
        "skopeo",
        &[
            "--policy",
            policy_arg,
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--src-creds",
            "alice:alice-password",
            &remote,
            &copy_ref,
        ],
        &[],
    )
    .await;
    let original_index = std::fs::read(source.join("index.json")).unwrap();
    let copied_index = std::fs::read(copy.join("index.json")).unwrap();
    assert_eq!(
        copied_index, original_index,
        "index.json differs after the round trip"
    );
    let blobs = |root: &Path| {
        let mut names: Vec<String> = std::fs::read_dir(root.join("blobs/sha256"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(blobs(&copy), blobs(&source));
    for name in blobs(&copy) {
        let bytes = std::fs::read(copy.join("blobs/sha256").join(&name)).unwrap();
        assert_eq!(sha256(&bytes), format!("sha256:{name}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trip_on_sqlite() {
    skopeo_copies_an_image_index_in_and_out(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_round_trip_on_postgres() {
    skopeo_copies_an_image_index_in_and_out(Backend::Postgres).await;
}

/// The containerd socket: dockerd's own containerd, or a system one.
pub fn containerd_socket() -> &'static str {
    ["/var/run/docker/containerd/containerd.sock", "/run/containerd/containerd.sock"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("no containerd socket: run the suite with scripts/test.sh, which starts dockerd (and its containerd)")
}

async fn containerd_pulls_and_pushes_an_image_index(backend: Backend) {
    require_docker().await;
    let mut app = TestApp::start_secured(backend).await;
    create_user(&app, "alice", "alice-password").await;
    let host = app.base.trim_start_matches("http://").to_string();
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("source");
    let policy = work.path().join("policy.json");
    std::fs::write(
        &policy,
        r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/api/fixtures/make-oci-layout.sh"
    );
    let index_digest = run("bash", &[script, source.to_str().unwrap()], &[])
        .await
        .trim()
        .to_string();
    run(
        "skopeo",
        &[
            "--policy",
            policy.to_str().unwrap(),
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-password",
            &format!("oci:{}:1", source.display()),
            &format!("docker://{host}/alice/multi:1"),
        ],
        &[],
    )
    .await;

    // containerd pushes each blob as a POST and then one PUT with the whole body.
    let namespace = format!("berth-{}", uuid::Uuid::new_v4().simple());
    let ctr = |args: Vec<String>| {
        let mut all = vec![
            "-a".to_string(),
            containerd_socket().to_string(),
            "-n".to_string(),
            namespace.clone(),
        ];
        all.extend(args);
        all
    };
    let pulled = format!("{host}/alice/multi:1");
    let pushed = format!("{host}/alice/copy:2");
    for args in [
        vec![
            "images".into(),
            "pull".into(),
            "--plain-http".into(),
            "--user".into(),
            "alice:alice-password".into(),
            "--all-platforms".into(),
            pulled.clone(),
        ],
        vec![
            "images".into(),
            "tag".into(),
            pulled.clone(),
            pushed.clone(),
        ],
        vec![
            "images".into(),
            "push".into(),
            "--plain-http".into(),
            "--user".into(),
            "alice:alice-password".into(),
            pushed.clone(),
        ],
    ] {
        let args = ctr(args);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run("ctr", &args, &[]).await;
    }
    app.bearer = Some(
        token(
            &app,
            Some(("alice", "alice-password")),
            &["repository:alice/copy:pull"],
        )
        .await,
    );
    let copy = app.head("/v2/alice/copy/manifests/2").await;
    assert_eq!(copy.status(), StatusCode::OK);
    assert_eq!(header(&copy, "docker-content-digest"), index_digest);
    let args = ctr(vec!["images".into(), "rm".into(), pulled, pushed]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run("ctr", &args, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_round_trip_on_sqlite() {
    containerd_pulls_and_pushes_an_image_index(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_round_trip_on_postgres() {
    containerd_pulls_and_pushes_an_image_index(Backend::Postgres).await;
}
