-- API keys: only a sha256 of the key is stored (keys are 256-bit random,
-- so a fast hash is enough); the key itself is shown once, at creation.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    groups       TEXT NOT NULL,          -- JSON array of group labels
    role         TEXT NOT NULL,          -- reader | editor | admin
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX api_keys_by_user ON api_keys (user_id);
