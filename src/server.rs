//! Start-up: opens the stores named by the configuration, builds the router
//! and serves it until shut down. [`build`] and [`run`] are the two steps,
//! which the tests' harness takes on a listener at port 0; `berth serve`
//! (`cli`) calls [`serve`], which takes the same two and adds the bounded
//! graceful shutdown and the closing of the database. Calls every module it
//! wires; in the crate only `cli` calls it.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::admin::Admin;
use crate::auth::Auth;
use crate::config::{Config, StorageConfig, redact_url};
use crate::gc::Collector;
use crate::http::{AppState, router};
use crate::metadata::Metadata;
use crate::metrics::{Metrics, OperationLabels};
use crate::policy::Policies;
use crate::registry::Registry;
use crate::storage::{BlobStore, FilesystemBlobStore, MeteredBlobStore, S3BlobStore};

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
    let admin = Arc::new(Admin::new(stores.accounts.clone(), policies.clone()));
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
            Auth::open(stores.accounts.clone(), policies, &config.auth)
                .await
                .context("cannot load token signing keys")?,
        ))
    } else {
        tracing::warn!(
            "authentication is switched off (auth.mode = \"none\"): anyone may push, pull and delete"
        );
        None
    };
    let collector = Arc::new(Collector::new(
        stores.collector.clone(),
        stores.policy.clone(),
        blobs.clone(),
        config.gc,
        Some(metrics.clone()),
    ))
    .spawn();
    let state = AppState {
        registry: Arc::new(Registry::new(stores.registry.clone(), blobs)),
        auth,
        admin,
        metrics,
        public_url: config.public_url.clone(),
    };
    Ok(Opened {
        router: router(state),
        metadata: stores,
        collector,
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
    let Opened {
        router: app,
        metadata,
        collector,
    } = open(config).await?;
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let server = run(app, listener, async move {
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
    metadata.close().await;
    result
}

/// Serves an already built app; what [`serve`] does once the stores are open.
pub async fn run(
    app: axum::Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    tracing::info!(address = %listener.local_addr()?, "berth is listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("server failed")
}
