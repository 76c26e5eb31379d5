#!/usr/bin/env bash
# throng on epoll against throng on io_uring, same machine, same run, 127.0.0.1 only.
#
# The server (one worker) is pinned to core 0 (SERVER_CORE), the generator (`throng bench`)
# to core 1 (CLIENT_CORE). For each driver, in this order:
#   echo      `throng bench echo`, 64-byte text: 100 conns x 1 in flight, 100 x 8, 1,000 x 1
#             (msgs/s, p99, the server's CPU);
#   fan-out   `throng bench fanout --mode shootout` against `--app shootout`: SUBSCRIBERS
#             (default 1,000) subscribers (deliveries/s, p99);
#   connect   `throng bench connect`: CONNS (default 10,000) upgraded idle connections from 4
#             source addresses (connects/s; the server's RSS growth per connection, overall
#             and past the first tenth (what one more connection costs, with fixed costs
#             the first connections touch, such as io_uring's provided buffers, counted
#             once); the machine's slab growth per connection, both ends of each loopback
#             connection).
# The drivers alternate, ROUNDS times (default 2), so that other work on the machine hits
# both alike; the table shows each figure's mean over the rounds, and uring/epoll ratios
# (for latency and memory, lower is better). Per server-CPU-second figures (throughput over
# the server's own CPU use) say how much work each driver does per message, which noise
# from other processes moves less than throughput.
# JSON lines (the generator's fields + "server", "driver", "server_cpu_percent") go to
# target/bench/drivers-<time>.jsonl.
#
# Env: SECS (measured seconds, default 8), WARMUP (default 2), SCENARIOS (echo CONNS:INFLIGHT
#      pairs, default "100:1 100:8 1000:1"), SUBSCRIBERS (default 1000), CONNS (default
#      10000), DRIVERS (default "epoll uring"), ROUNDS (default 2), SERVER_CORE, CLIENT_CORE,
#      NO_BUILD=1.
set -Eeuo pipefail
source "$(dirname "$0")/lib/bench-common.sh"

SECS=${SECS:-8}
WARMUP=${WARMUP:-2}
SCENARIOS=${SCENARIOS:-"100:1 100:8 1000:1"}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
CONNS=${CONNS:-10000}
DRIVERS=${DRIVERS:-"epoll uring"}
ROUNDS=${ROUNDS:-2}

require_tools taskset python3 cargo
raise_fd_limit
[ "$CONNS" -le $(($(ulimit -n) - 100)) ] ||
  die "CONNS=$CONNS does not fit the open-file limit $(ulimit -n)"
# A kernel that cannot run io_uring makes the uring server exit at once with the reason,
# which start_server shows.
build_all throng
out="$BENCH_OUT/drivers-$(date +%Y%m%dT%H%M%S).jsonl"
tcp_baseline=$(tcp_inuse)

say "kernel $(uname -r), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg) (other work on these cores skews the figures); server on core $SERVER_CORE, generator on core $CLIENT_CORE"

# measure DRIVER CMD...: the generator's JSON line, tagged with the driver and the
# server's CPU share, appended to $out.
measure() {
  local driver=$1
  shift
  measure_cpu "$out" "throng-$driver" driver "$driver" "$@"
}

for round in $(seq 1 "$ROUNDS"); do
for driver in $DRIVERS; do
  say "round $round of $ROUNDS: $driver"
  THRONG_DRIVER=$driver
  THRONG_APP=echo
  port=$(free_port)
  start_server throng "$port"
  for sc in $SCENARIOS; do
    say "$driver: echo $((${sc%%:*})) conns, ${sc##*:} in flight"
    measure "$driver" bench echo --url "ws://127.0.0.1:$port/" --conns "${sc%%:*}" \
      --inflight "${sc##*:}" --size 64 --secs "$SECS" --warmup "$WARMUP"
  done
  stop_server
  wait_sockets_gone "before the connect run"

  connect_then_fanout "$driver"
done
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]

def key(r):
    if r["mode"] == "echo":
        return f'echo {r["conns"]} conns x {r["size"]} B, {r["inflight"]} in flight'
    if r["mode"] == "fanout":
        return f'fan-out to {r["subscribed"]} subscribers'
    return f'connect {r["conns_requested"]} idle conns'

def per_cpu(field):
    return lambda r: r[field] / max(r["server_cpu_percent"], 1) * 100

# (label, field or function)
fields = {
    "echo": [("msgs/s", "msgs_per_sec"), ("p99 us", "p99_us"),
             ("server CPU %", "server_cpu_percent"), ("msgs/server-CPU-s", per_cpu("msgs_per_sec"))],
    "fanout": [("deliveries/s", "deliveries_per_sec"), ("p99 us", "p99_us"), ("lost", "lost"),
               ("server CPU %", "server_cpu_percent"),
               ("deliv/server-CPU-s", per_cpu("deliveries_per_sec"))],
    "connect": [("connects/s", "connects_per_sec"),
                ("server RSS B/conn", "rss_per_conn_bytes"),
                ("RSS B/conn past 1/10", "rss_marginal_per_conn_bytes"),
                ("server RSS KiB before", "server_rss_before_kb"),
                ("kernel slab B/conn", "kernel_slab_per_conn_bytes")],
}

def value(rs, f):
    if not rs:
        return None
    vals = [f(r) if callable(f) else r.get(f) for r in rs]
    vals = [v for v in vals if v is not None]
    return statistics.mean(vals) if vals else None

print()
print(f'{"scenario":<40}{"figure":<23}{"epoll":>12}{"uring":>12}{"uring/epoll":>13}')
for k in dict.fromkeys(key(r) for r in rows):
    group = [r for r in rows if key(r) == k]
    e = [r for r in group if r["driver"] == "epoll"]
    u = [r for r in group if r["driver"] == "uring"]
    for label, f in fields[group[0]["mode"]]:
        ev, uv = value(e, f), value(u, f)
        ratio = f"{uv / ev:.2f}x" if ev and uv is not None else "-"
        fmt = lambda v: "-" if v is None else f"{v:.0f}"
        print(f'{k:<40}{label:<23}{fmt(ev):>12}{fmt(uv):>12}{ratio:>13}')
    bad = sorted({r["driver"] for r in group if r.get("generator_exit") or r.get("errors")})
    if bad:
        print(f'{"":<40}errors or a failing generator with: {", ".join(bad)}')
rounds = max(1, len(rows) // max(1, len({(r["driver"], key(r)) for r in rows})))
print(f"\nmeans over {rounds} round(s); raw results: {sys.argv[1]}")
print("msgs/s, deliveries/s, connects/s: higher is better; latency, memory: lower is better. "
      "A generator near 100% CPU (cpu_percent in the JSON) caps msgs/s for both drivers.")
PY
