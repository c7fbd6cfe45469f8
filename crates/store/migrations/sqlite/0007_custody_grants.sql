-- Break-glass grants of live-data custodians (issue #4, P8): who, what (one patient or one
-- pharmacy), why, until when. Kept after they end, as the record of every break-glass access.
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
