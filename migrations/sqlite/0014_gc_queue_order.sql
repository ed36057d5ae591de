-- The collector takes blob reviews oldest first, a batch at a time; without
-- this each batch sorted the whole queue, which deleting many blobs on
-- purpose fills. (Storage garbage is taken in the order of its ids, which
-- are time-ordered.)
CREATE INDEX gc_blob_reviews_due ON gc_blob_reviews (candidate_since);
