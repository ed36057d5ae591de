-- Retention per repository (`team/app`) or namespace (`team`): keep the
-- newest `keep_last` tags by push time and/or those pushed within
-- `keep_days`, never touching tags matching `exclude` (space-separated
-- patterns); the collector untags the rest and collects what they held.
CREATE TABLE retention_policies (
    path TEXT PRIMARY KEY,
    keep_last BIGINT,
    keep_days BIGINT,
    exclude TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
