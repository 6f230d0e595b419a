"""Import every model so that Base.metadata is complete (migrations/env.py, tests/db/test_metadata.py)."""

from tokens_forge.accounts.models import Account, Project
from tokens_forge.audit.models import AuditEntry
from tokens_forge.db.base import Base
from tokens_forge.keys.models import ApiKey, ConsoleSession, KeyRateLimit
from tokens_forge.ledger.models import GatewayWorker, Hold, LedgerAccount, SpendCounter, Transfer
from tokens_forge.pipeline.models import IdempotencyKey
from tokens_forge.receipts.models import Attempt, Receipt
from tokens_forge.routing.models import PriceSnapshot, Route
from tokens_forge.runs.models import Run

metadata = Base.metadata

__all__ = ["Account", "ApiKey", "Attempt", "AuditEntry", "ConsoleSession", "GatewayWorker", "Hold",
           "IdempotencyKey", "KeyRateLimit", "LedgerAccount", "PriceSnapshot", "Project", "Receipt", "Route",
           "Run", "SpendCounter", "Transfer", "metadata"]
