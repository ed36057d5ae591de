//! The `berth` binary itself: zero-configuration start, bad settings,
//! graceful shutdown, and concurrent start-up against one PostgreSQL.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::harness::{PostgresDatabase, TestApp};

const BERTH: &str = env!("CARGO_BIN_EXE_berth");

pub fn berth() -> Command {
    let mut command = Command::new(BERTH);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BERTH_")) {
        command.env_remove(key);
    }
    command.env("NO_COLOR", "1").kill_on_drop(true);
    command
}

#[tokio::test]
async fn serve_with_no_configuration_creates_its_data_and_stops_on_sigterm() {
    let cwd = tempfile::tempdir().unwrap();
    // Port 0 is the only change from the defaults; the log line says where it listens.
    let mut child = berth()
        .args(["serve"])
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .current_dir(cwd.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Logs go to standard error; so does the generated admin password, once.
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (address, password) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut password = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("created user `admin` with password ").nth(1) {
                password = Some(rest.trim().to_string());
            }
            if let Some(rest) = line.split("address=").nth(1) {
                let address = rest.split_whitespace().next().unwrap().to_string();
                return (
                    address,
                    password.expect("the admin password is printed before listening"),
                );
            }
        }
        panic!("berth exited before listening");
    })
    .await
    .expect("berth starts listening");

    // Private by default: nothing without a token, and the admin can log in.
    let response = reqwest::get(format!("http://{address}/v2/")).await.unwrap();
    assert_eq!(response.status(), 401);
    let token = reqwest::Client::new()
        .get(format!("http://{address}/token?service=berth"))
        .basic_auth("admin", Some(&password))
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    assert!(cwd.path().join("data/berth.db").is_file());
    assert!(cwd.path().join("data/blobs").is_dir());

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("berth stops after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let cwd = tempfile::tempdir().unwrap();
    std::fs::write(
        cwd.path().join("berth.toml"),
        "listen = \"127.0.0.1:0\"\nstorage = \"s3://Not_A_Bucket\"\n",
    )
    .unwrap();
    type Environment<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&[&str], Environment, &str); 6] = [
        (
            &["serve"],
            &[("BERTH_TOKEN_LIFETIME", "forever")],
            "`token_lifetime`",
        ),
        (&["serve"], &[("BERTH_AUTH", "maybe")], "`auth`"),
        (
            &["serve"],
            &[("BERTH_LISTEN", "not-an-address")],
            "`listen`",
        ),
        (
            &["serve", "--database-url", "mysql://db"],
            &[],
            "`database_url`",
        ),
        (&["serve", "--config", "berth.toml"], &[], "`storage`"),
        (&["serve", "--config", "missing.toml"], &[], "`config`"),
    ];
    for (args, env, setting) in cases {
        let output = berth()
            .args(args)
            .envs(env.iter().copied())
            .current_dir(cwd.path())
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(setting), "{stderr}");
    }
    assert!(
        !cwd.path().join("data").exists(),
        "nothing is created before the settings are valid"
    );
}

#[tokio::test]
async fn instances_starting_together_on_one_postgres_migrate_once() {
    let database = PostgresDatabase::create().await;
    let mut config = berth::config::Config {
        database_url: database.url.clone(),
        ..TestApp::start(crate::harness::Backend::Sqlite)
            .await
            .config
            .clone()
    };
    config.auth.enabled = true;
    config.auth.admin_password = Some("first-start-password".into());
    let starts = (0..4).map(|_| berth::server::build(&config));
    for result in futures_util::future::join_all(starts).await {
        let _router = result.expect("instance starts");
    }
    let _router = berth::server::build(&config)
        .await
        .expect("a later restart starts too");
    // One admin and one signing key, however many instances raced to create them.
    let stores = berth::metadata::connect(&database.url, 1).await.unwrap();
    assert_eq!(stores.accounts.user_count().await.unwrap(), 1);
    assert_eq!(stores.accounts.signing_keys().await.unwrap().len(), 1);
}

/// Runs `berth <args>` against `database_url`, feeding `stdin`; returns stdout.
async fn admin_command(database_url: &str, args: &[&str], stdin: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = berth()
        .args(["--database-url", database_url])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let output = child.wait_with_output().await.unwrap();
    assert!(
        output.status.success(),
        "berth {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The admin commands work on the configuration of a running registry, and
/// what they do takes effect on its next token request.
#[tokio::test]
async fn admin_commands_manage_users_organizations_tokens_and_visibility() {
    use crate::support::{claims, request_token, token};
    let app = TestApp::start_secured(crate::harness::Backend::Postgres).await;
    let url = app.config.database_url.clone();
    admin_command(
        &url,
        &["user", "add", "carol", "--password-stdin"],
        "carol-password\n",
    )
    .await;
    admin_command(
        &url,
        &["user", "add", "dave", "--admin", "--password-stdin"],
        "dave-password\n",
    )
    .await;
    let users = admin_command(&url, &["user", "list"], "").await;
    assert!(
        users.contains("carol\tuser") && users.contains("dave\tadmin"),
        "{users}"
    );
    admin_command(&url, &["org", "create", "team"], "").await;
    admin_command(&url, &["org", "add-member", "team", "carol", "write"], "").await;
    assert!(
        admin_command(&url, &["org", "list"], "")
            .await
            .contains("team\tcarol:write")
    );

    let granted = token(
        &app,
        Some(("carol", "carol-password")),
        &["repository:team/app:pull,push"],
    )
    .await;
    assert_eq!(
        claims(&granted)["access"][0]["actions"],
        serde_json::json!(["pull", "push"])
    );

    let secret = admin_command(
        &url,
        &[
            "token",
            "create",
            "--user",
            "carol",
            "--scope",
            "repository:team/*:pull",
            "--expires",
            "30d",
        ],
        "",
    )
    .await
    .trim()
    .to_string();
    assert!(secret.starts_with("berth_pat_"));
    let listed = admin_command(&url, &["token", "list", "--user", "carol"], "").await;
    assert!(
        listed.contains("repository:team/*:pull") && !listed.contains(&secret),
        "{listed}"
    );
    let machine = token(
        &app,
        Some(("carol", &secret)),
        &["repository:team/app:pull,push"],
    )
    .await;
    assert_eq!(
        claims(&machine)["access"][0]["actions"],
        serde_json::json!(["pull"])
    );
    let id = listed.split('\t').next().unwrap();
    admin_command(&url, &["token", "revoke", id], "").await;
    assert_eq!(
        request_token(&app, Some(("carol", &secret)), &[])
            .await
            .status(),
        401
    );

    admin_command(&url, &["repo", "visibility", "team/site", "public"], "").await;
    let anonymous = token(&app, None, &["repository:team/site:pull"]).await;
    assert_eq!(claims(&anonymous)["access"][0]["name"], "team/site");
    admin_command(&url, &["repo", "visibility", "team/site", "private"], "").await;
    let anonymous = token(&app, None, &["repository:team/site:pull"]).await;
    assert_eq!(claims(&anonymous)["access"], serde_json::json!([]));

    admin_command(
        &url,
        &["user", "passwd", "carol", "--password-stdin"],
        "carol-new-password\n",
    )
    .await;
    assert_eq!(
        request_token(&app, Some(("carol", "carol-password")), &[])
            .await
            .status(),
        401
    );
    assert_eq!(
        request_token(&app, Some(("carol", "carol-new-password")), &[])
            .await
            .status(),
        200
    );
    admin_command(&url, &["user", "remove", "carol"], "").await;
    assert_eq!(
        request_token(&app, Some(("carol", "carol-new-password")), &[])
            .await
            .status(),
        401
    );
    admin_command(&url, &["key", "rotate"], "").await;

    // Mistakes are refused with a clear message and a failure status.
    let output = berth()
        .args([
            "--database-url",
            &url,
            "org",
            "add-member",
            "team",
            "nobody",
            "write",
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no user `nobody`"));
}

/// With `log_format = "json"` every request is one JSON line with method,
/// route, status, bytes, duration and subject, and no password or token
/// ever appears in the log.
#[tokio::test]
async fn json_access_logs_name_the_subject_and_never_a_secret() {
    let cwd = tempfile::tempdir().unwrap();
    let password = "json-logs-admin-password";
    let mut child = berth()
        .args(["serve"])
        .env("BERTH_LISTEN", "127.0.0.1:0")
        .env("BERTH_LOG_FORMAT", "json")
        .env("BERTH_AUTH_ADMIN_PASSWORD", password)
        .current_dir(cwd.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let address = loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("berth logs")
            .unwrap()
            .expect("berth exited before listening");
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        log.push(line);
        if let Some(address) = value["address"].as_str() {
            break address.to_string();
        }
    };
    let client = reqwest::Client::new();
    let token = client
        .get(format!(
            "http://{address}/token?service=berth&scope=repository:admin/app:pull"
        ))
        .basic_auth("admin", Some(password))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let tags = client
        .get(format!("http://{address}/v2/admin/app/tags/list"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.status(), 404);
    tags.bytes().await.unwrap();
    let access = loop {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .expect("an access log line")
            .unwrap()
            .unwrap();
        log.push(line.clone());
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        if value["route"] == "tags" {
            break value;
        }
    };
    assert_eq!(access["method"], "GET");
    assert_eq!(access["status"], 404);
    assert_eq!(access["subject"], "admin");
    assert_eq!(access["path"], "/v2/admin/app/tags/list");
    assert!(access["sent"].as_u64().unwrap() > 0);
    assert!(access["duration_ms"].as_f64().is_some());
    let all = log.join("\n");
    assert!(!all.contains(password), "the password is in the log");
    assert!(!all.contains(&token), "the token is in the log");
    let _ = child.kill().await;
}
