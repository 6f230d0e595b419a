"""A receipt for every refusal of a valid key (SPEC §3): a paused, finished or cancelled run, a
model the key may not use or that does not exist, a route kind it may not use, a body too large.
Refusals of the spend guard get theirs in the ledger's own transaction (tf_write_batch); these
are refused before anything is reserved, so their receipt is written here, and the error's body
and `X-TF-Receipt-Id` name it."""

from __future__ import annotations

import asyncpg

from tokens_forge.errors import ForgeError
from tokens_forge.ids import new_id
from tokens_forge.keys.auth import AuthedKey

RECEIPTED_STATUSES = frozenset({402, 403, 404, 409, 413})
NOT_REFUSALS = frozenset({"request_in_progress", "idempotency_key_reused"})  # answers about another request
UNKNOWN_MODEL = "(unknown)"


def needs_receipt(err: ForgeError) -> bool:
    return err.receipt_id is None and err.status_code in RECEIPTED_STATUSES and err.code not in NOT_REFUSALS


async def record_refusal(pg: asyncpg.Pool, key: AuthedKey, err: ForgeError, *, model: str | None,
                         run_id: str | None, stream: bool = False, endpoint: str = "chat_completions") -> None:
    """Write the `rejected` receipt of `err` and name it on the error."""
    receipt_id = new_id("rcpt")
    reason = err.message
    if run_id is not None and not await pg.fetchval("SELECT 1 FROM runs WHERE id = $1 AND account_id = $2",
                                                    run_id, key.account_id):
        # not this tenant's run (or none): its id is kept out of the tenant's records
        reason = reason.replace(run_id, "(the run named)")
        run_id = None
    await pg.execute("""
        INSERT INTO receipts (id, account_id, project_id, key_id, run_id, model, stream, status, reason, error_code,
                              completed_at, endpoint)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'rejected', $8, $9, clock_timestamp(), $10)""",
        receipt_id, key.account_id, key.project_id, key.id, run_id, (model or UNKNOWN_MODEL)[:200], stream,
        reason, err.code, endpoint)
    err.receipt_id = receipt_id
    err.headers = {**err.headers, "X-TF-Receipt-Id": receipt_id}
