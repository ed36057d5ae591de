-- The pull-through cache (`[[proxy]]` namespaces). Cached manifests keep the
-- upstream's exact bytes and media type, but live apart from `manifests`:
-- they name blobs and children that are fetched only when a client asks for
-- them, which `manifests`' foreign keys forbid.
CREATE TABLE cache_manifests (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    payload BYTEA NOT NULL,
    fetched_at BIGINT NOT NULL,
    last_pulled_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX cache_manifests_by_pull ON cache_manifests (last_pulled_at);

-- What a tag named upstream when last asked (`checked_at`), so a fresh tag
-- is served without asking again and a stale one with a `HEAD`.
CREATE TABLE cache_tags (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    digest TEXT NOT NULL,
    checked_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name)
);

-- A cached blob's link (`repository_blobs`) and when it was last pulled: the
-- row keeps the collector's link review from taking the link (no manifest
-- uses it), until eviction deletes the row and queues the review.
CREATE TABLE cache_blobs (
    repository_id BIGINT NOT NULL,
    blob_digest TEXT NOT NULL,
    last_pulled_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, blob_digest),
    FOREIGN KEY (repository_id, blob_digest)
        REFERENCES repository_blobs (repository_id, blob_digest) ON DELETE CASCADE
);
CREATE INDEX cache_blobs_by_pull ON cache_blobs (last_pulled_at);

-- Who is fetching a blob from upstream now: one instance at a time, the
-- others wait for the blob to appear or the lease to lapse.
CREATE TABLE cache_fills (
    digest TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
