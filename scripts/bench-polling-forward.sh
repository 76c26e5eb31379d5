#!/usr/bin/env bash
# Long-polling requests served where the session lives against forwarded over Redis to
# its owner (README "Redis bridge": sticky-free polling). Two `throng serve --app
# conformance --redis-url` nodes A and B and a redis-server on core 0 (SERVER_CORE); the
# load (scripts/lib/polling-forward.js: CLIENTS official socket.io-clients on polling,
# `echo` with an ack back to back) on core 1 (CLIENT_CORE), through a proxy that sends
# every handshake to A and every later request to A (local) or to B (forwarded: B relays
# it to A over Redis, A replays it on loopback). Then the same with the clients upgraded
# to WebSocket: the upgrade sent to A (ws-local: a local WebSocket) or to B, either at
# once (ws-handed-over: the session, which has joined no namespace yet, is handed over
# to B and the WebSocket is local there) or 1 s late (ws-relayed: the session joined `/`
# on A meanwhile, so B holds the client's WebSocket, A a loopback one, and messages cross
# Redis both ways). Each line also has the time from io() to "connect" (the owner holds a
# first CONNECT up to 300 ms for a handover). One JSON line per case goes to
# target/bench/polling-forward-<time>.jsonl; the ratios last.
# Env: CLIENTS (50), SECS (10), WARMUP (2), SERVER_CORE (0), CLIENT_CORE (1), NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
export CLIENTS=${CLIENTS:-50} SECS=${SECS:-10} WARMUP=${WARMUP:-2}
BENCH_OUT=target/bench
mkdir -p "$BENCH_OUT"
require_tools taskset node redis-server python3
scripts/setup-test-deps.sh >/dev/null
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin throng
out="$BENCH_OUT/polling-forward-$(date -u +%Y%m%dT%H%M%S).jsonl"
pids=()
stop_all() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p" "pid $p"; done
}
stop_server() { stop_all; }

redis_port=$(free_port)
taskset -c "$SERVER_CORE" redis-server --bind 127.0.0.1 --port "$redis_port" --save '' \
  --appendonly no >"$BENCH_OUT/polling-forward-redis.log" 2>&1 &
pids+=($!)
wait_listening "$!" "$redis_port" redis "$BENCH_OUT/polling-forward-redis.log"
declare -A port
for node in A B; do
  port[$node]=$(free_port)
  log="$BENCH_OUT/polling-forward-$node.log"
  taskset -c "$SERVER_CORE" target/release/throng serve --host 127.0.0.1 --port "${port[$node]}" \
    --app conformance --workers 1 --redis-url "redis://127.0.0.1:$redis_port" >"$log" 2>&1 &
  pids+=($!)
  wait_listening "$!" "${port[$node]}" "throng $node" "$log"
done
# Each node counts the other (every 5 s) before a handover can happen.
python3 - "${port[A]}" "${port[B]}" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 15
for port in sys.argv[1:]:
    while True:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        if "throng_redis_peers 1" in text.splitlines():
            break
        if time.time() > deadline:
            sys.exit(f"node on port {port} does not count its peer")
        time.sleep(0.1)
PY
for case in local forwarded ws-local ws-handed-over ws-relayed; do
  via=${port[A]}
  case $case in forwarded | ws-handed-over | ws-relayed) via=${port[B]} ;; esac
  transport=polling
  case $case in ws-*) transport=websocket ;; esac
  delay=0
  [ "$case" = ws-relayed ] && delay=1000
  say "$case: $CLIENTS clients on $transport, echo with ack, ${WARMUP}s + ${SECS}s"
  line=$(OWNER="http://127.0.0.1:${port[A]}" VIA="http://127.0.0.1:$via" TRANSPORT=$transport \
    UPGRADE_DELAY_MS=$delay \
    NODE_PATH=tests/sio/node_modules taskset -c "$CLIENT_CORE" node scripts/lib/polling-forward.js)
  echo "{\"case\":\"$case\",${line#\{}" | tee -a "$out"
done
# What became of the upgrades sent to B (handed over or relayed), from both nodes.
for node in A B; do
  python3 -c 'import sys, urllib.request
for l in urllib.request.urlopen(sys.argv[1]).read().decode().splitlines():
    if l.startswith(("throng_redis_websocket_handovers_total", "throng_redis_websocket_relayed_total")):
        print(sys.argv[2], l)' "http://127.0.0.1:${port[$node]}/metrics" "$node"
done
python3 - "$out" <<'PY'
import json, sys
rows = {r["case"]: r for r in map(json.loads, open(sys.argv[1]))}
print(f"{'case':15} {'acks/s':>8} {'HTTP req/s':>11} {'p50 us':>8} {'p99 us':>8} {'connect p50/p99 ms':>19}")
for name, r in rows.items():
    print(f"{name:15} {r['acks_per_s']:>8} {r['http_requests_per_s']:>11} {r['p50_us']:>8} {r['p99_us']:>8} "
          f"{r['connect_ms_p50']:>9}/{r['connect_ms_p99']}")
for far, near in (("forwarded", "local"), ("ws-handed-over", "ws-local"), ("ws-relayed", "ws-local")):
    f, l = rows[far], rows[near]
    print(f"{far} / {near}: acks/s {f['acks_per_s'] / max(l['acks_per_s'], 1):.2f}x, "
          f"p50 {f['p50_us'] / max(l['p50_us'], 1):.2f}x, p99 {f['p99_us'] / max(l['p99_us'], 1):.2f}x")
PY
echo "raw: $out"
