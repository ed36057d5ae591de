//! Events for other systems: webhook deliveries from the durable outbox,
//! and the audit log's upkeep.
//!
//! The events themselves are written by `metadata` in the transaction of
//! the change they report (`metadata/events.rs`), so this module never
//! sees a change that did not commit, and a crash loses none. Each
//! instance runs one [`Events`] worker that, every `poll_interval`:
//!
//! 1. fans new events out into one delivery row per endpoint that wants
//!    them (`endpoint.rs`; safe to race: a second fan-out of an event adds
//!    nothing);
//! 2. claims due deliveries with a lease (`FOR UPDATE SKIP LOCKED` on
//!    PostgreSQL, so two instances never claim one row at once), renders
//!    each (`envelope.rs`), signs it (`signature.rs`) and POSTs it, at most
//!    `concurrency` at a time; a 2xx is delivered, anything else is retried
//!    with exponential backoff and jitter until `max_age`, then dead;
//! 3. now and then prunes finished deliveries, delivered events and audit
//!    rows past their retention, counts the backlog for metrics, and copies
//!    new audit rows to `[audit] output` when set.
//!
//! Called by `server` (start-up) and `admin` (the endpoint checks); calls
//! `metadata`'s event store, `metrics` and `oci`.

pub mod endpoint;
pub mod envelope;
mod settings;
pub mod signature;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rand::Rng;

use crate::metadata::{
    AttemptResult, AuditFilter, ClaimedDelivery, EventStore, MetadataResult, unix_now_ms,
};
use crate::metrics::Metrics;
pub use envelope::Source;
pub use settings::{AuditSettings, EventSettings, EventsConfig, WebhookSettings};

/// How many events one fan-out step reads.
const FAN_OUT_BATCH: u32 = 200;
/// How often the backlog is counted and old rows pruned.
const UPKEEP_EVERY: Duration = Duration::from_secs(30);
/// A receiver's answer is read for at most this much, for the error shown.
const ERROR_BODY_BYTES: usize = 512;

pub struct Events {
    store: EventStore,
    config: EventsConfig,
    source: Source,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    /// The registry's switch for recording pulls.
    pull_events: Arc<AtomicBool>,
}

impl Events {
    pub fn new(
        store: EventStore,
        config: EventsConfig,
        source: Source,
        metrics: Arc<Metrics>,
        pull_events: Arc<AtomicBool>,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // A receiver's redirect is an answer, not an instruction to follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Events {
            store,
            config,
            source,
            client,
            metrics,
            pull_events,
        })
    }

    /// Writes the config file's endpoints into the database and starts the
    /// worker.
    pub async fn start(self) -> MetadataResult<tokio::task::JoinHandle<()>> {
        self.store
            .sync_config_endpoints(self.config.webhooks.clone())
            .await?;
        self.refresh_pull_switch().await;
        let events = Arc::new(self);
        Ok(tokio::spawn(async move { events.run().await }))
    }

    async fn run(self: Arc<Self>) {
        let mut audit_cursor = match &self.config.audit.output {
            Some(_) => self.latest_audit_id().await,
            None => 0,
        };
        let mut last_upkeep = Instant::now() - UPKEEP_EVERY;
        loop {
            let busy = match self.step().await {
                Ok(busy) => busy,
                Err(error) => {
                    tracing::warn!(%error, "webhook deliveries paused: the database did not answer");
                    false
                }
            };
            if self.config.audit.output.is_some() {
                audit_cursor = self.copy_audit(audit_cursor).await;
            }
            if last_upkeep.elapsed() >= UPKEEP_EVERY {
                last_upkeep = Instant::now();
                self.upkeep().await;
            }
            if !busy {
                tokio::time::sleep(self.config.settings.poll_interval).await;
            }
        }
    }

    /// One round of fan-out and delivery; whether there was work (so the
    /// next round comes at once).
    async fn step(&self) -> MetadataResult<bool> {
        let fanned = self.fan_out().await?;
        let claimed = self
            .store
            .claim_deliveries(self.config.settings.concurrency * 4, self.lease_ms())
            .await?;
        let busy = fanned || !claimed.is_empty();
        futures_util::stream::iter(claimed)
            .for_each_concurrent(self.config.settings.concurrency as usize, |delivery| {
                self.deliver(delivery)
            })
            .await;
        Ok(busy)
    }

    /// A claim lasts the longest attempt may take, and some.
    fn lease_ms(&self) -> i64 {
        endpoint::MAX_TIMEOUT_MS + 30_000
    }

    async fn fan_out(&self) -> MetadataResult<bool> {
        let events = self.store.undispatched(FAN_OUT_BATCH).await?;
        if events.is_empty() {
            return Ok(false);
        }
        let endpoints = self.store.endpoints(None).await?;
        let plan = events
            .iter()
            .map(|event| {
                let wanting = endpoints
                    .iter()
                    .filter(|e| endpoint::wants(e.id, &e.spec, event))
                    .map(|e| e.id)
                    .collect();
                (event.seq, wanting)
            })
            .collect();
        self.store.fan_out(plan).await?;
        Ok(true)
    }

    async fn deliver(&self, delivery: ClaimedDelivery) {
        let endpoint = &delivery.endpoint.spec;
        let (body, media_type) = envelope::render(endpoint.format, &delivery.event, &self.source);
        let timestamp = unix_now_ms() / 1000;
        let signature = signature::sign(&endpoint.secret, &delivery.event.id, timestamp, &body);
        let mut request = self
            .client
            .post(&endpoint.url)
            .timeout(Duration::from_millis(endpoint.timeout_ms.max(1) as u64))
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .header("webhook-id", &delivery.event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        for (name, value) in &endpoint.headers {
            request = request.header(name, value);
        }
        let started = Instant::now();
        let answer = request.body(body).send().await;
        let latency = started.elapsed();
        let latency_ms = latency.as_millis() as i64;
        let result = match answer {
            Ok(response) if response.status().is_success() => {
                self.metrics
                    .record_webhook("delivered", latency.as_secs_f64());
                AttemptResult::Delivered {
                    status: response.status().as_u16(),
                    latency_ms,
                }
            }
            Ok(response) => {
                let status = response.status().as_u16();
                let text = read_some(response).await;
                self.failed(
                    &delivery,
                    Some(status),
                    format!("HTTP {status}: {text}"),
                    latency,
                )
            }
            Err(error) => {
                let reason = if error.is_timeout() {
                    format!("no answer within {} ms", endpoint.timeout_ms)
                } else if error.is_connect() {
                    "cannot connect".to_string()
                } else {
                    "the request failed".to_string()
                };
                self.failed(&delivery, None, reason, latency)
            }
        };
        if let Err(error) = self.store.finish_attempt(delivery.id, result).await {
            // The lease runs out and the delivery is tried again: at least once.
            tracing::warn!(%error, delivery = delivery.id, "cannot record a webhook attempt");
        }
    }

    /// A failed attempt: when to try again, or dead once past `max_age`.
    fn failed(
        &self,
        delivery: &ClaimedDelivery,
        status: Option<u16>,
        error: String,
        latency: Duration,
    ) -> AttemptResult {
        let settings = &self.config.settings;
        let now = unix_now_ms();
        let next_ms = now + backoff_ms(settings, delivery.attempts);
        let dead = next_ms - delivery.event.created_ms > settings.max_age.as_millis() as i64;
        let outcome = if dead { "dead" } else { "failed" };
        self.metrics.record_webhook(outcome, latency.as_secs_f64());
        tracing::info!(
            endpoint = %delivery.endpoint.spec.name,
            event = %delivery.event.id,
            attempts = delivery.attempts,
            %error,
            dead,
            "webhook delivery failed"
        );
        AttemptResult::Failed {
            status,
            error,
            latency_ms: latency.as_millis() as i64,
            next_ms,
            dead,
        }
    }

    async fn upkeep(&self) {
        self.refresh_pull_switch().await;
        let settings = &self.config.settings;
        let now = unix_now_ms();
        let pruned = self
            .store
            .prune(
                now - settings.keep_delivered.as_millis() as i64,
                now - settings.keep_dead.as_millis() as i64,
                now - self.config.audit.retention.as_millis() as i64,
            )
            .await;
        if let Err(error) = pruned {
            tracing::warn!(%error, "cannot prune delivered events and old audit rows");
        }
        match self.store.delivery_counts().await {
            Ok(counts) => self.metrics.set_webhook_backlog(counts.queued, counts.dead),
            Err(error) => tracing::warn!(%error, "cannot count webhook deliveries"),
        }
    }

    /// Pulls are recorded only while some endpoint asks for them.
    async fn refresh_pull_switch(&self) {
        match self.store.endpoints(None).await {
            Ok(endpoints) => self.pull_events.store(
                endpoint::any_wants_pulls(endpoints.iter().map(|e| &e.spec)),
                Ordering::Relaxed,
            ),
            Err(error) => tracing::warn!(%error, "cannot read webhook endpoints"),
        }
    }

    async fn latest_audit_id(&self) -> i64 {
        let newest = self
            .store
            .audit(AuditFilter {
                limit: 1,
                ..AuditFilter::default()
            })
            .await;
        newest
            .ok()
            .and_then(|rows| rows.first().map(|r| r.id))
            .unwrap_or(0)
    }

    /// Writes audit rows after `cursor` as JSON lines; returns the new cursor.
    async fn copy_audit(&self, cursor: i64) -> i64 {
        let Some(output) = &self.config.audit.output else {
            return cursor;
        };
        let rows = match self
            .store
            .audit(AuditFilter {
                after: Some(cursor),
                limit: 500,
                ..AuditFilter::default()
            })
            .await
        {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cannot read the audit log");
                return cursor;
            }
        };
        let Some(last) = rows.last().map(|r| r.id) else {
            return cursor;
        };
        let mut text = String::new();
        for row in &rows {
            text.push_str(&serde_json::to_string(row).unwrap_or_default());
            text.push('\n');
        }
        let written = if output == "stdout" {
            use std::io::Write;
            std::io::stdout().lock().write_all(text.as_bytes())
        } else {
            append(output, text.as_bytes()).await
        };
        match written {
            Ok(()) => last,
            Err(error) => {
                tracing::warn!(%error, output, "cannot write the audit log's copy");
                cursor
            }
        }
    }
}

async fn append(path: &str, bytes: &[u8]) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    file.write_all(bytes).await?;
    file.flush().await
}

/// The wait after attempt `attempts` (1 for the first): `retry_initial`
/// doubled for each attempt since, capped at `retry_max`, then between half
/// and all of it at random, so receivers that come back are not hit by
/// every retry at once.
fn backoff_ms(settings: &EventSettings, attempts: u32) -> i64 {
    let initial = settings.retry_initial.as_millis() as f64;
    let max = settings.retry_max.as_millis() as f64;
    let full = (initial * 2f64.powi(attempts.saturating_sub(1).min(30) as i32)).min(max);
    let jittered = full * rand::thread_rng().gen_range(0.5..=1.0);
    jittered.max(1.0) as i64
}

/// The start of a receiver's error answer, as printable text.
async fn read_some(response: reqwest::Response) -> String {
    let mut stream = response.bytes_stream();
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= ERROR_BODY_BYTES {
            break;
        }
    }
    bytes.truncate(ERROR_BODY_BYTES);
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let settings = EventSettings {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..EventSettings::default()
        };
        for _ in 0..100 {
            let first = backoff_ms(&settings, 1);
            assert!((500..=1000).contains(&first), "{first}");
            let fourth = backoff_ms(&settings, 4);
            assert!((4000..=8000).contains(&fourth), "{fourth}");
            let late = backoff_ms(&settings, 40);
            assert!((30_000..=60_000).contains(&late), "{late}");
        }
    }
}
