#!/usr/bin/env bash
# Echo battle test: throng against a tokio-tungstenite echo server and node's ws echo
# server, same machine, same run. Each server is pinned to core 0 (SERVER_CORE), the
# generator (`throng bench echo`) to core 1 (CLIENT_CORE). Scenarios: 100 connections x
# 64 B with 1 and with 8 messages in flight, and 1,000 connections x 64 B.
# Reports msgs/s, p99, the server's own CPU use, msgs per server-CPU-second, and ratios
# throng/peer. JSON lines go to target/bench/echo-<time>.jsonl.
# Env: SECS (measured seconds, default 10), WARMUP (default 2), SERVERS, SCENARIOS.
set -euo pipefail
source "$(dirname "$0")/lib/bench-common.sh"

SECS=${SECS:-10}
WARMUP=${WARMUP:-2}
SERVERS=${SERVERS:-"throng tokio-tungstenite node-ws"}
SCENARIOS=${SCENARIOS:-"100:1 100:8 1000:1"}
out="$ROOT/target/bench/echo-$(date +%Y%m%dT%H%M%S).jsonl"

build_all
echo "== kernel $(uname -r), $(nproc) cores; server on core $SERVER_CORE, generator on core $CLIENT_CORE" >&2
tck=$(getconf CLK_TCK)
for server in $SERVERS; do
  port=$(free_port)
  start_server "$server" "$port"
  for sc in $SCENARIOS; do
    conns=${sc%%:*} inflight=${sc##*:}
    echo "-- $server: $conns conns x 64 B, $inflight in flight, ${SECS}s" >&2
    before=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s.%N)
    taskset -c "$CLIENT_CORE" "$THRONG" bench echo --url "ws://127.0.0.1:$port/" --conns "$conns" \
      --size 64 --inflight "$inflight" --secs "$SECS" --warmup "$WARMUP" >"$out.tmp"
    t1=$(date +%s.%N)
    after=$(cpu_ticks "$SERVER_PID")
    cpu=$(python3 -c "print(round(($after-$before)/$tck/($t1-$t0)*100))")
    tag "$server" "{\"server_cpu_percent\": $cpu}" <"$out.tmp" >>"$out"
  done
  stop_server
done
rm -f "$out.tmp"

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
key = lambda r: (r["conns"], r["inflight"])
print()
print(f'{"scenario":<26}{"server":<20}{"msgs/s":>12}{"p99 us":>9}{"srv CPU%":>10}{"msgs/CPU-s":>12}{"gen CPU%":>10}')
for sc in sorted({key(r) for r in rows}):
    group = [r for r in rows if key(r) == sc]
    for r in group:
        eff = r["msgs_per_sec"] / max(r["server_cpu_percent"], 1) * 100
        r["per_cpu"] = eff
        print(f'{f"{sc[0]} x 64B, {sc[1]} in flight":<26}{r["server"]:<20}{r["msgs_per_sec"]:>12.0f}'
              f'{r["p99_us"]:>9}{r["server_cpu_percent"]:>10}{eff:>12.0f}{r["cpu_percent"]:>10.0f}')
    t = next((r for r in group if r["server"] == "throng"), None)
    for r in group:
        if t and r is not t:
            print(f'{"":<26}throng/{r["server"]}: {t["msgs_per_sec"]/r["msgs_per_sec"]:.2f}x msgs/s, '
                  f'{t["per_cpu"]/r["per_cpu"]:.2f}x msgs per server-CPU-second')
print(f'\nraw results: {sys.argv[1]}')
print('note: when the generator CPU is near 100%, msgs/s is the generator\'s ceiling; '
      'msgs per server-CPU-second still compares the servers.')
PY
