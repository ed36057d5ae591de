-- Users and organizations share one namespace of names: `alice/*` belongs
-- to whichever of them holds the name `alice`.
CREATE TABLE namespaces (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('user', 'organization')),
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    name TEXT PRIMARY KEY REFERENCES namespaces (name) ON DELETE CASCADE,
    -- Argon2id, PHC string format.
    password_hash TEXT NOT NULL,
    is_admin BOOLEAN NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE organizations (
    name TEXT PRIMARY KEY REFERENCES namespaces (name) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);

CREATE TABLE organization_members (
    organization TEXT NOT NULL REFERENCES organizations (name) ON DELETE CASCADE,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    PRIMARY KEY (organization, user_name)
);
CREATE INDEX organization_members_by_user ON organization_members (user_name);

-- Machine credentials; only a SHA-256 of the (high-entropy) secret is kept.
CREATE TABLE access_tokens (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    description TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    -- Space-separated scope patterns, e.g. `repository:team/*:pull,push`.
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX access_tokens_by_user ON access_tokens (user_name);

-- OAuth2 refresh tokens (Docker's stored "identity token"); deleted when the
-- user is removed or changes password, or their access token is revoked.
CREATE TABLE refresh_tokens (
    secret_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users (name) ON DELETE CASCADE,
    access_token_id TEXT REFERENCES access_tokens (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_name);

-- A repository (`alice/app`) or a namespace (`alice`) anyone may pull.
CREATE TABLE public_paths (
    path TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

-- Token signing keys, shared by every instance on this database. The newest
-- generation signs; all verify, so rotation never invalidates live tokens.
CREATE TABLE signing_keys (
    generation BIGINT PRIMARY KEY,
    kid TEXT NOT NULL UNIQUE,
    private_key_pem TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
