-- Continuous backup (P3, P4): the change journal that triggers fill in the same transaction as
-- each change, shipped and emptied by the server's backup task; and its bookkeeping. The
-- triggers themselves are made at start from the tables' columns (store::backup::journal).
CREATE TABLE backup_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    enabled BIGINT NOT NULL DEFAULT 0,
    generation TEXT NOT NULL DEFAULT '',
    -- The schema (latest migration) the journal's statements are written for.
    schema_version BIGINT NOT NULL DEFAULT 0,
    txn BIGINT NOT NULL DEFAULT 0,
    shipped_seq BIGINT NOT NULL DEFAULT 0,
    shipped_change_at BIGINT,
    shipped_at BIGINT,
    snapshot_at BIGINT,
    last_error TEXT
);
INSERT INTO backup_state (id) VALUES (1);

CREATE TABLE backup_journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    txn BIGINT NOT NULL,
    at BIGINT NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('row', 'commit')),
    stmt TEXT
);
