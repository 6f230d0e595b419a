#!/usr/bin/env bash
# `make bench`: the whole benchmark suite, then BENCHMARKS.md from its raw results.
#
#   1. a fast fake upstream (nginx, fixed JSON and SSE answers) on 127.0.0.1
#   2. the gateway on a fresh PostgreSQL database, seeded over the admin API: twice, with 1 worker
#      and with 2 (one per core), on the same database
#   3. the peers, same upstream, no DB: LiteLLM's proxy (throwaway venv, 2 workers) and Portkey's
#      gateway (npm, in a throwaway folder outside the project, a 2-worker Node cluster: bench/portkey.sh)
#   4. wrk at 1/16/64 connections, non-streaming and streaming: nginx direct, both gateways, LiteLLM,
#      Portkey, interleaved cell by cell
#   5. the CPU per call of the upstream HTTP clients (httpx, aiohttp), then py-spy profiles of the
#      gateway under load
#   6. memory for 1,000 concurrent slow streams through the gateway with 2 workers
#   7. the reserve+settle microbenchmark (directly and through PgBouncer), what the pooler costs one
#      call (bench/pooler_cost.py), then the ledger verifier over everything
#   8. a 1,000,000-row usage export (CSV, JSON Lines) on its own fresh database: the worker's peak RSS
#
# Everything listens on 127.0.0.1 only; every process started here is stopped on exit.
# Knobs: BENCH_DURATION (s per wrk cell, 10), BENCH_CONNS ("1 16 64"), BENCH_STREAMS (1000),
#        BENCH_DRIP_MS (200), BENCH_LEDGER_CONC ("1,16,64"), BENCH_SKIP_LITELLM=1, BENCH_SKIP_PORTKEY=1,
#        BENCH_WRK_ONLY=1 (the wrk matrix with the peers, then the report: no profiles, memory, ledger
#        or export sections), BENCH_TARGETS (which of "direct gateway gateway2 litellm portkey" the
#        matrix measures, all by default), BENCH_WAIT_QUIET_S (180),
#        BENCH_EXPORT_ROWS (1000000), BENCH_SKIP_EXPORT=1,
#        BENCH_DATABASE_SERVER (postgresql://postgres@127.0.0.1:5432; if none answers there, the
#        gateway's embedded PostgreSQL in a temp dir).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
RESULTS=$BENCH/results
PY=$ROOT/.venv/bin/python
TF=$ROOT/.venv/bin/tokens-forge

DURATION=${BENCH_DURATION:-10}
CONNS=${BENCH_CONNS:-"1 16 64"}
STREAMS=${BENCH_STREAMS:-1000}
DRIP_MS=${BENCH_DRIP_MS:-200}
PG_SERVER=${BENCH_DATABASE_SERVER:-postgresql://postgres@127.0.0.1:5432}
DB_NAME=${BENCH_DB_NAME:-tf_bench}   # another name lets two benches share one server
PORT_GATEWAY=${BENCH_PORT_GATEWAY:-18180}     # 1 worker
PORT_GATEWAY2=${BENCH_PORT_GATEWAY2:-18184}   # 2 workers
PORT_NGINX=${BENCH_PORT_NGINX:-18181}
PORT_LITELLM=${BENCH_PORT_LITELLM:-18182}
PORT_MOCK=${BENCH_PORT_MOCK:-18183}
PORT_OBS=${BENCH_PORT_OBS:-18185}             # the 1-worker gateway with its request log or tracing on
PORT_OTLP=${BENCH_PORT_OTLP:-18186}           # an OTLP/HTTP sink for the traced gateway
PORT_PORTKEY=${BENCH_PORT_PORTKEY:-18187}
TARGETS_WANTED=" ${BENCH_TARGETS:-direct gateway gateway2 litellm portkey} "
LITELLM_VERSION=1.106.12
LITELLM_VENV=${BENCH_LITELLM_VENV:-/tmp/tf-bench-litellm-venv}
TOOLS_VENV=${BENCH_TOOLS_VENV:-/tmp/tf-bench-tools-venv}   # py-spy: a bench tool, never a project dependency
WORK=$(mktemp -d /tmp/tf-bench.XXXXXX)
ADMIN_TOKEN=adm-bench-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')

log() { printf '\033[1m[bench %s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*"; }

# -- processes: each in its own process group, so that stopping one stops its children too --

PIDS=()
STOPPED=" "
start() {  # start NAME CMD...: run CMD in the background, its output in $WORK/NAME.log
  local name=$1; shift
  setsid "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=("$!")
  eval "PID_${name//-/_}=$!"
}
stop() {  # stop PID: TERM its group, KILL it if it lingers
  local pid=$1
  [[ $STOPPED == *" $pid "* ]] && return 0
  STOPPED+="$pid "
  kill -TERM -- "-$pid" 2>/dev/null || return 0
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}
EMBEDDED_PG=
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop "$pid"; done
  if [[ -n $EMBEDDED_PG ]]; then
    kill -INT "$EMBEDDED_PG" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$EMBEDDED_PG" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() {  # wait_http URL SECONDS [NAME]: until URL answers 2xx
  local url=$1 deadline=$((SECONDS + $2))
  until curl -sf -o /dev/null --max-time 2 "$url"; do
    if ((SECONDS > deadline)); then
      log "gave up waiting for $url"; [[ -n ${3:-} ]] && tail -n 30 "$WORK/$3.log"
      return 1
    fi
    sleep 0.3
  done
}

# -- installs ---------------------------------------------------------------------------------

ensure_apt() {
  command -v nginx >/dev/null && command -v wrk >/dev/null && command -v curl >/dev/null &&
    { command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ]; } && return
  log "installing nginx, wrk, curl, pgbouncer (apt)"
  apt-get install -y -qq nginx-light wrk curl pgbouncer >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq nginx-light wrk curl pgbouncer >/dev/null; }
  # Debian may start the system nginx on install: this bench never uses it.
}

ensure_pyspy() {
  [[ -x $TOOLS_VENV/bin/py-spy ]] && return
  log "installing py-spy into $TOOLS_VENV"
  python3 -m venv "$TOOLS_VENV" && "$TOOLS_VENV/bin/pip" install -q py-spy 2>&1 | grep -v 'is ignored' || true
}

ensure_litellm() {  # the peer lives in its own venv: never a dependency of the project
  if [[ -x $LITELLM_VENV/bin/litellm ]] &&
     [[ $("$LITELLM_VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version/ {print $2}') == "$LITELLM_VERSION" ]]; then
    return
  fi
  log "installing litellm[proxy]==$LITELLM_VERSION into $LITELLM_VENV (once)"
  python3 -m venv "$LITELLM_VENV" &&
    timeout 600 "$LITELLM_VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" >"$WORK/litellm-install.log" 2>&1
}

# -- the pieces -------------------------------------------------------------------------------

start_nginx() {
  "$PY" "$BENCH/fake_upstream.py" "$WORK/nginx" "$PORT_NGINX"
  start nginx nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log"
  wait_http "http://127.0.0.1:$PORT_NGINX/healthz" 10 nginx
}

fresh_database() {  # sets DATABASE_URL
  if pg_isready -q -d "$PG_SERVER" 2>/dev/null; then
    psql -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $DB_NAME WITH (FORCE)" -c "CREATE DATABASE $DB_NAME"
    DATABASE_URL=$PG_SERVER/$DB_NAME
  else  # no server: the gateway's own embedded PostgreSQL, in the temp dir
    log "no PostgreSQL at $PG_SERVER: using the embedded one"
    DATABASE_URL=$("$PY" -c "from pathlib import Path; from tokens_forge.db.embedded import start_embedded;
print(start_embedded(Path('$WORK/tf-data')))" | tail -n 1)
    # pgserver leaves its postmaster running: stop it with the rest (fast shutdown).
    EMBEDDED_PG=$(head -n 1 "$WORK/tf-data/pgdata/postmaster.pid")
  fi
}

vacuum_db() {  # this machine's server may run without autovacuum: clear the dead rows of the last phase
  "$PY" -c "import asyncio, asyncpg, sys
async def main():
    conn = await asyncpg.connect(sys.argv[1]); await conn.execute('VACUUM ANALYZE'); await conn.close()
asyncio.run(main())" "$DATABASE_URL"
}

start_gateway() {  # start_gateway NAME PORT WORKERS [VAR=VALUE...]: extra variables after the first three
  local name=$1 port=$2 workers=$3; shift 3
  start "$name" env TF_DATABASE_URL="$DATABASE_URL" TF_ADMIN_TOKEN="$ADMIN_TOKEN" TF_LOG_LEVEL=warning "$@" \
    "$TF" serve --host 127.0.0.1 --port "$port" --workers "$workers"
  wait_http "http://127.0.0.1:$port/healthz" 90 "$name"
}

# What observing costs: the layer's own CPU per request (no HTTP, no database), then wrk against
# the 1-worker gateway (non-streaming, 16 connections) as measured above with its request log
# off, then on (TF_LOG_LEVEL=info, the default), then with tracing on too (spans to a local sink).
# Needs the gateway named `gateway` running on $PORT_GATEWAY and $SECRET.
observability_cells() {
  "$PY" "$BENCH/observability_cost.py" --out "$RESULTS/observability.json" || log "observability benchmark failed"
  mkdir -p "$RESULTS/wrk-obs"
  local variant pid port out before
  for variant in metrics logged traced; do
    pid=$PID_gateway port=$PORT_GATEWAY
    if [[ $variant == logged ]]; then
      start_gateway gateway-logged "$PORT_OBS" 1 TF_LOG_LEVEL=info
      pid=$PID_gateway_logged port=$PORT_OBS
    elif [[ $variant == traced ]]; then
      start obs-sink "$PY" "$BENCH/observability_cost.py" --sink "$PORT_OTLP"
      start_gateway gateway-traced "$PORT_OBS" 1 TF_LOG_LEVEL=info \
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$PORT_OTLP"
      pid=$PID_gateway_traced port=$PORT_OBS
    fi
    wrk_run "http://127.0.0.1:$port/v1/chat/completions" json 16 2 "$SECRET" "$WORK/warmup-obs.json"
    out=$RESULTS/wrk-obs/$variant.json
    before=$("$PY" "$BENCH/proctree.py" snapshot "$pid")
    wrk_run "http://127.0.0.1:$port/v1/chat/completions" json 16 "$DURATION" "$SECRET" "$out"
    "$PY" "$BENCH/proctree.py" delta "$pid" "$before" "${out%.json}.cpu.json"
    log "observability $variant: $(head -c 110 "$out")"
    [[ $variant == metrics ]] || stop "$pid"
  done
  stop "$PID_obs_sink"
}

seed() {  # sets SECRET
  "$PY" "$BENCH/seed.py" "http://127.0.0.1:$PORT_GATEWAY" "$ADMIN_TOKEN" "http://127.0.0.1:$PORT_NGINX" \
    "http://127.0.0.1:$PORT_MOCK" "$DRIP_MS" "$WORK/seed.json"
  SECRET=$("$PY" -c "import json; print(json.load(open('$WORK/seed.json'))['secret'])")
}

write_bodies() {  # the same two request bodies for every target
  local msg='"messages":[{"role":"user","content":"Say hello to the benchmark."}],"max_tokens":16'
  printf '{"model":"bench-json",%s}' "$msg" >"$WORK/body-json.json"
  printf '{"model":"bench-sse","stream":true,%s}' "$msg" >"$WORK/body-sse.json"
}

wrk_run() {  # wrk_run URL MODE CONNS SECONDS AUTH OUT [HEADERS]
  local threads=2
  (($3 < 2)) && threads=1
  BENCH_BODY_FILE="$WORK/body-$2.json" BENCH_AUTH=$5 BENCH_OUT=$6 BENCH_HEADERS=${7:-} \
    wrk -t"$threads" -c"$3" -d"$4s" --timeout 30s -s "$BENCH/wrk.lua" "$1" >>"$WORK/wrk.log" 2>&1
}

# The targets of the wrk matrix: base URL per mode, bearer key, server pid (for its CPU time),
# extra request headers per mode (Portkey's routing headers).
TARGETS=()
declare -A URL_json URL_sse AUTH PID HDR_json HDR_sse
add_target() {  # add_target NAME JSON_BASE_URL SSE_BASE_URL AUTH PID [JSON_HEADERS SSE_HEADERS]
  [[ $TARGETS_WANTED == *" $1 "* ]] || return 0
  TARGETS+=("$1")
  URL_json[$1]=$2/chat/completions URL_sse[$1]=$3/chat/completions AUTH[$1]=$4 PID[$1]=$5
  HDR_json[$1]=${6:-} HDR_sse[$1]=${7:-}
}
target_url() { [[ $2 == json ]] && echo "${URL_json[$1]}" || echo "${URL_sse[$1]}"; }  # target_url TARGET MODE
target_headers() { [[ $2 == json ]] && echo "${HDR_json[$1]}" || echo "${HDR_sse[$1]}"; }

cell() {  # cell TARGET MODE CONNS: one wrk run, its summary and the CPU its target used
  local target=$1 mode=$2 conns=$3 out before
  out=$RESULTS/wrk/$target-$mode-c$conns.json
  before=$("$PY" "$BENCH/proctree.py" snapshot "${PID[$target]}")
  wrk_run "$(target_url "$target" "$mode")" "$mode" "$conns" "$DURATION" "${AUTH[$target]}" "$out" \
    "$(target_headers "$target" "$mode")"
  # The CPU the target's processes used in the cell (CPU per request, whatever else runs) and
  # how busy the machine was meanwhile.
  "$PY" "$BENCH/proctree.py" delta "${PID[$target]}" "$before" "${out%.json}.cpu.json"
  log "$target $mode c=$conns: $(head -c 110 "$out")"
}

matrix() {  # every mode x connection count x target; targets interleaved cell by cell, so that
  local mode conns target  # a change in the machine's background load hits them all alike
  for mode in json sse; do
    for target in "${TARGETS[@]}"; do  # warm pools and caches, not recorded
      wrk_run "$(target_url "$target" "$mode")" "$mode" 16 3 "${AUTH[$target]}" "$WORK/warmup.json" \
        "$(target_headers "$target" "$mode")"
    done
    for conns in $CONNS; do
      for target in "${TARGETS[@]}"; do cell "$target" "$mode" "$conns"; done
    done
  done
}

profile() {  # profile MODE: py-spy over the gateway's workers while wrk loads them at 16 connections
  local mode=$1
  wrk_run "http://127.0.0.1:$PORT_GATEWAY/v1/chat/completions" "$mode" 16 14 "$SECRET" "$RESULTS/profile-$mode-wrk.json" &
  local wrk_pid=$!
  sleep 2
  "$TOOLS_VENV/bin/py-spy" record --pid "$PID_gateway" --subprocesses --nonblocking --rate 200 --duration 10 \
    --format raw -o "$RESULTS/profile-$mode.txt" >>"$WORK/py-spy.log" 2>&1 || log "py-spy failed: $(tail -n 3 "$WORK/py-spy.log")"
  wait "$wrk_pid"
}

start_litellm() {  # sets LITELLM_KEY; LiteLLM refuses to start without a master key
  LITELLM_KEY=sk-bench-$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  local api=http://127.0.0.1:$PORT_NGINX
  cat >"$WORK/litellm.yaml" <<EOF
model_list:
  - model_name: bench-json
    litellm_params: {model: openai/bench-upstream, api_base: "$api/json/v1", api_key: sk-bench}
  - model_name: bench-sse
    litellm_params: {model: openai/bench-upstream, api_base: "$api/sse/v1", api_key: sk-bench}
litellm_settings: {set_verbose: false, json_logs: false, telemetry: false}
general_settings: {master_key: "$LITELLM_KEY"}
EOF
  # No network here: keep LiteLLM from fetching its model-price map at start-up.
  start litellm env LITELLM_LOG=ERROR LITELLM_LOCAL_MODEL_COST_MAP=True \
    "$LITELLM_VENV/bin/litellm" --config "$WORK/litellm.yaml" --host 127.0.0.1 --port "$PORT_LITELLM" --num_workers 2
  wait_http "http://127.0.0.1:$PORT_LITELLM/health/liveliness" 180 litellm
}

litellm_status() { peer_status litellm "$LITELLM_VERSION" "$1" "$2"; }  # litellm_status OK REASON

start_peer() {  # LiteLLM joins the matrix when it installs and starts; otherwise say why not
  [[ $TARGETS_WANTED == *" litellm "* ]] || return 0
  if [[ ${BENCH_SKIP_LITELLM:-0} == 1 ]]; then
    litellm_status 0 "skipped (BENCH_SKIP_LITELLM=1)"; return
  fi
  if ! ensure_litellm; then
    litellm_status 0 "pip install litellm[proxy]==$LITELLM_VERSION failed: $(grep -v 'is ignored' "$WORK/litellm-install.log" | tail -n 3 | tr '\n' ' ')"
    return
  fi
  if ! start_litellm; then
    stop "$PID_litellm"
    litellm_status 0 "the LiteLLM proxy did not become ready: $(grep -v '^\s*$' "$WORK/litellm.log" | tail -n 3 | tr '\n' ' ')"
    return
  fi
  litellm_status 1 ""
  add_target litellm "http://127.0.0.1:$PORT_LITELLM/v1" "http://127.0.0.1:$PORT_LITELLM/v1" "$LITELLM_KEY" "$PID_litellm"
}

peer_status() {  # peer_status NAME VERSION OK REASON: why a peer is or is not in the tables
  "$PY" -c 'import json, sys; json.dump({"ok": sys.argv[1] == "1", "version": sys.argv[2], "reason": sys.argv[3]},
open(sys.argv[4], "w"))' "$3" "$2" "$4" "$RESULTS/$1.json"
}

# Portkey's gateway (bench/portkey.sh): installed from npm into $PORTKEY_NPM_DIR (/tmp/portkey-gw,
# outside the project) with its streaming pin, run as a 2-worker Node cluster bound to 127.0.0.1.
# It has no model list: each request names its provider and upstream in two headers.
PORTKEY_VERSION=${PORTKEY_VERSION:-1.15.2}
PORTKEY_KEY=sk-bench-portkey-upstream-key  # forwarded to the upstream, which takes any
portkey_headers() {  # portkey_headers MODE
  echo "x-portkey-provider: openai|x-portkey-custom-host: http://127.0.0.1:$PORT_NGINX/$1/v1"
}
start_portkey_peer() {
  [[ $TARGETS_WANTED == *" portkey "* ]] || return 0
  if [[ ${BENCH_SKIP_PORTKEY:-0} == 1 ]]; then
    peer_status portkey "$PORTKEY_VERSION" 0 "skipped (BENCH_SKIP_PORTKEY=1)"; return
  fi
  if ! PORTKEY_VERSION=$PORTKEY_VERSION bash "$BENCH/portkey.sh" installed; then
    log "installing @portkey-ai/gateway@$PORTKEY_VERSION (npm) into ${PORTKEY_NPM_DIR:-/tmp/portkey-gw}"
    if ! PORTKEY_VERSION=$PORTKEY_VERSION timeout 600 bash "$BENCH/portkey.sh" install >"$WORK/portkey-install.log" 2>&1; then
      peer_status portkey "$PORTKEY_VERSION" 0 "npm install failed: $(tail -n 3 "$WORK/portkey-install.log" | tr '\n' ' ')"
      return
    fi
  fi
  start portkey env PORTKEY_PORT="$PORT_PORTKEY" PORTKEY_WORKERS=2 PORTKEY_VERSION="$PORTKEY_VERSION" \
    bash "$BENCH/portkey.sh" run
  if ! wait_http "http://127.0.0.1:$PORT_PORTKEY/" 60 portkey; then
    stop "$PID_portkey"
    peer_status portkey "$PORTKEY_VERSION" 0 "Portkey did not become ready: $(tail -n 3 "$WORK/portkey.log" | tr '\n' ' ')"
    return
  fi
  sleep 1  # every cluster worker at listen()
  peer_status portkey "$PORTKEY_VERSION" 1 ""
  add_target portkey "http://127.0.0.1:$PORT_PORTKEY/v1" "http://127.0.0.1:$PORT_PORTKEY/v1" "$PORTKEY_KEY" \
    "$PID_portkey" "$(portkey_headers json)" "$(portkey_headers sse)"
}

# -- main -------------------------------------------------------------------------------------

wait_for_quiet() {  # a shared machine: give other work up to BENCH_WAIT_QUIET_S to calm down
  local deadline=$((SECONDS + ${BENCH_WAIT_QUIET_S:-180})) busy
  while busy=$("$PY" -c "import sys, time; sys.path.insert(0, '$BENCH'); from proctree import machine_ticks
b0, t0 = machine_ticks(); time.sleep(3); b1, t1 = machine_ticks(); print(round(100 * (b1 - b0) / (t1 - t0)))"); do
    ((busy < 40)) && return
    ((SECONDS > deadline)) && { log "the machine is still ${busy}% busy: measuring anyway (see BENCHMARKS.md)"; return; }
    log "the machine is ${busy}% busy with other work: waiting for it to calm down"
    sleep 10
  done
}

main() {
  local began=$SECONDS
  ensure_apt
  ensure_pyspy
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
  rm -rf "$RESULTS" && mkdir -p "$RESULTS/wrk"
  wait_for_quiet
  "$PY" "$BENCH/report.py" --machine "$RESULTS/machine.json"
  write_bodies

  log "fake upstream (nginx) on 127.0.0.1:$PORT_NGINX"
  start_nginx
  add_target direct "http://127.0.0.1:$PORT_NGINX/json/v1" "http://127.0.0.1:$PORT_NGINX/sse/v1" "" "$PID_nginx"

  fresh_database
  log "gateway on 127.0.0.1:$PORT_GATEWAY (1 worker) and :$PORT_GATEWAY2 (2 workers), database ${DATABASE_URL##*/}"
  start gateway-mock "$TF" mock-upstream --host 127.0.0.1 --port "$PORT_MOCK"
  start_gateway gateway "$PORT_GATEWAY" 1
  start_gateway gateway2 "$PORT_GATEWAY2" 2
  seed
  "$PY" "$BENCH/report.py" --database "$DATABASE_URL" "$RESULTS/database.json"
  vacuum_db
  add_target gateway "http://127.0.0.1:$PORT_GATEWAY/v1" "http://127.0.0.1:$PORT_GATEWAY/v1" "$SECRET" "$PID_gateway"
  add_target gateway2 "http://127.0.0.1:$PORT_GATEWAY2/v1" "http://127.0.0.1:$PORT_GATEWAY2/v1" "$SECRET" "$PID_gateway2"

  log "LiteLLM $LITELLM_VERSION on 127.0.0.1:$PORT_LITELLM"
  start_peer
  log "Portkey $PORTKEY_VERSION on 127.0.0.1:$PORT_PORTKEY (2-worker Node cluster)"
  start_portkey_peer

  log "wrk matrix: ${TARGETS[*]}"
  matrix
  [[ -n ${PID_litellm:-} ]] && stop "$PID_litellm"
  [[ -n ${PID_portkey:-} ]] && stop "$PID_portkey"
  if [[ ${BENCH_WRK_ONLY:-0} == 1 ]]; then
    log "report (BENCH_WRK_ONLY=1: the wrk matrix alone)"
    "$PY" "$BENCH/report.py" --results "$RESULTS" --out "$ROOT/BENCHMARKS.md" --elapsed $((SECONDS - began))
    log "done in $((SECONDS - began)) s"
    return
  fi

  log "upstream client CPU per call (httpx vs aiohttp)"
  "$PY" "$BENCH/upstream_clients.py" "http://127.0.0.1:$PORT_NGINX/json/v1/chat/completions" \
    "$RESULTS/upstream_clients.json" || log "upstream client benchmark failed"

  log "the cost of metrics, the request log and tracing"
  observability_cells

  log "py-spy profiles"
  profile json
  profile sse
  log "$STREAMS concurrent slow streams"
  stop "$PID_gateway"  # the 1-worker gateway is done: the memory test measures the 2-worker one alone
  "$PY" "$BENCH/streams_mem.py" "http://127.0.0.1:$PORT_GATEWAY2" "$SECRET" bench-drip "$PID_gateway2" \
    "$RESULTS/streams.json" --streams "$STREAMS" || log "streams benchmark failed"
  stop "$PID_gateway2"
  stop "$PID_gateway_mock"

  log "reserve+settle microbenchmark"
  vacuum_db
  # each cell on PostgreSQL directly and through a PgBouncer in transaction pooling mode (SPEC §10)
  "$PY" "$BENCH/ledger_bench.py" "$DATABASE_URL" "$RESULTS/ledger.json" --conc "${BENCH_LEDGER_CONC:-1,16,64}" \
    --through direct,pgbouncer ||
    log "reserve+settle benchmark failed (it calls ledger.attempts directly: has its API changed?)"
  log "what the pooler costs one call (prepared statements off, PgBouncer's hop)"
  "$PY" "$BENCH/pooler_cost.py" "$DATABASE_URL" "$RESULTS/pooler_cost.json" || log "pooler cost benchmark failed"

  if [[ ${BENCH_SKIP_EXPORT:-0} == 1 ]]; then
    log "usage export: skipped (BENCH_SKIP_EXPORT=1)"
  else  # its own database (tf_export) on the same server, created and dropped by the script
    log "usage export of ${BENCH_EXPORT_ROWS:-1000000} rows (csv, jsonl)"
    "$PY" "$BENCH/export_memory.py" "$DATABASE_URL" "$RESULTS/export.json" --database tf_export \
      --rows "${BENCH_EXPORT_ROWS:-1000000}" || log "usage export benchmark failed"
  fi

  log "report"
  "$PY" "$BENCH/report.py" --results "$RESULTS" --out "$ROOT/BENCHMARKS.md" --elapsed $((SECONDS - began))
  log "done in $((SECONDS - began)) s: BENCHMARKS.md, raw results in bench/results/"
}

# Sourced (bench/quick.sh) it only defines the pieces.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; fi
