#!/usr/bin/env bash
# Idle-connection memory: N upgraded WebSocket connections that send nothing, held against
# each server (pinned to core 0, one worker) by `throng bench connect` (pinned to core 1)
# from the source addresses 127.0.0.2-127.0.0.5 (--sources 4). Per connection it reports:
#   - user space: the growth of the server's RSS (/proc/PID/status VmRSS) / N;
#   - kernel, two ways, both machine-wide and so counting both ends of each loopback
#     connection (the generator's sockets too: about twice one server socket's share):
#     (a) the generator's figure, the growth of /proc/meminfo Slab / N. Slab pages keep
#         freed objects, so a server measured after another one reuses its predecessor's
#         free sockets and looks cheaper than it is; (b) this script's figure, the growth of
#         the bytes of *active* objects in /proc/slabinfo (active_objs x objsize, all caches
#         but tw_sock_* whose TIME_WAIT sockets from earlier runs expire meanwhile), read
#         while the connections are held. (b) does not depend on the order of the servers;
#         both move with whatever else the machine does, so compare within one run.
#     Before each server the script waits (at most 30 s) for the previous run's sockets
#     to be gone (/proc/net/sockstat TCP inuse back to its starting level).
#
# N defaults to 19,000 because the hard open-file limit here is 20,000 per process: the
# server needs one descriptor per connection plus its listener, epoll, eventfd and logs,
# and the generator (a separate process, with its own limit) one per connection too.
#
# Peers: node's ws; tokio-tungstenite with its defaults, whose per-connection read buffer
# is 128 KiB (WebSocketConfig::read_buffer_size), allocated for every connection and
# zero-filled on its first read, so it is resident even for a connection that never sends;
# and, for fairness, tokio-tungstenite-4k, the same peer with a 4 KiB read buffer.
#
# JSON lines (the generator's fields + "server" + "kernel_slab_active_per_conn_bytes") go
# to target/bench/idle-<time>.jsonl.
# Env: CONNS (default 19000), SOURCES (default 4), HOLD (seconds the generator keeps the
#      connections after measuring, default 3: this script reads slabinfo then), SERVERS
#      (default "throng node-ws tokio-tungstenite tokio-tungstenite-4k"), SERVER_CORE,
#      CLIENT_CORE, NO_BUILD=1.
set -Eeuo pipefail
source "$(dirname "$0")/lib/bench-common.sh"

CONNS=${CONNS:-19000}
SOURCES=${SOURCES:-4}
HOLD=${HOLD:-3}
SERVERS=${SERVERS:-"throng node-ws tokio-tungstenite tokio-tungstenite-4k"}

check_servers $SERVERS
require_tools taskset python3 cargo
case " $SERVERS " in *" node-ws "*) require_tools node npm ;; esac
raise_fd_limit
[ "$CONNS" -le $(($(ulimit -n) - 100)) ] ||
  die "CONNS=$CONNS does not fit the open-file limit $(ulimit -n) (server and generator each hold CONNS sockets)"
build_all $SERVERS
out="$BENCH_OUT/idle-$(date +%Y%m%dT%H%M%S).jsonl"
run_out=$(mktemp)
TMP_FILES+=("$run_out")

# Bytes held in active slab objects, all caches but the TIME_WAIT ones.
slab_active_bytes() {
  awk 'NR > 2 && $1 !~ /^tw_sock/ { s += $2 * $4 } END { printf "%d\n", s }' /proc/slabinfo
}


[ -r /proc/slabinfo ] || die "/proc/slabinfo is not readable (needs root)"
say "$CONNS idle connections per server from $SOURCES source addresses; servers on core $SERVER_CORE, generator on core $CLIENT_CORE"
# shellcheck disable=SC2034 # read by wait_sockets_gone (lib)
tcp_baseline=$(tcp_inuse)
for server in $SERVERS; do
  wait_sockets_gone "slab figures may be off"
  port=$(free_port)
  start_server "$server" "$port"
  sleep 1 # let the server finish starting up before its RSS is read
  say "$server: opening and holding $CONNS idle connections"
  slab_before=$(slab_active_bytes)
  taskset -c "$CLIENT_CORE" "$THRONG" bench connect --url "ws://127.0.0.1:$port/" \
    --conns "$CONNS" --sources "$SOURCES" --server-pid "$SERVER_PID" --hold "$HOLD" \
    >"$run_out" &
  GEN_PID=$!
  # The generator prints its JSON line once the connections are open, then holds them for
  # HOLD seconds: read slabinfo in that window (bounded by its 120 s connect budget).
  for i in $(seq 1 1500); do
    grep -q '^{' "$run_out" && break
    kill -0 "$GEN_PID" 2>/dev/null || break
    sleep 0.1
  done
  slab_after=$(slab_active_bytes)
  rc=0
  wait "$GEN_PID" || rc=$?
  GEN_PID=
  server_alive
  grep -q '^{' "$run_out" || die "throng bench connect against $server printed no result (exit $rc)"
  if [ "$rc" -ne 0 ]; then
    echo "warning: not every connection to $server was held (exit $rc); see conns_held" >&2
  fi
  held=$(python3 -c 'import json,sys; print(next(json.loads(l) for l in open(sys.argv[1]) if l.startswith("{"))["conns_held"])' "$run_out")
  active=$(python3 -c "print(round(($slab_after - $slab_before) / max($held, 1)))")
  say "$server: active slab objects grew by $(((slab_after - slab_before) / 1024)) KiB = $active B per connection (both ends)"
  tag "$server" "{\"generator_exit\": $rc, \"kernel_slab_active_per_conn_bytes\": $active}" \
    <"$run_out" >>"$out"
  stop_server
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def f(v):
    return "-" if v is None else f"{v:.0f}"
print()
print("per idle connection, in bytes; kernel figures are machine-wide (both loopback ends)")
print(f'{"server":<22}{"held":>7}{"failed":>7}{"user RSS":>10}{"slab active":>13}'
      f'{"slab meminfo":>14}{"RSS+active":>12}{"connects/s":>12}')
for r in rows:
    rss, act = r.get("rss_per_conn_bytes"), r.get("kernel_slab_active_per_conn_bytes")
    r["total"] = (rss or 0) + (act or 0)
    print(f'{r["server"]:<22}{r["conns_held"]:>7}{r["failed"]:>7}{f(rss):>10}{f(act):>13}'
          f'{f(r.get("kernel_slab_per_conn_bytes")):>14}{f(r["total"]):>12}'
          f'{f(r["connects_per_sec"]):>12}')
t = next((r for r in rows if r["server"] == "throng"), None)
if t:
    print()
    for r in rows:
        if r is t:
            continue
        parts = []
        for key, name in (("rss_per_conn_bytes", "user-space RSS"),
                          ("kernel_slab_active_per_conn_bytes", "kernel slab (active)"),
                          ("total", "RSS + slab")):
            a, b = t.get(key), r.get(key)
            if a and b and a > 0:
                parts.append(f"{name} {b / a:.1f}x")
        print(f'{r["server"]} per idle connection, as a multiple of throng: {", ".join(parts) or "-"}')
print(f'\nraw results: {sys.argv[1]}')
PY
