from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, func
from sqlalchemy.orm import Mapped, mapped_column

from tokens_forge.db.base import Base


class Receipt(Base):
    __tablename__ = "receipts"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    run_id: Mapped[str | None]
    model: Mapped[str]
    endpoint: Mapped[str] = mapped_column(default="chat_completions")
    stream: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(default="pending")
    reason: Mapped[str | None]
    error_code: Mapped[str | None]
    usage_estimated: Mapped[bool] = mapped_column(default=False)
    route_kind: Mapped[str | None]
    bucket: Mapped[str | None]
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    total_charged_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    idempotency_key: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    completed_at: Mapped[datetime | None]


class Attempt(Base):
    __tablename__ = "attempts"

    receipt_id: Mapped[str] = mapped_column(ForeignKey("receipts.id"), primary_key=True)
    attempt_no: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[str]
    route_id: Mapped[str]
    route_kind: Mapped[str]
    bucket: Mapped[str]
    price_snapshot_id: Mapped[str]
    hold_id: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None]
    upstream_status: Mapped[int | None]
    latency_ms: Mapped[int | None]
    prompt_tokens: Mapped[int] = mapped_column(default=0)
    completion_tokens: Mapped[int] = mapped_column(default=0)
    reserved_micros: Mapped[int] = mapped_column(BigInteger)
    charged_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    charge_reason: Mapped[str | None]
    error: Mapped[str | None]
