"""Run a hand-written SQL script statement by statement (asyncpg prepares each statement, so a
script with many statements must be split; `$$ … $$` bodies of functions are kept whole)."""

from __future__ import annotations

from collections.abc import Callable


def split_statements(script: str) -> list[str]:
    out, buf, in_dollar, in_quote = [], [], False, False
    i = 0
    while i < len(script):
        ch = script[i]
        if not in_quote and script.startswith("$$", i):
            in_dollar = not in_dollar
            buf.append("$$")
            i += 2
            continue
        if not in_dollar and ch == "'":
            in_quote = not in_quote
        if not in_dollar and not in_quote and script.startswith("--", i):
            end = script.find("\n", i)
            i = len(script) if end < 0 else end
            continue
        if ch == ";" and not in_dollar and not in_quote:
            stmt = "".join(buf).strip()
            if stmt:
                out.append(stmt)
            buf = []
        else:
            buf.append(ch)
        i += 1
    tail = "".join(buf).strip()
    if tail:
        out.append(tail)
    return out


def run_script(execute: Callable[[str], object], script: str) -> None:
    for stmt in split_statements(script):
        execute(stmt)
