-- The transactional email outbox and the leases that keep background jobs to one server.

CREATE TABLE outbox_emails (
    id          TEXT PRIMARY KEY,
    to_address  TEXT NOT NULL,
    subject     TEXT NOT NULL,
    body        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts    BIGINT NOT NULL CHECK (attempts >= 0),
    last_error  TEXT NULL,
    created_at  BIGINT NOT NULL,
    not_before  BIGINT NOT NULL,
    -- Set while a mail job holds the email; NULL when nobody does.
    lease_until BIGINT NULL,
    sent_at     BIGINT NULL
);

CREATE INDEX outbox_emails_due ON outbox_emails (status, not_before);
CREATE INDEX outbox_emails_created ON outbox_emails (created_at);

CREATE TABLE jobs (
    name        TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
