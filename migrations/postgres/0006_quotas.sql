-- Storage quotas per namespace (`team` covers `team/*`), in bytes, each
-- distinct blob in the namespace counted once.
CREATE TABLE namespace_quotas (
    namespace TEXT PRIMARY KEY,
    limit_bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
