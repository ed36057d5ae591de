//! `BERTH_BENCH_PROFILE=pages`: what a web page costs beside the API
//! request that returns the same rows, in the same run. Berth is loaded
//! with 10,000 repositories (`BERTH_BENCH_REPOSITORIES`) and one repository
//! of 1,000 tags, then one client asks in turns, `BERTH_BENCH_ROUNDS` rounds
//! (3 by default) of `REQUESTS` each, for:
//!
//! - the repositories page (`/`, newest first, 50 rows) beside `_catalog?n=50`,
//! - the repository page of the 1,000 tags (50 rows) beside `tags/list?n=50`,
//!
//! and prints the median and p99 time to the last byte of each, and the
//! page's median as a multiple of its API request's. One client, one
//! request at a time, on loopback: the time is the server's plus a
//! loopback round trip. On SQLite always; on PostgreSQL too when
//! `BERTH_BENCH_POSTGRES_URL` names a server (a database is created there
//! for the run).
//!
//! The pages are asked for by an anonymous visitor of a public namespace,
//! which runs the same visibility test per row as a signed-in user's, and
//! the API by the administrator's token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{
    ADMIN_PASSWORD, BlobPush, MANIFEST_TYPE, Target, env_usize, image, push_image, put_many_tags,
    sha256, start_berth_with,
};

/// Requests per workload per round.
const REQUESTS: usize = 300;
/// Repositories seeded per token (a token names each repository it grants).
const PER_TOKEN: usize = 100;

pub async fn profile(rounds: usize) {
    let repositories = env_usize("BERTH_BENCH_REPOSITORIES", 10_000);
    let mut databases = vec![("SQLite", Vec::new())];
    let postgres = match std::env::var("BERTH_BENCH_POSTGRES_URL") {
        Ok(url) => Some(PostgresDatabase::create(&url, "pages").await),
        Err(_) => None,
    };
    if let Some(database) = &postgres {
        databases.push((
            "PostgreSQL",
            vec![("BERTH_DATABASE_URL".to_string(), database.url.clone())],
        ));
    }
    println!("\npages beside the API requests that return the same rows (one client, ms):");
    println!(
        "{:<12} {:<44} {:>8} {:>8} {:>14}",
        "database", "request", "median", "p99", "page / API"
    );
    for (database, env) in databases {
        let berth = Arc::new(start_berth_with(true, &env, "berth").await);
        let http = reqwest::Client::new();
        seed(&berth, &http, repositories).await;
        let admin_token = token(
            &berth,
            &[
                "registry:catalog:*".to_string(),
                "repository:bench/tags:pull".to_string(),
            ],
        )
        .await;
        let workloads: [(&str, String, bool); 4] = [
            (
                "repositories page, 50 of {n}",
                "/?sort=recent".into(),
                false,
            ),
            ("_catalog?n=50", "/v2/_catalog?n=50".into(), true),
            (
                "repository page, 50 of 1,000 tags",
                "/r/bench/tags".into(),
                false,
            ),
            (
                "tags/list?n=50",
                "/v2/bench/tags/tags/list?n=50".into(),
                true,
            ),
        ];
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); workloads.len()];
        for _ in 0..rounds {
            for (i, (_, path, api)) in workloads.iter().enumerate() {
                let token = api.then_some(admin_token.as_str());
                samples[i].extend(latencies(&berth, &http, path, token).await);
            }
        }
        let medians: Vec<f64> = samples.iter_mut().map(|s| quantile(s, 0.5)).collect();
        for (i, (label, _, api)) in workloads.iter().enumerate() {
            let label = label.replace("{n}", &repositories.to_string());
            let p99 = quantile(&mut samples[i], 0.99);
            let ratio = if *api {
                String::new()
            } else {
                format!("{:.2}x", medians[i] / medians[i + 1])
            };
            println!(
                "{database:<12} {label:<44} {:>8.2} {p99:>8.2} {ratio:>14}",
                medians[i]
            );
        }
        let _files = berth.stop();
    }
    if let Some(database) = postgres {
        database.drop().await;
    }
}

/// Time to the last byte of `REQUESTS` sequential `GET`s of `path`.
pub(super) async fn latencies(
    target: &Target,
    http: &reqwest::Client,
    path: &str,
    token: Option<&str>,
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(REQUESTS);
    for _ in 0..REQUESTS {
        let started = Instant::now();
        let mut request = http.get(format!("{}{path}", target.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.bytes().await.unwrap();
        times.push(started.elapsed());
    }
    times
}

/// The `q` quantile, in milliseconds.
pub(super) fn quantile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[index].as_secs_f64() * 1000.0
}

/// A token for the administrator with `scopes`.
pub(super) async fn token(target: &Target, scopes: &[String]) -> String {
    let mut query: Vec<(&str, &str)> = vec![("service", "berth")];
    query.extend(scopes.iter().map(|s| ("scope", s.as_str())));
    let answer: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/token", target.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .query(&query)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["token"].as_str().unwrap().to_string()
}

/// `repositories` repositories of one small image each (its blobs mounted
/// from a first one, as `docker push` of a shared base does), the 1,000
/// tags of `bench/tags`, and the `bench` namespace made public.
async fn seed(berth: &Arc<Target>, http: &reqwest::Client, repositories: usize) {
    let started = Instant::now();
    push_image(berth, http, "bench/seed", "latest", 1, BlobPush::Monolithic).await;
    let (config, layer, manifest) = image(1);
    let blobs = Arc::new([sha256(&config), sha256(&layer)]);
    let manifest = Arc::new(manifest);
    let batches: Vec<usize> = (0..repositories).step_by(PER_TOKEN).collect();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (berth, batches, next, blobs, manifest) = (
            berth.clone(),
            batches.clone(),
            next.clone(),
            blobs.clone(),
            manifest.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&first) = batches.get(i) else { return };
                let names: Vec<String> = (first..(first + PER_TOKEN).min(repositories))
                    .map(|n| format!("bench/r{n:05}"))
                    .collect();
                let mut scopes: Vec<String> = names
                    .iter()
                    .map(|name| format!("repository:{name}:pull,push"))
                    .collect();
                scopes.push("repository:bench/seed:pull".into());
                let token = token(&berth, &scopes).await;
                for name in &names {
                    for digest in blobs.iter() {
                        let mount = http
                            .post(format!(
                                "{}/v2/{name}/blobs/uploads/?mount={digest}&from=bench/seed",
                                berth.base
                            ))
                            .bearer_auth(&token)
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(mount.status(), 201, "mount into {name}");
                    }
                    let put = http
                        .put(format!("{}/v2/{name}/manifests/latest", berth.base))
                        .bearer_auth(&token)
                        .header("content-type", MANIFEST_TYPE)
                        .body(manifest.as_str().to_owned())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(put.status(), 201, "manifest of {name}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    put_many_tags(berth, http).await;
    let public = http
        .put(format!("{}/api/v1/visibility/bench", berth.base))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&serde_json::json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert!(
        public.status().is_success(),
        "bench made public: {}",
        public.status()
    );
    eprintln!(
        "seeded {repositories} repositories and 1,000 tags in {:.0?}",
        started.elapsed()
    );
}

/// A database of its own on the PostgreSQL server, dropped after the run.
pub(super) struct PostgresDatabase {
    admin_url: String,
    name: String,
    pub(super) url: String,
}

impl PostgresDatabase {
    /// A database named after `label` and this process.
    pub(super) async fn create(admin_url: &str, label: &str) -> PostgresDatabase {
        use sqlx::Connection;
        let name = format!("berth_bench_{label}_{}", std::process::id());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {admin_url}: {e}"));
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = url::Url::parse(admin_url).expect("BERTH_BENCH_POSTGRES_URL is a URL");
        url.set_path(&name);
        PostgresDatabase {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        }
    }

    pub(super) async fn drop(self) {
        use sqlx::Connection;
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.admin_url).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin)
            .await;
        }
    }
}
