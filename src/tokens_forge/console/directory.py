"""What the console needs that no API endpoint lists, read-only:

- which accounts, projects and keys exist (the admin API gets and changes them one id at a
  time; the console lists them here with the domain's own `*_out` shapes, and takes every
  balance from `GET /admin/v1/accounts/{id}`);
- the names to show beside ids (keys, projects, routes, accounts): `names`;
- spend per UTC day per bucket (`daily_spend`): the usage summary's own statement
  (`records.queries.summary_statement`, what `GET /v1/usage/summary?by=day` answers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tokens_forge.accounts.models import Account, Project
from tokens_forge.accounts.service import account_out, project_out
from tokens_forge.console.charts import days_from_summary
from tokens_forge.keys.models import ApiKey
from tokens_forge.keys.service import key_out
from tokens_forge.records.filters import RecordFilters
from tokens_forge.records.queries import summary_statement


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
    stmt, params = summary_statement(RecordFilters(account_id, since=since), "day")
    rows = [dict(r._mapping) for r in (await conn.execute(stmt, params)).all()]
    return days_from_summary(rows, today, days)


@dataclass(frozen=True)
class Names:
    """id -> name of what a page shows (unknown ids show as themselves)."""
    keys: dict[str, str] = field(default_factory=dict)
    projects: dict[str, str] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    accounts: dict[str, str] = field(default_factory=dict)

    def of(self, ident: str | None) -> str | None:
        if not ident:
            return None
        for table in (self.keys, self.projects, self.routes, self.accounts):
            if ident in table:
                return table[ident]
        return None


_NAMES = text("""
    SELECT 'key' AS what, id, name FROM api_keys WHERE CAST(:a AS TEXT) IS NULL OR account_id = :a
    UNION ALL
    SELECT 'project', id, name FROM projects WHERE CAST(:a AS TEXT) IS NULL OR account_id = :a
    UNION ALL
    SELECT 'account', id, name FROM accounts WHERE CAST(:a AS TEXT) IS NULL OR id = :a
    UNION ALL
    SELECT 'route', id, coalesce(config_name, model || ' · ' || kind) FROM routes""")


async def names(conn: AsyncConnection, account_id: str | None) -> Names:
    """The names of one account's keys and projects (None: every account's) and of every route."""
    out = Names()
    tables = {"key": out.keys, "project": out.projects, "route": out.routes, "account": out.accounts}
    for r in await conn.execute(_NAMES, {"a": account_id}):
        tables[r.what][r.id] = r.name
    return out
