"""Each database function has one home (ledger/sql/): the live catalog matches the files, every
file's current content is applied by some revision, and no function lives anywhere else."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import pytest

from tokens_forge.db import sqlfiles
from tokens_forge.db.migrate import migrations_dir
from tokens_forge.db.sql import split_statements
from tokens_forge.db.url import plain_url

REVISIONS = sorted(Path(migrations_dir(), "versions").glob("*.py"))


def named_hashes() -> dict[str, set[str]]:
    """Every (file, hash) any revision names."""
    out: dict[str, set[str]] = {}
    for rev in REVISIONS:
        for name, sha in re.findall(r'"(tf_\w+)": "([0-9a-f]{16})"', rev.read_text()):
            out.setdefault(name, set()).add(sha)
    return out


def test_every_file_defines_one_object_named_after_it():
    assert sqlfiles.names(), "no SQL files found"
    for name in sqlfiles.names():
        assert sqlfiles.object_of(name)[1] == name


@pytest.mark.parametrize("name", sqlfiles.names())
def test_the_current_content_of_every_file_is_applied_by_a_revision(name):
    assert sqlfiles.digest(name) in named_hashes().get(name, set()), (
        f"{name}.sql changed but no revision applies its new content: add a revision that calls "
        f"sqlfiles.apply(op.execute, {{{name!r}: {sqlfiles.digest(name)!r}}}) "
        "(`python -m tokens_forge.db.sqlfiles` prints the hashes)")


def test_no_revision_defines_a_function_inline():
    for rev in REVISIONS:
        assert not re.search(r"CREATE\s+(OR\s+REPLACE\s+)?FUNCTION", rev.read_text(), re.IGNORECASE), rev.name


async def _defs(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    rows = await conn.fetch("""
        SELECT p.proname, pg_get_functiondef(p.oid) AS def FROM pg_proc p
         WHERE p.pronamespace = $1::regnamespace AND p.proname LIKE 'tf\\_%'""", schema)
    return {r["proname"]: r["def"].replace(f"{schema}.", "") for r in rows}


async def _types(conn: asyncpg.Connection, schema: str) -> dict[str, list[tuple[str, str]]]:
    rows = await conn.fetch("""
        SELECT t.typname, a.attname, format_type(a.atttypid, a.atttypmod) AS type
          FROM pg_type t JOIN pg_class c ON c.oid = t.typrelid JOIN pg_attribute a ON a.attrelid = c.oid
         WHERE t.typnamespace = $1::regnamespace AND t.typtype = 'c' AND c.relkind = 'c' AND a.attnum > 0
         ORDER BY t.typname, a.attnum""", schema)
    out: dict[str, list[tuple[str, str]]] = {}
    for r in rows:
        out.setdefault(r["typname"], []).append((r["attname"], r["type"]))
    return out


async def test_the_live_catalog_matches_the_files(database_url):
    """Each file, created afresh in a scratch schema, must equal what the migrated database has."""
    conn = await asyncpg.connect(plain_url(database_url))
    try:
        live_fns, live_types = await _defs(conn, "public"), await _types(conn, "public")
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("CREATE SCHEMA tf_file_check; SET LOCAL search_path = tf_file_check, public")
            for name in sqlfiles.names():
                for statement in split_statements(sqlfiles.source(name)):
                    await conn.execute(statement)
            file_fns, file_types = await _defs(conn, "tf_file_check"), await _types(conn, "tf_file_check")
        finally:
            await tx.rollback()
    finally:
        await conn.close()
    assert set(file_fns) | set(file_types) == set(sqlfiles.names())
    for name, definition in file_fns.items():
        assert live_fns.get(name) == definition, f"the database's {name} is not the one in {name}.sql"
    for name, fields in file_types.items():
        assert live_types.get(name) == fields, f"the database's type {name} is not the one in {name}.sql"
    assert set(live_fns) == set(file_fns), "a tf_ function in the database has no file"
