"""Import every model so that Base.metadata is complete (Alembic comparisons, tests)."""

from tokens_forge.accounts.models import Account, Project
from tokens_forge.audit.models import AuditEntry
from tokens_forge.keys.models import ApiKey
from tokens_forge.ledger.models import Hold, LedgerAccount, SpendCounter, Transfer
from tokens_forge.receipts.models import Attempt, Receipt
from tokens_forge.routing.models import PriceSnapshot, Route
from tokens_forge.runs.models import Run

__all__ = ["Account", "ApiKey", "Attempt", "AuditEntry", "Hold", "LedgerAccount", "PriceSnapshot",
           "Project", "Receipt", "Route", "Run", "SpendCounter", "Transfer"]
