-- Every change to a repository's set of tag names bumps its tags_version in
-- the same transaction, whichever code path made it (push, delete, cascade,
-- retention). Instances cache tag lists keyed by (repository id, version),
-- so one indexed row read tells them whether their copy is still current.
ALTER TABLE repositories ADD COLUMN tags_version BIGINT NOT NULL DEFAULT 0;

CREATE TRIGGER tags_added AFTER INSERT ON tags
BEGIN
    UPDATE repositories SET tags_version = tags_version + 1 WHERE id = NEW.repository_id;
END;

CREATE TRIGGER tags_removed AFTER DELETE ON tags
BEGIN
    UPDATE repositories SET tags_version = tags_version + 1 WHERE id = OLD.repository_id;
END;

CREATE TRIGGER tags_renamed AFTER UPDATE OF name, repository_id ON tags
BEGIN
    UPDATE repositories SET tags_version = tags_version + 1
    WHERE id IN (OLD.repository_id, NEW.repository_id);
END;
