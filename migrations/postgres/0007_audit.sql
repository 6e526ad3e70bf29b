-- The audit trail: who searched or asked what, which chunks were retrieved,
-- the access decision, the citations shown, the model used; document
-- changes too. Append-only; each row holds the previous row's hash and its
-- own (sha256 over prev_hash, at, actor, action, detail), so `docent audit
-- verify` detects an edited or deleted row.
CREATE TABLE audit_log (
    seq       BIGSERIAL PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX audit_log_by_actor ON audit_log (actor, seq);
