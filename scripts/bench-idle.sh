#!/usr/bin/env bash
# Idle-connection memory: N upgraded connections that send nothing, held against each
# server (pinned to core 0) by `throng bench connect` (core 1) from source addresses
# 127.0.0.2-5. Reports the server's RSS growth per connection (user space) and the
# kernel's slab growth per connection (machine-wide: both ends of each loopback
# connection, so about twice one socket's share).
# N defaults to 19,000: the hard open-file limit here is 20,000 per process, and the
# server and the generator are separate processes, each holding N sockets.
# Env: CONNS (default 19000), SERVERS. JSON lines go to target/bench/idle-<time>.jsonl.
set -euo pipefail
source "$(dirname "$0")/lib/bench-common.sh"

CONNS=${CONNS:-19000}
SERVERS=${SERVERS:-"throng node-ws tokio-tungstenite"}
out="$ROOT/target/bench/idle-$(date +%Y%m%dT%H%M%S).jsonl"

build_all
for server in $SERVERS; do
  port=$(free_port)
  start_server "$server" "$port"
  sleep 0.5
  echo "-- $server: $CONNS idle connections" >&2
  taskset -c "$CLIENT_CORE" "$THRONG" bench connect --url "ws://127.0.0.1:$port/" --conns "$CONNS" \
    --sources 4 --server-pid "$SERVER_PID" --hold 1 | tag "$server" '{}' >>"$out"
  stop_server
  sleep 1
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print(f'{"server":<20}{"held":>8}{"RSS B/conn":>12}{"kernel slab B/conn (2 ends)":>30}{"connects/s":>12}')
for r in rows:
    print(f'{r["server"]:<20}{r["conns_held"]:>8}{r["rss_per_conn_bytes"] or 0:>12.0f}'
          f'{r["kernel_slab_per_conn_bytes"] or 0:>30.0f}{r["connects_per_sec"]:>12.0f}')
t = next((r for r in rows if r["server"] == "throng"), None)
for r in rows:
    if t and r is not t and t["rss_per_conn_bytes"]:
        print(f'{r["server"]} uses {r["rss_per_conn_bytes"]/t["rss_per_conn_bytes"]:.1f}x the memory per idle connection of throng')
print(f'\nraw results: {sys.argv[1]}')
PY
