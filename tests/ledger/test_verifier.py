"""The verifier catches a corrupted row and names the invariant it breaks; the schema itself
refuses changes to append-only rows and impossible balances. Every corruption happens inside a
transaction that is rolled back, so the shared database stays clean."""

import re
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tests.conftest import ok
from tests.ledger.conftest import HOLD_TTL_S
from tokens_forge.guard import service as guard
from tokens_forge.ids import new_id
from tokens_forge.ledger.verify import CHECKS, check_params, verify

CORRUPTIONS = {  # id: (corrupting statement, the checks it must break, (a check, what its detail names))
    "wallet-credits": ("UPDATE ledger_accounts SET credits_posted = credits_posted + 1 WHERE code = :wallet",
                       {"accounts_match_transfers", "ledger_sums_to_zero"}, ("accounts_match_transfers", "{wallet}")),
    "hold-account-debits": ("UPDATE ledger_accounts SET debits_posted = debits_posted + 1 WHERE code = :hold_account",
                            {"accounts_match_transfers", "ledger_sums_to_zero", "holds_match_hold_accounts"},
                            ("accounts_match_transfers", "{hold_account}")),
    "hold-closed-without-transfers": (
        "UPDATE holds SET status = 'voided', charged = 0, resolved_at = now() WHERE id = :hold",
        {"holds_match_hold_accounts", "counters_match_holds"}, ("holds_match_hold_accounts", "{hold_account}")),
    "hold-past-expiry": ("UPDATE holds SET expires_at = now() - interval '1 hour' WHERE id = :hold",
                         {"no_stale_holds"}, ("no_stale_holds", "{hold}")),
    "counter-posted": ("UPDATE spend_counters SET posted_micros = posted_micros + 1 "
                       "WHERE owner_id = :k AND scope = 'key_total'", {"counters_match_holds"},
                       ("counters_match_holds", "key_total:{k}:total")),
    "receipt-total": ("UPDATE receipts SET total_charged_micros = total_charged_micros + 1 WHERE id = :r",
                      {"receipts_match_ledger"}, ("receipts_match_ledger", "{r}")),
    "attempt-charge": ("UPDATE attempts SET charged_micros = charged_micros - 1 WHERE receipt_id = :r",
                       {"attempts_match_ledger"}, ("attempts_match_ledger", "{r}#1")),
}


@asynccontextmanager
async def rolled_back(engine):
    async with engine.connect() as conn:
        trans = await conn.begin()
        try:
            yield conn
        finally:
            await trans.rollback()


async def failing(conn) -> dict[str, str]:
    good, checks = await verify(conn, sweep_interval_s=1)
    failed = {c.name: c.detail for c in checks if not c.ok}
    assert good == (not failed)
    return failed


@pytest.fixture
async def settled(client, tenant):
    """A tenant with one settled request: ids of its account, key and receipt."""
    t = await tenant()
    r = await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth)
    ok(r)
    return {"a": t.account["id"], "k": t.key["id"], "p": t.project["id"], "r": r.headers["x-tf-receipt-id"]}


async def open_hold(conn, ids: dict) -> int:
    rid = new_id("rcpt")
    await conn.execute(text("INSERT INTO receipts (id, account_id, project_id, key_id, model) "
                            "VALUES (:r, :a, :p, :k, 'verifier-test')"), {**ids, "r": rid})
    res = await guard.reserve(conn, key_id=ids["k"], bucket="credit", amount=5_000, receipt_id=rid, attempt_no=1,
                              run_id=None, ttl_s=HOLD_TTL_S)
    assert res.ok
    return res.hold_id


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
async def test_verifier_names_the_broken_invariant(app, settled, corruption):
    sql, broken, (check, names) = CORRUPTIONS[corruption]
    async with rolled_back(app.state.engine) as conn:
        ids = {**settled, "hold": await open_hold(conn, settled), "wallet": f"wallet:{settled['a']}:credit",
               "hold_account": f"hold:{settled['a']}:credit"}
        assert await failing(conn) == {}
        result = await conn.execute(text(sql), ids)
        assert result.rowcount == 1
        failed = await failing(conn)
        assert set(failed) == broken
        for name in broken:
            assert "violated" in failed[name]
        assert names.format(**ids) in failed[check]


def rows_read(plan: dict, into: dict[str, int]) -> dict[str, int]:
    """The rows each table's scans read in a plan run with ANALYZE, over all their loops (a lookup
    of at most one row a loop, as in an index nested loop, is not a rescan and is not counted)."""
    if "Relation Name" in plan:
        read, loops = plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0), plan["Actual Loops"]
        if loops == 1 or read > 1:
            into[plan["Relation Name"]] = into.get(plan["Relation Name"], 0) + read * loops
    for child in plan.get("Plans", []):
        rows_read(child, into)
    return into


@pytest.mark.parametrize(("name", "sql"), [(name, sql) for name, _, sql in CHECKS], ids=[c[0] for c in CHECKS])
async def test_each_check_reads_a_row_once_for_each_time_it_names_its_table(app, client, tenant, name, sql):
    """The verifier runs over the whole ledger: a check that reads a table's rows again for each
    row of another grows with the square of the ledger (counters_match_holds once read all of an
    account's holds for each of its counters)."""
    t = await tenant(key={"limits": {"daily_micros": 10**9, "total_micros": 10**9, "per_request_micros": 10**8}},
                     project_limits={"daily_micros": 10**9, "total_micros": 10**9})
    for _ in range(4):
        ok(await client.post("/v1/chat/completions", json=t.chat(), headers=t.auth))
    async with rolled_back(app.state.engine) as conn:
        plan = (await conn.execute(text(f"EXPLAIN (ANALYZE, FORMAT JSON) SELECT what FROM ({sql}) q"),
                                   check_params())).scalar()
        for table, read in rows_read(plan[0]["Plan"], {}).items():
            rows = (await conn.execute(text(f"SELECT count(*) FROM {table}"))).scalar()
            named = len(re.findall(rf"\b{table}\b", sql))
            assert read <= rows * named, f"{name} reads {read} rows of {table}, which has {rows}"


APPEND_ONLY = [
    ("transfers", "UPDATE transfers SET amount = amount + 1 WHERE id = (SELECT max(id) FROM transfers)"),
    ("transfers", "UPDATE transfers SET reason = 'edited' WHERE id = (SELECT max(id) FROM transfers)"),
    ("transfers", "DELETE FROM transfers WHERE id = (SELECT max(id) FROM transfers)"),
    ("audit_log", "UPDATE audit_log SET actor = 'someone' WHERE id = (SELECT max(id) FROM audit_log)"),
    ("audit_log", "DELETE FROM audit_log WHERE id = (SELECT max(id) FROM audit_log)"),
    ("price_snapshots", "UPDATE price_snapshots SET input_per_mtok = 0 WHERE id = "
                        "(SELECT id FROM price_snapshots ORDER BY created_at DESC LIMIT 1)"),
    ("price_snapshots", "DELETE FROM price_snapshots WHERE id = "
                        "(SELECT id FROM price_snapshots ORDER BY created_at DESC LIMIT 1)"),
]


@pytest.mark.parametrize(("table", "sql"), APPEND_ONLY)
async def test_append_only_rows_refuse_change(app, settled, table, sql):
    async with rolled_back(app.state.engine) as conn:
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(text(sql))
    assert caught.value.orig.pgcode == "23001"  # restrict_violation, raised by the trigger
    assert f"{table} rows are append-only" in str(caught.value.orig)


IMPOSSIBLE = [
    "UPDATE ledger_accounts SET debits_posted = credits_posted + 1 WHERE code = :wallet",
    "UPDATE ledger_accounts SET credits_posted = -1 WHERE code = 'funding'",
    """INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, account_id, bucket, reference,
                              debit_balance_after, credit_balance_after)
       SELECT 1, 1, 5, 'topup', :a, 'credit', 'self', 0, 0""",
    """INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, account_id, bucket, reference,
                              debit_balance_after, credit_balance_after)
       SELECT 1, 2, 0, 'topup', :a, 'credit', 'zero', 0, 0""",
    """INSERT INTO transfers (debit_account_id, credit_account_id, amount, kind, account_id, bucket,
                              debit_balance_after, credit_balance_after)
       SELECT 1, 2, 5, 'settle', :a, 'credit', 0, 0""",
    "UPDATE holds SET charged = amount + 1, status = 'settled', resolved_at = now() WHERE account_id = :a",
]


@pytest.mark.parametrize("sql", IMPOSSIBLE)
async def test_schema_refuses_impossible_rows(app, settled, sql):
    async with rolled_back(app.state.engine) as conn:
        await open_hold(conn, settled)
        with pytest.raises(DBAPIError) as caught:
            await conn.execute(text(sql), {"a": settled["a"], "wallet": f"wallet:{settled['a']}:credit"})
    assert caught.value.orig.pgcode.startswith("23"), caught.value.orig  # integrity constraint violation
