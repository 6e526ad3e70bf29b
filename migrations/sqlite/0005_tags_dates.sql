-- Tags and a document date given at upload; both are filters that the
-- search pushes into the indexes. A document without a date is filtered by
-- its upload time (created_at).
ALTER TABLE documents ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
ALTER TABLE documents ADD COLUMN doc_date TEXT;
