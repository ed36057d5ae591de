-- Web UI sign-ins. Only a SHA-256 of the (high-entropy) cookie secret is
-- kept, as for access and refresh tokens; the CSRF token is the one every
-- form of the session sends back. A row ends by expiry (pruned at sign-ins),
-- sign-out, a password change, or the user's removal.
CREATE TABLE sessions (
    secret_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_name);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- What the collector's last passes did, for the administration page; each
-- pass adds a row and trims the table to the newest few.
CREATE TABLE gc_passes (
    id TEXT PRIMARY KEY,
    finished_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    expired_tags BIGINT NOT NULL,
    manifests BIGINT NOT NULL,
    blob_links BIGINT NOT NULL,
    blobs BIGINT NOT NULL,
    uploads BIGINT NOT NULL,
    bytes_freed BIGINT NOT NULL,
    objects_deleted BIGINT NOT NULL,
    objects_failed BIGINT NOT NULL
);
CREATE INDEX gc_passes_by_time ON gc_passes (finished_at);
