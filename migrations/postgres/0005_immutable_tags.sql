-- Tags that, once pushed, may not be moved or deleted: per repository
-- (`team/app`) or namespace (`team`), by pattern (`v*`).
CREATE TABLE immutable_tags (
    path TEXT NOT NULL,
    pattern TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (path, pattern)
);
