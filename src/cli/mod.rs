//! The `berth` command line: `berth serve` runs the registry; `user`,
//! `org`, `token`, `repo`, `tag`, `quota` and `retention` become
//! [`crate::admin::Command`]s run as the system (they open the database
//! directly, so they work while the server runs); `gc` and `key` act on the
//! collector and the signing keys; the hidden `bench-load` fills a registry
//! for the `scale` benchmark (`bench_load.rs`); `tls self-signed` writes certificates
//! (`tls::self_signed`). A bad setting exits with status 2.
//!
//! Calls `config`, `server`, `admin`, `gc`, `policy` (sizes, and the
//! `Policies` the admin commands act on), `auth::keys`, `tls`, and
//! `metadata` to open the database for the admin commands.

mod bench_load;
mod commands;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::admin::{Actor, Admin};
use crate::config::{Config, LogFormat, Overrides, redact_url};
use commands::{
    AuditArgs, OrgCommand, QuotaCommand, RepoCommand, RetentionCommand, TagCommand, TokenCommand,
    UserCommand, WebhookCommand,
};

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
    /// Data directory for the embedded defaults [default: ./data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite:<path> or postgres://... [default: sqlite:<data-dir>/berth.db].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: TopCommand,
}

#[derive(Subcommand)]
enum TopCommand {
    /// Run the registry.
    Serve {
        /// Address to listen on [default: 0.0.0.0:5000].
        #[arg(long, value_name = "ADDR")]
        listen: Option<String>,
        /// Blob storage path [default: <data-dir>/blobs].
        #[arg(long, value_name = "PATH")]
        storage: Option<String>,
        /// External base URL for Location headers and the token realm.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage organizations and their members.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage access tokens for machines (CI, deployments).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage repositories.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Manage the keys that sign registry tokens.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage tag rules.
    #[command(subcommand)]
    Tag(TagCommand),
    /// Manage storage quotas per namespace.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// Manage retention policies (applied by every garbage-collection pass).
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Manage webhook endpoints of a namespace, and see their deliveries.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Read the audit log, newest first.
    Audit(AuditArgs),
    /// Make certificates for serving HTTPS.
    #[command(subcommand)]
    Tls(TlsCommand),
    /// See the pull-through cache's namespaces (`[[proxy]]` in the config file).
    #[command(subcommand)]
    Proxy(ProxyCommand),
    /// Collect garbage now: unreferenced manifests and blobs past the grace
    /// period, and expired uploads (running registries do this on their own).
    Gc {
        /// Report what would be collected, and how many bytes, without deleting.
        #[arg(long)]
        dry_run: bool,
        /// Override `gc.grace` for this pass, e.g. 0s.
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// Fill an empty registry with many repositories, tags and blobs, for
    /// the `scale` benchmark.
    #[command(hide = true)]
    BenchLoad(bench_load::BenchLoadArgs),
}

#[derive(Subcommand)]
enum TlsCommand {
    /// Write a CA of one's own and a server certificate it signs into
    /// <data-dir>/tls/, and print where each client wants the CA.
    SelfSigned {
        /// A host name clients use to reach the registry (repeatable).
        #[arg(long = "host", value_name = "NAME")]
        hosts: Vec<String>,
        /// An IP address clients use to reach the registry (repeatable).
        #[arg(long = "ip", value_name = "ADDR")]
        ips: Vec<std::net::IpAddr>,
        /// Replace certificates already there (clients must then trust the new CA).
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ProxyCommand {
    /// List the proxy namespaces, their upstreams and how long content is kept.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Add a new signing key; tokens signed by older keys stay valid until they expire.
    Rotate,
}

/// Makes big transient allocations go back to the system when freed. glibc
/// raises its mmap threshold to the largest block freed so far, so after the
/// first password hash (Argon2 then took 19 MiB) every later one came from the
/// heap and stayed resident for good; a fixed threshold keeps such blocks
/// mapped only while in use. Fixing it also fixes the trim threshold, set
/// here so that freed pull and push buffers are reused rather than handed
/// back and faulted in again for every chunk.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_large_allocations() {
    // SAFETY: mallopt only changes allocator parameters; it runs before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 8 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_large_allocations() {}

/// The `berth` binary's `main`.
pub fn main() -> ExitCode {
    return_large_allocations();
    let cli = Cli::parse();
    let mut overrides = Overrides {
        data_dir: cli.data_dir,
        database_url: cli.database_url,
        ..Overrides::default()
    };
    if let TopCommand::Serve {
        listen,
        storage,
        public_url,
    } = &cli.command
    {
        overrides.listen = listen.clone();
        overrides.storage = storage.clone();
        overrides.public_url = public_url.clone();
    }
    let config = match Config::load(cli.config.as_deref(), overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("berth: {e}");
            return ExitCode::from(2);
        }
    };
    // Flushes what is left of the logs on exit.
    let _logs = init_logging(config.log_format);
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let result = match cli.command {
        TopCommand::Serve { .. } => runtime.block_on(serve(config)),
        TopCommand::Tls(TlsCommand::SelfSigned { hosts, ips, force }) => {
            self_signed(&config, &hosts, &ips, force)
        }
        TopCommand::Proxy(ProxyCommand::List { json }) => {
            list_proxies(&config, json);
            Ok(())
        }
        command => runtime.block_on(administer(config, command)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines (an access line per request at `info`) are written by a thread
/// of their own, so a slow reader of stderr (a logging driver under
/// back-pressure) does not stall the runtime's workers. Nothing is dropped:
/// a full buffer waits. The guard flushes what is left when dropped.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let (stderr, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("berth-logs")
        .finish(std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr);
    match format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
    guard
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    crate::server::serve(&config, listener, shutdown_signal()).await
}

async fn administer(config: Config, command: TopCommand) -> anyhow::Result<()> {
    let metadata = crate::metadata::connect(&config.database_url, 2)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open database {}: {e}",
                redact_url(&config.database_url)
            )
        })?;
    let outcome = administer_with(&config, &metadata, command).await;
    // Closed, not dropped at exit: the last SQLite connection to close
    // checkpoints the WAL and removes it, so the next start need not read
    // it back (after `bench-load`, hundreds of megabytes).
    metadata.close().await;
    outcome
}

async fn administer_with(
    config: &Config,
    metadata: &crate::metadata::Metadata,
    command: TopCommand,
) -> anyhow::Result<()> {
    let command = match command {
        TopCommand::Serve { .. } | TopCommand::Tls(_) | TopCommand::Proxy(_) => {
            unreachable!("handled by main")
        }
        TopCommand::Gc { dry_run, grace } => {
            return collect(config, metadata, dry_run, grace).await;
        }
        TopCommand::BenchLoad(args) => {
            return bench_load::bench_load(config, metadata, args).await;
        }
        TopCommand::Key(KeyCommand::Rotate) => {
            let kid = crate::auth::keys::KeyRing::rotate(&metadata.accounts).await?;
            eprintln!("new signing key {kid}; every instance signs with it within a minute");
            return Ok(());
        }
        TopCommand::User(command) => command.into_command()?,
        TopCommand::Org(command) => command.into_command(),
        TopCommand::Token(command) => command.into_command()?,
        TopCommand::Repo(command) => command.into_command(),
        TopCommand::Tag(command) => command.into_command(),
        TopCommand::Quota(command) => command.into_command()?,
        TopCommand::Retention(command) => command.into_command(),
        TopCommand::Webhook(command) => command.into_command()?,
        TopCommand::Audit(args) => args.into_command(),
    };
    let admin = Admin::new(
        metadata.accounts.clone(),
        crate::policy::Policies::new(metadata.policy.clone()),
        metadata.events.clone(),
    );
    let outcome = admin
        .execute(&crate::origin::Origin::system(), &Actor::System, command)
        .await?;
    if let Some(note) = outcome.note() {
        eprintln!("{note}");
    }
    for line in outcome.lines() {
        println!("{line}");
    }
    Ok(())
}

/// `berth proxy list`: the checked `[[proxy]]` entries (never a password).
fn list_proxies(config: &Config, json: bool) {
    let proxies = crate::cache::Cache::describe(&config.cache);
    if json {
        println!("{}", serde_json::Value::Array(proxies));
        return;
    }
    if proxies.is_empty() {
        println!("no proxy namespaces: add [[proxy]] entries to the config file");
        return;
    }
    for proxy in proxies {
        let text = |key: &str| proxy[key].as_str().unwrap_or("-").to_string();
        println!(
            "{}\t{}\tmirror of {}\ttags fresh for {}\tevicted after {} unpulled",
            text("namespace"),
            text("upstream"),
            text("mirror_of"),
            text("tag_ttl"),
            text("evict_after"),
        );
    }
}

/// `berth tls self-signed`: the files under `<data_dir>/tls/`, and what to do with them.
fn self_signed(
    config: &Config,
    hosts: &[String],
    ips: &[std::net::IpAddr],
    force: bool,
) -> anyhow::Result<()> {
    use crate::tls::self_signed::{Paths, generate, instructions, write};
    let dir = std::path::absolute(config.data_dir.join("tls"))?;
    let paths = Paths::in_dir(&dir);
    let generated = generate(hosts, ips)?;
    write(&paths, &generated, force)?;
    let names: Vec<String> = hosts
        .iter()
        .cloned()
        .chain(ips.iter().map(ToString::to_string))
        .collect();
    print!("{}", instructions(&paths, &names, config.listen.port()));
    Ok(())
}

/// `berth gc`: one pass now, or with `--dry-run` a report of what it would do.
async fn collect(
    config: &Config,
    metadata: &crate::metadata::Metadata,
    dry_run: bool,
    grace: Option<String>,
) -> anyhow::Result<()> {
    let mut gc = config.gc;
    if let Some(text) = grace {
        gc.grace = humantime::parse_duration(&text)
            .map_err(|_| anyhow::anyhow!("`{text}` is not a duration such as 0s or 24h"))?;
    }
    let blobs = crate::server::open_blob_store(config).await?;
    let collector = crate::gc::Collector::new(
        metadata.collector.clone(),
        metadata.policy.clone(),
        blobs,
        gc,
        None,
    )
    .with_evictions(crate::cache::Cache::evictions(&config.cache));
    let report = collector.run_pass(dry_run).await?;
    let c = report.collected;
    for (repository, tag) in &report.expired_tags {
        let done = if dry_run { "would untag" } else { "untagged" };
        println!("{done} {repository}:{tag} (retention)");
    }
    let verb = if dry_run {
        "would collect"
    } else {
        "collected"
    };
    println!(
        "{verb}: {} manifests, {} blob links, {} blobs ({} bytes), {} expired uploads",
        c.manifests, c.blob_links, c.blobs, c.bytes, c.uploads
    );
    if !dry_run {
        println!(
            "deleted {} objects from blob storage ({} failed, retried next pass) in {:.3}s",
            report.objects_deleted,
            report.objects_failed,
            report.duration.as_secs_f64()
        );
    }
    Ok(())
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
