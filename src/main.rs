//! The `berth` command line: `berth serve` runs the registry; `user`, `org`,
//! `token`, `repo` and `key` administer it through the same configuration
//! (they open the database directly, so they work while the server runs).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use berth::auth::admin::{Actor, Admin, AdminError};
use berth::auth::keys::KeyRing;
use berth::config::{Config, LogFormat, Overrides, redact_url};
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
    /// Data directory for the embedded defaults [default: ./data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// sqlite:<path> or postgres://... [default: sqlite:<data-dir>/berth.db].
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
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
    /// Collect garbage now: unreferenced manifests and blobs past the grace
    /// period, and expired uploads (running registries do this on their own).
    Gc {
        /// Report what would be collected, and how many bytes, without deleting.
        #[arg(long)]
        dry_run: bool,
        /// Override `gc_grace` for this pass, e.g. 0s.
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user owning the namespace NAME/*.
    Add {
        name: String,
        #[arg(long)]
        admin: bool,
        /// Read the password from standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Change a user's password (their stored `docker login` sessions end).
    Passwd {
        name: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user with their tokens and memberships.
    Remove { name: String },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Create an organization owning the namespace NAME/*.
    Create { name: String },
    /// List organizations with their members.
    List,
    /// Add a member or change their role (read, write or admin).
    AddMember {
        org: String,
        user: String,
        role: String,
    },
    /// Remove a member.
    RemoveMember { org: String, user: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an access token and print its secret (shown once).
    Create {
        #[arg(long)]
        user: String,
        /// What the token may do, e.g. 'repository:team/*:pull,push' (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Lifetime such as 30d or 12h; no expiry when absent.
        #[arg(long)]
        expires: Option<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List access tokens.
    List {
        #[arg(long)]
        user: Option<String>,
    },
    /// Revoke an access token (its next token request fails).
    Revoke { id: String },
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Make a repository (alice/app) or a namespace (alice) public or private.
    Visibility {
        name: String,
        #[arg(value_parser = ["public", "private"])]
        visibility: String,
    },
}

#[derive(Subcommand)]
enum TagCommand {
    /// Forbid moving or deleting tags matching PATTERN (e.g. 'v*') in a
    /// repository (team/app) or a namespace (team).
    Immutable { path: String, pattern: String },
    /// Lift an immutable-tag rule.
    Mutable { path: String, pattern: String },
    /// List immutable-tag rules.
    Rules,
}

#[derive(Subcommand)]
enum QuotaCommand {
    /// Limit the bytes a namespace stores (each distinct blob counted once), e.g. 10GiB.
    Set { namespace: String, size: String },
    /// Remove a namespace's quota.
    Remove { namespace: String },
    /// List quotas with their usage.
    List,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Keep the newest N tags and/or tags pushed within D days in a
    /// repository (team/app) or namespace (team); untag the rest.
    Set {
        path: String,
        #[arg(long)]
        keep_last: Option<u64>,
        #[arg(long)]
        keep_days: Option<u64>,
        /// Tags matching this pattern are always kept (repeatable), e.g. 'v*'.
        #[arg(long)]
        exclude: Vec<String>,
    },
    /// Remove a policy.
    Remove { path: String },
    /// List policies.
    List,
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Add a new signing key; tokens signed by older keys stay valid until they expire.
    Rotate,
}

/// Makes big transient allocations go back to the system when freed. glibc
/// raises its mmap threshold to the largest block freed so far, so after the
/// first password hash (Argon2 takes 19 MiB) every later one came from the
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

fn main() -> ExitCode {
    return_large_allocations();
    let cli = Cli::parse();
    let mut overrides = Overrides {
        data_dir: cli.data_dir,
        database_url: cli.database_url,
        ..Overrides::default()
    };
    if let Command::Serve {
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
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    // Log lines (an access line per request at `info`) are written by a
    // thread of their own, so a slow reader of stderr (a logging driver
    // under back-pressure) does not stall the runtime's workers. Nothing is
    // dropped: a full buffer waits. The guard flushes what is left on exit.
    let (stderr, _flush_logs_on_exit) =
        tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("berth-logs")
            .finish(std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(stderr);
    match config.log_format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let result = match cli.command {
        Command::Serve { .. } => runtime.block_on(serve(config)),
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

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    berth::server::serve(&config, listener, shutdown_signal()).await
}

/// A password from standard input (`--password-stdin`) or typed twice at a prompt.
fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_string());
    }
    if !std::io::stdin().is_terminal() {
        anyhow::bail!("no terminal to prompt for a password: use --password-stdin");
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Password again: ")?;
    if first != second {
        anyhow::bail!("the passwords do not match");
    }
    Ok(first)
}

fn admin_error(error: AdminError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

fn when(unix: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

async fn administer(config: Config, command: Command) -> anyhow::Result<()> {
    let stores = berth::metadata::connect(&config.database_url, 2)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot open database {}: {e}",
                redact_url(&config.database_url)
            )
        })?;
    let admin = Admin::new(stores.accounts.clone());
    let system = Actor::System;
    match command {
        Command::Serve { .. } => unreachable!("handled by serve"),
        Command::User(UserCommand::Add {
            name,
            admin: is_admin,
            password_stdin,
        }) => {
            let password = read_password(password_stdin)?;
            admin
                .add_user(&system, &name, &password, is_admin)
                .await
                .map_err(admin_error)?;
            eprintln!(
                "created user `{name}`{}",
                if is_admin { " (administrator)" } else { "" }
            );
        }
        Command::User(UserCommand::List) => {
            for user in admin.users(&system).await.map_err(admin_error)? {
                println!(
                    "{}\t{}\t{}",
                    user.name,
                    if user.admin { "admin" } else { "user" },
                    when(user.created_at)
                );
            }
        }
        Command::User(UserCommand::Passwd {
            name,
            password_stdin,
        }) => {
            let password = read_password(password_stdin)?;
            admin
                .set_password(&system, &name, &password)
                .await
                .map_err(admin_error)?;
            eprintln!("changed the password of `{name}`");
        }
        Command::User(UserCommand::Remove { name }) => {
            admin
                .remove_user(&system, &name)
                .await
                .map_err(admin_error)?;
            eprintln!("removed user `{name}`");
        }
        Command::Org(OrgCommand::Create { name }) => {
            admin
                .create_organization(&system, &name)
                .await
                .map_err(admin_error)?;
            eprintln!("created organization `{name}`");
        }
        Command::Org(OrgCommand::List) => {
            for org in admin.organizations(&system).await.map_err(admin_error)? {
                let members: Vec<String> = org
                    .members
                    .iter()
                    .map(|m| format!("{}:{}", m.user, m.role))
                    .collect();
                println!("{}\t{}", org.name, members.join(","));
            }
        }
        Command::Org(OrgCommand::AddMember { org, user, role }) => {
            admin
                .set_member(&system, &org, &user, &role)
                .await
                .map_err(admin_error)?;
            eprintln!("`{user}` is now {role} in `{org}`");
        }
        Command::Org(OrgCommand::RemoveMember { org, user }) => {
            admin
                .remove_member(&system, &org, &user)
                .await
                .map_err(admin_error)?;
            eprintln!("removed `{user}` from `{org}`");
        }
        Command::Token(TokenCommand::Create {
            user,
            scopes,
            expires,
            description,
        }) => {
            let expires = match expires {
                Some(text) => Some(
                    humantime::parse_duration(&text)
                        .map_err(|_| anyhow::anyhow!("`{text}` is not a duration such as 30d"))?,
                ),
                None => None,
            };
            let created = admin
                .create_token(&system, &user, &scopes, expires, &description)
                .await
                .map_err(admin_error)?;
            eprintln!(
                "created token {} for `{user}` ({}); use the secret below as the password of `docker login -u {user}`; it is not shown again",
                created.token.id,
                created.token.scopes.join(" ")
            );
            println!("{}", created.secret);
        }
        Command::Token(TokenCommand::List { user }) => {
            for token in admin
                .tokens(&system, user.as_deref())
                .await
                .map_err(admin_error)?
            {
                let state = if token.revoked {
                    "revoked".to_string()
                } else {
                    token
                        .expires_at
                        .map_or("no expiry".into(), |at| format!("expires {}", when(at)))
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    token.id,
                    token.user,
                    token.scopes.join(" "),
                    state,
                    token.description
                );
            }
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            admin
                .revoke_token(&system, &id)
                .await
                .map_err(admin_error)?;
            eprintln!("revoked token {id}");
        }
        Command::Repo(RepoCommand::Visibility { name, visibility }) => {
            admin
                .set_visibility(&system, &name, visibility == "public")
                .await
                .map_err(admin_error)?;
            eprintln!("`{name}` is now {visibility}");
        }
        Command::Gc { dry_run, grace } => {
            let mut gc = config.gc;
            if let Some(text) = grace {
                gc.grace = humantime::parse_duration(&text)
                    .map_err(|_| anyhow::anyhow!("`{text}` is not a duration such as 0s or 24h"))?;
            }
            let blobs = berth::server::open_blob_store(&config).await?;
            let collector = berth::gc::Collector::new(
                stores.collector.clone(),
                stores.accounts.clone(),
                blobs,
                gc,
                None,
            );
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
        }
        Command::Tag(TagCommand::Immutable { path, pattern }) => {
            admin
                .set_immutable_tags(&system, &path, &pattern, true)
                .await
                .map_err(admin_error)?;
            eprintln!("tags matching `{pattern}` in `{path}` can no longer be moved or deleted");
        }
        Command::Tag(TagCommand::Mutable { path, pattern }) => {
            admin
                .set_immutable_tags(&system, &path, &pattern, false)
                .await
                .map_err(admin_error)?;
            eprintln!("tags matching `{pattern}` in `{path}` are mutable again");
        }
        Command::Tag(TagCommand::Rules) => {
            for (path, pattern) in admin.immutable_tags().await.map_err(admin_error)? {
                println!("{path}\t{pattern}\timmutable");
            }
        }
        Command::Quota(QuotaCommand::Set { namespace, size }) => {
            let limit = berth::auth::admin::parse_size(&size).map_err(|e| anyhow::anyhow!(e))?;
            admin
                .set_quota(&system, &namespace, Some(limit))
                .await
                .map_err(admin_error)?;
            eprintln!("namespace `{namespace}` may store {limit} bytes");
        }
        Command::Quota(QuotaCommand::Remove { namespace }) => {
            admin
                .set_quota(&system, &namespace, None)
                .await
                .map_err(admin_error)?;
            eprintln!("namespace `{namespace}` has no quota");
        }
        Command::Quota(QuotaCommand::List) => {
            for quota in admin.quotas(&system).await.map_err(admin_error)? {
                println!(
                    "{}\t{} of {} bytes used",
                    quota.namespace,
                    quota.used_bytes,
                    quota.limit_bytes.unwrap_or(0)
                );
            }
        }
        Command::Retention(RetentionCommand::Set {
            path,
            keep_last,
            keep_days,
            exclude,
        }) => {
            let policy = berth::retention::RetentionPolicy {
                path: path.clone(),
                keep_last,
                keep_days,
                exclude,
            };
            admin
                .set_retention(&system, &policy)
                .await
                .map_err(admin_error)?;
            eprintln!(
                "retention policy of `{path}` set; `berth gc --dry-run` lists what it would untag"
            );
        }
        Command::Retention(RetentionCommand::Remove { path }) => {
            admin
                .remove_retention(&system, &path)
                .await
                .map_err(admin_error)?;
            eprintln!("`{path}` has no retention policy");
        }
        Command::Retention(RetentionCommand::List) => {
            for policy in admin.retention_policies().await.map_err(admin_error)? {
                println!(
                    "{}\tkeep_last={}\tkeep_days={}\texclude={}",
                    policy.path,
                    policy.keep_last.map_or("-".into(), |n| n.to_string()),
                    policy.keep_days.map_or("-".into(), |n| n.to_string()),
                    policy.exclude.join(",")
                );
            }
        }
        Command::Key(KeyCommand::Rotate) => {
            let kid = KeyRing::rotate(stores.accounts.as_ref()).await?;
            eprintln!("new signing key {kid}; every instance signs with it within a minute");
        }
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
