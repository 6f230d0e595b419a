#!/usr/bin/env bash
# `bench/ab.sh`: is B faster than A? On a shared or drifting VM one run of each proves nothing (the
# same build moves 20-40 % between rounds), so this alternates A and B for BENCH_ROUNDS rounds (even) of
# bench/quick.sh and prints, per cell, the median RPS and the median CPU per request of the gateway
# and of PostgreSQL of each (CPU per request is the steadier measure). A variant is a list of words:
# VAR=VALUE settings for the gateway, and sql=FILE for a schema variant run after seeding.
#   BENCH_A="" BENCH_B="sql=bench/sql/without_hot_foreign_keys.sql" BENCH_ROUNDS=3 bash bench/ab.sh
# BENCH_WORKERS, BENCH_CONNS, BENCH_MODES and BENCH_DURATION go to quick.sh as they are.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROUNDS=${BENCH_ROUNDS:-3}
OUT=$(mktemp -d /tmp/tf-ab.XXXXXX)

run_variant() {  # run_variant NAME ROUND WORDS...
  local name=$1 round=$2 env=() sql= word; shift 2
  for word in "$@"; do
    if [[ $word == sql=* ]]; then sql=${word#sql=}; else env+=("$word"); fi
  done
  echo "[ab] round $round: $name ${*:-(as it is)}" >&2
  BENCH_GATEWAY_ENV="${env[*]:-}" BENCH_SQL="$sql" bash "$HERE/quick.sh" 2>&1 |
    grep -E '^(json|sse) ' | sed "s/^/$name /" >>"$OUT/cells.txt"
}

# shellcheck disable=SC2086  # a variant is a list of words
# The order flips every round (A B, B A, ...), so that a drift of the machine within a round is not
# credited to the variant that always runs second.
for round in $(seq 1 "$ROUNDS"); do
  if ((round % 2)); then
    run_variant A "$round" ${BENCH_A:-}; run_variant B "$round" ${BENCH_B:-}
  else
    run_variant B "$round" ${BENCH_B:-}; run_variant A "$round" ${BENCH_A:-}
  fi
done

python3 - "$OUT/cells.txt" "${BENCH_A:-}" "${BENCH_B:-}" <<'PY'
import re, statistics, sys
cells = {}
for line in open(sys.argv[1]):
    m = re.match(r"(A|B) (\w+)\s+c=\s*(\d+)\s+rps=\s*([\d.]+).*gw_cpu_ms=([\d.]+)\s+pg_cpu_ms=([\d.]+)", line)
    if m:
        v, mode, conns, *nums = m.groups()
        cells.setdefault((mode, int(conns)), {}).setdefault(v, []).append([float(x) for x in nums])
print(f"A: {sys.argv[2] or '(as it is)'}\nB: {sys.argv[3] or '(as it is)'}")
print("| mode | conns | RPS A | RPS B | B/A | gateway ms/req A / B | PostgreSQL ms/req A / B | rounds |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for (mode, conns), runs in sorted(cells.items()):
    med = {v: [statistics.median(col) for col in zip(*rows)] for v, rows in runs.items()}
    if set(med) != {"A", "B"}:
        continue
    (ra, ga, pa), (rb, gb, pb) = med["A"], med["B"]
    print(f"| {mode} | {conns} | {ra:.0f} | {rb:.0f} | {rb / ra:.2f}× | {ga:.3f} / {gb:.3f} | {pa:.3f} / {pb:.3f} | "
          f"{len(runs['A'])} |")
PY
rm -rf "$OUT"
