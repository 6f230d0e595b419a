from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from tokens_forge.db.base import Base


class Route(Base):
    __tablename__ = "routes"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    model: Mapped[str]
    kind: Mapped[str]
    base_url: Mapped[str]
    upstream_model: Mapped[str]
    upstream_api_key: Mapped[str | None]  # write-only: never serialised
    upstream_api_key_env: Mapped[str | None]
    price_snapshot_id: Mapped[str | None] = mapped_column(ForeignKey("price_snapshots.id"))
    failed_charge_mode: Mapped[str] = mapped_column(default="none")
    failed_charge_flat_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    timeout_s: Mapped[float] = mapped_column(default=60.0)
    priority: Mapped[int] = mapped_column(default=100)
    enabled: Mapped[bool] = mapped_column(default=True)
    image_low_tokens: Mapped[int] = mapped_column(BigInteger, default=2833)
    image_high_tokens: Mapped[int] = mapped_column(BigInteger, default=48169)
    file_tokens: Mapped[int | None] = mapped_column(BigInteger)
    apis: Mapped[list[str]] = mapped_column(ARRAY(String), default=lambda: ["chat_completions"])
    output_cap_param: Mapped[str] = mapped_column(default="max_completion_tokens")
    config_name: Mapped[str | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class PriceSnapshot(Base):
    __tablename__ = "price_snapshots"

    id: Mapped[str] = mapped_column(String, primary_key=True)
    route_id: Mapped[str] = mapped_column(ForeignKey("routes.id", use_alter=True))
    input_per_mtok: Mapped[int] = mapped_column(BigInteger)
    output_per_mtok: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
