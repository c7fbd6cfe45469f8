-- The audit trail (issue #4): append-only, each entry chaining the hash of the one before
-- (see domain/src/audit.rs). The triggers refuse changes through SQL; anything that gets past them
-- (editing the file) is caught by `repeatrx audit verify`.
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

CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;

CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;
