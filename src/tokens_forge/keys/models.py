"""Keys, their rate-limit windows and the console's sessions. Tenant tables are keyed by
(id, account_id) and reference each other through the account (migration 0010)."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, ForeignKeyConstraint, Index, UniqueConstraint, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Text

from tokens_forge.db.base import Base


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("secret_hash", "account_id"),
        ForeignKeyConstraint(["project_id", "account_id"], ["projects.id", "projects.account_id"]),
        Index("api_keys_account", "account_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    project_id: Mapped[str]
    name: Mapped[str]
    secret_hash: Mapped[str]
    prefix: Mapped[str]
    daily_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    total_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    per_request_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    min_balance_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    requests_per_minute: Mapped[int | None]
    tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger)
    allowed_models: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    allowed_route_kinds: Mapped[list[str]] = mapped_column(
        ARRAY(Text), server_default=text("ARRAY['official'::text, 'routed'::text]"))
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    fallback_policy: Mapped[str] = mapped_column(server_default=text("'none'::text"))
    status: Mapped[str] = mapped_column(default="active", server_default=text("'active'::text"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]


class KeyRateLimit(Base):
    """A key's current minute of requests and tokens (0009), written by keys/rate_limits.py."""

    __tablename__ = "key_rate_limits"
    __table_args__ = (
        ForeignKeyConstraint(["key_id", "account_id"], ["api_keys.id", "api_keys.account_id"],
                             name="key_rate_limits_key_id_account_id_fkey"),
    )

    key_id: Mapped[str] = mapped_column(primary_key=True)
    account_id: Mapped[str] = mapped_column(primary_key=True)
    requests_used: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    tokens_used: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class ConsoleSession(Base):
    """A console sign-in (0008), written by keys/sessions.py: only the session id's SHA-256 is kept."""

    __tablename__ = "console_sessions"
    __table_args__ = (
        ForeignKeyConstraint(["key_id", "account_id"], ["api_keys.id", "api_keys.account_id"]),
        Index("console_sessions_expiry", "expires_at"),
        Index("console_sessions_live_key", "key_id", postgresql_where=text("revoked_at IS NULL")),
    )

    token_hash: Mapped[str] = mapped_column(primary_key=True)
    kind: Mapped[str]
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[str | None]
    admin_check: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None]
