"""BENCHMARKS.md sections of the scale-out figures: reserve + settle through PgBouncer beside
the same cells on PostgreSQL directly (bench/ledger_bench.py --through direct,pgbouncer), and what
turning prepared statements off and the pooler's hop cost one call (bench/pooler_cost.py)."""

from __future__ import annotations


def _ms(v: float) -> str:
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 100 else f"{v:.0f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    return [*out, *("| " + " | ".join(r) + " |" for r in rows), ""]


def section_pgbouncer(ledger: dict | None, cost: dict | None) -> list[str]:
    lines = ["## Reserve + settle through PgBouncer", ""]
    cells = (ledger or {}).get("cells", [])
    pooled = {(c["keys"], c["conc"]): c for c in cells if c.get("through") == "pgbouncer"}
    if not pooled and cost is None:
        return [*lines, "Not measured in this run (PgBouncer missing?).", ""]
    if pooled:
        lines += ["The cells above again, in the same run, through PgBouncer 1.18 (Debian's) in transaction "
                  "pooling mode in front of the same server (`default_pool_size = 20`), the pool set up as the "
                  "gateway sets it up there: asyncpg's statement cache off (SPEC §10, `TF_DATABASE_POOLER`).", ""]
        rows = []
        for c in cells:
            p = pooled.get((c["keys"], c["conc"])) if c.get("through", "direct") == "direct" else None
            if p is not None:
                rows.append([c["keys"], str(c["conc"]), f"{c['pairs_per_s']:.0f}", f"{p['pairs_per_s']:.0f}",
                             f"{p['pairs_per_s'] / c['pairs_per_s']:.2f}" if c["pairs_per_s"] else "–",
                             _ms(c["p50_ms"]), _ms(p["p50_ms"]), str(sum(p["errors"].values()))])
        lines += _table(["keys", "connections", "direct pairs/s", "PgBouncer pairs/s", "PgBouncer / direct",
                         "direct p50", "PgBouncer p50", "errors"], rows)
    if cost is not None:
        lines += ["`bench/pooler_cost.py`: one call at a time on one connection, the set-ups taking turns "
                  "(ten rounds), median and p99 in µs: a one-row lookup by key (what key and route lookups "
                  "cost on a cache miss) and one reserve + settle pair.", ""]
        rows = [[r["setup"], _ms(r["lookup"]["median_us"]), _ms(r["lookup"]["p99_us"]),
                 _ms(r["reserve_settle"]["median_us"]), _ms(r["reserve_settle"]["p99_us"])] for r in cost["rows"]]
        lines += _table(["set-up", "lookup median", "lookup p99", "reserve+settle median", "reserve+settle p99"],
                        rows)
    return lines
