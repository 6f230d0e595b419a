from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, ForeignKeyConstraint, Index, func, text
from sqlalchemy.orm import Mapped, mapped_column

from tokens_forge.db.base import Base


class Receipt(Base):
    __tablename__ = "receipts"
    __table_args__ = (
        ForeignKeyConstraint(["project_id", "account_id"], ["projects.id", "projects.account_id"]),
        ForeignKeyConstraint(["key_id", "account_id"], ["api_keys.id", "api_keys.account_id"]),
        ForeignKeyConstraint(["run_id", "account_id"], ["runs.id", "runs.account_id"]),
        Index("receipts_account_created", "account_id", text("created_at DESC"), text("id DESC")),
        Index("receipts_pending", "created_at", postgresql_where=text("status = 'pending'::text")),
        Index("receipts_run", "run_id", "created_at", postgresql_where=text("run_id IS NOT NULL")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    project_id: Mapped[str]
    key_id: Mapped[str]
    run_id: Mapped[str | None]
    model: Mapped[str]
    endpoint: Mapped[str] = mapped_column(default="chat_completions", server_default=text("'chat_completions'::text"))
    stream: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    status: Mapped[str] = mapped_column(default="pending", server_default=text("'pending'::text"))
    reason: Mapped[str | None]
    error_code: Mapped[str | None]
    usage_estimated: Mapped[bool] = mapped_column(default=False, server_default=text("false"))
    route_kind: Mapped[str | None]
    bucket: Mapped[str | None]
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    total_charged_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    idempotency_key: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    completed_at: Mapped[datetime | None]


class Attempt(Base):
    __tablename__ = "attempts"
    __table_args__ = (
        ForeignKeyConstraint(["receipt_id", "account_id"], ["receipts.id", "receipts.account_id"]),
        ForeignKeyConstraint(["hold_id", "account_id"], ["holds.id", "holds.account_id"]),
        Index("attempts_account_failed", "account_id", text("started_at DESC"),
              postgresql_where=text("outcome IS NOT NULL AND outcome <> 'success'::text")),
        Index("attempts_route_recent", "route_id", text("started_at DESC")),
    )

    receipt_id: Mapped[str] = mapped_column(primary_key=True)
    attempt_no: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    route_id: Mapped[str] = mapped_column(ForeignKey("routes.id"))
    route_kind: Mapped[str]
    bucket: Mapped[str]
    price_snapshot_id: Mapped[str] = mapped_column(ForeignKey("price_snapshots.id"))
    hold_id: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None]
    upstream_status: Mapped[int | None]
    latency_ms: Mapped[int | None]
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    reserved_micros: Mapped[int] = mapped_column(BigInteger)
    charged_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    charge_reason: Mapped[str | None]
    error: Mapped[str | None]
    charge_rule: Mapped[str | None]
    overage_micros: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
