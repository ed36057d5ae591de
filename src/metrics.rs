//! Prometheus metrics (`GET /metrics`): requests by route, method and
//! status with latency histograms, bytes in and out, upload sessions in
//! progress, database pool use and blob-store errors.
//!
//! One registry per app (no global recorder), so several apps in one
//! process, as in the tests, never mix their figures.
//!
//! A leaf: used by `http`, `gc` and `server`, it uses nothing in the crate
//! (the collector and the handlers hand it plain counts).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub state: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<RouteLabels, Histogram>,
    pub bytes_received: Family<RouteLabels, Counter>,
    pub bytes_sent: Family<RouteLabels, Counter>,
    pub storage_errors: Family<OperationLabels, Counter>,
    uploads_in_progress: Gauge,
    database_connections: Family<PoolLabels, Gauge>,
    gc_collected: Family<KindLabels, Counter>,
    gc_bytes: Counter,
    gc_passes: Counter,
    webhook_events: Family<KindLabels, Counter>,
    webhook_latency: Histogram,
    webhook_deliveries: Family<PoolLabels, Gauge>,
    cache_requests: Family<CacheLabels, Counter>,
    cache_upstream_bytes: Counter,
    cache_upstream_errors: Family<CacheLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabels {
    pub namespace: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 18))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request to the end of the response body",
            duration.clone(),
        );
        let bytes_received = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_received_bytes",
            "Request body bytes received",
            bytes_received.clone(),
        );
        let bytes_sent = Family::<RouteLabels, Counter>::default();
        registry.register(
            "http_sent_bytes",
            "Response body bytes sent",
            bytes_sent.clone(),
        );
        let storage_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "storage_errors",
            "Blob store operations that failed (not counting absent blobs)",
            storage_errors.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Upload sessions open in the registry",
            uploads_in_progress.clone(),
        );
        let database_connections = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "database_connections",
            "Database connections of this instance, by state",
            database_connections.clone(),
        );
        let gc_collected = Family::<KindLabels, Counter>::default();
        registry.register(
            "gc_collected",
            "Items removed by garbage collection (manifest, blob_link, blob, upload, object)",
            gc_collected.clone(),
        );
        let gc_bytes = Counter::default();
        registry.register(
            "gc_freed_bytes",
            "Bytes of blobs removed by garbage collection",
            gc_bytes.clone(),
        );
        let gc_passes = Counter::default();
        registry.register(
            "gc_passes",
            "Garbage collection passes run",
            gc_passes.clone(),
        );
        let webhook_events = Family::<KindLabels, Counter>::default();
        registry.register(
            "webhook_attempts",
            "Webhook delivery attempts of this instance, by outcome (delivered, failed, dead)",
            webhook_events.clone(),
        );
        let webhook_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "webhook_delivery_duration_seconds",
            "Time a webhook receiver took to answer",
            webhook_latency.clone(),
        );
        let webhook_deliveries = Family::<PoolLabels, Gauge>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries waiting (queued) or given up on (dead), in the whole registry",
            webhook_deliveries.clone(),
        );
        let cache_requests = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_requests",
            "Pull-through cache reads by proxy namespace and outcome (hit, miss, stale: served while the upstream failed)",
            cache_requests.clone(),
        );
        let cache_upstream_bytes = Counter::default();
        registry.register(
            "cache_upstream_received_bytes",
            "Blob bytes the pull-through cache fetched from upstreams",
            cache_upstream_bytes.clone(),
        );
        let cache_upstream_errors = Family::<CacheLabels, Counter>::default();
        registry.register(
            "cache_upstream_errors",
            "Upstream requests of the pull-through cache that failed, by kind (rate_limited, refused, unreachable, invalid)",
            cache_upstream_errors.clone(),
        );
        Self {
            cache_requests,
            cache_upstream_bytes,
            cache_upstream_errors,
            webhook_events,
            webhook_latency,
            webhook_deliveries,
            gc_collected,
            gc_bytes,
            gc_passes,
            registry,
            requests,
            duration,
            bytes_received,
            bytes_sent,
            storage_errors,
            uploads_in_progress,
            database_connections,
        }
    }

    /// One garbage collection pass: what it removed, by kind, and the bytes freed.
    pub fn record_gc(&self, collected: &[(&'static str, u64)], freed_bytes: u64) {
        for &(kind, count) in collected {
            self.gc_collected
                .get_or_create(&KindLabels { kind })
                .inc_by(count);
        }
        self.gc_bytes.inc_by(freed_bytes);
        self.gc_passes.inc();
    }

    /// One webhook attempt: `delivered`, `failed` (to be retried) or `dead`.
    pub fn record_webhook(&self, outcome: &'static str, seconds: f64) {
        self.webhook_events
            .get_or_create(&KindLabels { kind: outcome })
            .inc();
        self.webhook_latency.observe(seconds);
    }

    /// A read of a proxy namespace: `hit`, `miss` (fetched) or `stale`.
    pub fn record_cache(&self, namespace: &str, kind: &'static str) {
        self.cache_requests
            .get_or_create(&CacheLabels {
                namespace: namespace.to_string(),
                kind,
            })
            .inc();
    }

    /// An upstream request of a proxy namespace that failed.
    pub fn record_upstream_error(&self, namespace: &str, kind: &'static str) {
        self.cache_upstream_errors
            .get_or_create(&CacheLabels {
                namespace: namespace.to_string(),
                kind,
            })
            .inc();
    }

    pub fn record_upstream_bytes(&self, bytes: u64) {
        self.cache_upstream_bytes.inc_by(bytes);
    }

    /// Deliveries queued and dead, as last counted.
    pub fn set_webhook_backlog(&self, queued: u64, dead: u64) {
        for (state, count) in [("queued", queued), ("dead", dead)] {
            self.webhook_deliveries
                .get_or_create(&PoolLabels { state })
                .set(count as i64);
        }
    }

    /// The text exposition, with the gauges set to what the caller read
    /// now: database connections open and idle, and upload sessions open
    /// (`None` when they could not be counted; the gauge keeps its value).
    pub fn render(&self, connections: u32, idle: u32, uploads: Option<u64>) -> String {
        self.database_connections
            .get_or_create(&PoolLabels { state: "idle" })
            .set(i64::from(idle));
        self.database_connections
            .get_or_create(&PoolLabels { state: "in_use" })
            .set(i64::from(connections.saturating_sub(idle)));
        if let Some(count) = uploads {
            self.uploads_in_progress.set(count as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}
