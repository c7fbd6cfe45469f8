-- A pharmacy leaving RepeatRx (issue #5, P12). The pharmacy row stays (organisation details are
-- not patient data); its patients are erased and its staff accounts deleted by `deleted_at`.
CREATE TABLE pharmacy_departures (
    pharmacy_id  TEXT PRIMARY KEY REFERENCES pharmacies (id),
    marked_at    BIGINT NOT NULL,
    marked_by    TEXT NOT NULL,
    delete_after BIGINT NOT NULL,
    deleted_at   BIGINT NULL
);
