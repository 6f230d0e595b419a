"""Filters shared by the record lists and their exports (time range, model, route kind, bucket,
run, status, key), checked before any query runs."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

from tokens_forge.errors import InvalidRequest

ROUTE_KINDS = ("official", "routed")
BUCKETS = ("credit", "routed")


@dataclass(frozen=True)
class RecordFilters:
    account_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    route_kind: str | None = None
    bucket: str | None = None
    run_id: str | None = None
    status: str | None = None
    key_id: str | None = None

    def check(self, statuses: tuple[str, ...]) -> RecordFilters:
        check_storable(**{f.name: getattr(self, f.name) for f in fields(self)})
        if self.route_kind is not None and self.route_kind not in ROUTE_KINDS:
            raise InvalidRequest("route_kind must be official or routed", param="route_kind")
        if self.bucket is not None and self.bucket not in BUCKETS:
            raise InvalidRequest("bucket must be credit or routed", param="bucket")
        if self.status is not None and self.status not in statuses:
            raise InvalidRequest(f"status must be one of {', '.join(statuses)}", param="status")
        if self.since and self.until and self.since > self.until:
            raise InvalidRequest("since must not be after until", param="since")
        return self

    def params(self) -> dict:
        return {"a": self.account_id, "since": self.since, "until": self.until, "model": self.model,
                "kind": self.route_kind, "bucket": self.bucket, "run": self.run_id, "status": self.status,
                "key": self.key_id}


def check_storable(**values: object) -> None:
    """Refuse what PostgreSQL cannot take before any query runs: an export answers 200 with its
    first byte, so a query that fails later would cut the answer instead of refusing it."""
    for name, value in values.items():
        if isinstance(value, str) and "\x00" in value:
            raise InvalidRequest(f"{name} contains a NUL character, which no stored value has", param=name)
        if isinstance(value, datetime):
            try:
                value.astimezone(UTC)
            except OverflowError:
                raise InvalidRequest(f"{name} is out of range once converted to UTC", param=name) from None
