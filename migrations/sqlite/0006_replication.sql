-- Scale-out bookkeeping, kept identical to the PostgreSQL schema so that one
-- store implementation serves both. With SQLite there is one process, but a
-- job still carries its claim and lease, and the change log still orders
-- index changes.
ALTER TABLE jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE jobs ADD COLUMN lease_until BIGINT;
ALTER TABLE jobs ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
CREATE INDEX jobs_claimable ON jobs (status, lease_until);

-- SQLite serializes writers, so AUTOINCREMENT order is commit order.
CREATE TABLE chunk_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    doc_id     TEXT NOT NULL,
    op         TEXT NOT NULL,
    created_at TEXT NOT NULL
);
