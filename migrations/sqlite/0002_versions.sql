-- A new version of a document (same collection and source) names the
-- version it replaces; the swap happens in one transaction when the new
-- version becomes ready.
ALTER TABLE documents ADD COLUMN supersedes TEXT;
