-- Where a blob's bytes live in the blob store. The filesystem store keeps
-- them under their digest; the S3 store under the key its multipart upload
-- was created with (a digest is only known once the upload ends, and an S3
-- object cannot be renamed), so the key is recorded rather than derived.
ALTER TABLE blobs ADD COLUMN storage_key TEXT;
UPDATE blobs SET storage_key = 'blobs/' || substr(digest, 1, instr(digest, ':') - 1) || '/'
    || substr(digest, instr(digest, ':') + 1, 2) || '/' || substr(digest, instr(digest, ':') + 1)
    WHERE storage_key IS NULL;
