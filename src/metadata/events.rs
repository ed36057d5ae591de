//! Events and the audit log: the outbox (`events`), written by the content
//! transactions of `manifests.rs` and `blobs.rs` through [`record_change`];
//! the webhook endpoints and each event's delivery to each of them
//! (`webhook_endpoints`, `webhook_deliveries`); and `audit_log`, appended to
//! by the same transactions and by [`EventStore::record_audit`] for what
//! happens outside them (logins, refusals, administration).
//!
//! Delivery is claimed, not locked for its duration: a worker sets a row's
//! lease and sends outside any transaction, so a receiver that hangs holds
//! no database connection, and a worker that dies only delays the row until
//! its lease runs out.

use super::db::{Conn, Lock, Value, placeholders};
use super::{MetadataResult, size};
pub use crate::origin::{AuthMethod, Origin};

/// Milliseconds since the Unix epoch: events and deliveries keep time finer
/// than the other tables, as retries come within seconds.
pub fn unix_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// What an event reports. The first four are what the reference registry's
/// `action` field says too; Berth's own (`tag.moved`, ...) map onto them in
/// its envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// A manifest was stored (with its tag when pushed by tag).
    ManifestPushed,
    /// A tag now points at another manifest than before.
    TagMoved,
    TagDeleted,
    ManifestDeleted,
    BlobMounted,
    ManifestPulled,
    RepositoryCreated,
    /// Sent on request to one endpoint, to try it.
    Test,
}

impl EventAction {
    pub const ALL: [EventAction; 8] = [
        EventAction::ManifestPushed,
        EventAction::TagMoved,
        EventAction::TagDeleted,
        EventAction::ManifestDeleted,
        EventAction::BlobMounted,
        EventAction::ManifestPulled,
        EventAction::RepositoryCreated,
        EventAction::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::ManifestPushed => "manifest.pushed",
            EventAction::TagMoved => "tag.moved",
            EventAction::TagDeleted => "tag.deleted",
            EventAction::ManifestDeleted => "manifest.deleted",
            EventAction::BlobMounted => "blob.mounted",
            EventAction::ManifestPulled => "manifest.pulled",
            EventAction::RepositoryCreated => "repository.created",
            EventAction::Test => "test",
        }
    }

    pub fn parse(text: &str) -> Option<EventAction> {
        EventAction::ALL.into_iter().find(|a| a.as_str() == text)
    }
}

/// An event about to be recorded.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub action: EventAction,
    pub repository: &'a str,
    pub digest: Option<&'a str>,
    pub media_type: Option<&'a str>,
    pub size: Option<u64>,
    pub tag: Option<&'a str>,
    /// A mount's source repository.
    pub from_repository: Option<&'a str>,
}

impl<'a> NewEvent<'a> {
    pub fn new(action: EventAction, repository: &'a str) -> Self {
        NewEvent {
            action,
            repository,
            digest: None,
            media_type: None,
            size: None,
            tag: None,
            from_repository: None,
        }
    }
}

/// An event as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub id: String,
    pub action: String,
    pub repository: String,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    pub tag: Option<String>,
    pub from_repository: Option<String>,
    pub actor: Option<String>,
    pub request_id: Option<String>,
    pub request_addr: Option<String>,
    pub request_host: Option<String>,
    pub request_method: Option<String>,
    pub user_agent: Option<String>,
    pub created_ms: i64,
    pub only_endpoint: Option<i64>,
}

const EVENT_COLUMNS: &str = "e.seq, e.id, e.action, e.repository, e.digest, e.media_type, e.size, e.tag, \
     e.from_repository, e.actor, e.request_id, e.request_addr, e.request_host, e.request_method, \
     e.user_agent, e.created_ms, e.only_endpoint";

fn stored_event(row: &super::db::Row<'_>, at: usize) -> MetadataResult<StoredEvent> {
    Ok(StoredEvent {
        seq: row.get(at)?,
        id: row.get(at + 1)?,
        action: row.get(at + 2)?,
        repository: row.get(at + 3)?,
        digest: row.get(at + 4)?,
        media_type: row.get(at + 5)?,
        size: row.get::<Option<i64>>(at + 6)?.map(size),
        tag: row.get(at + 7)?,
        from_repository: row.get(at + 8)?,
        actor: row.get(at + 9)?,
        request_id: row.get(at + 10)?,
        request_addr: row.get(at + 11)?,
        request_host: row.get(at + 12)?,
        request_method: row.get(at + 13)?,
        user_agent: row.get(at + 14)?,
        created_ms: row.get(at + 15)?,
        only_endpoint: row.get(at + 16)?,
    })
}

/// Writes `event` into the outbox, on the caller's connection (and so in
/// its transaction); returns its id.
pub(super) async fn record_event(
    conn: &mut Conn<'_>,
    origin: &Origin,
    event: &NewEvent<'_>,
    only_endpoint: Option<i64>,
) -> MetadataResult<String> {
    let id = uuid::Uuid::new_v4().to_string();
    conn.execute(
        "INSERT INTO events (id, action, repository, digest, media_type, size, tag, from_repository, actor, \
             request_id, request_addr, request_host, request_method, user_agent, created_ms, only_endpoint) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        &[
            Value::Text(&id),
            event.action.as_str().into(),
            event.repository.into(),
            event.digest.into(),
            event.media_type.into(),
            event.size.map(|s| s as i64).into(),
            event.tag.into(),
            event.from_repository.into(),
            origin.actor.as_deref().into(),
            origin.request_id.as_deref().into(),
            origin.addr.as_deref().into(),
            origin.host.as_deref().into(),
            origin.method.as_deref().into(),
            origin.user_agent.as_deref().into(),
            unix_now_ms().into(),
            only_endpoint.into(),
        ],
    )
    .await?;
    Ok(id)
}

/// A change to content, recorded in its own transaction: the event for the
/// webhooks and the same fact in the audit log.
pub(super) async fn record_change(
    conn: &mut Conn<'_>,
    origin: &Origin,
    event: &NewEvent<'_>,
) -> MetadataResult<()> {
    record_event(conn, origin, event, None).await?;
    let mut detail = serde_json::Map::new();
    if let Some(tag) = event.tag {
        detail.insert("tag".into(), tag.into());
    }
    if let Some(from) = event.from_repository {
        detail.insert("from".into(), from.into());
    }
    if let Some(media_type) = event.media_type {
        detail.insert("media_type".into(), media_type.into());
    }
    let entry = AuditEntry {
        action: event.action.as_str().to_string(),
        outcome: AuditOutcome::Ok,
        namespace: Some(crate::oci::name::namespace_of(event.repository).to_string()),
        repository: Some(event.repository.to_string()),
        target: event.digest.or(event.tag).map(str::to_string),
        detail: (!detail.is_empty()).then_some(serde_json::Value::Object(detail)),
    };
    record_audit(conn, origin, &entry).await
}

/// The three outcomes the audit log tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditOutcome {
    Ok,
    /// Refused by a rule or a right.
    Denied,
    /// Failed, as a login with a wrong password.
    Failed,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Denied => "denied",
            AuditOutcome::Failed => "failed",
        }
    }
}

/// A line of the audit log about to be written.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub action: String,
    pub outcome: AuditOutcome,
    pub namespace: Option<String>,
    pub repository: Option<String>,
    /// What was acted on: a digest, a tag, a user, a token id, a path.
    pub target: Option<String>,
    /// Anything else worth keeping, as a JSON object; never a secret.
    pub detail: Option<serde_json::Value>,
}

impl AuditEntry {
    pub fn new(action: impl Into<String>, outcome: AuditOutcome) -> Self {
        AuditEntry {
            action: action.into(),
            outcome,
            namespace: None,
            repository: None,
            target: None,
            detail: None,
        }
    }

    /// About repository `name` (and so its namespace).
    pub fn repository(mut self, name: &str) -> Self {
        self.namespace = Some(crate::oci::name::namespace_of(name).to_string());
        self.repository = Some(name.to_string());
        self
    }

    pub fn namespace(mut self, name: &str) -> Self {
        self.namespace = Some(crate::oci::name::namespace_of(name).to_string());
        self
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

pub(super) async fn record_audit(
    conn: &mut Conn<'_>,
    origin: &Origin,
    entry: &AuditEntry,
) -> MetadataResult<()> {
    let detail = entry.detail.as_ref().map(|d| d.to_string());
    conn.execute(
        "INSERT INTO audit_log (at_ms, action, outcome, actor, auth_method, access_token, client_addr, \
             user_agent, request_id, namespace, repository, target, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        &[
            unix_now_ms().into(),
            Value::Text(&entry.action),
            entry.outcome.as_str().into(),
            origin.actor.as_deref().into(),
            origin.auth.as_str().into(),
            origin.access_token.as_deref().into(),
            origin.addr.as_deref().into(),
            origin.user_agent.as_deref().into(),
            origin.request_id.as_deref().into(),
            entry.namespace.as_deref().into(),
            entry.repository.as_deref().into(),
            entry.target.as_deref().into(),
            detail.as_deref().into(),
        ],
    )
    .await?;
    Ok(())
}

/// A row of the audit log.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at_ms: i64,
    pub action: String,
    pub outcome: String,
    pub actor: Option<String>,
    pub auth_method: String,
    pub access_token: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub namespace: Option<String>,
    pub repository: Option<String>,
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// Which audit rows to read, newest first. Every value was checked by the caller.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub namespace: Option<String>,
    pub repository: Option<String>,
    pub action: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Rows with a smaller id than this (the cursor of the page before).
    pub before: Option<i64>,
    /// Rows with a larger id than this, oldest first (for a tail).
    pub after: Option<i64>,
    pub limit: u32,
}

async fn read_audit(conn: &mut Conn<'_>, filter: &AuditFilter) -> MetadataResult<Vec<AuditRecord>> {
    let mut sql = String::from(
        "SELECT id, at_ms, action, outcome, actor, auth_method, access_token, client_addr, user_agent, \
         request_id, namespace, repository, target, detail FROM audit_log WHERE 1 = 1",
    );
    let mut params: Vec<Value<'_>> = Vec::new();
    let texts = [
        ("actor", filter.actor.as_deref()),
        ("namespace", filter.namespace.as_deref()),
        ("repository", filter.repository.as_deref()),
        ("action", filter.action.as_deref()),
    ];
    for (column, value) in texts {
        if let Some(value) = value {
            params.push(Value::Text(value));
            sql.push_str(&format!(" AND {column} = ${}", params.len()));
        }
    }
    let ints = [
        ("at_ms", ">=", filter.since_ms),
        ("at_ms", "<", filter.until_ms),
        ("id", "<", filter.before),
        ("id", ">", filter.after),
    ];
    for (column, op, value) in ints {
        if let Some(value) = value {
            params.push(Value::Int(value));
            sql.push_str(&format!(" AND {column} {op} ${}", params.len()));
        }
    }
    let order = if filter.after.is_some() {
        "ASC"
    } else {
        "DESC"
    };
    params.push(Value::Int(i64::from(filter.limit.max(1))));
    sql.push_str(&format!(" ORDER BY id {order} LIMIT ${}", params.len()));
    conn.query(&sql, &params, |row| {
        let detail: Option<String> = row.get(13)?;
        Ok(AuditRecord {
            id: row.get(0)?,
            at_ms: row.get(1)?,
            action: row.get(2)?,
            outcome: row.get(3)?,
            actor: row.get(4)?,
            auth_method: row.get(5)?,
            access_token: row.get(6)?,
            client_addr: row.get(7)?,
            user_agent: row.get(8)?,
            request_id: row.get(9)?,
            namespace: row.get(10)?,
            repository: row.get(11)?,
            target: row.get(12)?,
            detail: detail.and_then(|d| serde_json::from_str(&d).ok()),
        })
    })
    .await
}

/// The format an endpoint receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EventFormat {
    /// The reference registry's envelope (`application/vnd.docker.distribution.events.v2+json`).
    #[default]
    Reference,
    /// CloudEvents 1.0, structured JSON.
    Cloudevents,
}

impl EventFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            EventFormat::Reference => "reference",
            EventFormat::Cloudevents => "cloudevents",
        }
    }

    fn parse(text: &str) -> MetadataResult<EventFormat> {
        match text {
            "reference" => Ok(EventFormat::Reference),
            "cloudevents" => Ok(EventFormat::Cloudevents),
            other => Err(super::MetadataError::Corrupt(format!(
                "webhook format `{other}`"
            ))),
        }
    }
}

/// A webhook endpoint's settings, as written by the config file or `/api/v1`.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// Empty for the config file's endpoints (every namespace).
    pub namespace: String,
    pub name: String,
    pub url: String,
    pub secret: String,
    pub format: EventFormat,
    /// `*` patterns of repository names; empty for every repository.
    pub repositories: Vec<String>,
    /// Event actions ([`EventAction::as_str`]); empty for all but pulls.
    pub actions: Vec<String>,
    pub ignore_media_types: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: i64,
}

/// Never prints the secret or the extra headers (which may carry credentials).
impl std::fmt::Debug for EndpointSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointSpec")
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("url", &self.url)
            .field("format", &self.format)
            .field("repositories", &self.repositories)
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: i64,
    pub spec: EndpointSpec,
    /// `config` or `api`.
    pub origin: String,
    pub created_at: i64,
}

const ENDPOINT_COLUMNS: &str = "w.id, w.namespace, w.name, w.url, w.secret, w.format, w.repositories, \
     w.actions, w.ignore_media_types, w.headers, w.timeout_ms, w.origin, w.created_at";

fn json_list<T: serde::de::DeserializeOwned>(text: String) -> MetadataResult<Vec<T>> {
    serde_json::from_str(&text)
        .map_err(|e| super::MetadataError::Corrupt(format!("webhook list `{text}`: {e}")))
}

fn endpoint(row: &super::db::Row<'_>, at: usize) -> MetadataResult<Endpoint> {
    Ok(Endpoint {
        id: row.get(at)?,
        spec: EndpointSpec {
            namespace: row.get(at + 1)?,
            name: row.get(at + 2)?,
            url: row.get(at + 3)?,
            secret: row.get(at + 4)?,
            format: EventFormat::parse(&row.get::<String>(at + 5)?)?,
            repositories: json_list(row.get(at + 6)?)?,
            actions: json_list(row.get(at + 7)?)?,
            ignore_media_types: json_list(row.get(at + 8)?)?,
            headers: json_list(row.get(at + 9)?)?,
            timeout_ms: row.get(at + 10)?,
        },
        origin: row.get(at + 11)?,
        created_at: row.get(at + 12)?,
    })
}

async fn upsert_endpoint(
    conn: &mut Conn<'_>,
    spec: &EndpointSpec,
    origin: &str,
    replace: bool,
) -> MetadataResult<bool> {
    let lists = [
        serde_json::to_string(&spec.repositories).unwrap_or_default(),
        serde_json::to_string(&spec.actions).unwrap_or_default(),
        serde_json::to_string(&spec.ignore_media_types).unwrap_or_default(),
        serde_json::to_string(&spec.headers).unwrap_or_default(),
    ];
    let conflict = if replace {
        "DO UPDATE SET url = excluded.url, secret = excluded.secret, format = excluded.format, \
         repositories = excluded.repositories, actions = excluded.actions, \
         ignore_media_types = excluded.ignore_media_types, headers = excluded.headers, \
         timeout_ms = excluded.timeout_ms, origin = excluded.origin"
    } else {
        "DO NOTHING"
    };
    let changed = conn
        .execute(
            &format!(
                "INSERT INTO webhook_endpoints (namespace, name, url, secret, format, repositories, actions, \
                     ignore_media_types, headers, timeout_ms, origin, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                 ON CONFLICT (namespace, name) {conflict}"
            ),
            &[
                Value::Text(&spec.namespace),
                Value::Text(&spec.name),
                Value::Text(&spec.url),
                Value::Text(&spec.secret),
                spec.format.as_str().into(),
                Value::Text(&lists[0]),
                Value::Text(&lists[1]),
                Value::Text(&lists[2]),
                Value::Text(&lists[3]),
                spec.timeout_ms.into(),
                origin.into(),
                super::unix_now().into(),
            ],
        )
        .await?;
    Ok(changed > 0)
}

/// A delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    Queued = 0,
    Delivered = 1,
    /// Given up on after the maximum age: the dead-letter list.
    Dead = 2,
}

impl DeliveryState {
    fn from_column(value: i64) -> DeliveryState {
        match value {
            1 => DeliveryState::Delivered,
            2 => DeliveryState::Dead,
            _ => DeliveryState::Queued,
        }
    }
}

/// An event claimed for delivery to one endpoint.
#[derive(Debug, Clone)]
pub struct ClaimedDelivery {
    pub id: i64,
    /// Attempts made, this one included.
    pub attempts: u32,
    pub event: StoredEvent,
    pub endpoint: Endpoint,
}

/// What an attempt came to.
#[derive(Debug, Clone)]
pub enum AttemptResult {
    Delivered {
        status: u16,
        latency_ms: i64,
    },
    /// Try again at `next_ms`, or give up (`dead`).
    Failed {
        status: Option<u16>,
        error: String,
        latency_ms: i64,
        next_ms: i64,
        dead: bool,
    },
}

/// A delivery as `/api/v1` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryView {
    pub id: i64,
    pub event_id: String,
    pub action: String,
    pub repository: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub created_ms: i64,
    pub last_attempt_ms: Option<i64>,
    pub next_attempt_ms: Option<i64>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_latency_ms: Option<i64>,
}

/// How many deliveries wait and how many are dead, for metrics.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeliveryCounts {
    pub queued: u64,
    pub dead: u64,
}

/// The events, webhook and audit tables.
#[derive(Clone)]
pub struct EventStore {
    pub(super) db: super::db::Db,
}

impl EventStore {
    /// Records an event outside any change (a pull): one statement.
    pub async fn record_event(&self, origin: Origin, event: NewEventOwned) -> MetadataResult<()> {
        self.db
            .autocommit(async move |conn| {
                record_event(conn, &origin, &event.borrow(), None)
                    .await
                    .map(drop)
            })
            .await
    }

    /// Appends one line to the audit log.
    pub async fn record_audit(&self, origin: Origin, entry: AuditEntry) -> MetadataResult<()> {
        self.db
            .autocommit(async move |conn| record_audit(conn, &origin, &entry).await)
            .await
    }

    pub async fn audit(&self, filter: AuditFilter) -> MetadataResult<Vec<AuditRecord>> {
        self.db
            .read(async move |conn| read_audit(conn, &filter).await)
            .await
    }

    /// Makes the config file's endpoints exactly `specs`: updates those
    /// named, adds the new, removes the others (with their deliveries).
    pub async fn sync_config_endpoints(&self, specs: Vec<EndpointSpec>) -> MetadataResult<()> {
        self.db
            .write(async move |conn| {
                for spec in &specs {
                    upsert_endpoint(conn, spec, "config", true).await?;
                }
                let names: Vec<String> = conn
                    .scalars(
                        "SELECT name FROM webhook_endpoints WHERE origin = 'config'",
                        &[],
                    )
                    .await?;
                for name in names {
                    if !specs
                        .iter()
                        .any(|s| s.name == name && s.namespace.is_empty())
                    {
                        conn.execute(
                            "DELETE FROM webhook_endpoints WHERE origin = 'config' AND name = $1",
                            &[Value::Text(&name)],
                        )
                        .await?;
                    }
                }
                Ok(())
            })
            .await
    }

    /// Adds an endpoint; `false` when the namespace has one of that name.
    pub async fn create_endpoint(&self, spec: EndpointSpec) -> MetadataResult<bool> {
        self.db
            .write(async move |conn| upsert_endpoint(conn, &spec, "api", false).await)
            .await
    }

    /// Removes an endpoint made through `/api/v1` and its deliveries.
    pub async fn remove_endpoint(&self, namespace: &str, name: &str) -> MetadataResult<bool> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        self.db
            .write(async move |conn| {
                Ok(conn
                    .execute(
                        "DELETE FROM webhook_endpoints WHERE namespace = $1 AND name = $2 AND origin = 'api'",
                        &[Value::Text(&namespace), Value::Text(&name)],
                    )
                    .await?
                    > 0)
            })
            .await
    }

    /// Every endpoint, or those of one namespace (`""` for the config file's).
    pub async fn endpoints(&self, namespace: Option<&str>) -> MetadataResult<Vec<Endpoint>> {
        let namespace = namespace.map(str::to_string);
        self.db
            .read(async move |conn| {
                let (filter, params) = match &namespace {
                    Some(namespace) => ("WHERE w.namespace = $1", vec![Value::Text(namespace)]),
                    None => ("", Vec::new()),
                };
                let sql = format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w {filter} \
                     ORDER BY w.namespace, w.name"
                );
                conn.query(&sql, &params, |row| endpoint(row, 0)).await
            })
            .await
    }

    pub async fn endpoint(&self, namespace: &str, name: &str) -> MetadataResult<Option<Endpoint>> {
        let (namespace, name) = (namespace.to_string(), name.to_string());
        self.db
            .read(async move |conn| {
                let sql = format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE w.namespace = $1 AND w.name = $2"
                );
                conn.query_optional(
                    &sql,
                    &[Value::Text(&namespace), Value::Text(&name)],
                    |row| endpoint(row, 0),
                )
                .await
            })
            .await
    }

    /// Events not yet fanned out to their endpoints, oldest first.
    pub async fn undispatched(&self, limit: u32) -> MetadataResult<Vec<StoredEvent>> {
        self.db
            .read(async move |conn| {
                let sql = format!(
                    "SELECT {EVENT_COLUMNS} FROM events e WHERE e.dispatched = 0 ORDER BY e.seq LIMIT $1"
                );
                conn.query(&sql, &[i64::from(limit).into()], |row| {
                    stored_event(row, 0)
                })
                .await
            })
            .await
    }

    /// Makes a delivery row for each `(event, endpoints)` and marks the
    /// events dispatched, in one transaction. Safe to run twice for the
    /// same event (from two instances): a delivery already made is kept.
    pub async fn fan_out(&self, plan: Vec<(i64, Vec<i64>)>) -> MetadataResult<()> {
        self.db
            .write(async move |conn| {
                let now = unix_now_ms();
                for (seq, endpoints) in &plan {
                    for endpoint in endpoints {
                        conn.execute(
                            "INSERT INTO webhook_deliveries (event_seq, endpoint_id, next_attempt_ms) \
                             SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM webhook_endpoints WHERE id = $2) \
                             ON CONFLICT (event_seq, endpoint_id) DO NOTHING",
                            &[(*seq).into(), (*endpoint).into(), now.into()],
                        )
                        .await?;
                    }
                    conn.execute(
                        "UPDATE events SET dispatched = 1 WHERE seq = $1",
                        &[(*seq).into()],
                    )
                    .await?;
                }
                Ok(())
            })
            .await
    }

    /// Claims up to `limit` due deliveries for `lease_ms`, skipping rows
    /// another instance is claiming at the same moment.
    pub async fn claim_deliveries(
        &self,
        limit: u32,
        lease_ms: i64,
    ) -> MetadataResult<Vec<ClaimedDelivery>> {
        self.db
            .write(async move |conn| {
                let now = unix_now_ms();
                let sql = format!(
                    "SELECT id FROM webhook_deliveries WHERE state = 0 AND next_attempt_ms <= $1 \
                     AND lease_until_ms <= $1 ORDER BY next_attempt_ms LIMIT $2{}",
                    conn.lock_clause(Lock::SkipLocked)
                );
                let ids: Vec<i64> = conn
                    .scalars(&sql, &[now.into(), i64::from(limit).into()])
                    .await?;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let list = placeholders(3, ids.len());
                let mut params: Vec<Value<'_>> = vec![(now + lease_ms).into(), now.into()];
                params.extend(ids.iter().map(|id| Value::Int(*id)));
                conn.execute(
                    &format!(
                        "UPDATE webhook_deliveries SET lease_until_ms = $1, attempts = attempts + 1, \
                         last_attempt_ms = $2 WHERE id IN ({list})"
                    ),
                    &params,
                )
                .await?;
                let sql = format!(
                    "SELECT d.id, d.attempts, {EVENT_COLUMNS}, {ENDPOINT_COLUMNS} FROM webhook_deliveries d \
                     JOIN events e ON e.seq = d.event_seq JOIN webhook_endpoints w ON w.id = d.endpoint_id \
                     WHERE d.id IN ({}) ORDER BY d.id",
                    placeholders(1, ids.len())
                );
                let params: Vec<Value<'_>> = ids.iter().map(|id| Value::Int(*id)).collect();
                conn.query(&sql, &params, |row| {
                    Ok(ClaimedDelivery {
                        id: row.get(0)?,
                        attempts: row.get::<i64>(1)?.max(0) as u32,
                        event: stored_event(row, 2)?,
                        endpoint: endpoint(row, 19)?,
                    })
                })
                .await
            })
            .await
    }

    /// Records what an attempt came to.
    pub async fn finish_attempt(&self, id: i64, result: AttemptResult) -> MetadataResult<()> {
        self.db
            .autocommit(async move |conn| {
                let now = unix_now_ms();
                match result {
                    AttemptResult::Delivered { status, latency_ms } => {
                        conn.execute(
                            "UPDATE webhook_deliveries SET state = 1, lease_until_ms = 0, last_status = $2, \
                             last_error = NULL, last_latency_ms = $3, finished_ms = $4 WHERE id = $1",
                            &[id.into(), i64::from(status).into(), latency_ms.into(), now.into()],
                        )
                        .await?;
                    }
                    AttemptResult::Failed {
                        status,
                        error,
                        latency_ms,
                        next_ms,
                        dead,
                    } => {
                        conn.execute(
                            "UPDATE webhook_deliveries SET state = $2, lease_until_ms = 0, last_status = $3, \
                             last_error = $4, last_latency_ms = $5, next_attempt_ms = $6, finished_ms = $7 \
                             WHERE id = $1",
                            &[
                                id.into(),
                                (if dead { 2 } else { 0 }).into(),
                                status.map(i64::from).into(),
                                Value::Text(&error),
                                latency_ms.into(),
                                next_ms.into(),
                                dead.then_some(now).into(),
                            ],
                        )
                        .await?;
                    }
                }
                Ok(())
            })
            .await
    }

    /// The last `limit` deliveries to an endpoint, newest first; only dead ones with `dead_only`.
    pub async fn deliveries(
        &self,
        endpoint_id: i64,
        dead_only: bool,
        limit: u32,
    ) -> MetadataResult<Vec<DeliveryView>> {
        self.db
            .read(async move |conn| {
                conn.query(
                    "SELECT d.id, e.id, e.action, e.repository, d.state, d.attempts, e.created_ms, \
                     d.last_attempt_ms, d.next_attempt_ms, d.last_status, d.last_error, d.last_latency_ms \
                     FROM webhook_deliveries d JOIN events e ON e.seq = d.event_seq \
                     WHERE d.endpoint_id = $1 AND ($2 = 0 OR d.state = 2) ORDER BY d.id DESC LIMIT $3",
                    &[
                        endpoint_id.into(),
                        i64::from(dead_only).into(),
                        i64::from(limit).into(),
                    ],
                    |row| {
                        let state = DeliveryState::from_column(row.get(4)?);
                        let next: i64 = row.get(8)?;
                        Ok(DeliveryView {
                            id: row.get(0)?,
                            event_id: row.get(1)?,
                            action: row.get(2)?,
                            repository: row.get(3)?,
                            state,
                            attempts: row.get(5)?,
                            created_ms: row.get(6)?,
                            last_attempt_ms: row.get(7)?,
                            next_attempt_ms: (state == DeliveryState::Queued).then_some(next),
                            last_status: row.get(9)?,
                            last_error: row.get(10)?,
                            last_latency_ms: row.get(11)?,
                        })
                    },
                )
                .await
            })
            .await
    }

    /// Puts a dead delivery of `endpoint_id` back in the queue, due now, with
    /// its age counted afresh; `false` when there is no such dead delivery.
    pub async fn redeliver(&self, endpoint_id: i64, delivery_id: i64) -> MetadataResult<bool> {
        self.db
            .autocommit(async move |conn| {
                Ok(conn
                    .execute(
                        "UPDATE webhook_deliveries SET state = 0, next_attempt_ms = $3, lease_until_ms = 0, \
                         finished_ms = NULL, attempts = 0 WHERE id = $1 AND endpoint_id = $2 AND state = 2",
                        &[delivery_id.into(), endpoint_id.into(), unix_now_ms().into()],
                    )
                    .await?
                    > 0)
            })
            .await
    }

    /// Queues a test event for one endpoint; returns the event's id.
    pub async fn queue_test(
        &self,
        origin: Origin,
        endpoint_id: i64,
        repository: String,
    ) -> MetadataResult<String> {
        self.db
            .write(async move |conn| {
                let event = NewEvent::new(EventAction::Test, &repository);
                record_event(conn, &origin, &event, Some(endpoint_id)).await
            })
            .await
    }

    /// Removes deliveries finished before `delivered_before_ms`, dead ones
    /// before `dead_before_ms`, events left with no delivery and already
    /// dispatched, and audit rows before `audit_before_ms`. Returns the rows removed.
    pub async fn prune(
        &self,
        delivered_before_ms: i64,
        dead_before_ms: i64,
        audit_before_ms: i64,
    ) -> MetadataResult<u64> {
        self.db
            .write(async move |conn| {
                let mut removed = conn
                    .execute(
                        "DELETE FROM webhook_deliveries WHERE (state = 1 AND finished_ms < $1) \
                         OR (state = 2 AND finished_ms < $2)",
                        &[delivered_before_ms.into(), dead_before_ms.into()],
                    )
                    .await?;
                removed += conn
                    .execute(
                        "DELETE FROM events WHERE dispatched = 1 AND NOT EXISTS \
                         (SELECT 1 FROM webhook_deliveries d WHERE d.event_seq = events.seq)",
                        &[],
                    )
                    .await?;
                removed += conn
                    .execute(
                        "DELETE FROM audit_log WHERE at_ms < $1",
                        &[audit_before_ms.into()],
                    )
                    .await?;
                Ok(removed)
            })
            .await
    }

    pub async fn delivery_counts(&self) -> MetadataResult<DeliveryCounts> {
        self.db
            .read(async move |conn| {
                let rows: Vec<(i64, i64)> = conn
                    .query(
                        "SELECT state, COUNT(*) FROM webhook_deliveries WHERE state <> 1 GROUP BY state",
                        &[],
                        |row| Ok((row.get(0)?, row.get(1)?)),
                    )
                    .await?;
                let mut counts = DeliveryCounts::default();
                for (state, count) in rows {
                    match DeliveryState::from_column(state) {
                        DeliveryState::Queued => counts.queued = size(count),
                        DeliveryState::Dead => counts.dead = size(count),
                        DeliveryState::Delivered => {}
                    }
                }
                Ok(counts)
            })
            .await
    }
}

/// A [`NewEvent`] that owns its strings, to cross into a database task.
#[derive(Debug, Clone)]
pub struct NewEventOwned {
    pub action: EventAction,
    pub repository: String,
    pub digest: Option<String>,
    pub media_type: Option<String>,
    pub size: Option<u64>,
    pub tag: Option<String>,
}

impl NewEventOwned {
    fn borrow(&self) -> NewEvent<'_> {
        NewEvent {
            action: self.action,
            repository: &self.repository,
            digest: self.digest.as_deref(),
            media_type: self.media_type.as_deref(),
            size: self.size,
            tag: self.tag.as_deref(),
            from_repository: None,
        }
    }
}
