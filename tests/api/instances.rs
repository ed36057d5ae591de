//! Several `berth serve` processes on one PostgreSQL and one S3 bucket
//! behave as one registry: an upload moves between instances, tokens from
//! one are valid on all, the Docker engine pushes through one and pulls
//! through another, and racing pushes of one blob or one tag end cleanly.

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::harness::{PostgresDatabase, s3_config};
use crate::support::*;

const ADMIN: (&str, &str) = ("admin", "instances-admin-password");

/// One `berth serve` process.
pub struct Instance {
    pub base: String,
    _child: Child,
}

/// Starts `count` instances sharing `database_url` and the S3 prefix.
pub async fn start_instances(count: usize, database_url: &str, storage: &str) -> Vec<Instance> {
    start_instances_with(count, database_url, storage, &[]).await
}

/// Like [`start_instances`], with extra environment variables.
pub async fn start_instances_with(
    count: usize,
    database_url: &str,
    storage: &str,
    extra: &[(&str, &str)],
) -> Vec<Instance> {
    let s3 = s3_config();
    let mut instances = Vec::new();
    for _ in 0..count {
        let mut command = Command::new(env!("CARGO_BIN_EXE_berth"));
        for (key, _) in
            std::env::vars().filter(|(k, _)| k.starts_with("BERTH_") || k.starts_with("AWS_"))
        {
            command.env_remove(key);
        }
        command
            .arg("serve")
            .env("NO_COLOR", "1")
            .env("BERTH_LISTEN", "127.0.0.1:0")
            .env("BERTH_DATABASE_URL", database_url)
            .env("BERTH_STORAGE_LOCATION", storage)
            .env("BERTH_AUTH_ADMIN_PASSWORD", ADMIN.1)
            .env("BERTH_AUTH_TOKEN_SERVICE", "berth-instances")
            // Only the standard variables: they must be enough.
            .env("AWS_ENDPOINT", s3.endpoint.clone().unwrap())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", s3.access_key_id.clone().unwrap())
            .env(
                "AWS_SECRET_ACCESS_KEY",
                s3.secret_access_key.clone().unwrap(),
            )
            .env("AWS_ALLOW_HTTP", "true")
            .envs(extra.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("berth starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("address=").nth(1) {
                    return rest.split_whitespace().next().unwrap().to_string();
                }
            }
            panic!("berth exited before listening");
        })
        .await
        .expect("berth starts listening");
        // Keep draining the log so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        instances.push(Instance {
            base: format!("http://{address}"),
            _child: child,
        });
    }
    instances
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn admin_token(instance: &Instance, scopes: &[&str]) -> String {
    let mut query = vec![("service", "berth-instances")];
    query.extend(scopes.iter().map(|s| ("scope", *s)));
    let response = client()
        .get(format!("{}/token", instance.base))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json_value().await["token"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_and_bucket_act_as_one_registry() {
    let database = PostgresDatabase::create().await;
    let prefix = format!("instances-{}", uuid::Uuid::new_v4().simple());
    let storage = format!("s3://{}/{prefix}", s3_config().bucket);
    let instances = start_instances(3, &database.url, &storage).await;
    let (first, second, third) = (&instances[0], &instances[1], &instances[2]);
    // A token from the first instance is valid on the others.
    let token = admin_token(first, &["repository:team/app:pull,push,delete"]).await;
    let http = client();
    let at = |instance: &Instance, method: Method, path: &str| {
        http.request(method, format!("{}{path}", instance.base))
            .bearer_auth(&token)
    };

    // An upload started on the first, continued on the second, completed on the third.
    let blob: Vec<u8> = (0..(7 * 1024 * 1024 + 123))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let digest = sha256(&blob);
    let started = at(first, Method::POST, "/v2/team/app/blobs/uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    assert_eq!(
        header(&started, "oci-chunk-min-length"),
        (8 * 1024 * 1024).to_string()
    );
    let location = header(&started, "location").to_string();
    let split = 6 * 1024 * 1024;
    let chunk = at(second, Method::PATCH, &location)
        .header("content-range", format!("0-{}", split - 1))
        .body(blob[..split].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(chunk.status(), StatusCode::ACCEPTED);
    assert_eq!(header(&chunk, "range"), format!("0-{}", split - 1));
    let status = at(third, Method::GET, &location).send().await.unwrap();
    assert_eq!(header(&status, "range"), format!("0-{}", split - 1));
    let finished = at(third, Method::PUT, &format!("{location}?digest={digest}"))
        .header("content-range", format!("{split}-{}", blob.len() - 1))
        .body(blob[split..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(finished.status(), StatusCode::CREATED);
    for instance in &instances {
        let pulled = at(
            instance,
            Method::GET,
            &format!("/v2/team/app/blobs/{digest}"),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(pulled.status(), StatusCode::OK);
        assert_eq!(sha256(&pulled.bytes().await.unwrap()), digest);
    }

    // A manifest pushed through one and pulled through another.
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let config_push = at(
        second,
        Method::POST,
        &format!("/v2/team/app/blobs/uploads/?digest={}", sha256(config)),
    )
    .body(config.to_vec())
    .send()
    .await
    .unwrap();
    assert_eq!(config_push.status(), StatusCode::CREATED);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &blob)],
    })
    .to_string();
    let pushed = at(first, Method::PUT, "/v2/team/app/manifests/1")
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status(), StatusCode::CREATED);
    let pulled = at(third, Method::GET, "/v2/team/app/manifests/1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&pulled, "docker-content-digest"),
        sha256(manifest.as_bytes())
    );
    assert_eq!(pulled.text().await.unwrap(), manifest);

    // Two clients push one blob through different instances at once: one blob.
    let same: Vec<u8> = (0..(9 * 1024 * 1024)).map(|i| (i % 253) as u8).collect();
    let same_digest = sha256(&same);
    let push = |instance: &Instance| {
        at(
            instance,
            Method::POST,
            &format!("/v2/team/app/blobs/uploads/?digest={same_digest}"),
        )
        .body(same.clone())
        .send()
    };
    let (a, b) = tokio::join!(push(first), push(second));
    assert_eq!(a.unwrap().status(), StatusCode::CREATED);
    assert_eq!(b.unwrap().status(), StatusCode::CREATED);
    let pulled = at(
        third,
        Method::GET,
        &format!("/v2/team/app/blobs/{same_digest}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(sha256(&pulled.bytes().await.unwrap()), same_digest);
    let mut bucket = s3_config();
    bucket.prefix = prefix.clone();
    let stored = crate::harness::s3_objects(&bucket, "blobs/").await;
    assert_eq!(stored.len(), 3, "one object per distinct blob: {stored:?}");

    // The same tag pushed at once through two instances ends on one of the two manifests.
    let variant = |n: u32| {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [descriptor("application/vnd.oci.image.layer.v1.tar", &blob)],
            "annotations": {"variant": n.to_string()},
        })
        .to_string()
    };
    let (one, two) = (variant(1), variant(2));
    let put = |instance: &Instance, body: String| {
        at(instance, Method::PUT, "/v2/team/app/manifests/latest")
            .header("content-type", OCI_MANIFEST)
            .body(body)
            .send()
    };
    let (a, b) = tokio::join!(put(first, one.clone()), put(second, two.clone()));
    assert_eq!(a.unwrap().status(), StatusCode::CREATED);
    assert_eq!(b.unwrap().status(), StatusCode::CREATED);
    let latest = at(third, Method::GET, "/v2/team/app/manifests/latest")
        .send()
        .await
        .unwrap();
    let tagged = header(&latest, "docker-content-digest").to_string();
    assert!(tagged == sha256(one.as_bytes()) || tagged == sha256(two.as_bytes()));
    let tags = at(first, Method::GET, "/v2/team/app/tags/list")
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(tags["tags"], json!(["1", "latest"]));

    // Each instance answers tag lists from memory while the database's tag
    // version matches: a tag added or removed through another instance shows
    // at once, and moving a tag (as above) changes no list.
    let list = |instance: &Instance| {
        let request = at(instance, Method::GET, "/v2/team/app/tags/list?n=2");
        async move { request.send().await.unwrap().json_value().await["tags"].clone() }
    };
    assert_eq!(list(third).await, json!(["1", "latest"]));
    let tagged = at(second, Method::PUT, "/v2/team/app/manifests/2")
        .header("content-type", OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(tagged.status(), StatusCode::CREATED);
    assert_eq!(list(third).await, json!(["1", "2"]));
    let untagged = at(first, Method::DELETE, "/v2/team/app/manifests/1")
        .send()
        .await
        .unwrap();
    assert_eq!(untagged.status(), StatusCode::ACCEPTED);
    assert_eq!(list(third).await, json!(["2", "latest"]));
    assert_eq!(list(second).await, json!(["2", "latest"]));
}

/// The Docker engine pushes through one instance and pulls through another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pushes_through_one_instance_and_pulls_through_another() {
    use crate::real_clients::{DOCKER, build_context, docker_login, require_docker, run};
    require_docker().await;
    let _turn = DOCKER.lock().await;
    let database = PostgresDatabase::create().await;
    let storage = format!(
        "s3://{}/docker-{}",
        s3_config().bucket,
        uuid::Uuid::new_v4().simple()
    );
    let instances = start_instances(2, &database.url, &storage).await;
    let hosts: Vec<String> = instances
        .iter()
        .map(|i| i.base.trim_start_matches("http://").to_string())
        .collect();
    let docker_config = tempfile::tempdir().unwrap();
    let env = [("DOCKER_CONFIG", docker_config.path().to_str().unwrap())];
    for host in &hosts {
        let login = docker_login(host, ADMIN.0, ADMIN.1, &env).await;
        assert!(
            login.status.success(),
            "{}",
            String::from_utf8_lossy(&login.stderr)
        );
    }
    let greeting = format!("hello through two instances {}", uuid::Uuid::new_v4());
    let context = tempfile::tempdir().unwrap();
    build_context(context.path(), &greeting).await;
    let pushed = format!("{}/admin/app:1", hosts[0]);
    let pulled = format!("{}/admin/app:1", hosts[1]);
    let build_env = [env[0], ("DOCKER_BUILDKIT", "0")];
    run(
        "docker",
        &["build", "-t", &pushed, context.path().to_str().unwrap()],
        &build_env,
    )
    .await;
    let push = run("docker", &["push", &pushed], &env).await;
    assert_eq!(push.matches(": Pushed").count(), 2, "{push}");
    let pull = run("docker", &["pull", &pulled], &env).await;
    assert!(
        pull.contains("Downloaded newer image") || pull.contains("Image is up to date"),
        "{pull}"
    );
    run("docker", &["rmi", &pushed], &env).await;
    let output = run("docker", &["run", "--rm", &pulled], &env).await;
    assert_eq!(output.trim(), greeting);
    run("docker", &["rmi", &pulled], &env).await;
}
