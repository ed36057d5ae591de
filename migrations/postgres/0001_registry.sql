-- Repositories are created on first push and named by the spec's grammar.
CREATE TABLE repositories (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

-- One row per distinct blob, whatever the number of repositories using it.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- A blob is readable through a repository only when linked to it.
CREATE TABLE repository_blobs (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, blob_digest)
);
CREATE INDEX repository_blobs_by_blob ON repository_blobs (blob_digest);

-- Manifests keep their exact bytes; the digest is over those bytes.
CREATE TABLE manifests (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    artifact_type TEXT,
    subject_digest TEXT,
    annotations TEXT,
    payload BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repository_id, subject_digest);

-- Edges from an image manifest to its config and layers.
CREATE TABLE manifest_blobs (
    manifest_id BIGINT NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    blob_digest TEXT NOT NULL REFERENCES blobs (digest),
    PRIMARY KEY (manifest_id, blob_digest)
);
CREATE INDEX manifest_blobs_by_blob ON manifest_blobs (blob_digest);

-- Edges from an index to its child manifests. A child cannot be deleted
-- while an index lists it, so the RESTRICT here is a last line of defence.
CREATE TABLE manifest_references (
    parent_id BIGINT NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    child_id BIGINT NOT NULL REFERENCES manifests (id) ON DELETE RESTRICT,
    PRIMARY KEY (parent_id, child_id)
);
CREATE INDEX manifest_references_by_child ON manifest_references (child_id);

CREATE TABLE tags (
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    name TEXT COLLATE "C" NOT NULL,
    manifest_id BIGINT NOT NULL REFERENCES manifests (id) ON DELETE CASCADE,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repository_id, name)
);
CREATE INDEX tags_by_manifest ON tags (manifest_id);

-- An upload in progress: bytes accepted so far, the hash state after them,
-- and the blob store's own state (for example a multipart upload id).
CREATE TABLE uploads (
    id TEXT PRIMARY KEY,
    repository_id BIGINT NOT NULL REFERENCES repositories (id) ON DELETE CASCADE,
    received BIGINT NOT NULL,
    hash_state BYTEA NOT NULL,
    storage_state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX uploads_by_updated ON uploads (updated_at);
