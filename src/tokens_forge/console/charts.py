"""The overview's spend chart and breakdown tables (presentation only: every amount comes from
the usage summaries, i.e. from the ledger's charge transfers per bucket)."""

from __future__ import annotations

from datetime import date, timedelta

WIDTH, HEIGHT, TOP, BOTTOM, LEFT = 600, 160, 12, 4, 0
BUCKETS = ("credit", "routed")
LABEL_EVERY = 7  # days between date labels, counted back from today so the last two never collide


def days_from_summary(rows: list[dict], today: date, days: int = 30) -> list[dict]:
    """`days` rows, oldest first: {"day", "credit", "routed"} micros, from a `by=day` summary."""
    first = today - timedelta(days=days - 1)
    by_day = {(r["group"], r["bucket"]): int(r["charged_micros"]) for r in rows if r["bucket"]}
    return [{"day": d.isoformat(), **{b: by_day.get((d.isoformat(), b), 0) for b in BUCKETS}}
            for d in (first + timedelta(days=i) for i in range(days))]


def spend_chart(days: list[dict]) -> dict:
    """Two bars per day (credit, routed), scaled to the largest day. Date labels are HTML under the
    SVG, in a grid of one column per day (`col`), so they keep their size on a phone and line up
    with their day's bars: one every `LABEL_EVERY` days back from the last, never two close
    together; every other one is `minor` (hidden on very narrow screens)."""
    peak = max([d[b] for d in days for b in BUCKETS] + [0])
    plot = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bar = max(slot / 2 - 1, 1)
    bars, labels = [], []
    last = len(days) - 1
    for i, d in enumerate(days):
        for j, b in enumerate(BUCKETS):
            h = 0 if peak == 0 else round(d[b] * plot / peak)
            h = max(h, 1) if d[b] else 0
            bars.append({"x": round(LEFT + i * slot + j * (bar + 1), 1), "y": TOP + plot - h, "w": round(bar, 1),
                         "h": h, "bucket": b, "day": d["day"], "micros": d[b]})
        back = last - i
        if back % LABEL_EVERY == 0:
            labels.append({"col": i + 1, "text": d["day"][5:], "day": d["day"],
                           "minor": back % (2 * LABEL_EVERY) != 0})
    return {"width": WIDTH, "height": HEIGHT, "baseline": HEIGHT - BOTTOM, "peak": peak, "bars": bars,
            "labels": labels, "total": {b: sum(d[b] for d in days) for b in BUCKETS}}


def breakdown(rows: list[dict]) -> list[dict]:
    """A summary's rows (one per group and bucket) as one line per group, largest total first:
    {"group", "credit", "routed", "total", "prompt_tokens", "completion_tokens"}. (A summary's
    `requests` count per bucket, so a request paid from both buckets would count twice: left out.)"""
    out: dict[str, dict] = {}
    for r in rows:
        g = out.setdefault(r["group"], {"group": r["group"], "credit": 0, "routed": 0, "total": 0,
                                        "prompt_tokens": 0, "completion_tokens": 0})
        if r["bucket"] in BUCKETS:
            g[r["bucket"]] += int(r["charged_micros"])
        g["total"] += int(r["charged_micros"])
        g["prompt_tokens"] += int(r["prompt_tokens"])
        g["completion_tokens"] += int(r["completion_tokens"])
    return sorted(out.values(), key=lambda g: (-g["total"], str(g["group"])))
