-- Encryption at rest (issue #5, P2). Patient-identifying and clinical columns now hold
-- AES-256-GCM ciphertext (base64) sealed under a data key per patient; the store's `sealing`
-- module says which. Data keys are kept here only wrapped by the master key, which lives outside
-- the database (the key file). Equality lookups use keyed blind indexes (HMAC) instead of the
-- values: the old case-folded name columns and their indexes go.

CREATE TABLE data_keys (
    -- A patient's id, or 'service/accounts' / 'service/outbox' for the service's own data.
    key_owner      TEXT PRIMARY KEY,
    -- Which master key wrapped it (a hash of the key, not the key): rotation re-wraps the rest.
    key_master     TEXT NOT NULL,
    key_wrapped    TEXT NOT NULL,
    key_created_at BIGINT NOT NULL
);

CREATE INDEX data_keys_master ON data_keys (key_master);

DROP INDEX patients_pharmacy_name;
DROP INDEX patients_pharmacy_given;
DROP INDEX patients_pharmacy_dob;
DROP INDEX patients_pharmacy_nhs;
ALTER TABLE patients DROP COLUMN given_folded;
ALTER TABLE patients DROP COLUMN family_folded;

-- Rows written before this migration have empty indexes; the store refuses such a database
-- rather than show plaintext it no longer expects.
ALTER TABLE patients ADD COLUMN given_index TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN family_index TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN dob_index TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN nhs_index TEXT NOT NULL DEFAULT '';
ALTER TABLE patients ADD COLUMN email_index TEXT NULL;

CREATE INDEX patients_pharmacy_given ON patients (pharmacy_id, given_index);
CREATE INDEX patients_pharmacy_family ON patients (pharmacy_id, family_index);
CREATE INDEX patients_pharmacy_dob ON patients (pharmacy_id, dob_index);
CREATE INDEX patients_pharmacy_nhs ON patients (pharmacy_id, nhs_index);

-- Sign-in finds an account by the blind index of its email: a patient's address is sealed.
ALTER TABLE users ADD COLUMN email_index TEXT NULL;
CREATE UNIQUE INDEX users_email_index ON users (email_index);
