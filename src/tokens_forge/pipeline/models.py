"""The idempotency records of pipeline/idempotency.py: one per (key, Idempotency-Key), holding the
first request's fingerprint and, once done, its response."""

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, ForeignKeyConstraint, LargeBinary, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tokens_forge.db.base import Base


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (
        ForeignKeyConstraint(["key_id", "account_id"], ["api_keys.id", "api_keys.account_id"]),
    )

    key_id: Mapped[str] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    fingerprint: Mapped[str]
    receipt_id: Mapped[str | None]
    status: Mapped[str] = mapped_column(server_default=text("'in_progress'::text"))
    response_status: Mapped[int | None]
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
    locked_until: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(server_default=text("(now() + '48:00:00'::interval)"))
    owner_id: Mapped[str | None]  # the gateway worker holding the lock (0006)
