-- Online garbage collection: review queues. Whatever may just have become
-- unreferenced is queued with the time it became a candidate; a collector
-- claims due items, re-checks references inside its transaction, and only
-- then deletes. A spurious review costs a lookup; a row is never deleted on
-- the strength of an old check.

-- A manifest that lost its last tag or parent index, or was pushed untagged.
CREATE TABLE gc_manifest_reviews (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    candidate_since BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX gc_manifest_reviews_due ON gc_manifest_reviews (candidate_since);

-- A blob link whose repository may no longer use it (or never did: an
-- upload that no manifest followed).
CREATE TABLE gc_blob_link_reviews (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    candidate_since BIGINT NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX gc_blob_link_reviews_due ON gc_blob_link_reviews (candidate_since);

-- A blob that may have lost its last link.
CREATE TABLE gc_blob_reviews (
    digest TEXT PRIMARY KEY,
    candidate_since BIGINT NOT NULL
);

-- Blob-store objects whose metadata is gone, deleted from storage after the
-- metadata transaction commits (so a crash in between leaks nothing).
CREATE TABLE storage_garbage (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('blob', 'upload')),
    storage_key TEXT NOT NULL,
    storage_state TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Whatever exists already is reviewed once.
INSERT INTO gc_manifest_reviews (repository_id, digest, candidate_since)
    SELECT repository_id, digest, created_at FROM manifests;
INSERT INTO gc_blob_link_reviews (repository_id, digest, candidate_since)
    SELECT repository_id, blob_digest, created_at FROM repository_blobs;
