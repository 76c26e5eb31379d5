#!/usr/bin/env bash
# The cost of TLS against plaintext, with `throng bench echo` on both: one throng
# (`--app echo`, one worker) on core 0 (SERVER_CORE), the generator on core 1
# (CLIENT_CORE); echo over ws:// and over wss:// (a certificate made here with openssl,
# TLS 1.3), 100 connections x 64 B with 1 and 8 in flight. Prints messages/s and
# latency per case and the TLS/plaintext ratios; JSON lines go to
# target/bench/tls-<time>.jsonl.
# Env: CONNS (100), SIZE (64), SECS (10), WARMUP (2), SERVER_CORE (0), CLIENT_CORE (1),
# NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
# shellcheck source=lib/bench-common.sh
. scripts/lib/bench-common.sh
CONNS=${CONNS:-100} SIZE=${SIZE:-64} SECS=${SECS:-10} WARMUP=${WARMUP:-2}
BENCH_OUT=target/bench
mkdir -p "$BENCH_OUT"
require_tools taskset openssl python3
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet --bin throng
out="$BENCH_OUT/tls-$(date -u +%Y%m%dT%H%M%S).jsonl"
dir=$(mktemp -d)
TMP_FILES+=("$dir/cert.pem" "$dir/key.pem")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
pids=()
stop_server() {
  local p
  for p in "${pids[@]}"; do stop_pid "$p" "throng (pid $p)"; done
  pids=()
}
for scheme in ws wss; do
  port=$(free_port)
  log="$BENCH_OUT/tls-$scheme.log"
  tls=()
  [ "$scheme" = wss ] && tls=(--tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem")
  taskset -c "$SERVER_CORE" target/release/throng serve --host 127.0.0.1 --port "$port" \
    --app echo --workers 1 "${tls[@]}" >"$log" 2>&1 &
  pids+=($!)
  wait_listening "$!" "$port" "throng ($scheme)" "$log"
  for inflight in 1 8; do
    say "$scheme://: echo $CONNS x $SIZE B, $inflight in flight"
    line=$(taskset -c "$CLIENT_CORE" target/release/throng bench echo \
      --url "$scheme://localhost:$port/" --conns "$CONNS" --size "$SIZE" \
      --inflight "$inflight" --secs "$SECS" --warmup "$WARMUP" --threads 1 | tail -n 1)
    echo "{\"scheme\":\"$scheme\",\"inflight_case\":$inflight,${line#\{}" | tee -a "$out"
  done
  stop_server
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
by = {(r["scheme"], r["inflight_case"]): r for r in rows}
print(f"{'case':18} {'msgs/s':>10} {'p50 us':>8} {'p99 us':>8}")
for (scheme, k), r in sorted(by.items()):
    print(f"{scheme + ' inflight ' + str(k):18} {r['msgs_per_sec']:>10.0f} {r.get('p50_us', 0):>8} {r.get('p99_us', 0):>8}")
for k in (1, 8):
    p, t = by[("ws", k)], by[("wss", k)]
    print(f"TLS / plaintext, {k} in flight: msgs/s {t['msgs_per_sec'] / p['msgs_per_sec']:.2f}x")
PY
echo "raw: $out"
