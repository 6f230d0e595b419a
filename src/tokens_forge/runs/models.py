from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, ForeignKeyConstraint, Index, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tokens_forge.db.base import Base


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        ForeignKeyConstraint(["project_id", "account_id"], ["projects.id", "projects.account_id"]),
        ForeignKeyConstraint(["key_id", "account_id"], ["api_keys.id", "api_keys.account_id"]),
        Index("runs_account", "account_id", text("created_at DESC")),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    project_id: Mapped[str]
    key_id: Mapped[str]
    name: Mapped[str | None]
    model: Mapped[str]
    mode: Mapped[str]
    budget_micros: Mapped[int] = mapped_column(BigInteger)
    route_preference: Mapped[str] = mapped_column(default="auto", server_default=text("'auto'::text"))
    status: Mapped[str] = mapped_column(default="ready", server_default=text("'ready'::text"))
    preflight: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_activity_at: Mapped[datetime | None]
