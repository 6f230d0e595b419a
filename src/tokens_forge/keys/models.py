from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tokens_forge.db.base import Base


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    project_id: Mapped[str] = mapped_column(ForeignKey("projects.id"))
    name: Mapped[str]
    secret_hash: Mapped[str] = mapped_column(unique=True)
    prefix: Mapped[str]
    daily_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    total_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    per_request_limit_micros: Mapped[int | None] = mapped_column(BigInteger)
    min_balance_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    requests_per_minute: Mapped[int | None]
    tokens_per_minute: Mapped[int | None] = mapped_column(BigInteger)
    allowed_models: Mapped[list[str] | None] = mapped_column(ARRAY(String))
    allowed_route_kinds: Mapped[list[str]] = mapped_column(ARRAY(String))
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    fallback_policy: Mapped[str]
    status: Mapped[str] = mapped_column(default="active")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    revoked_at: Mapped[datetime | None]
