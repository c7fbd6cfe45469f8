-- Deployment metadata, organisations, sign-in accounts and their sessions.
--
-- Portable conventions (the postgres/ folder mirrors this schema):
--   ids          TEXT, hyphenated UUID
--   timestamps   BIGINT, unix microseconds (UTC)
--   civil dates  TEXT 'YYYY-MM-DD' (ISO strings sort and compare correctly)
--   enums        TEXT, the domain type's as_str()
--   booleans     INTEGER 0/1 (BIGINT in PostgreSQL)

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE pharmacies (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    ods_code   TEXT NOT NULL,
    address    TEXT NOT NULL,
    email      TEXT NULL,
    created_at BIGINT NOT NULL
);

CREATE INDEX pharmacies_name ON pharmacies (name);

CREATE TABLE practices (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    ods_code    TEXT NOT NULL,
    address     TEXT NOT NULL,
    email       TEXT NULL,
    on_repeatrx INTEGER NOT NULL CHECK (on_repeatrx IN (0, 1)),
    created_at  BIGINT NOT NULL
);

CREATE INDEX practices_name ON practices (name);

-- The email is stored lower-cased by the domain's Email type, so UNIQUE makes sign-in ids
-- unique case-insensitively. patient_id is added by 0002, once the patients table exists.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    role          TEXT NOT NULL,
    pharmacy_id   TEXT NULL REFERENCES pharmacies (id),
    practice_id   TEXT NULL REFERENCES practices (id),
    password_hash TEXT NOT NULL,
    active        INTEGER NOT NULL CHECK (active IN (0, 1)),
    created_at    BIGINT NOT NULL
);

CREATE INDEX users_pharmacy_id ON users (pharmacy_id);
CREATE INDEX users_practice_id ON users (practice_id);

-- Only the SHA-256 of a session token is stored.
CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    user_agent   TEXT NOT NULL
);

CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
