-- A document carried inside another (an e-mail attachment) names its
-- carrier. Deleting or replacing the carrier removes its children.
ALTER TABLE documents ADD COLUMN parent_id TEXT;
CREATE INDEX documents_parent ON documents (parent_id);
