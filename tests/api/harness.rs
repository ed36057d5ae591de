//! The one test harness: starts the real app (the same `server::build` and
//! `server::run` that `berth serve` uses) in-process on a random port,
//! against SQLite in a temporary directory or a fresh PostgreSQL database.

use berth::config::{Config, Settings};
use reqwest::{Method, RequestBuilder, Response};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    /// PostgreSQL metadata and S3 blobs: how several instances run.
    S3,
}

/// Keys (relative to the store's prefix) of the objects under `under`.
pub async fn s3_objects(config: &berth::storage::S3Config, under: &str) -> Vec<String> {
    use futures_util::TryStreamExt;
    use object_store::ObjectStore;
    let store = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&config.bucket)
        .with_endpoint(config.endpoint.clone().unwrap())
        .with_region("us-east-1")
        .with_access_key_id(config.access_key_id.clone().unwrap())
        .with_secret_access_key(config.secret_access_key.clone().unwrap())
        .with_allow_http(true)
        .build()
        .unwrap();
    let prefix = object_store::path::Path::from(format!("{}/{under}", config.prefix));
    let objects: Vec<object_store::ObjectMeta> =
        store.list(Some(&prefix)).try_collect().await.unwrap();
    objects
        .into_iter()
        .map(|o| o.location.to_string()[config.prefix.len() + 1..].to_string())
        .collect()
}

/// The S3-compatible server the suite uses; `scripts/test.sh` starts one and
/// sets `BERTH_TEST_S3_ENDPOINT` and the `BERTH_TEST_S3_*` credentials.
pub fn s3_config() -> berth::storage::S3Config {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: the S3 suite cannot run. \
                 Run the suite with scripts/test.sh, which starts an S3 server and sets it."
            )
        })
    };
    berth::storage::S3Config {
        bucket: var("BERTH_TEST_S3_BUCKET"),
        prefix: format!("test-{}", uuid::Uuid::new_v4().simple()),
        endpoint: Some(var("BERTH_TEST_S3_ENDPOINT")),
        region: Some("us-east-1".into()),
        access_key_id: Some(var("BERTH_TEST_S3_ACCESS_KEY_ID")),
        secret_access_key: Some(var("BERTH_TEST_S3_SECRET_ACCESS_KEY")),
        allow_http: Some(true),
        virtual_hosted_style: false,
        part_size: 5 * 1024 * 1024,
        redirect: None,
    }
}

/// The PostgreSQL server the suite uses; `scripts/test.sh` starts it and sets this.
pub fn postgres_admin_url() -> String {
    std::env::var("BERTH_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "BERTH_TEST_POSTGRES_URL is not set: the PostgreSQL suite cannot run. \
             Run the suite with scripts/test.sh, which starts PostgreSQL and sets it."
        )
    })
}

/// A database created for one test and dropped when the test ends.
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PostgresDatabase {
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let name = format!("berth_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at BERTH_TEST_POSTGRES_URL: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin_url).expect("BERTH_TEST_POSTGRES_URL is a URL");
        url.set_path(&name);
        Self {
            admin_url,
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await; a short-lived runtime on its own thread does the cleanup.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut admin)
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub config: Config,
    /// Sent as `Authorization: Bearer` by [`TestApp::request`] when set.
    pub bearer: Option<String>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    _temp: tempfile::TempDir,
    _database: Option<PostgresDatabase>,
}

/// The password of the `admin` user of a [`TestApp::start_secured`] registry.
pub const ADMIN_PASSWORD: &str = "admin-password";

impl TestApp {
    /// A registry with authentication switched off, for protocol tests.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// A registry as users run it: private, with the token service on and
    /// an `admin` user whose password is [`ADMIN_PASSWORD`].
    pub async fn start_secured(backend: Backend) -> Self {
        Self::start_with(backend, |config| {
            config.auth.enabled = true;
            config.auth.admin_password = Some(ADMIN_PASSWORD.into());
        })
        .await
    }

    pub async fn start_with(backend: Backend, configure: impl FnOnce(&mut Config)) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let data_dir = temp.path().to_path_buf();
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres | Backend::S3 => Some(PostgresDatabase::create().await),
        };
        // What ships, with what a test needs changed; checked as `berth serve` checks it.
        let mut settings = Settings {
            data_dir: data_dir.clone(),
            listen: "127.0.0.1:0".into(),
            shutdown_timeout: std::time::Duration::from_secs(10),
            ..Settings::default()
        };
        // SQLite (the default) in the data dir, or the test's own database.
        settings.database.url = database.as_ref().map(|db| db.url.clone());
        // Blobs under the data dir (the default), or under a fresh S3 prefix.
        if backend == Backend::S3 {
            let s3 = s3_config();
            settings.storage.location = Some(format!("s3://{}/{}", s3.bucket, s3.prefix));
            settings.s3 = berth::storage::S3Settings {
                endpoint: s3.endpoint,
                region: s3.region,
                access_key_id: s3.access_key_id,
                secret_access_key: s3.secret_access_key,
                allow_http: s3.allow_http,
                virtual_hosted_style: s3.virtual_hosted_style,
                part_size: bytesize::ByteSize::b(s3.part_size),
                redirect: s3.redirect,
            };
        }
        // Tests run passes themselves; the soak test turns this on.
        settings.gc.interval = None;
        settings.auth.mode = berth::auth::AuthMode::Off;
        settings.auth.token_service = Some("berth-test".into());
        let mut config = settings.check().expect("the test settings are valid");
        configure(&mut config);
        let mut app = TestApp {
            base: String::new(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            config,

            bearer: None,
            shutdown: None,
            server: None,
            _temp: temp,
            _database: database,
        };
        app.launch().await;
        app
    }

    async fn launch(&mut self) {
        let router = berth::server::build(&self.config)
            .await
            .expect("app builds");
        // `config.listen` names the address (`127.0.0.1:0` unless a test
        // changed it); a restart takes a new port on it.
        let mut address = self.config.listen;
        address.set_port(0);
        let listener = TcpListener::bind(address).await.expect("bind port 0");
        let scheme = if self.config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        self.base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        self.shutdown = Some(tx);
        let server = berth::server::run(router, listener, &self.config, async {
            let _ = rx.await;
        });
        self.server = Some(tokio::spawn(server));
    }

    /// Stops the server and starts a new one on the same database and storage,
    /// as a process restart would (the address changes).
    pub async fn restart(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        self.launch().await;
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match &self.bearer {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path).send().await.unwrap()
    }

    pub async fn head(&self, path: &str) -> Response {
        self.request(Method::HEAD, path).send().await.unwrap()
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.request(Method::DELETE, path).send().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// Runs each named `async fn(TestApp)` against SQLite, PostgreSQL, and
/// PostgreSQL with S3 blob storage.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::TestApp::start($crate::harness::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::TestApp::start($crate::harness::Backend::Postgres).await).await;
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::TestApp::start($crate::harness::Backend::S3).await).await;
                }
            )*
        }
    };
}

/// Like [`backend_tests!`], on registries started with [`TestApp::start_secured`].
#[macro_export]
macro_rules! secured_backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::TestApp::start_secured($crate::harness::Backend::Sqlite).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::harness::TestApp::start_secured($crate::harness::Backend::Postgres).await).await;
                }
            )*
        }
    };
}
