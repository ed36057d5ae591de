//! Start-up: opens the stores named by the configuration, builds the router
//! and serves it until shut down. [`build`] and [`run`] are the two steps,
//! which the tests' harness takes on a listener at port 0; `berth serve`
//! (`cli`) calls [`serve`], which takes the same two and adds the open-files
//! limit, the bounded graceful shutdown and the closing of the database.
//! Connections (TLS, limits) are `listener`'s. Calls every module it wires;
//! in the crate only `cli` calls it.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::auth::Auth;
use crate::cache::Cache;
use crate::config::{Config, StorageConfig, redact_url};
use crate::gc::Collector;
use crate::http::{AppState, router};
use crate::listener::Connections;
use crate::metadata::Metadata;
use crate::metrics::{Metrics, OperationLabels};
use crate::policy::Policies;
use crate::registry::Registry;
use crate::storage::{BlobStore, FilesystemBlobStore, MeteredBlobStore, S3BlobStore};
use crate::ui::{self, ServerFacts, UiState};

/// Opens the metadata and blob stores (running migrations) and returns the
/// app; starts the background garbage collector when configured.
pub async fn build(config: &Config) -> anyhow::Result<axum::Router> {
    Ok(open(config).await?.router)
}

struct Opened {
    router: axum::Router,
    /// Closed at shutdown.
    metadata: Metadata,
    collector: Option<tokio::task::JoinHandle<()>>,
    events: tokio::task::JoinHandle<()>,
}

/// The configured blob store (no metrics), for `berth gc`.
pub async fn open_blob_store(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    Ok(match &config.storage {
        StorageConfig::Filesystem(path) => Arc::new(
            FilesystemBlobStore::open(path, config.fsync)
                .await
                .with_context(|| format!("cannot open blob storage at {}", path.display()))?,
        ),
        StorageConfig::S3(s3) => Arc::new(
            S3BlobStore::open(s3)
                .with_context(|| format!("cannot open S3 bucket {}", s3.bucket))?,
        ),
    })
}

async fn open(config: &Config) -> anyhow::Result<Opened> {
    let stores = crate::metadata::connect(&config.database_url, config.database_max_connections)
        .await
        .with_context(|| format!("cannot open database {}", redact_url(&config.database_url)))?;
    let metrics = Arc::new(Metrics::new());
    let blobs = open_blob_store(config).await?;
    let errors = metrics.storage_errors.clone();
    let blobs: Arc<dyn BlobStore> =
        Arc::new(MeteredBlobStore::new(blobs, move |operation, error| {
            errors.get_or_create(&OperationLabels { operation }).inc();
            tracing::warn!(operation, %error, "blob store operation failed");
        }));
    let policies = Policies::new(stores.policy.clone());
    let admin = Arc::new(Admin::new(
        stores.accounts.clone(),
        policies.clone(),
        stores.events.clone(),
    ));
    let auth = if config.auth.enabled {
        if let Some(password) = admin
            .bootstrap(config.auth.admin_password.as_deref())
            .await?
        {
            // Shown once, on the terminal, never through the logs.
            eprintln!(
                "berth: created user `admin` with password {password}\n\
                 berth: change it with `berth user passwd admin`; it is not shown again"
            );
        }
        Some(Arc::new(
            Auth::open(
                stores.accounts.clone(),
                stores.events.clone(),
                policies.clone(),
                &config.auth,
            )
            .await
            .context("cannot load token signing keys")?,
        ))
    } else {
        tracing::warn!(
            "authentication is switched off (auth.mode = \"none\"): anyone may push, pull and delete"
        );
        None
    };
    let gc = Arc::new(
        Collector::new(
            stores.collector.clone(),
            stores.policy.clone(),
            blobs.clone(),
            config.gc,
            Some(metrics.clone()),
        )
        .with_evictions(Cache::evictions(&config.cache))
        .in_background(),
    );
    let collector = gc.clone().spawn();
    let registry = Arc::new(Registry::new(
        stores.registry.clone(),
        stores.events.clone(),
        blobs.clone(),
    ));
    let cache = Arc::new(
        Cache::new(
            &config.cache,
            stores.cache.clone(),
            stores.registry.clone(),
            registry.clone(),
            blobs,
            metrics.clone(),
        )
        .map_err(|e| anyhow::anyhow!("cannot set up the pull-through cache: {e}"))?,
    );
    let source = crate::events::Source {
        public_url: config.public_url.clone(),
        addr: config.listen.to_string(),
        instance_id: uuid::Uuid::new_v4().to_string(),
    };
    let events = crate::events::Events::new(
        stores.events.clone(),
        config.events.clone(),
        source,
        metrics.clone(),
        registry.pull_events(),
    )?
    .start()
    .await
    .context("cannot record the webhook endpoints of the configuration")?;
    // Manifests stored before summaries were recorded (or whose config could
    // not be read at push) are filled in the background, in every instance.
    let filling = registry.clone();
    tokio::spawn(async move {
        if let Err(error) = filling.fill_pending_summaries().await {
            tracing::warn!(%error, "cannot record image summaries; the next start tries again");
        }
    });
    let pages = ui::router(UiState {
        registry: registry.clone(),
        auth: auth.clone(),
        admin: admin.clone(),
        policies,
        gc,
        public_url: config.public_url.clone(),
        tls: config.tls.is_some(),
        server: ServerFacts {
            version: env!("CARGO_PKG_VERSION"),
            database: if config.database_url.starts_with("postgres") {
                "PostgreSQL"
            } else {
                "SQLite"
            },
            blob_store: match &config.storage {
                StorageConfig::Filesystem(path) => format!("filesystem at {}", path.display()),
                StorageConfig::S3(s3) => format!("S3 bucket {}", s3.bucket),
            },
        },
    });
    let state = AppState {
        registry,
        auth,
        admin,
        cache: Some(cache),
        metrics,
        public_url: config.public_url.clone(),
        tls: config.tls.is_some(),
    };
    Ok(Opened {
        router: router(state).merge(pages),
        metadata: stores,
        collector,
        events,
    })
}

/// Serves on `listener` until `shutdown` completes, then stops accepting,
/// gives requests in flight up to `shutdown_timeout` to finish, and closes
/// the database pools.
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let open_files = crate::listener::raise_open_files_limit();
    let mut http = config.http;
    http.max_connections = crate::listener::fit_to_open_files(http.max_connections, open_files);
    match open_files {
        Some(limit) if http.max_connections < config.http.max_connections => tracing::warn!(
            open_files = limit,
            max_connections = http.max_connections,
            "the open-files limit is too low for http.max_connections: serving fewer connections at once"
        ),
        Some(limit) => tracing::info!(open_files = limit, "open-files limit"),
        None => {}
    }
    // Before the stores: a bad certificate stops start-up before any migration.
    let connections = Connections::new(http, config.tls.as_ref()).context("cannot serve HTTPS")?;
    let Opened {
        router: app,
        metadata,
        collector,
        events,
    } = open(config).await?;
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = serve_on(app, listener, connections, async move {
        shutdown.await;
        let _ = stopping_tx.send(());
    });
    tokio::pin!(server);
    let deadline = async move {
        if stopping_rx.await.is_ok() {
            tokio::time::sleep(config.shutdown_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = &mut server => result,
        () = deadline => {
            tracing::warn!(timeout = ?config.shutdown_timeout, "requests still in flight at the shutdown deadline are cut");
            Ok(())
        }
    };
    if let Some(collector) = collector {
        collector.abort();
    }
    events.abort();
    metadata.close().await;
    result
}

/// Serves an already built app with `config`'s `[http]` limits and `[tls]`;
/// what [`serve`] does once the stores are open. The certificate files are
/// read before this returns: their error is the `Err` of the future.
pub fn run(
    app: axum::Router,
    listener: TcpListener,
    config: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
    let connections =
        Connections::new(config.http, config.tls.as_ref()).context("cannot serve HTTPS");
    async move { serve_on(app, listener, connections?, shutdown).await }
}

async fn serve_on(
    app: axum::Router,
    listener: TcpListener,
    connections: Connections,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let address = listener
        .local_addr()
        .context("the listener has no address")?;
    let scheme = if connections.is_tls() {
        "https"
    } else {
        "http"
    };
    tracing::info!(%address, scheme, "berth is listening");
    // Docker and containerd speak plain HTTP, by default, only to 127.0.0.0/8.
    let docker_allows_plain_http =
        matches!(address.ip(), std::net::IpAddr::V4(ip) if ip.is_loopback());
    if !connections.is_tls() && !docker_allows_plain_http {
        tracing::warn!(
            "serving plain HTTP: only clients reaching it as 127.0.0.1 push without extra client configuration; \
             set tls.cert_file and tls.key_file (`berth tls self-signed` makes a pair) or put a TLS proxy in front"
        );
    }
    connections.serve(app, listener, shutdown).await;
    Ok(())
}
