-- Account security (issue #3): lockout counters, TOTP, one-time links, address throttling,
-- sign-in events. Counters live here, not in memory, so they hold across servers and restarts.

ALTER TABLE users ADD COLUMN failed_sign_ins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN lock_state TEXT NOT NULL DEFAULT 'open';
ALTER TABLE users ADD COLUMN locked_at BIGINT NULL;
ALTER TABLE users ADD COLUMN dob_failures INTEGER NOT NULL DEFAULT 0;
-- Base32 TOTP secret once enrolment is confirmed; the pending one while it is being set up.
ALTER TABLE users ADD COLUMN totp_secret TEXT NULL;
ALTER TABLE users ADD COLUMN totp_pending_secret TEXT NULL;
ALTER TABLE users ADD COLUMN totp_enrolled_at BIGINT NULL;
-- The last 30-second step whose code was accepted: a code is accepted once only.
ALTER TABLE users ADD COLUMN totp_last_step BIGINT NOT NULL DEFAULT 0;

-- The sign-in stage of a session, and the address it was opened from.
ALTER TABLE sessions ADD COLUMN stage TEXT NOT NULL DEFAULT 'full';
ALTER TABLE sessions ADD COLUMN address TEXT NOT NULL DEFAULT '';

-- Recovery codes: only SHA-256 hashes, each used once.
CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   BIGINT NULL,
    PRIMARY KEY (user_id, code_hash)
);

-- Emailed single-use links (unlock, password reset, email change): only the SHA-256 of the token.
CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    -- For email changes: the new address; both links of one change share `grouping`.
    payload    TEXT NULL,
    grouping   TEXT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT NULL
);

CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_grouping ON account_tokens (grouping);

-- Failed sign-ins per client address, counted in one-minute buckets.
CREATE TABLE address_failures (
    address  TEXT NOT NULL,
    bucket   BIGINT NOT NULL,
    failures INTEGER NOT NULL,
    PRIMARY KEY (address, bucket)
);

-- Sign-in events for the audit trail (#4 chains them): never passwords or codes.
CREATE TABLE security_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    at       BIGINT NOT NULL,
    user_id  TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    actor_id TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    kind     TEXT NOT NULL,
    address  TEXT NOT NULL,
    detail   TEXT NOT NULL
);

CREATE INDEX security_events_user ON security_events (user_id, seq);
