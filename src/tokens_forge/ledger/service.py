"""Money in and out of a tenant's wallet: ledger accounts, top-ups, adjustments, balances.

Every function runs inside the caller's transaction; the caller commits. Locks are explicit
(`FOR NO KEY UPDATE` in ledger-account id order, the same order the plpgsql functions use)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tokens_forge.errors import Conflict, InvalidRequest

BUCKETS = ("credit", "routed")


@dataclass(frozen=True)
class BucketBalance:
    posted_micros: int
    held_micros: int
    available_micros: int

    def as_dict(self) -> dict[str, int]:
        return {"posted_micros": self.posted_micros, "held_micros": self.held_micros,
                "available_micros": self.available_micros}


async def open_wallet(session: AsyncSession, account_id: str) -> None:
    """The four ledger accounts of a new tenant: a wallet and a hold account per bucket."""
    await session.execute(
        text("""INSERT INTO ledger_accounts (code, account_id, kind, bucket, no_overdraft)
                SELECT kind || ':' || :a || ':' || b, :a, kind, b, true
                  FROM unnest(ARRAY['wallet','hold']) kind, unnest(ARRAY['credit','routed']) b"""),
        {"a": account_id},
    )


async def balances(conn: AsyncSession | AsyncConnection, account_id: str) -> dict[str, BucketBalance]:
    rows = (await conn.execute(
        text("""SELECT kind, bucket, credits_posted - debits_posted AS balance
                  FROM ledger_accounts WHERE account_id = :a"""),
        {"a": account_id},
    )).all()
    by = {(r.kind, r.bucket): int(r.balance) for r in rows}
    out = {}
    for b in BUCKETS:
        available, held = by.get(("wallet", b), 0), by.get(("hold", b), 0)
        out[b] = BucketBalance(posted_micros=available + held, held_micros=held, available_micros=available)
    return out


async def _lock_accounts(session: AsyncSession, codes: list[str]) -> dict[str, int]:
    rows = (await session.execute(
        text("SELECT id, code FROM ledger_accounts WHERE code = ANY(:c) ORDER BY id FOR NO KEY UPDATE"),
        {"c": codes},
    )).all()
    return {r.code: r.id for r in rows}


async def _post(session: AsyncSession, *, debit: int, credit: int, amount: int, kind: str, account_id: str,
                bucket: str, reference: str | None = None, reason: str | None = None) -> int:
    return (await session.execute(
        text("SELECT tf_post(:d, :c, :amt, :k, :a, :b, NULL, NULL, NULL, NULL, :ref, :reason)"),
        {"d": debit, "c": credit, "amt": amount, "k": kind, "a": account_id, "b": bucket,
         "ref": reference, "reason": reason},
    )).scalar_one()


@dataclass(frozen=True)
class TopupResult:
    transfer_id: int
    created: bool
    amount_micros: int
    bucket: str


async def topup(session: AsyncSession, *, account_id: str, bucket: str, amount: int, reference: str) -> TopupResult:
    """Idempotent on (account, reference): a repeat returns the first transfer and posts nothing.

    Concurrent duplicates serialise on the wallet's row lock and then on the unique index
    `transfers_topup_reference`: whoever comes second finds the first and posts nothing."""
    wallet = f"wallet:{account_id}:{bucket}"
    ids = await _lock_accounts(session, ["funding", wallet])
    first = await _topup_by_reference(session, account_id, reference)
    if first is None:
        try:
            async with session.begin_nested():
                new_id = await _post(session, debit=ids["funding"], credit=ids[wallet], amount=amount, kind="topup",
                                     account_id=account_id, bucket=bucket, reference=reference)
                return TopupResult(new_id, True, amount, bucket)
        except IntegrityError:
            first = await _topup_by_reference(session, account_id, reference)
            if first is None:
                raise
    if first.amount != amount or first.bucket != bucket:
        raise Conflict(f"reference {reference!r} was already used for a top-up of {first.amount} micros "
                       f"to {first.bucket}; use a new reference", param="reference")
    return TopupResult(first.id, False, first.amount, first.bucket)


async def _topup_by_reference(session: AsyncSession, account_id: str, reference: str):
    return (await session.execute(
        text("SELECT id, amount, bucket FROM transfers WHERE kind = 'topup' AND account_id = :a AND reference = :r"),
        {"a": account_id, "r": reference},
    )).one_or_none()


async def adjust(session: AsyncSession, *, account_id: str, bucket: str, amount: int, reason: str) -> int:
    """A signed correction: positive credits the wallet from funding, negative returns money to
    funding. A debit larger than the available balance is refused (the wallet may not overdraw)."""
    wallet = f"wallet:{account_id}:{bucket}"
    ids = await _lock_accounts(session, ["funding", wallet])
    debit, credit = (ids["funding"], ids[wallet]) if amount > 0 else (ids[wallet], ids["funding"])
    try:
        async with session.begin_nested():
            return await _post(session, debit=debit, credit=credit, amount=abs(amount), kind="adjustment",
                               account_id=account_id, bucket=bucket, reason=reason)
    except IntegrityError as exc:
        available = (await balances(session, account_id))[bucket].available_micros
        raise InvalidRequest(f"a debit of {abs(amount)} micros exceeds the {bucket} bucket's available "
                             f"balance of {available} micros", param="amount_micros") from exc
