-- The outbox: one row per event, written in the transaction of the change it
-- reports, so a crash never loses one and a rolled-back change never emits
-- one. `id` is what receivers see (and stays the same on every retry); `seq`
-- orders the fan-out. A row is dispatched once a worker has made a delivery
-- row for every endpoint that wants it; it goes when its deliveries have.
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    repository TEXT NOT NULL,
    digest TEXT,
    media_type TEXT,
    size BIGINT,
    tag TEXT,
    from_repository TEXT,
    actor TEXT,
    request_id TEXT,
    request_addr TEXT,
    request_host TEXT,
    request_method TEXT,
    user_agent TEXT,
    created_ms BIGINT NOT NULL,
    dispatched BIGINT NOT NULL DEFAULT 0,
    -- Set for a test event: only this endpoint receives it.
    only_endpoint BIGINT
);
CREATE INDEX events_to_dispatch ON events (seq) WHERE dispatched = 0;

-- Where events go. `namespace` is empty for the endpoints of the config file
-- (`origin` 'config', rewritten at every start), else the namespace whose
-- repositories it hears about (`origin` 'api'). The secret is kept as given:
-- signing needs it, so it cannot be hashed.
CREATE TABLE webhook_endpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    format TEXT NOT NULL,
    repositories TEXT NOT NULL,
    actions TEXT NOT NULL,
    ignore_media_types TEXT NOT NULL,
    headers TEXT NOT NULL,
    timeout_ms BIGINT NOT NULL,
    origin TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (namespace, name)
);

-- One event for one endpoint: state 0 queued, 1 delivered, 2 dead. A worker
-- claims a due row by setting `lease_until_ms`, so another instance leaves
-- it alone until the attempt has had its time.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq BIGINT NOT NULL REFERENCES events (seq) ON DELETE CASCADE,
    endpoint_id BIGINT NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    state BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL DEFAULT 0,
    last_attempt_ms BIGINT,
    last_status BIGINT,
    last_error TEXT,
    last_latency_ms BIGINT,
    finished_ms BIGINT,
    UNIQUE (event_seq, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_ms) WHERE state = 0;
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_ms) WHERE state = 1;

-- Who did what, appended to and pruned by age, never changed. `outcome` is
-- 'ok', 'denied' (refused by a rule or a right) or 'failed' (a login).
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms BIGINT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    actor TEXT,
    auth_method TEXT NOT NULL,
    access_token TEXT,
    client_addr TEXT,
    user_agent TEXT,
    request_id TEXT,
    namespace TEXT,
    repository TEXT,
    target TEXT,
    detail TEXT
);
CREATE INDEX audit_by_time ON audit_log (at_ms);
CREATE INDEX audit_by_namespace ON audit_log (namespace, id);
CREATE INDEX audit_by_actor ON audit_log (actor, id);
