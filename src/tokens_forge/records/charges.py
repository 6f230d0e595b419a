"""What the ledger took from a customer, as one SQL fragment every record view selects from.

A charge is a `settle` or `failure_charge` transfer out of one of the account's hold accounts
(`hold:<acct>:<bucket>`) into revenue. An upstream's overcharge beyond the hold is booked from the
platform's `overage` account, never from the customer, so it is not a charge here. The ledger
verifier (`ledger/verify.py`, `receipts_match_ledger`) checks receipts against the same rows.

Usage, failures, receipts, run receipts and the console's charts all read charges from here, so
they agree with the ledger per bucket by construction."""

from __future__ import annotations

CHARGE_KINDS = ("settle", "failure_charge")

# Columns: account_id, receipt_id, attempt_no, run_id, bucket, kind, amount, transfer id, created_at.
CHARGE_TRANSFERS = """
SELECT t.account_id, t.receipt_id, t.attempt_no, t.run_id, t.bucket, t.kind, t.amount, t.id, t.created_at
  FROM transfers t
  JOIN ledger_accounts la ON la.id = t.debit_account_id AND la.kind = 'hold'
 WHERE t.kind IN ('settle', 'failure_charge')"""


def is_charge(kind: str, debit_side: str) -> bool:
    """The same rule in Python, for rows already read (a transfer's kind, its debit account's kind)."""
    return kind in CHARGE_KINDS and debit_side == "hold"
