"""Seed the demo: an account funded in both buckets, a project, a key, and an `official` and a
`routed` route for the model `demo-mini` pointing at the built-in mock upstream (chat completions
only: /v1/responses is translated onto them), and an embeddings model `demo-embed`. Re-running
reuses the account and routes and makes a fresh key (a secret is only ever shown once)."""

from __future__ import annotations

from sqlalchemy import select

from tokens_forge.accounts import service as accounts
from tokens_forge.accounts.models import Account, Project
from tokens_forge.accounts.schemas import AccountCreate, ProjectCreate
from tokens_forge.db.engine import make_engine, make_sessionmaker
from tokens_forge.keys.schemas import KeyCreate, RetryPolicy
from tokens_forge.keys.service import create_key
from tokens_forge.ledger import service as ledger
from tokens_forge.routing import service as routes
from tokens_forge.routing.models import Route
from tokens_forge.routing.schemas import Api, PriceIn, RouteCreate, RouteKind, RouteUpdate

ACTOR = "demo"
DEMO_MODEL = "demo-mini"
EMBED_MODEL = "demo-embed"
# (config name, model, kind, priority, price, the upstream APIs the route speaks)
ROUTES: list[tuple[str, str, RouteKind, int, PriceIn, list[Api]]] = [("demo-official", DEMO_MODEL, "official", 1, PriceIn(input_per_mtok=150_000, output_per_mtok=600_000),
           ["chat_completions"]),
          ("demo-routed", DEMO_MODEL, "routed", 2, PriceIn(input_per_mtok=60_000, output_per_mtok=240_000),
           ["chat_completions"]),
          ("demo-embed", EMBED_MODEL, "official", 1, PriceIn(input_per_mtok=20_000, output_per_mtok=0),
           ["embeddings"])]


async def seed_demo(url: str, mock_base: str) -> str:
    engine = make_engine(url, pool_size=1, max_overflow=0)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            account = (await session.execute(select(Account).where(Account.name == "demo"))).scalars().first()
            if account is None:
                account = await accounts.create_account(session, AccountCreate(name="demo"), ACTOR)
            for bucket in ("credit", "routed"):
                await ledger.topup(session, account_id=account.id, bucket=bucket, amount=10_000_000,
                                   reference=f"demo-welcome-{bucket}")
            project = (await session.execute(select(Project).where(Project.account_id == account.id))).scalars().first()
            if project is None:
                project = await accounts.create_project(
                    session, ProjectCreate(account_id=account.id, name="demo"), ACTOR)
            for name, model, kind, priority, price, apis in ROUTES:
                existing = (await session.execute(select(Route).where(Route.config_name == name))).scalar_one_or_none()
                if existing is None:
                    await routes.create_route(session, RouteCreate(
                        model=model, kind=kind, base_url=mock_base, upstream_model="mock",
                        upstream_api_key="sk-mock", price=price, priority=priority, timeout_s=30, apis=apis), ACTOR,
                        config_name=name)
                else:
                    await routes.update_route(session, existing.id, RouteUpdate(base_url=mock_base), ACTOR)
            _, secret = await create_key(session, KeyCreate(
                project_id=project.id, name="demo", fallback_policy="any_bucket",
                retry_policy=RetryPolicy(max_attempts=2, retry_on=["timeout", "connect_error", "http_5xx"],
                                         backoff_ms=100)), ACTOR)
            return secret
    finally:
        await engine.dispose()
