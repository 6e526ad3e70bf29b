-- Scale-out: several docent replicas share one PostgreSQL.
--
-- Jobs are claimed by one replica at a time (SELECT ... FOR UPDATE SKIP
-- LOCKED) under a lease that the claimant renews while it works; a lease
-- that runs out (the replica died) lets another replica take the job over.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
-- Claims so far; a job that keeps killing its worker is failed, not retried forever.
ALTER TABLE jobs ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_claimable ON jobs (status, lease_until);

-- The change log every replica follows to keep its own derived indexes
-- (tantivy, and an embedded vector index) in step with the truth. One row
-- per document-level change: 'ready' (the document's chunks are now the
-- current ones) or 'delete' (its chunks are gone). Writers take a
-- transaction-scoped advisory lock before appending, so sequence order is
-- commit order and a follower that has read up to N never misses a row
-- below N committing later.
CREATE TABLE chunk_changes (
    seq        BIGSERIAL PRIMARY KEY,
    doc_id     TEXT NOT NULL,
    op         TEXT NOT NULL,
    created_at TEXT NOT NULL
);
