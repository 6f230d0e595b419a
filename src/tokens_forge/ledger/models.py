"""Ledger tables (LEDGER.md): accounts with running totals, immutable transfers, holds, and the
spend counters that enforce caps. Written by the plpgsql functions of migration 0001."""

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, func
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
    debits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    credits_posted: Mapped[int] = mapped_column(BigInteger, default=0)
    no_overdraft: Mapped[bool]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Transfer(Base):
    __tablename__ = "transfers"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    debit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    credit_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str]
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    bucket: Mapped[str]
    hold_id: Mapped[int | None] = mapped_column(BigInteger)
    receipt_id: Mapped[str | None]
    attempt_no: Mapped[int | None]
    run_id: Mapped[str | None]
    reference: Mapped[str | None]
    reason: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())


class Hold(Base):
    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[str]
    bucket: Mapped[str]
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str]
    charged: Mapped[int | None] = mapped_column(BigInteger)
    counter_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    receipt_id: Mapped[str]
    attempt_no: Mapped[int]
    run_id: Mapped[str | None]
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    resolved_at: Mapped[datetime | None]


class SpendCounter(Base):
    __tablename__ = "spend_counters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[str]
    scope: Mapped[str]
    owner_id: Mapped[str]
    period: Mapped[str]
    pending_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    posted_micros: Mapped[int] = mapped_column(BigInteger, default=0)
