"""The schema is ready to be distributed by account (SPEC §10, docs/scale.md), checked on the live
catalog of the migrated test database: every table is classified; each table of an account's rows
has `account_id` in its primary key, in every unique key, and on both sides of every foreign key to
another account's table; the platform tables reference no account's rows (reference tables may
not); and what is still keyed by id is exactly what docs/scale.md says is left."""

from __future__ import annotations

import asyncpg
import pytest

from tokens_forge.db.url import plain_url

ROOT = "accounts"  # distributed by its id: every other account's table is colocated with it
ACCOUNT_TABLES = {"projects", "api_keys", "runs", "receipts", "holds", "transfers", "attempts",
                  "idempotency_keys", "spend_counters", "key_rate_limits"}
REFERENCE_TABLES = {"routes", "price_snapshots"}
# Not distributed (docs/scale.md): the audit log, worker heartbeats and console sessions are not an
# account's rows; ledger_accounts holds the platform's accounts beside the tenants'.
OTHER_TABLES = {"audit_log", "gateway_workers", "console_sessions", "alembic_version", "ledger_accounts"}
# The one reference still by id: a transfer's two sides may be platform accounts (funding, revenue, overage).
BY_ID = {("transfers", "ledger_accounts")}


@pytest.fixture(scope="module")
async def catalog(database):
    conn = await asyncpg.connect(plain_url(database.direct_url))
    try:
        tables = {r["relname"] for r in await conn.fetch(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'")}
        # every primary key, unique constraint and unique index, by its columns
        uniques = await conn.fetch("""
            SELECT c.relname AS tbl, i.relname AS name,
                   array_agg(a.attname ORDER BY k.n) AS cols
              FROM pg_index x JOIN pg_class c ON c.oid = x.indrelid JOIN pg_class i ON i.oid = x.indexrelid
             CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY k(attnum, n)
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE c.relnamespace = 'public'::regnamespace AND x.indisunique
             GROUP BY c.relname, i.relname""")
        pkeys = {r["tbl"]: r["cols"] for r in await conn.fetch("""
            SELECT c.relname AS tbl, array_agg(a.attname ORDER BY k.n) AS cols
              FROM pg_constraint p JOIN pg_class c ON c.oid = p.conrelid
             CROSS JOIN LATERAL unnest(p.conkey) WITH ORDINALITY k(attnum, n)
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE p.contype = 'p' AND c.relnamespace = 'public'::regnamespace GROUP BY c.relname""")}
        fkeys = await conn.fetch("""
            SELECT p.conname, c.relname AS tbl, f.relname AS ref,
                   array_agg(a.attname ORDER BY k.n) AS cols, array_agg(b.attname ORDER BY k.n) AS ref_cols
              FROM pg_constraint p JOIN pg_class c ON c.oid = p.conrelid JOIN pg_class f ON f.oid = p.confrelid
             CROSS JOIN LATERAL unnest(p.conkey, p.confkey) WITH ORDINALITY k(attnum, refnum, n)
              JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
              JOIN pg_attribute b ON b.attrelid = f.oid AND b.attnum = k.refnum
             WHERE p.contype = 'f' AND c.relnamespace = 'public'::regnamespace
             GROUP BY p.conname, c.relname, f.relname""")
        not_null = {r["relname"] for r in await conn.fetch("""
            SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             WHERE c.relnamespace = 'public'::regnamespace AND a.attname = 'account_id' AND a.attnotnull""")}
        platform_rows = await conn.fetch(
            "SELECT DISTINCT kind FROM ledger_accounts WHERE account_id IS NULL ORDER BY kind")
    finally:
        await conn.close()
    return {"tables": tables, "uniques": uniques, "pkeys": pkeys, "fkeys": fkeys, "not_null": not_null,
            "platform_kinds": [r["kind"] for r in platform_rows]}


def test_every_table_is_classified(catalog):
    classified = {ROOT} | ACCOUNT_TABLES | REFERENCE_TABLES | OTHER_TABLES
    assert catalog["tables"] == classified, "a new table must say how it is distributed (docs/scale.md)"


def test_account_id_is_in_every_primary_and_unique_key_of_an_account_table(catalog):
    assert catalog["pkeys"][ROOT] == ["id"]
    for table in sorted(ACCOUNT_TABLES):
        assert table in catalog["not_null"], f"{table}.account_id must be NOT NULL"
        assert "account_id" in catalog["pkeys"][table], (table, catalog["pkeys"][table])
    for u in catalog["uniques"]:
        if u["tbl"] in ACCOUNT_TABLES:
            assert "account_id" in u["cols"], f"unique key {u['name']} on {u['tbl']}{tuple(u['cols'])}"


def test_foreign_keys_between_an_accounts_rows_name_the_account_on_both_sides(catalog):
    checked = 0
    for fk in catalog["fkeys"]:
        if fk["tbl"] not in ACCOUNT_TABLES | {"console_sessions"}:
            continue
        pairs = dict(zip(fk["cols"], fk["ref_cols"], strict=True))
        if fk["ref"] == ROOT:
            assert pairs == {"account_id": "id"}, fk["conname"]
        elif fk["ref"] in ACCOUNT_TABLES:
            assert pairs.get("account_id") == "account_id", f"{fk['conname']}: {pairs}"
            checked += 1
        elif fk["ref"] in REFERENCE_TABLES:
            assert "account_id" not in pairs, fk["conname"]  # a platform row belongs to no account
        else:
            assert (fk["tbl"], fk["ref"]) in BY_ID, f"{fk['conname']}: {fk['tbl']} -> {fk['ref']}"
    assert checked == 13  # keys, runs (2), receipts (3), holds, transfers, attempts (2), idempotency, sessions,
    #                       rate limits


def test_reference_tables_reference_only_reference_tables(catalog):
    for fk in catalog["fkeys"]:
        if fk["tbl"] in REFERENCE_TABLES:
            assert fk["ref"] in REFERENCE_TABLES, fk["conname"]


def test_what_is_left_by_id_is_the_platforms_ledger_accounts(catalog):
    """docs/scale.md item 4: ledger accounts without an account are the platform's, and only
    the transfers point at them by id."""
    assert set(catalog["platform_kinds"]) <= {"funding", "revenue", "overage"}
    refs = {(fk["tbl"], fk["ref"]) for fk in catalog["fkeys"] if fk["ref"] == "ledger_accounts"}
    assert refs == BY_ID
