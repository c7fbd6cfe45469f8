-- Erasure on request (issue #5, P13): the record of each erased patient, by pseudonymous id only.
-- The erasure ledger outside the database holds the same, so that a restore from an older
-- backup can be brought back in line.
CREATE TABLE erasures (
    patient_id   TEXT PRIMARY KEY,
    erased_at    BIGINT NOT NULL,
    -- patient, pharmacy or ledger (re-applied after a restore)
    requested_by TEXT NOT NULL
);
