-- The RepeatRx schema on PostgreSQL: the same tables, columns and meaning as the SQLite
-- migrations (`../sqlite/`, which tell the history and the why of each), in their current form.
-- Conventions shared with SQLite: ids TEXT (hyphenated UUIDs), timestamps BIGINT unix
-- microseconds (UTC), civil dates TEXT 'YYYY-MM-DD', enums TEXT, booleans BIGINT 0/1. Patient
-- columns hold AES-256-GCM ciphertext (base64) sealed by the store; lookups use blind indexes.
-- New changes get a migration here and one in `../sqlite/`.

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
    on_repeatrx BIGINT NOT NULL CHECK (on_repeatrx IN (0, 1)),
    created_at  BIGINT NOT NULL
);
CREATE INDEX practices_name ON practices (name);

CREATE TABLE patients (
    id            TEXT PRIMARY KEY,
    pharmacy_id   TEXT NOT NULL REFERENCES pharmacies (id),
    practice_id   TEXT NOT NULL REFERENCES practices (id),
    given_name    TEXT NOT NULL,
    family_name   TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    nhs_number    TEXT NOT NULL,
    email         TEXT NULL,
    phone         TEXT NULL,
    address       TEXT NULL,
    given_index   TEXT NOT NULL DEFAULT '',
    family_index  TEXT NOT NULL DEFAULT '',
    dob_index     TEXT NOT NULL DEFAULT '',
    nhs_index     TEXT NOT NULL DEFAULT '',
    email_index   TEXT NULL
);
CREATE INDEX patients_pharmacy_given ON patients (pharmacy_id, given_index);
CREATE INDEX patients_pharmacy_family ON patients (pharmacy_id, family_index);
CREATE INDEX patients_pharmacy_dob ON patients (pharmacy_id, dob_index);
CREATE INDEX patients_pharmacy_nhs ON patients (pharmacy_id, nhs_index);
CREATE INDEX patients_practice_id ON patients (practice_id);

CREATE TABLE patient_name_words (
    patient_id TEXT NOT NULL REFERENCES patients (id),
    word_index TEXT NOT NULL,
    PRIMARY KEY (patient_id, word_index)
);
CREATE INDEX patient_name_words_word ON patient_name_words (word_index);

CREATE TABLE users (
    id                  TEXT PRIMARY KEY,
    email               TEXT NOT NULL UNIQUE,
    display_name        TEXT NOT NULL,
    role                TEXT NOT NULL,
    pharmacy_id         TEXT NULL REFERENCES pharmacies (id),
    practice_id         TEXT NULL REFERENCES practices (id),
    password_hash       TEXT NOT NULL,
    active              BIGINT NOT NULL CHECK (active IN (0, 1)),
    created_at          BIGINT NOT NULL,
    patient_id          TEXT NULL REFERENCES patients (id),
    failed_sign_ins     BIGINT NOT NULL DEFAULT 0,
    lock_state          TEXT NOT NULL DEFAULT 'open',
    locked_at           BIGINT NULL,
    dob_failures        BIGINT NOT NULL DEFAULT 0,
    totp_secret         TEXT NULL,
    totp_pending_secret TEXT NULL,
    totp_enrolled_at    BIGINT NULL,
    totp_last_step      BIGINT NOT NULL DEFAULT 0,
    email_index         TEXT NULL
);
CREATE INDEX users_pharmacy_id ON users (pharmacy_id);
CREATE INDEX users_practice_id ON users (practice_id);
CREATE UNIQUE INDEX users_patient_id ON users (patient_id);
CREATE UNIQUE INDEX users_email_index ON users (email_index);

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         TEXT NOT NULL,
    csrf_token   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    user_agent   TEXT NOT NULL,
    stage        TEXT NOT NULL DEFAULT 'full',
    address      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE repeat_items (
    id                TEXT PRIMARY KEY,
    patient_id        TEXT NOT NULL REFERENCES patients (id),
    medicine_code     TEXT NULL,
    drug_name         TEXT NOT NULL,
    strength          TEXT NOT NULL,
    form              TEXT NOT NULL,
    quantity          BIGINT NOT NULL CHECK (quantity >= 0),
    directions        TEXT NOT NULL,
    cycle_days        BIGINT NOT NULL,
    issues_authorised BIGINT NOT NULL CHECK (issues_authorised >= 0),
    review_date       TEXT NOT NULL,
    schedule          BIGINT NOT NULL CHECK (schedule IN (0, 2, 3, 4, 5)),
    issues_remaining  BIGINT NOT NULL CHECK (issues_remaining >= 0),
    next_due          TEXT NULL,
    active            BIGINT NOT NULL CHECK (active IN (0, 1)),
    reminded_for      TEXT NULL,
    created_at        BIGINT NOT NULL,
    created_seq       BIGINT NOT NULL
);
CREATE INDEX repeat_items_patient ON repeat_items (patient_id, created_seq);
CREATE INDEX repeat_items_next_due ON repeat_items (next_due);

CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients (id),
    pharmacy_id      TEXT NOT NULL REFERENCES pharmacies (id),
    practice_id      TEXT NOT NULL REFERENCES practices (id),
    fulfilment       TEXT NOT NULL,
    note             TEXT NULL,
    placed_by        TEXT NOT NULL REFERENCES users (id),
    on_behalf        BIGINT NOT NULL CHECK (on_behalf IN (0, 1)),
    accepted         BIGINT NOT NULL CHECK (accepted IN (0, 1)),
    stage            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    stage_entered_at BIGINT NOT NULL,
    version          BIGINT NOT NULL
);
CREATE INDEX orders_pharmacy_created ON orders (pharmacy_id, created_at);
CREATE INDEX orders_pharmacy_stage ON orders (pharmacy_id, stage);
CREATE INDEX orders_practice_created ON orders (practice_id, created_at);
CREATE INDEX orders_patient_created ON orders (patient_id, created_at);
CREATE INDEX orders_placed_by ON orders (placed_by);

CREATE TABLE order_items (
    id             TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders (id),
    position       BIGINT NOT NULL,
    repeat_item_id TEXT NOT NULL REFERENCES repeat_items (id),
    description    TEXT NOT NULL,
    state          TEXT NOT NULL,
    decision       TEXT NULL,
    UNIQUE (order_id, position)
);
CREATE INDEX order_items_repeat_item ON order_items (repeat_item_id);

CREATE TABLE order_transitions (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id      TEXT NOT NULL REFERENCES orders (id),
    item_id       TEXT NULL REFERENCES order_items (id),
    from_state    TEXT NOT NULL,
    to_state      TEXT NOT NULL,
    actor_user_id TEXT NOT NULL REFERENCES users (id),
    actor_role    TEXT NOT NULL,
    at            BIGINT NOT NULL,
    reason        TEXT NULL
);
CREATE INDEX order_transitions_order ON order_transitions (order_id, seq);
CREATE INDEX order_transitions_item ON order_transitions (item_id);
CREATE INDEX order_transitions_actor ON order_transitions (actor_user_id);

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

CREATE TABLE recovery_codes (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_hash TEXT NOT NULL,
    used_at   BIGINT NULL,
    PRIMARY KEY (user_id, code_hash)
);

CREATE TABLE account_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    payload    TEXT NULL,
    grouping   TEXT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT NULL
);
CREATE INDEX account_tokens_user ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_grouping ON account_tokens (grouping);

CREATE TABLE address_failures (
    address  TEXT NOT NULL,
    bucket   BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    PRIMARY KEY (address, bucket)
);

CREATE TABLE security_events (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id       TEXT NOT NULL UNIQUE,
    at       BIGINT NOT NULL,
    user_id  TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    actor_id TEXT NULL REFERENCES users (id) ON DELETE SET NULL,
    kind     TEXT NOT NULL,
    address  TEXT NOT NULL,
    detail   TEXT NOT NULL
);
CREATE INDEX security_events_user ON security_events (user_id, seq);

CREATE TABLE audit_log (
    seq           BIGINT PRIMARY KEY,
    at            BIGINT NOT NULL,
    actor_user_id TEXT NULL,
    actor_role    TEXT NULL,
    organisation  TEXT NOT NULL,
    action        TEXT NOT NULL,
    patient_id    TEXT NULL,
    address       TEXT NOT NULL,
    purpose       TEXT NULL,
    detail        TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_log_patient ON audit_log (patient_id, seq);
CREATE INDEX audit_log_organisation ON audit_log (organisation, seq);

CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

CREATE TABLE custody_grants (
    id           TEXT PRIMARY KEY,
    custodian_id TEXT NOT NULL REFERENCES users (id),
    scope_kind   TEXT NOT NULL CHECK (scope_kind IN ('patient', 'pharmacy')),
    patient_id   TEXT NULL REFERENCES patients (id),
    pharmacy_id  TEXT NULL REFERENCES pharmacies (id),
    reason       TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    ended_at     BIGINT NULL,
    CHECK ((scope_kind = 'patient' AND patient_id IS NOT NULL AND pharmacy_id IS NULL)
        OR (scope_kind = 'pharmacy' AND pharmacy_id IS NOT NULL AND patient_id IS NULL))
);
CREATE INDEX custody_grants_custodian ON custody_grants (custodian_id, created_at);

CREATE TABLE data_keys (
    key_owner      TEXT PRIMARY KEY,
    key_master     TEXT NOT NULL,
    key_wrapped    TEXT NOT NULL,
    key_created_at BIGINT NOT NULL
);
CREATE INDEX data_keys_master ON data_keys (key_master);

CREATE TABLE erasures (
    patient_id   TEXT PRIMARY KEY,
    erased_at    BIGINT NOT NULL,
    requested_by TEXT NOT NULL
);

CREATE TABLE pharmacy_departures (
    pharmacy_id  TEXT PRIMARY KEY REFERENCES pharmacies (id),
    marked_at    BIGINT NOT NULL,
    marked_by    TEXT NOT NULL,
    delete_after BIGINT NOT NULL,
    deleted_at   BIGINT NULL
);
