#!/usr/bin/env bash
# `bench/quick.sh`: a fast loop for working on the hot path (not the report): nginx fake upstream,
# the gateway on a fresh database, wrk against the gateway only, and the CPU per request of the
# gateway and of PostgreSQL. BENCH_CONNS, BENCH_DURATION, BENCH_MODES ("json sse") as in run.sh;
# BENCH_STREAMS_QUICK=N then opens N slow streams at once and reports the gateway's memory;
# BENCH_OBS=1 measures what metrics, the request log and tracing cost (bench/results/observability.json).
# Experiments: BENCH_GATEWAY_ENV="TF_X=1 TF_Y=2" starts the gateway with these settings; BENCH_SQL=FILE
# runs FILE on the bench's throwaway database after seeding (a schema variant to measure, e.g.
# bench/sql/without_hot_foreign_keys.sql; BENCHMARKS.md, "Issue 17"). bench/ab.sh alternates two such
# variants over several rounds and compares their medians.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/run.sh"
DURATION=${BENCH_DURATION:-5}
CONNS=${BENCH_CONNS:-"1 16 64"}
MODES=${BENCH_MODES:-"json sse"}

pg_pid() {  # the PostgreSQL server's postmaster (the ordinary server; the bench's database lives there)
  head -n 1 "$(psql -Atq "$PG_SERVER/postgres" -c 'show data_directory')/postmaster.pid"
}

quick() {
  ensure_apt
  ulimit -n 65536 2>/dev/null || true
  RESULTS=$WORK/results; mkdir -p "$RESULTS/wrk"
  write_bodies
  start_nginx
  fresh_database
  start gateway-mock "$TF" mock-upstream --host 127.0.0.1 --port "$PORT_MOCK"
  # shellcheck disable=SC2086  # BENCH_GATEWAY_ENV is a list of VAR=VALUE words
  start_gateway gateway "$PORT_GATEWAY" "${BENCH_WORKERS:-2}" ${BENCH_GATEWAY_ENV:-}
  seed
  [[ -n ${BENCH_SQL:-} ]] && psql -q -v ON_ERROR_STOP=1 "$DATABASE_URL" -f "$BENCH_SQL"
  vacuum_db
  local pg mode conns out before pgbefore
  pg=$(pg_pid)
  for mode in $MODES; do
    wrk_run "http://127.0.0.1:$PORT_GATEWAY/v1/chat/completions" "$mode" 16 2 "$SECRET" "$WORK/warmup.json"
    for conns in $CONNS; do
      out=$RESULTS/wrk/q-$mode-$conns.json
      before=$("$PY" "$BENCH/proctree.py" snapshot "$PID_gateway")
      pgbefore=$("$PY" "$BENCH/proctree.py" snapshot "$pg")
      wrk_run "http://127.0.0.1:$PORT_GATEWAY/v1/chat/completions" "$mode" "$conns" "$DURATION" "$SECRET" "$out"
      "$PY" "$BENCH/proctree.py" delta "$PID_gateway" "$before" "$out.gw"
      "$PY" "$BENCH/proctree.py" delta "$pg" "$pgbefore" "$out.pg"
      "$PY" - "$out" "$mode" "$conns" <<'PY'
import json, sys
w = json.load(open(sys.argv[1])); gw = json.load(open(sys.argv[1] + ".gw")); pg = json.load(open(sys.argv[1] + ".pg"))
n = max(w["requests"], 1)
print(f"{sys.argv[2]:4} c={sys.argv[3]:>3}  rps={w['rps']:8.1f}  p50={w['p50_ms']:6.2f}  p99={w['p99_ms']:7.2f}  "
      f"bad={w['non2xx'] + sum(w['socket_errors'].values())}  gw_cpu_ms={1000 * gw['cpu_s'] / n:.3f}  "
      f"pg_cpu_ms={1000 * pg['cpu_s'] / n:.3f}  busy={gw.get('machine_busy_pct', 0):.0f}%")
PY
    done
  done
  if [[ -n ${BENCH_OBS:-} ]]; then
    observability_cells
    "$PY" "$BENCH/report.py" --section observability --results "$RESULTS"
    mkdir -p "$BENCH/results" && cp -r "$RESULTS/observability.json" "$RESULTS/wrk-obs" "$BENCH/results/"
  fi
  if [[ -n ${BENCH_STREAMS_QUICK:-} ]]; then
    "$PY" "$BENCH/streams_mem.py" "http://127.0.0.1:$PORT_GATEWAY" "$SECRET" bench-drip "$PID_gateway" \
      "$WORK/streams.json" --streams "$BENCH_STREAMS_QUICK"
    "$PY" -c "import json, sys; d = json.load(open(sys.argv[1])); print({k: v for k, v in d.items() if 'samples' not in k})" "$WORK/streams.json"
  fi
}
quick
