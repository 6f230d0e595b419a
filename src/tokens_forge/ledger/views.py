"""What a key sees of its account's money: the wallet and the wallet ledger (entries with
running balances, read from the balances each transfer recorded when it was posted)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tokens_forge.keys.auth import AuthedKey
from tokens_forge.ledger.service import balances
from tokens_forge.records.filters import check_storable

LEDGER_COLUMNS = ["transfer_id", "created_at", "bucket", "kind", "amount_micros", "balance_after_micros",
                  "receipt_id", "attempt", "run_id", "account", "reference", "reason"]


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
                                                min_balance_micros FROM api_keys WHERE id = :k"""),
                                 {"k": key.id})).one()
    return {
        "object": "wallet", "account_id": key.account_id,
        "buckets": {b: v.as_dict() for b, v in bal.items()},
        "limits": {
            "key": {"daily_micros": limits.daily_limit_micros, "total_micros": limits.total_limit_micros,
                    "per_request_micros": limits.per_request_limit_micros},
            "project": {"daily_micros": project.daily_limit_micros, "total_micros": project.total_limit_micros},
        },
        "min_balance_micros": limits.min_balance_micros,
        "key_spend_micros": await key_spend(conn, key.id),
    }


_ENTRIES = """
    SELECT t.id, t.created_at, t.bucket, t.kind, la.kind AS side, t.receipt_id, t.attempt_no, t.run_id,
           t.reference, t.reason,
           CASE WHEN t.credit_account_id = la.id THEN t.amount ELSE -t.amount END AS amount,
           CASE WHEN t.credit_account_id = la.id THEN t.credit_balance_after ELSE t.debit_balance_after END
             AS balance_after
      FROM transfers t
      JOIN ledger_accounts la ON la.id IN (t.debit_account_id, t.credit_account_id)
                             AND la.account_id = :a AND la.kind IN ('wallet', 'hold')
     WHERE t.account_id = :a
       AND (CAST(:receipt AS TEXT) IS NULL OR t.receipt_id = :receipt)
       AND (CAST(:run AS TEXT) IS NULL OR t.run_id = :run)
       AND (CAST(:bucket AS TEXT) IS NULL OR t.bucket = :bucket)
       AND (CAST(:before_id AS BIGINT) IS NULL OR (t.id, la.kind) < (CAST(:before_id AS BIGINT), :before_side))
     ORDER BY t.id DESC, la.kind DESC
"""


def entry_out(r) -> dict:
    return {"transfer_id": f"tr_{r.id}", "created_at": r.created_at.isoformat(), "bucket": r.bucket,
            "kind": r.kind, "amount_micros": int(r.amount), "balance_after_micros": int(r.balance_after),
            "receipt_id": r.receipt_id, "attempt": r.attempt_no, "run_id": r.run_id, "account": r.side,
            "reference": r.reference, "reason": r.reason}


def entries_statement(account_id: str, *, receipt_id: str | None, run_id: str | None, bucket: str | None,
                      before: tuple[int, str] | None, limit: int | None):
    check_storable(receipt_id=receipt_id, run_id=run_id, bucket=bucket)
    sql = _ENTRIES + (" LIMIT :limit" if limit else "")
    params = {"a": account_id, "receipt": receipt_id, "run": run_id, "bucket": bucket,
              "before_id": before[0] if before else None, "before_side": before[1] if before else "",
              "limit": limit}
    return text(sql), params


async def ledger_entries(conn: AsyncConnection, account_id: str, *, receipt_id: str | None, run_id: str | None,
                         bucket: str | None, before: tuple[int, str] | None, limit: int):
    stmt, params = entries_statement(account_id, receipt_id=receipt_id, run_id=run_id, bucket=bucket,
                                     before=before, limit=limit)
    return (await conn.execute(stmt, params)).all()
