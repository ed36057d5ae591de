//! The `berth` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use berth::config::{Config, Overrides};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A self-hosted OCI container image registry"
)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "BERTH_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve {
        /// Address to listen on [default: 0.0.0.0:5000].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Data directory for the embedded defaults [default: ./data].
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// sqlite:<path> or postgres://... [default: sqlite:<data-dir>/berth.db].
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
        /// Blob storage path [default: <data-dir>/blobs].
        #[arg(long, value_name = "PATH")]
        storage: Option<String>,
        /// External base URL for Location headers.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stdout())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    match cli.command {
        Command::Serve {
            listen,
            data_dir,
            database_url,
            storage,
            public_url,
        } => {
            let overrides = Overrides {
                listen,
                data_dir,
                database_url,
                storage,
                public_url,
            };
            let config = match Config::load(cli.config.as_deref(), overrides) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("berth: {e}");
                    return ExitCode::from(2);
                }
            };
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
            match runtime.block_on(run(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("berth: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    berth::server::serve(&config, listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
}
