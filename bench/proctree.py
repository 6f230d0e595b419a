"""A process and its descendants from /proc: resident memory and CPU time. A server with workers
(uvicorn's supervisor, LiteLLM, nginx) is measured as the whole tree.

  python bench/proctree.py snapshot PID              CPU used so far: PID's tree, and the whole machine
  python bench/proctree.py delta PID SNAPSHOT OUT    what was used since SNAPSHOT, as JSON in OUT
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        # The command name may contain spaces and parentheses: split after the last ')'.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None  # the process ended while we looked


def process_tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def rss_kb(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB
    except (OSError, IndexError):
        return 0


def role(pid: int) -> str:
    """What a process of a server's tree is, from its command line (uvicorn spawns its workers)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"pid {pid}"
    if "resource_tracker" in cmdline:
        return f"resource tracker {pid}"
    return f"{'worker' if 'multiprocessing' in cmdline else 'server'} {pid}"


def tree_rss_kb(root: int) -> dict[str, int]:
    """RSS per process of the tree, keyed by role and pid."""
    return {role(pid): rss_kb(pid) for pid in process_tree(root)}


def tree_cpu_s(root: int) -> float:
    """utime + stime of every live process of the tree (fields 14 and 15 of /proc/PID/stat)."""
    total = 0
    for pid in process_tree(root):
        if fields := _stat_fields(pid):
            total += int(fields[11]) + int(fields[12])
    return total / TICKS


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot, from the first line of /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def snapshot(root: int) -> dict:
    busy, total = machine_ticks()
    return {"tree_cpu_s": tree_cpu_s(root), "busy": busy, "total": total}


def delta(root: int, before: dict) -> dict:
    """CPU seconds the tree used since `before`, and how busy the whole machine was meanwhile
    (the target, the load generator and anything else running)."""
    now = snapshot(root)
    return {"cpu_s": round(now["tree_cpu_s"] - before["tree_cpu_s"], 2),
            "machine_busy_pct": round(100 * (now["busy"] - before["busy"]) / max(now["total"] - before["total"], 1), 1)}


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "snapshot":
        print(json.dumps(snapshot(int(sys.argv[2]))))
    elif len(sys.argv) == 5 and sys.argv[1] == "delta":
        with open(sys.argv[4], "w") as f:
            json.dump(delta(int(sys.argv[2]), json.loads(sys.argv[3])), f)
    else:
        sys.exit(__doc__)
