-- An experiment for bench/quick.sh (BENCH_SQL=bench/sql/without_hot_foreign_keys.sql), never a
-- migration: the bench's throwaway database without the foreign keys of the four tables the hot
-- path inserts into (receipts, holds, attempts, transfers), to measure what their per-row checks
-- cost (BENCHMARKS.md, "Issue 17"). The gateway's own schema keeps every one of them.
DO $$
DECLARE
    r RECORD;
BEGIN
    FOR r IN SELECT conrelid::regclass AS tab, conname FROM pg_constraint
              WHERE contype = 'f' AND conrelid::regclass::text IN ('receipts', 'holds', 'attempts', 'transfers')
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.tab, r.conname);
    END LOOP;
END $$;
