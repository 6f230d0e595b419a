"""Summarise a py-spy `--format raw` profile (collapsed stacks: `frame;frame;… count`) into the few
tables that say where the time goes: by package, the gateway's own functions (inclusive), and the
hottest frames (self). Used by bench/report.py."""

from __future__ import annotations

import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*) \((?P<path>.*?)(?::\d+)?\)$")


def _short_path(path: str) -> str:
    """`…/site-packages/sqlalchemy/engine/base.py` -> `sqlalchemy/engine/base.py`."""
    for marker in ("site-packages/", "/src/", "/lib/python3."):
        if marker in path:
            rest = path.split(marker, 1)[1]
            return rest.split("/", 1)[1] if marker == "/lib/python3." else rest
    return path


def package(path: str) -> str:
    short = _short_path(path)
    head = short.split("/", 1)[0]
    if head.endswith(".py"):
        head = head[:-3]
    if "tokens_forge" in path:
        return "tokens_forge (gateway code)"
    if "/lib/python3." in path and "site-packages" not in path:
        return f"stdlib {head}"
    return head


def frame_name(frame: str) -> tuple[str, str]:
    """(display name without line number, package) of one `func (path:line)` frame."""
    m = FRAME.match(frame)
    if not m:
        return frame, "other"
    path = m.group("path")
    return f"{m.group('func')} ({_short_path(path)})", package(path)


# What each sample was doing, by the first marker found in its stack (most specific first).
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("asyncpg pool: reset query on every release", ("Connection.reset (asyncpg",)),
    ("DB: group commit of reservations and settles", ("LedgerWriter.",)),
    ("DB: open_attempt (receipt + reserve)", ("open_attempt (tokens_forge",)),
    ("DB: finish_attempt (settle + receipt)", ("finish_attempt (tokens_forge",)),
    ("background tasks (sweeper, health, runs)", ("Background.",)),
    ("auth (key cache)", ("require_key (tokens_forge",)),
    ("upstream call (aiohttp: connect, send, read)", ("complete (tokens_forge/upstream", "open_stream (tokens_forge/upstream")),
    ("stream relay (upstream reads, SSE split/parse, writes)", ("StreamRelay.", "RelayResponse.")),
    ("request parsing and routing", ("parse_chat_request", "read_body (tokens_forge", "plan_routes")),
    ("DB: other gateway queries", ("(asyncpg/", "(sqlalchemy/")),
    ("other gateway code", ("tokens_forge",)),
    ("HTTP server and framework (uvicorn, FastAPI, Starlette)", ("(uvicorn/", "(fastapi/", "(starlette/")),
    ("process supervisor and threads", ("(multiprocessing/", "(threading.py")),
]
EVENT_LOOP = "event loop internals (uvloop, asyncio)"


def stage(frames: list[str]) -> str:
    for label, markers in STAGES:
        if any(m in f for f in frames for m in markers):
            return label
    return EVENT_LOOP


def parse(raw: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames:
            stacks.append((frames, int(count)))
    return stacks


def summarize(raw: str) -> dict:
    stacks = parse(raw)
    total = sum(n for _, n in stacks) or 1
    by_package: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    for frames, n in stacks:
        stages[stage(frames)] += n
        name, pkg = frame_name(frames[-1])
        by_package[pkg] += n
        self_time[name] += n
        seen = set()
        for f in frames:
            fname, fpkg = frame_name(f)
            if fpkg.startswith("tokens_forge") and fname not in seen:
                seen.add(fname)
                inclusive[fname] += n

    def pct(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, 100 * v / total) for k, v in c.most_common()]

    return {"samples": total, "stages": pct(stages), "by_package": pct(by_package), "self": pct(self_time),
            "gateway_inclusive": pct(inclusive)}
