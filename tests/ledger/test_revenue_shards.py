"""The revenue shard of a tenant (tf_revenue_code): the same account as it always was, and cheap
enough for the hot path, i.e. inlined by the planner rather than called as a SQL function."""

from __future__ import annotations

import asyncpg
import pytest

from tokens_forge.db.url import plain_url

# The codes every ledger since migration 0003 has booked revenue to: changing them would move a
# tenant's revenue to another account halfway through its history.
HISTORIC = """'revenue:' || CASE b WHEN 'credit' THEN 'official' ELSE 'routed' END || ':' || ((hashtext(a) & 63)::INTEGER)"""


@pytest.fixture
async def conn(database_url):
    conn = await asyncpg.connect(plain_url(database_url))
    yield conn
    await conn.close()


async def test_every_tenant_keeps_its_revenue_account(conn):
    differ = await conn.fetchval(f"""
        SELECT count(*) FROM (SELECT 'acct_' || md5(i::TEXT) AS a, b
                                FROM generate_series(1, 2000) i, unnest(ARRAY['credit', 'routed']) b) t
         WHERE tf_revenue_code(b, a) IS DISTINCT FROM {HISTORIC}""")
    shards = await conn.fetchval("""
        SELECT count(DISTINCT tf_revenue_code('credit', 'acct_' || md5(i::TEXT))) FROM generate_series(1, 2000) i""")
    assert differ == 0
    assert shards == 64


async def test_the_planner_inlines_it(conn):
    plan = await conn.fetch("EXPLAIN (VERBOSE) SELECT tf_revenue_code(bucket, account_id) FROM holds")
    text = "\n".join(r[0] for r in plan)
    assert "hashtext" in text, text
    assert "tf_revenue_code" not in text, text
