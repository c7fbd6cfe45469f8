-- How many of a pharmacy's orders are in each open stage, for the queue's counts. Counting them
-- on every view walked all of a pharmacy's open orders (5,000 in the benchmark). The store keeps
-- these in the transaction that inserts an order, changes its stage or erases it (sql.rs,
-- adjust_open_count_on); not by triggers, so that a restore, which replays the rows changed
-- here as they were journaled, does not count twice. A row may hold 0.
CREATE TABLE open_order_counts (
    pharmacy_id TEXT NOT NULL REFERENCES pharmacies (id),
    stage       TEXT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (pharmacy_id, stage)
);

INSERT INTO open_order_counts (pharmacy_id, stage, n)
SELECT pharmacy_id, stage, COUNT(*) FROM orders
WHERE stage IN ('submitted', 'in_review', 'with_prescriber', 'preparing', 'ready')
GROUP BY pharmacy_id, stage;
