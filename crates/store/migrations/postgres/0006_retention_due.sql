-- When the order-retention job (P10) should next look at each patient's orders. It used to walk
-- every patient with a finished order older than a week, every 6 hours: at 1,000,000 patients
-- three queries each for a million patients, nearly all with nothing to purge (the newest order
-- of each line is kept). Now a patient is looked at only when due: the store marks them due
-- (due_at 0) in the transaction of any write that can make an order purgeable (a new order, a
-- changed order, a changed repeat line), and the job, having looked, sets the moment one of the
-- orders kept will have outlived its cycles, or removes the row when only a write can change
-- that. `marks` counts the marks, so the job does not overwrite one made while it was looking.
CREATE TABLE retention_due (
    patient_id TEXT PRIMARY KEY REFERENCES patients (id),
    due_at     BIGINT NOT NULL,
    marks      BIGINT NOT NULL
);
CREATE INDEX retention_due_at ON retention_due (due_at, patient_id);

-- Every patient with finished orders is looked at once, at the job's first run after upgrade.
INSERT INTO retention_due (patient_id, due_at, marks)
SELECT DISTINCT patient_id, 0, 0 FROM orders WHERE stage IN ('completed', 'closed', 'cancelled');
