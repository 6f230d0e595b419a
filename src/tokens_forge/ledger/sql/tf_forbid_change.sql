-- Rows of append-only tables (transfers, audit_log, price_snapshots) never change: a correction
-- is a new row.
CREATE OR REPLACE FUNCTION tf_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME USING ERRCODE = 'restrict_violation';
END $$;
