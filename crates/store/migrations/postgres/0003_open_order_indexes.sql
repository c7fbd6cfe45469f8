-- A queue lists a pharmacy's (or a practice's) open orders oldest first. Through
-- orders_pharmacy_created that meant walking past every finished order of the pharmacy, of which
-- there are ever more; these hold only open orders. The condition must stay word for word the
-- one the store writes (OPEN_STAGES in sql.rs), or the database will not use them.
CREATE INDEX orders_pharmacy_open ON orders (pharmacy_id, created_at, id) WHERE stage IN ('submitted', 'in_review', 'with_prescriber', 'preparing', 'ready');
CREATE INDEX orders_practice_open ON orders (practice_id, created_at, id) WHERE stage IN ('submitted', 'in_review', 'with_prescriber', 'preparing', 'ready');
