"""Plans for the queries that run all the time (the sweeper, route health; the ledger functions
set the same inside themselves, migration 0005).

They look rows up through indexes only, but PostgreSQL plans them from the statistics of the
moment and keeps the plan: on a young database, or a server without autovacuum, the tables look
empty, the planner picks a sequential scan, and every later run reads every row ever written (a
benchmark measured 100 million tuples read by them in seven minutes). Index paths always exist
for these queries, so sequential scans are switched off for their transaction."""

from sqlalchemy import text

INDEX_ONLY = text("SET LOCAL enable_seqscan = off")
