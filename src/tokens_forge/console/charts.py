"""The overview's spend chart as plain SVG geometry (presentation only: the amounts come from
`directory.daily_spend`, i.e. from the usage records)."""

from __future__ import annotations

WIDTH, HEIGHT, TOP, BOTTOM, LEFT = 600, 180, 12, 22, 4
BUCKETS = ("credit", "routed")


def spend_chart(days: list[dict]) -> dict:
    """Two bars per day (credit, routed), scaled to the largest day; labels every 7th day."""
    peak = max([d[b] for d in days for b in BUCKETS] + [0])
    plot = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT) / max(len(days), 1)
    bar = max(slot / 2 - 1, 1)
    bars, labels = [], []
    for i, d in enumerate(days):
        for j, b in enumerate(BUCKETS):
            h = 0 if peak == 0 else round(d[b] * plot / peak)
            h = max(h, 1) if d[b] else 0
            bars.append({"x": round(LEFT + i * slot + j * (bar + 1), 1), "y": TOP + plot - h, "w": round(bar, 1),
                         "h": h, "bucket": b, "day": d["day"], "micros": d[b]})
        if i % 7 == 0 or i == len(days) - 1:
            labels.append({"x": round(LEFT + i * slot, 1), "text": d["day"][5:]})
    return {"width": WIDTH, "height": HEIGHT, "baseline": HEIGHT - BOTTOM, "peak": peak, "bars": bars,
            "labels": labels, "total": {b: sum(d[b] for d in days) for b in BUCKETS}}
