"""What a key sees of its account's money: the wallet and the wallet ledger (SPEC §5: the wallet
buckets' entries with their running balance, read from the balances each transfer recorded when
it was posted; hold legs only when asked for)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tokens_forge.keys.auth import AuthedKey
from tokens_forge.ledger.service import balances
from tokens_forge.records.filters import check_storable

LEDGER_COLUMNS = ["transfer_id", "created_at", "bucket", "kind", "amount_micros", "balance_after_micros",
                  "receipt_id", "attempt", "run_id", "account", "reference", "reason"]
HOLD_COLUMNS = ["hold_amount_micros", "hold_balance_after_micros"]


async def key_spend(conn: AsyncConnection, key_id: str) -> dict[str, int]:
    rows = (await conn.execute(text("""
        SELECT scope, posted_micros FROM spend_counters
         WHERE owner_id = :k AND ((scope = 'key_daily' AND period = to_char((now() AT TIME ZONE 'UTC')::date,
                                                                          'YYYY-MM-DD'))
                                  OR scope = 'key_total')"""), {"k": key_id})).all()
    by = {r.scope: int(r.posted_micros) for r in rows}
    return {"today": by.get("key_daily", 0), "total": by.get("key_total", 0)}


async def wallet(conn: AsyncConnection, key: AuthedKey) -> dict:
    bal = await balances(conn, key.account_id)
    project = (await conn.execute(text("SELECT daily_limit_micros, total_limit_micros FROM projects WHERE id = :p"),
                                  {"p": key.project_id})).one()
    limits = (await conn.execute(text("""SELECT daily_limit_micros, total_limit_micros, per_request_limit_micros,
                                                min_balance_micros, requests_per_minute, tokens_per_minute
                                           FROM api_keys WHERE id = :k"""),
                                 {"k": key.id})).one()
    return {
        "object": "wallet", "account_id": key.account_id,
        "buckets": {b: v.as_dict() for b, v in bal.items()},
        "limits": {
            "key": {"daily_micros": limits.daily_limit_micros, "total_micros": limits.total_limit_micros,
                    "per_request_micros": limits.per_request_limit_micros},
            "project": {"daily_micros": project.daily_limit_micros, "total_micros": project.total_limit_micros},
        },
        "rate_limits": {"requests_per_minute": limits.requests_per_minute,
                        "tokens_per_minute": limits.tokens_per_minute},
        "min_balance_micros": limits.min_balance_micros,
        "key_spend_micros": await key_spend(conn, key.id),
    }


# One row per transfer of the account, never one per leg. `amount` and `balance_after` are the
# wallet bucket's own (its signed change and its balance right after, as the transfer recorded
# them when it was posted); a transfer that moves money only on the hold side (a settle, a failure
# charge) appears only with holds included, its wallet columns showing the unchanged wallet balance
# and the hold columns what it did to the hold.
_ENTRIES = """
    WITH acc AS (SELECT id, kind, bucket FROM ledger_accounts WHERE account_id = :a AND kind IN ('wallet', 'hold'))
    SELECT t.id, t.created_at, t.bucket, t.kind, t.receipt_id, t.attempt_no, t.run_id, t.reference, t.reason,
           CASE WHEN w.id IN (t.debit_account_id, t.credit_account_id) THEN 'wallet' ELSE 'hold' END AS side,
           CASE WHEN t.credit_account_id = w.id THEN t.amount WHEN t.debit_account_id = w.id THEN -t.amount
                ELSE 0 END AS amount,
           CASE WHEN t.credit_account_id = w.id THEN t.credit_balance_after
                WHEN t.debit_account_id = w.id THEN t.debit_balance_after
                ELSE coalesce((SELECT CASE WHEN p.credit_account_id = w.id THEN p.credit_balance_after
                                           ELSE p.debit_balance_after END
                                 FROM transfers p
                                WHERE p.account_id = :a AND p.id < t.id
                                  AND w.id IN (p.debit_account_id, p.credit_account_id)
                                ORDER BY p.id DESC LIMIT 1), 0) END AS balance_after,
           CASE WHEN t.credit_account_id = h.id THEN t.amount WHEN t.debit_account_id = h.id THEN -t.amount
                ELSE 0 END AS hold_amount,
           CASE WHEN t.credit_account_id = h.id THEN t.credit_balance_after
                WHEN t.debit_account_id = h.id THEN t.debit_balance_after END AS hold_balance_after
      FROM transfers t
      JOIN acc w ON w.kind = 'wallet' AND w.bucket = t.bucket
      JOIN acc h ON h.kind = 'hold' AND h.bucket = t.bucket
     WHERE t.account_id = :a
       AND (w.id IN (t.debit_account_id, t.credit_account_id)
            OR (CAST(:holds AS BOOLEAN) AND h.id IN (t.debit_account_id, t.credit_account_id)))
       AND (CAST(:receipt AS TEXT) IS NULL OR t.receipt_id = :receipt)
       AND (CAST(:run AS TEXT) IS NULL OR t.run_id = :run)
       AND (CAST(:bucket AS TEXT) IS NULL OR t.bucket = :bucket)
       AND (CAST(:before_id AS BIGINT) IS NULL OR t.id < CAST(:before_id AS BIGINT))
     ORDER BY t.id DESC
"""


def columns(include_holds: bool) -> list[str]:
    return LEDGER_COLUMNS + (HOLD_COLUMNS if include_holds else [])


def entry_out(r, include_holds: bool = False) -> dict:
    out = {"transfer_id": f"tr_{r.id}", "created_at": r.created_at.isoformat(), "bucket": r.bucket,
           "kind": r.kind, "amount_micros": int(r.amount), "balance_after_micros": int(r.balance_after),
           "receipt_id": r.receipt_id, "attempt": r.attempt_no, "run_id": r.run_id, "account": r.side,
           "reference": r.reference, "reason": r.reason}
    if include_holds:
        out["hold_amount_micros"] = int(r.hold_amount)
        out["hold_balance_after_micros"] = None if r.hold_balance_after is None else int(r.hold_balance_after)
    return out


def entries_statement(account_id: str, *, receipt_id: str | None, run_id: str | None, bucket: str | None,
                      before: int | None, limit: int | None, include_holds: bool = False):
    check_storable(receipt_id=receipt_id, run_id=run_id, bucket=bucket)
    sql = _ENTRIES + (" LIMIT :limit" if limit else "")
    params = {"a": account_id, "receipt": receipt_id, "run": run_id, "bucket": bucket, "holds": include_holds,
              "before_id": before, "limit": limit}
    return text(sql), params


async def ledger_entries(conn: AsyncConnection, account_id: str, *, receipt_id: str | None, run_id: str | None,
                         bucket: str | None, before: int | None, limit: int, include_holds: bool = False):
    stmt, params = entries_statement(account_id, receipt_id=receipt_id, run_id=run_id, bucket=bucket,
                                     before=before, limit=limit, include_holds=include_holds)
    return (await conn.execute(stmt, params)).all()
