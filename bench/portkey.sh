#!/usr/bin/env bash
# Portkey's open-source AI gateway (npm @portkey-ai/gateway, Node) as an anchor on
# 127.0.0.1:${PORTKEY_PORT:-8787}, pointed at the fake upstream by request headers.
# Usage: bench/portkey.sh install|installed|run|start|stop|status|pids|headers
#   install    npm install @portkey-ai/gateway@$PORTKEY_VERSION into $PORTKEY_NPM_DIR (/tmp/portkey-gw),
#              outside the project, with @hono/node-server pinned to 1.14.1 (see below)
#   installed  exit 0 when that install is there (the version asked, the pins in place)
#   run        run it in the foreground (bench/run.sh starts it so, in its own process group)
#   start      start it detached; pid file $PORTKEY_RUN_DIR/portkey.pid, log $PORTKEY_RUN_DIR/portkey.log
#   headers    print the routing headers ("name: value|name: value") a client must send to it
# Env: PORTKEY_PORT (8787), PORTKEY_WORKERS (2), PORTKEY_VERSION (1.15.2), PORTKEY_NPM_DIR (/tmp/portkey-gw),
#      PORTKEY_UPSTREAM (http://127.0.0.1:18080/v1), PORTKEY_RUN_DIR (/tmp/bench-portkey)
#
# How Portkey is routed: it has no server-side model list. Every request names its provider and
# target in headers: "x-portkey-provider: openai" + "x-portkey-custom-host: <upstream base URL>";
# the bearer key is forwarded to the upstream as the OpenAI key (the OSS gateway checks no key of
# its own). 127.0.0.1 is in its default TRUSTED_CUSTOM_HOSTS, so the custom host is accepted.
# bench/run.sh loads it with wrk (bench/wrk.lua sends BENCH_HEADERS, these headers) beside the gateway
# and LiteLLM; the custom host differs by mode (the fake upstream's /json/v1 or /sse/v1).
#
# Processes: Portkey's start-server.js is ONE Node process (one event loop; no cluster mode of its
# own). PORTKEY_WORKERS=1 runs exactly that. PORTKEY_WORKERS=N>1 (default 2 = LiteLLM's worker
# count here) runs N copies under Node's cluster module (bench/portkey_cluster.mjs, our wrapper):
# the pid file then holds the cluster primary, the workers are its children.
# start-server.js listens on every interface (no host option); bench/portkey_loopback.mjs,
# preloaded with node --import, makes that listen() bind 127.0.0.1 instead.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NPMDIR="${PORTKEY_NPM_DIR:-/tmp/portkey-gw}"
VERSION="${PORTKEY_VERSION:-1.15.2}"
# @portkey-ai/gateway 1.15.2 asks for @hono/node-server ^1.3.3, which resolves to 1.19.x; in 1.14.2 and
# 1.19.19 (both tried) that server's Response keeps the upstream fetch Response's immutable Headers, and Portkey's
# updateHeaders() then throws "TypeError: immutable" -> every streamed chat completion is an HTTP 500
# {"status":"failure","message":"Something went wrong"} (upstream issue Portkey-AI/gateway#1389, PR
# #1390 unmerged). 1.14.1 copies them into new Headers (streaming works with it); @hono/node-ws 1.3.x needs
# node-server ^1.19.11, so it goes back to 1.2.0 (peer ^1.11.1).
HONO_NODE_SERVER=1.14.1
HONO_NODE_WS=1.2.0
PORT="${PORTKEY_PORT:-8787}"
WORKERS="${PORTKEY_WORKERS:-2}"
UPSTREAM="${PORTKEY_UPSTREAM:-http://127.0.0.1:18080/v1}"
DIR="${PORTKEY_RUN_DIR:-/tmp/bench-portkey}"
PIDFILE="$DIR/portkey.pid"
LOG="$DIR/portkey.log"
KEY=sk-bench-portkey-upstream-key   # forwarded to the upstream; the fake upstream accepts any
HEADERS="x-portkey-provider: openai|x-portkey-custom-host: $UPSTREAM"
SERVER="$NPMDIR/node_modules/@portkey-ai/gateway/build/start-server.js"

running() { [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' ' || true; }
curl_h() { # curl with the Portkey routing headers
  curl -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -H "x-portkey-provider: openai" -H "x-portkey-custom-host: $UPSTREAM" "$@"
}

command_line() {  # the server's command line, in cmd=(...)
  if [[ "$WORKERS" == 1 ]]; then
    cmd=(node --import "$HERE/portkey_loopback.mjs" "$SERVER" "--port=$PORT" --headless)
  else
    cmd=(node "$HERE/portkey_cluster.mjs" "$SERVER" "$WORKERS" "$PORT")
  fi
}
# NODE_ENV=production + --headless: no web UI routes (/public, /log/stream).
# No REDIS_CONNECTION_STRING: in-memory only. Proxy variables unset: Portkey would send
# upstream calls through HTTP(S)_PROXY.
ENV_CLEAN=(env -u REDIS_CONNECTION_STRING -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy
           NODE_ENV=production PORTKEY_HOST=127.0.0.1)

installed() {
  [[ -f "$SERVER" ]] &&
    [[ "$(node -p "require('$NPMDIR/node_modules/@portkey-ai/gateway/package.json').version" 2>/dev/null)" == "$VERSION" ]] &&
    [[ "$(node -p "require('$NPMDIR/node_modules/@hono/node-server/package.json').version" 2>/dev/null)" == "$HONO_NODE_SERVER" ]]
}

case "${1:-}" in
  installed) installed ;;
  run)
    [[ -f "$SERVER" ]] || { echo "no $SERVER; run: $0 install" >&2; exit 1; }
    command_line
    exec "${ENV_CLEAN[@]}" "${cmd[@]}"
    ;;
  install)
    command -v node >/dev/null && command -v npm >/dev/null || { echo "node/npm missing: apt-get install -y nodejs npm" >&2; exit 1; }
    major="$(node -p 'process.versions.node.split(".")[0]')"
    (( major >= 18 )) || { echo "node $(node --version) too old (need >= 18: global fetch)" >&2; exit 1; }
    mkdir -p "$NPMDIR"
    cat >"$NPMDIR/package.json" <<EOF
{
  "name": "bench-portkey-gateway",
  "private": true,
  "dependencies": { "@portkey-ai/gateway": "$VERSION" },
  "overrides": { "@hono/node-server": "$HONO_NODE_SERVER", "@hono/node-ws": "$HONO_NODE_WS" }
}
EOF
    # --ignore-scripts: the package's only install script is "postinstall: patch-package", and the
    # published package ships no patches/ folder, so it would do nothing.
    ( cd "$NPMDIR" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error )
    ( cd "$NPMDIR" && npm ls --depth=1 @portkey-ai/gateway @hono/node-server @hono/node-ws hono 2>/dev/null ) || true
    echo "node $(node --version)"
    ;;
  start)
    if running; then echo "portkey already running (pid $(cat "$PIDFILE"))"; exit 0; fi
    [[ -f "$SERVER" ]] || { echo "no $SERVER; run: $0 install" >&2; exit 1; }
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then echo "port $PORT already in use" >&2; exit 1; fi
    mkdir -p "$DIR"
    command_line
    ( cd "$DIR" && exec "${ENV_CLEAN[@]}" setsid "${cmd[@]}" >"$LOG" 2>&1 </dev/null ) &
    echo $! >"$PIDFILE"
    code=""
    for _ in $(seq 60); do
      running || { echo "portkey exited; tail of $LOG:" >&2; tail -20 "$LOG" >&2; rm -f "$PIDFILE"; exit 1; }
      code="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/" || true)"
      if [[ "$code" == 200 ]]; then
        [[ "$WORKERS" == 1 ]] && break
        [[ "$(children "$(cat "$PIDFILE")" | wc -l)" -ge "$WORKERS" ]] && break
      fi
      sleep 0.5
    done
    [[ "$code" == 200 ]] || { echo "portkey did not become ready in 30s; see $LOG" >&2; exit 1; }
    sleep 1  # let every cluster worker reach listen()
    # one real request per stream mode, so config errors show up now
    curl_h -fsS -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}' \
      "http://127.0.0.1:$PORT/v1/chat/completions" | head -c 300; echo
    curl_h -fsS -N -d '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}' \
      "http://127.0.0.1:$PORT/v1/chat/completions" | tail -c 300; echo
    echo "portkey started: pid $(cat "$PIDFILE"), workers: $(children "$(cat "$PIDFILE")" | tr '\n' ' ')"
    echo "base URL http://127.0.0.1:$PORT/v1  key $KEY"
    echo "headers EXTRA_HEADERS='$HEADERS'"
    ;;
  stop)
    if running; then
      pid="$(cat "$PIDFILE")"
      kids="$(children "$pid")"
      kill -TERM "$pid"
      for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
      for k in $kids; do kill -0 "$k" 2>/dev/null && kill -TERM "$k" 2>/dev/null || true; done
      echo "portkey stopped (pid $pid${kids:+, workers $(echo $kids)})"
    else
      echo "portkey not running"
    fi
    rm -f "$PIDFILE"
    ;;
  status)
    if running; then echo "running (pid $(cat "$PIDFILE"); workers: $(children "$(cat "$PIDFILE")" | tr '\n' ' '))"; else echo "not running"; exit 1; fi
    ;;
  pids) running && { cat "$PIDFILE"; children "$(cat "$PIDFILE")"; } ;;
  headers) echo "$HEADERS" ;;
  *) echo "usage: $0 install|installed|run|start|stop|status|pids|headers" >&2; exit 2 ;;
esac
