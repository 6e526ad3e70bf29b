-- Web-chat sessions (sign-in with an ID token). Only sha256 hashes of the
-- session token (the cookie) and of its CSRF token are stored; the tokens
-- themselves are 256-bit random (the CSRF one derived from it), so a fast
-- hash is enough. expires_at is RFC 3339 in whole seconds (UTC), so it
-- sorts as text; expired rows are deleted when sessions are created.
CREATE TABLE sessions (
    id           TEXT PRIMARY KEY NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    user_id      TEXT NOT NULL,
    groups       TEXT NOT NULL,          -- JSON array of group labels
    role         TEXT NOT NULL,          -- reader | editor | admin
    csrf_hash    TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
