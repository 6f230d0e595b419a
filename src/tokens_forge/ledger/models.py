"""Ledger tables (LEDGER.md): accounts with running totals, immutable transfers, holds, the spend
counters that enforce caps, and the gateway workers that own open holds. Written by the plpgsql
functions under ledger/sql/, never through these models."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, ForeignKeyConstraint, Index, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from tokens_forge.db.base import Base


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(unique=True)
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str]
    bucket: Mapped[str | None]
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    no_overdraft: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Transfer(Base):
    __tablename__ = "transfers"
    __table_args__ = (
        ForeignKeyConstraint(["hold_id", "account_id"], ["holds.id", "holds.account_id"]),
        Index("transfers_account", "account_id", "id"),
        Index("transfers_hold_once", "hold_id", "kind", "debit_account_id", "account_id", unique=True,
              postgresql_where=text("hold_id IS NOT NULL")),
        Index("transfers_receipt", "receipt_id", postgresql_where=text("receipt_id IS NOT NULL")),
        Index("transfers_run", "run_id", postgresql_where=text("run_id IS NOT NULL")),
        Index("transfers_topup_reference", "account_id", "reference", unique=True,
              postgresql_where=text("kind = 'topup'::text")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    debit_account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str]
    bucket: Mapped[str]
    hold_id: Mapped[int | None] = mapped_column(BigInteger)
    receipt_id: Mapped[str | None]
    attempt_no: Mapped[int | None]
    run_id: Mapped[str | None]
    reference: Mapped[str | None]
    reason: Mapped[str | None]
    debit_balance_after: Mapped[int] = mapped_column(BigInteger)
    credit_balance_after: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())


class Hold(Base):
    __tablename__ = "holds"
    __table_args__ = (
        ForeignKeyConstraint(["receipt_id", "account_id"], ["receipts.id", "receipts.account_id"]),
        Index("holds_open_expiry", "expires_at", postgresql_where=text("status = 'open'::text")),
        Index("holds_open_owner", "owner_id", postgresql_where=text("status = 'open'::text")),
        Index("holds_receipt", "receipt_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    bucket: Mapped[str]
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(server_default=text("'open'::text"))
    charged: Mapped[int | None] = mapped_column(BigInteger)
    counter_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    receipt_id: Mapped[str]
    attempt_no: Mapped[int]
    run_id: Mapped[str | None]
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    resolved_at: Mapped[datetime | None]
    owner_id: Mapped[str | None]  # the gateway worker whose request holds it (gateway_workers.id)
    late_charged: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class SpendCounter(Base):
    __tablename__ = "spend_counters"
    __table_args__ = (
        UniqueConstraint("scope", "owner_id", "period", "account_id", name="spend_counters_scope_owner_id_period_key"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    scope: Mapped[str]
    owner_id: Mapped[str]
    period: Mapped[str]
    pending_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    posted_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class GatewayWorker(Base):
    """A live gateway process (ledger/workers.py): its heartbeat tells the sweeper whose holds are orphaned."""

    __tablename__ = "gateway_workers"

    id: Mapped[str] = mapped_column(primary_key=True)
    host: Mapped[str]
    pid: Mapped[int]
    started_at: Mapped[datetime] = mapped_column(server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(server_default=func.now())
