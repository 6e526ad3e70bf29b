-- docent schema, SQLite flavour. The SQL store is the source of truth; the
-- vector and keyword indexes are derived from these rows by chunk id.
CREATE TABLE documents (
    id           TEXT PRIMARY KEY NOT NULL,
    collection   TEXT NOT NULL,
    title        TEXT NOT NULL,
    source       TEXT NOT NULL,
    kind         TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    size_bytes   BIGINT NOT NULL,
    pages        BIGINT,
    access       TEXT NOT NULL,          -- JSON array of group labels
    status       TEXT NOT NULL,
    error        TEXT,
    chunk_count  BIGINT NOT NULL DEFAULT 0,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX documents_by_hash ON documents (collection, content_hash);
CREATE INDEX documents_by_source ON documents (collection, source);

CREATE TABLE chunks (
    id           TEXT PRIMARY KEY NOT NULL,
    doc_id       TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    ordinal      BIGINT NOT NULL,
    collection   TEXT NOT NULL,
    access       TEXT NOT NULL,          -- JSON array, copied from the document
    text         TEXT NOT NULL,
    page         BIGINT,
    heading_path TEXT NOT NULL,          -- JSON array, outermost first
    char_start   BIGINT NOT NULL,
    char_end     BIGINT NOT NULL,
    token_count  BIGINT NOT NULL
);
CREATE INDEX chunks_by_doc ON chunks (doc_id, ordinal);

CREATE TABLE jobs (
    id         TEXT PRIMARY KEY NOT NULL,
    doc_id     TEXT NOT NULL,
    status     TEXT NOT NULL,
    progress   DOUBLE PRECISION NOT NULL DEFAULT 0,
    error      TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX jobs_by_doc ON jobs (doc_id);
