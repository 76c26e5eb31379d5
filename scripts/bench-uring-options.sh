#!/usr/bin/env bash
# The io_uring driver's opt-in options against its defaults, same machine, same run,
# 127.0.0.1 only: whether each pays here (issue E: measure; enable nothing that does not).
#
# Variants (VARIANTS, default "default sqpoll fixed zc"), each a `throng serve --driver
# uring` with these variables (src/runtime/uring/tuning.rs):
#   default   none;
#   sqpoll    THRONG_URING_SQPOLL=$SQPOLL_IDLE_MS, THRONG_URING_SQPOLL_CPU=$SERVER_CORE (the
#             polling thread shares the server's core, as the generator has the other);
#   fixed     THRONG_URING_FIXED_FILES=1 (registered files);
#   zc        THRONG_URING_SEND_ZC=$ZC_MIN (sends of at least ZC_MIN bytes, default 16384,
#             go zero-copy).
# Scenarios, server on core 0 (SERVER_CORE), `throng bench` on core 1 (CLIENT_CORE):
#   echo      64-byte text: 100 conns x 1 and x 8 in flight; large binary: LARGE_CONNS
#             (default 10) conns x 1 in flight of each size in LARGE_SIZES (default
#             "65536 1048576"), where zero-copy could pay;
#   fan-out   `throng bench fanout --mode shootout`, SUBSCRIBERS (default 1,000);
#   connect   CONNS (default 5,000) idle upgraded connections: connects/s and RSS per
#             connection (registered files add two syscalls per connection).
# The variants alternate, ROUNDS times (default 2); the table gives each figure's mean
# and its ratio to `default`. JSON lines go to target/bench/uring-options-<time>.jsonl.
#
# Env: SECS (default 8), WARMUP (default 2), VARIANTS, ROUNDS, SQPOLL_IDLE_MS (default
#      50), ZC_MIN, LARGE_CONNS, LARGE_SIZES, SUBSCRIBERS, CONNS, SERVER_CORE,
#      CLIENT_CORE, NO_BUILD=1.
set -Eeuo pipefail
source "$(dirname "$0")/lib/bench-common.sh"

SECS=${SECS:-8}
WARMUP=${WARMUP:-2}
VARIANTS=${VARIANTS:-"default sqpoll fixed zc"}
ROUNDS=${ROUNDS:-2}
SQPOLL_IDLE_MS=${SQPOLL_IDLE_MS:-50}
ZC_MIN=${ZC_MIN:-16384}
LARGE_CONNS=${LARGE_CONNS:-10}
LARGE_SIZES=${LARGE_SIZES:-"65536 1048576"}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
CONNS=${CONNS:-5000}

require_tools taskset python3 cargo
raise_fd_limit
[ "$CONNS" -le $(($(ulimit -n) - 100)) ] ||
  die "CONNS=$CONNS does not fit the open-file limit $(ulimit -n)"
build_all throng
out="$BENCH_OUT/uring-options-$(date +%Y%m%dT%H%M%S).jsonl"
tcp_baseline=$(tcp_inuse)
THRONG_DRIVER=uring

say "kernel $(uname -r), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg); server on core $SERVER_CORE, generator on core $CLIENT_CORE"

# use_variant NAME: exports the variables of variant NAME (and unsets the others).
use_variant() {
  unset THRONG_URING_SQPOLL THRONG_URING_SQPOLL_CPU THRONG_URING_FIXED_FILES THRONG_URING_SEND_ZC
  case $1 in
    default) ;;
    sqpoll) export THRONG_URING_SQPOLL=$SQPOLL_IDLE_MS THRONG_URING_SQPOLL_CPU=$SERVER_CORE ;;
    fixed) export THRONG_URING_FIXED_FILES=1 ;;
    zc) export THRONG_URING_SEND_ZC=$ZC_MIN ;;
    *) die "unknown variant '$1' (default sqpoll fixed zc)" ;;
  esac
}

# measure VARIANT CMD...: the generator's JSON line, tagged with the variant and the
# server's CPU share (every thread, the SQPOLL thread too), appended to $out.
measure() {
  local variant=$1
  shift
  measure_cpu "$out" "throng-uring-$variant" variant "$variant" "$@"
}

for round in $(seq 1 "$ROUNDS"); do
for variant in $VARIANTS; do
  say "round $round of $ROUNDS: $variant"
  use_variant "$variant"
  THRONG_APP=echo
  port=$(free_port)
  start_server throng "$port"
  for inflight in 1 8; do
    say "$variant: echo 100 conns x 64 B, $inflight in flight"
    measure "$variant" bench echo --url "ws://127.0.0.1:$port/" --conns 100 \
      --inflight "$inflight" --size 64 --secs "$SECS" --warmup "$WARMUP"
  done
  for size in $LARGE_SIZES; do
    say "$variant: echo $LARGE_CONNS conns x $size B binary, 1 in flight"
    measure "$variant" bench echo --url "ws://127.0.0.1:$port/" --conns "$LARGE_CONNS" \
      --inflight 1 --size "$size" --binary --secs "$SECS" --warmup "$WARMUP"
  done
  stop_server
  wait_sockets_gone "before the connect run"

  connect_then_fanout "$variant"
  grep -h "SEND_ZC\|io_uring driver" "$BENCH_OUT/throng.log" >&2 || true
done
done
use_variant default

python3 - "$out" "$VARIANTS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
variants = sys.argv[2].split()

def key(r):
    if r["mode"] == "echo":
        return f'echo {r["conns"]} x {r["size"]} B, {r["inflight"]} in flight'
    if r["mode"] == "fanout":
        return f'fan-out to {r["subscribed"]} subscribers'
    return f'connect {r["conns_requested"]} idle conns'

def per_cpu(field):
    return lambda r: r[field] / max(r["server_cpu_percent"], 1) * 100

fields = {
    "echo": [("msgs/s", "msgs_per_sec"), ("p99 us", "p99_us"),
             ("server CPU %", "server_cpu_percent"), ("msgs/server-CPU-s", per_cpu("msgs_per_sec"))],
    "fanout": [("deliveries/s", "deliveries_per_sec"), ("p99 us", "p99_us"),
               ("server CPU %", "server_cpu_percent"),
               ("deliv/server-CPU-s", per_cpu("deliveries_per_sec"))],
    "connect": [("connects/s", "connects_per_sec"),
                ("RSS B/conn past 1/10", "rss_marginal_per_conn_bytes"),
                ("kernel slab B/conn", "kernel_slab_per_conn_bytes")],
}

def value(rs, f):
    vals = [f(r) if callable(f) else r.get(f) for r in rs]
    vals = [v for v in vals if v is not None]
    return statistics.mean(vals) if vals else None

base = variants[0]
others = variants[1:]
head = f'{"scenario":<34}{"figure":<21}{base:>11}'
for v in others:
    head += f'{v:>11}{"/" + base:>10}'
print()
print(head)
for k in dict.fromkeys(key(r) for r in rows):
    group = [r for r in rows if key(r) == k]
    for label, f in fields[group[0]["mode"]]:
        b = value([r for r in group if r["variant"] == base], f)
        line = f'{k:<34}{label:<21}{"-" if b is None else f"{b:.0f}":>11}'
        for v in others:
            x = value([r for r in group if r["variant"] == v], f)
            line += f'{"-" if x is None else f"{x:.0f}":>11}'
            line += f'{f"{x / b:.2f}x" if x is not None and b else "-":>10}'
        print(line)
    bad = sorted({r["variant"] for r in group if r.get("generator_exit") or r.get("errors")})
    if bad:
        print(f'{"":<34}errors or a failing generator with: {", ".join(bad)}')
print(f"\nraw results: {sys.argv[1]}")
print("msgs/s, deliveries/s, connects/s: higher is better; latency, CPU, memory: lower is better.")
PY
