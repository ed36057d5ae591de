-- Every change to a repository's set of tag names bumps its tags_version in
-- the same transaction, whichever code path made it (push, delete, cascade,
-- retention). Instances cache tag lists keyed by (repository id, version),
-- so one indexed row read tells them whether their copy is still current.
-- Moving a tag to another manifest changes no name and bumps nothing.
ALTER TABLE repositories ADD COLUMN tags_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION bump_tags_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE repositories SET tags_version = tags_version + 1 WHERE id = OLD.repository_id;
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') AND (TG_OP = 'INSERT' OR NEW.repository_id <> OLD.repository_id) THEN
        UPDATE repositories SET tags_version = tags_version + 1 WHERE id = NEW.repository_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER tags_added AFTER INSERT ON tags
    FOR EACH ROW EXECUTE FUNCTION bump_tags_version();
CREATE TRIGGER tags_removed AFTER DELETE ON tags
    FOR EACH ROW EXECUTE FUNCTION bump_tags_version();
CREATE TRIGGER tags_renamed AFTER UPDATE OF name, repository_id ON tags
    FOR EACH ROW EXECUTE FUNCTION bump_tags_version();
