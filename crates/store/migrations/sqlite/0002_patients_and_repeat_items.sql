-- Patients (each held by one pharmacy), their sign-in link and their repeat lists.

CREATE TABLE patients (
    id            TEXT PRIMARY KEY,
    pharmacy_id   TEXT NOT NULL REFERENCES pharmacies (id),
    practice_id   TEXT NOT NULL REFERENCES practices (id),
    given_name    TEXT NOT NULL,
    family_name   TEXT NOT NULL,
    -- Lower-cased copies (Unicode-aware, done by the application) for case-insensitive prefix
    -- search that behaves the same on SQLite and PostgreSQL.
    given_folded  TEXT NOT NULL,
    family_folded TEXT NOT NULL,
    date_of_birth TEXT NOT NULL,
    nhs_number    TEXT NOT NULL,
    email         TEXT NULL,
    phone         TEXT NULL,
    address       TEXT NULL
);

CREATE INDEX patients_pharmacy_name ON patients (pharmacy_id, family_folded, given_folded);
CREATE INDEX patients_pharmacy_given ON patients (pharmacy_id, given_folded);
CREATE INDEX patients_pharmacy_dob ON patients (pharmacy_id, date_of_birth);
CREATE INDEX patients_pharmacy_nhs ON patients (pharmacy_id, nhs_number);
CREATE INDEX patients_practice_id ON patients (practice_id);

-- A patient's sign-in account (at most one per patient).
ALTER TABLE users ADD COLUMN patient_id TEXT NULL REFERENCES patients (id);
CREATE UNIQUE INDEX users_patient_id ON users (patient_id);

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
    -- Misuse of Drugs Regulations schedule: 0 (not controlled), 2, 3, 4 or 5.
    schedule          BIGINT NOT NULL CHECK (schedule IN (0, 2, 3, 4, 5)),
    issues_remaining  BIGINT NOT NULL CHECK (issues_remaining >= 0),
    next_due          TEXT NULL,
    active            INTEGER NOT NULL CHECK (active IN (0, 1)),
    -- The due date a reminder was last sent for; a new next_due re-arms the reminder.
    reminded_for      TEXT NULL,
    created_at        BIGINT NOT NULL,
    -- Position on the patient's list (1, 2, ...), so the list keeps the order items were added.
    created_seq       BIGINT NOT NULL
);

CREATE INDEX repeat_items_patient ON repeat_items (patient_id, created_seq);
CREATE INDEX repeat_items_next_due ON repeat_items (next_due);
