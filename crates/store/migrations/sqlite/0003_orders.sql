-- Orders, their items and the record of every state change.

CREATE TABLE orders (
    id               TEXT PRIMARY KEY,
    patient_id       TEXT NOT NULL REFERENCES patients (id),
    pharmacy_id      TEXT NOT NULL REFERENCES pharmacies (id),
    practice_id      TEXT NOT NULL REFERENCES practices (id),
    fulfilment       TEXT NOT NULL,
    note             TEXT NULL,
    placed_by        TEXT NOT NULL REFERENCES users (id),
    on_behalf        INTEGER NOT NULL CHECK (on_behalf IN (0, 1)),
    accepted         INTEGER NOT NULL CHECK (accepted IN (0, 1)),
    stage            TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    stage_entered_at BIGINT NOT NULL,
    -- Optimistic concurrency: every save checks and bumps it.
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
    -- 0-based place on the order, so items read back in their original order.
    position       BIGINT NOT NULL,
    repeat_item_id TEXT NOT NULL REFERENCES repeat_items (id),
    description    TEXT NOT NULL,
    state          TEXT NOT NULL,
    -- The prescriber's decision as JSON (serde of domain::order::Decision), or NULL.
    decision       TEXT NULL,
    UNIQUE (order_id, position)
);

CREATE INDEX order_items_repeat_item ON order_items (repeat_item_id);

-- Append-only. seq gives a stable order for transitions recorded in the same microsecond.
CREATE TABLE order_transitions (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
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
