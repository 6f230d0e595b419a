"""What the ledger took from a customer, as one SQL fragment every record view selects from.

A charge is a `settle` or `failure_charge` transfer into revenue from the customer's side: today
always out of one of the account's hold accounts (`hold:<acct>:<bucket>`); the only other debit
these kinds have is the platform's `overage` account (an upstream's overcharge beyond the hold,
never the customer's), which is what is left out. Leaving out overage, rather than keeping only
hold debits, needs no lookup per transfer (the overage account is one row, read once per
statement) and still counts a charge booked straight from a wallet. The ledger verifier
(`ledger/verify.py`, `receipts_match_ledger`) checks receipts against the hold-debited rows; the
records' tests check that both agree.

Usage, failures, receipts, run receipts and the console's charts all read charges from here, so
they agree with the ledger per bucket by construction."""

from __future__ import annotations

CHARGE_KINDS = ("settle", "failure_charge")

# Columns: account_id, receipt_id, attempt_no, run_id, bucket, kind, amount, transfer id, created_at.
CHARGE_TRANSFERS = """
SELECT t.account_id, t.receipt_id, t.attempt_no, t.run_id, t.bucket, t.kind, t.amount, t.id, t.created_at
  FROM transfers t
 WHERE t.kind IN ('settle', 'failure_charge')
   AND t.debit_account_id <> ALL (SELECT o.id FROM ledger_accounts o WHERE o.code = 'overage')"""


def is_charge(kind: str, debit_side: str) -> bool:
    """The same rule in Python, for rows already read (a transfer's kind, its debit account's kind)."""
    return kind in CHARGE_KINDS and debit_side != "overage"
