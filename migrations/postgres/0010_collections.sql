-- Collections: the groups a document inherits when its upload names no
-- access labels, and whether answers drawn from the collection are shown
-- with PHI/PII masked. A collection without a row behaves as one whose
-- groups are the configured default labels.
CREATE TABLE collections (
    name           TEXT PRIMARY KEY NOT NULL,
    groups         TEXT NOT NULL,             -- JSON array of group labels
    redact_answers BIGINT NOT NULL DEFAULT 0, -- 1: mask PHI/PII in answers shown
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

-- 1: the document's labels follow its collection's groups (its upload named
-- none); 0: they were set explicitly (at upload, or by an admin).
ALTER TABLE documents ADD COLUMN access_inherited BIGINT NOT NULL DEFAULT 0;

-- The documents an answer was drawn from (every source retrieved for it,
-- cited or not): a stored answer is shown only while its reader may still
-- read all of them.
ALTER TABLE messages ADD COLUMN source_documents TEXT NOT NULL DEFAULT '[]';
