"""An audit row's before/after as the fields that changed (presentation only)."""

from __future__ import annotations

from typing import Any

import orjson


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"limits": {"daily_micros": 5}} -> {"limits.daily_micros": 5}; lists and scalars are leaves."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value} if prefix else {}


def shown(value: Any) -> str:
    return orjson.dumps(value).decode() if not isinstance(value, str) else value


def audit_diff(before: dict | None, after: dict | None) -> list[dict]:
    """The fields whose value differs, in the order they appear: {"field", "change", "before", "after"}
    with `change` added, removed or changed (values as compact JSON)."""
    b, a = flatten(before or {}), flatten(after or {})
    fields = list(b) + [f for f in a if f not in b]
    out = []
    for f in fields:
        if f in b and f in a and b[f] == a[f]:
            continue
        change = "added" if f not in b else "removed" if f not in a else "changed"
        out.append({"field": f, "change": change, "before": shown(b[f]) if f in b else None,
                    "after": shown(a[f]) if f in a else None})
    return out
