from datetime import datetime

from sqlalchemy import BigInteger, Double, ForeignKey, ForeignKeyConstraint, Index, func, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import Text

from tokens_forge.db.base import Base


class Route(Base):
    __tablename__ = "routes"
    __table_args__ = (
        # Deferred: a route and its first price snapshot reference each other, written in one transaction.
        ForeignKeyConstraint(["price_snapshot_id"], ["price_snapshots.id"], name="routes_price_snapshot_fk",
                             use_alter=True, deferrable=True, initially="DEFERRED"),
        Index("routes_model", "model", "priority"),
    )

    id: Mapped[str] = mapped_column(primary_key=True)
    model: Mapped[str]
    kind: Mapped[str]
    base_url: Mapped[str]
    upstream_model: Mapped[str]
    upstream_api_key: Mapped[str | None]  # write-only: never serialised
    upstream_api_key_env: Mapped[str | None]
    price_snapshot_id: Mapped[str | None]
    failed_charge_mode: Mapped[str] = mapped_column(default="none", server_default=text("'none'::text"))
    failed_charge_flat_micros: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    timeout_s: Mapped[float] = mapped_column(Double, default=60.0, server_default=text("60"))
    priority: Mapped[int] = mapped_column(default=100, server_default=text("100"))
    enabled: Mapped[bool] = mapped_column(default=True, server_default=text("true"))
    image_low_tokens: Mapped[int] = mapped_column(BigInteger, default=2833, server_default=text("2833"))
    image_high_tokens: Mapped[int] = mapped_column(BigInteger, default=48169, server_default=text("48169"))
    file_tokens: Mapped[int | None] = mapped_column(BigInteger)
    apis: Mapped[list[str]] = mapped_column(ARRAY(Text), default=lambda: ["chat_completions"],
                                            server_default=text("ARRAY['chat_completions'::text]"))
    output_cap_param: Mapped[str] = mapped_column(default="max_completion_tokens",
                                                  server_default=text("'max_completion_tokens'::text"))
    config_name: Mapped[str | None] = mapped_column(unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class PriceSnapshot(Base):
    __tablename__ = "price_snapshots"
    __table_args__ = (Index("price_snapshots_route", "route_id", "created_at"),)

    id: Mapped[str] = mapped_column(primary_key=True)
    route_id: Mapped[str] = mapped_column(ForeignKey("routes.id"))
    input_per_mtok: Mapped[int] = mapped_column(BigInteger)
    output_per_mtok: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.clock_timestamp())
