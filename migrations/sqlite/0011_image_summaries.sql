-- What the web UI and /api/v1 show of an image without reading blob
-- storage: the platform and created time from its config, a summary of the
-- config (entrypoint, command, environment, ports, labels, history) as JSON,
-- and its content size (config and layers, Docker Hub's "compressed size").
-- summary_state: 0 pending (read the config when next possible), 1 recorded,
-- 2 nothing to record (an index, an artifact, a config too large or unreadable).
ALTER TABLE manifests ADD COLUMN image_os TEXT;
ALTER TABLE manifests ADD COLUMN image_architecture TEXT;
ALTER TABLE manifests ADD COLUMN image_variant TEXT;
ALTER TABLE manifests ADD COLUMN image_created BIGINT;
ALTER TABLE manifests ADD COLUMN image_summary TEXT;
ALTER TABLE manifests ADD COLUMN content_size BIGINT;
ALTER TABLE manifests ADD COLUMN summary_state BIGINT NOT NULL DEFAULT 0;
CREATE INDEX manifests_summary_pending ON manifests (summary_state, id);

-- The last push into a repository (a manifest stored or a tag set), for the
-- "most recently pushed" page, kept by triggers whatever code path pushes.
ALTER TABLE repositories ADD COLUMN last_pushed_at BIGINT;
UPDATE repositories SET last_pushed_at = (
    SELECT MAX(t) FROM (
        SELECT created_at AS t FROM manifests WHERE repository_id = repositories.id
        UNION ALL
        SELECT updated_at AS t FROM tags WHERE repository_id = repositories.id
    )
);
CREATE INDEX repositories_by_push ON repositories (last_pushed_at DESC, name);
CREATE INDEX tags_by_push ON tags (repository_id, updated_at DESC, name);

CREATE TRIGGER manifests_pushed AFTER INSERT ON manifests
BEGIN
    UPDATE repositories SET last_pushed_at = NEW.created_at
    WHERE id = NEW.repository_id AND (last_pushed_at IS NULL OR last_pushed_at < NEW.created_at);
END;

CREATE TRIGGER tags_pushed AFTER INSERT ON tags
BEGIN
    UPDATE repositories SET last_pushed_at = NEW.updated_at
    WHERE id = NEW.repository_id AND (last_pushed_at IS NULL OR last_pushed_at < NEW.updated_at);
END;

CREATE TRIGGER tags_moved AFTER UPDATE OF manifest_id, updated_at ON tags
BEGIN
    UPDATE repositories SET last_pushed_at = NEW.updated_at
    WHERE id = NEW.repository_id AND (last_pushed_at IS NULL OR last_pushed_at < NEW.updated_at);
END;
