"""Plans for the queries that run all the time (the sweeper, route health; the ledger functions
set the same inside themselves, migration 0005).

They look rows up through indexes only, but PostgreSQL plans them from the statistics of the
moment and keeps the plan: on a young database, or a server without autovacuum, the tables look
empty, the planner picks a sequential scan, and every later run reads every row ever written (a
benchmark measured 100 million tuples read by them in seven minutes). Index paths always exist
for these queries, so sequential scans are switched off for their transaction.

JIT compilation is switched off with them: a plan that must still scan (route health reads every
enabled route, a table of a few rows with no index for that) carries the disabled scan's cost of
10^10, far past `jit_above_cost`, so PostgreSQL compiled, inlined and optimised some 40 functions
for a query that reads a hundred buffers: about 0.5 s of the database's CPU per run, every 2 s in
every worker (pg_stat_statements on the bench: 582 ms mean, 2.3 s of JIT in 6 s; 1 ms without)."""

from sqlalchemy import text

INDEX_ONLY = text("SELECT set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)")
