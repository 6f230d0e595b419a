"""The verifier: recompute every balance from the immutable transfers and check every invariant
of SPEC §4 and LEDGER.md. Exposed as GET /admin/v1/ledger/verify and `tokens-forge ledger verify`.

Each check is one SQL query that returns the offending rows (at most a few as examples)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def as_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


CHECKS: list[tuple[str, str, str]] = [
    ("transfers_balanced",
     "every transfer debits one account and credits another by the same positive amount",
     """SELECT id::text AS what FROM transfers WHERE amount <= 0 OR debit_account_id = credit_account_id"""),
    ("accounts_match_transfers",
     "every ledger account's posted totals equal the sum of its transfers",
     """SELECT la.code AS what FROM ledger_accounts la
          LEFT JOIN (SELECT debit_account_id AS id, sum(amount) AS s FROM transfers GROUP BY 1) d ON d.id = la.id
          LEFT JOIN (SELECT credit_account_id AS id, sum(amount) AS s FROM transfers GROUP BY 1) c ON c.id = la.id
         WHERE la.debits_posted <> coalesce(d.s, 0) OR la.credits_posted <> coalesce(c.s, 0)"""),
    ("ledger_sums_to_zero",
     "all debits equal all credits across the ledger",
     """SELECT 'debits ' || sum(debits_posted) || ' <> credits ' || sum(credits_posted) AS what
          FROM ledger_accounts HAVING sum(debits_posted) <> sum(credits_posted)"""),
    ("no_negative_balances",
     "no wallet or hold account is below zero",
     """SELECT code AS what FROM ledger_accounts WHERE no_overdraft AND credits_posted < debits_posted"""),
    ("holds_match_hold_accounts",
     "each hold account holds exactly the open holds of its bucket",
     """SELECT la.code AS what FROM ledger_accounts la
          LEFT JOIN (SELECT account_id, bucket, sum(amount) AS s FROM holds WHERE status = 'open'
                      GROUP BY 1, 2) h ON h.account_id = la.account_id AND h.bucket = la.bucket
         WHERE la.kind = 'hold' AND la.credits_posted - la.debits_posted <> coalesce(h.s, 0)"""),
    ("counters_match_holds",
     "every spend counter's pending and posted amounts equal its holds",
     # One pass over the holds, grouped by the counters they name: a lookup of each counter's
     # holds would read every hold once per counter (no index finds a hold by a counter it names).
     """SELECT sc.scope || ':' || sc.owner_id || ':' || sc.period AS what FROM spend_counters sc
          LEFT JOIN (
            SELECT h.account_id, c.id,
                   sum(h.amount) FILTER (WHERE h.status = 'open') AS pending,
                   sum(h.charged + h.late_charged) FILTER (WHERE h.status <> 'open') AS posted
              FROM holds h CROSS JOIN LATERAL (SELECT DISTINCT unnest(h.counter_ids)) AS c(id)
             GROUP BY 1, 2) h ON h.account_id = sc.account_id AND h.id = sc.id
         WHERE sc.pending_micros <> coalesce(h.pending, 0) OR sc.posted_micros <> coalesce(h.posted, 0)"""),
    ("receipts_match_ledger",
     "every receipt's total_charged_micros equals what the ledger posted for it (late charges included)",
     """SELECT r.id AS what FROM receipts r
          LEFT JOIN (SELECT t.receipt_id, sum(t.amount) AS s FROM transfers t
                       JOIN ledger_accounts la ON la.id = t.debit_account_id AND la.kind IN ('hold', 'wallet')
                      WHERE t.kind IN ('settle', 'failure_charge') GROUP BY 1) p ON p.receipt_id = r.id
         WHERE r.status <> 'pending' AND r.total_charged_micros <> coalesce(p.s, 0)"""),
    ("attempts_match_ledger",
     "every attempt's charged_micros equals what the ledger posted for it",
     """SELECT a.receipt_id || '#' || a.attempt_no AS what FROM attempts a
          LEFT JOIN holds h ON h.id = a.hold_id
         WHERE a.outcome IS NOT NULL AND h.status <> 'open'
           AND a.charged_micros <> coalesce(h.charged + h.late_charged, 0)"""),
    ("no_stale_holds",
     "no open hold outlives its worker (or, without one, its expiry) by more than two sweeps",
     """SELECT h.id::text AS what FROM holds h
         WHERE h.status = 'open'
           AND CASE WHEN h.owner_id IS NULL THEN h.expires_at + make_interval(secs => :grace) < now()
                    ELSE tf_owner_gone(h.owner_id, :dead + :grace) END"""),
]


def check_params(*, sweep_interval_s: float = 5.0, dead_after_s: float = 30.0) -> dict[str, float]:
    """The bind parameters of the checks: how long a hold may outlive its worker or its expiry."""
    return {"grace": sweep_interval_s * 2 + 5, "dead": dead_after_s}


async def verify(conn: AsyncConnection, *, sweep_interval_s: float = 5.0,
                 dead_after_s: float = 30.0) -> tuple[bool, list[Check]]:
    results = []
    params = check_params(sweep_interval_s=sweep_interval_s, dead_after_s=dead_after_s)
    for name, description, sql in CHECKS:
        rows = (await conn.execute(text(f"SELECT what FROM ({sql}) q LIMIT 6"), params)).scalars().all()
        if rows:
            shown = ", ".join(rows[:5]) + (" …" if len(rows) > 5 else "")
            results.append(Check(name, False, f"violated: {description}: {shown}"))
        else:
            results.append(Check(name, True, description))
    return all(c.ok for c in results), results
