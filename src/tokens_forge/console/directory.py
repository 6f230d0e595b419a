"""The two things the console needs that no API endpoint lists, read-only:

- which accounts, projects and keys exist (the admin API gets and changes them one id at a
  time; the console lists them here with the domain's own `*_out` shapes, and takes every
  balance from `GET /admin/v1/accounts/{id}`);
- spend per UTC day per bucket for the overview chart: the usage records' own statement
  (`records.queries.USAGE_SQL`, what `GET /v1/usage` pages through), summed by day in the
  database instead of paging every row to the browser."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tokens_forge.accounts.models import Account, Project
from tokens_forge.accounts.service import account_out, project_out
from tokens_forge.keys.models import ApiKey
from tokens_forge.keys.service import key_out
from tokens_forge.records.filters import BUCKETS, RecordFilters
from tokens_forge.records.queries import USAGE_SQL, statement


async def list_accounts(session: AsyncSession, *, limit: int, offset: int, q: str | None) -> tuple[list[dict], bool]:
    """Newest first; `q` matches the id or a part of the name. Returns the page and whether more follow."""
    stmt = select(Account).order_by(Account.created_at.desc(), Account.id.desc())
    if q:
        stmt = stmt.where(or_(Account.id == q, Account.name.ilike(f"%{_like(q)}%", escape="\\")))
    rows = list((await session.execute(stmt.offset(offset).limit(limit + 1))).scalars())
    return [account_out(a) for a in rows[:limit]], len(rows) > limit


async def count_accounts(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(Account))).scalar_one())


async def list_projects(session: AsyncSession, account_id: str) -> list[dict]:
    stmt = select(Project).where(Project.account_id == account_id).order_by(Project.created_at, Project.id)
    return [project_out(p) for p in (await session.execute(stmt)).scalars()]


async def list_keys(session: AsyncSession, account_id: str) -> list[dict]:
    stmt = select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.created_at, ApiKey.id)
    return [key_out(k) for k in (await session.execute(stmt)).scalars()]


def _like(q: str) -> str:
    return q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def daily_spend(conn: AsyncConnection, account_id: str, days: int = 30,
                      today: date | None = None) -> list[dict]:
    """`days` rows, oldest first: {"day", "credit", "routed"} micros charged that UTC day."""
    today = today or datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    since = datetime(first.year, first.month, first.day, tzinfo=UTC)
    usage, params = statement(USAGE_SQL, RecordFilters(account_id, since=since), None, None)
    rows = (await conn.execute(text(f"""
        SELECT (u.created_at AT TIME ZONE 'UTC')::date AS day, u.bucket, sum(u.charged_micros) AS micros
          FROM ({usage.text}) u
         WHERE u.bucket IS NOT NULL
         GROUP BY 1, 2"""), params)).all()
    by_day = {(r.day, r.bucket): int(r.micros) for r in rows}
    return [{"day": d.isoformat(), **{b: by_day.get((d, b), 0) for b in BUCKETS}}
            for d in (first + timedelta(days=i) for i in range(days))]
