#!/usr/bin/env bash
# Cross-host Socket.IO broadcast benchmark (the Redis bridge, README "Redis bridge"):
# a broadcast published on one server and delivered by another through Redis, against the
# same broadcast on a single server, and against Node socket.io 4.8 with
# @socket.io/redis-adapter 8.x (benches/peers/socketio/server.js, REDIS_URL), all in one
# run, 127.0.0.1 only.
#
# Setups, each with fresh servers (one worker each; Node: its one JS thread):
#   single: one server, no Redis; the publisher and the SUBSCRIBERS subscribers on it.
#   cross:  two servers A and B on one Redis (throng `--redis-url`, Node REDIS_URL); the
#           publisher on A (`throng bench fanout --pub-url A`), the subscribers on B, so
#           every delivery goes A -> Redis -> B. The publisher's own copy comes from A.
# Loads, each `throng bench fanout --proto socketio` (sio-shootout: broadcast(P) to every
# socket of `/` on every host, then broadcastResult(P) to the sender):
#   load:  WINDOW publishes unacknowledged, the subscribers at most MAX_LAG publishes
#          behind (both 64 by default: cross-host, the ack comes from A before B
#          delivers, so only --max-lag bounds B's queue; the same bound holds for both
#          setups): deliveries/s at saturation; the latency there is mostly that queue
#          (up to MAX_LAG x SUBSCRIBERS deliveries) over the rate.
#   probe: one broadcast at a time (--window 1 --max-lag 1): the next is sent once the
#          subscribers got the last one; the latency of a broadcast on an idle path.
# Servers and Redis share core 0 (SERVER_CORE); the generator runs on core 1 (CLIENT_CORE).
# For each run: deliveries/s, delivery latency p50/p99 (send to receipt, one clock), the
# CPU of server A, server B and Redis over the run (from /proc), the generator's CPU; then
# the ratios: throng cross-host latency / throng single-host (goal <= 2x) and throng
# cross-host deliveries/s / Node cross-host (goal >= 10x). JSON lines (the generator's
# fields + "server" + "setup" + "load" + CPU figures + "generator_exit" + "loadavg_1m") go
# to target/bench/bridge-<time>.jsonl.
#
# Env: SECS (measured seconds, default 10), WARMUP (default 2), SUBSCRIBERS (default 1000),
#      SIZE (payload bytes, default 64), WINDOW (default 64), MAX_LAG (default 64),
#      SERVERS (default "throng node-socketio"), SETUPS (default "single cross"), LOADS
#      (default "load probe"), GEN_THREADS (default 1), SOURCES (default 4),
#      REDIS_SERVER (default redis-server), SERVER_CORE, CLIENT_CORE, NO_BUILD=1.
set -Eeuo pipefail
# shellcheck disable=SC2034 # read by lib/bench-common.sh
THRONG_APP=sio-shootout
# shellcheck source=lib/bench-common.sh
source "$(dirname "$0")/lib/bench-common.sh"

SECS=${SECS:-10}
WARMUP=${WARMUP:-2}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
SIZE=${SIZE:-64}
WINDOW=${WINDOW:-64}
MAX_LAG=${MAX_LAG:-64}
SERVERS=${SERVERS:-"throng node-socketio"}
SETUPS=${SETUPS:-"single cross"}
LOADS=${LOADS:-"load probe"}
GEN_THREADS=${GEN_THREADS:-1}
SOURCES=${SOURCES:-4}
REDIS_SERVER=${REDIS_SERVER:-redis-server}

for server in $SERVERS; do
  case $server in
    throng | node-socketio) ;;
    *) die "server '$server' has no Redis bus here (throng, node-socketio)" ;;
  esac
done
for setup in $SETUPS; do
  case $setup in
    single | cross) ;;
    *) die "unknown setup '$setup' (single, cross)" ;;
  esac
done
for load in $LOADS; do
  case $load in
    load | probe) ;;
    *) die "unknown load '$load' (load, probe)" ;;
  esac
done
for v in SECS WARMUP SUBSCRIBERS SIZE WINDOW MAX_LAG GEN_THREADS SOURCES; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v=${!v} is not a number"
done
require_tools taskset python3 cargo
case " $SETUPS " in *" cross "*) require_tools "$REDIS_SERVER" redis-cli ;; esac
case " $SERVERS " in *" node-socketio "*)
  require_tools node npm
  [ -f "$SIO_DIR/server.js" ] || die "$SIO_DIR/server.js is missing"
  ;;
esac
raise_fd_limit
[ "$SUBSCRIBERS" -le $(($(ulimit -n) - 100)) ] ||
  die "$SUBSCRIBERS subscribers do not fit the open-file limit $(ulimit -n)"
build_all $SERVERS
case " $SERVERS " in *" node-socketio "*)
  # build_all installs socket.io only; an older install may lack the adapter.
  if [ ! -d "$SIO_DIR/node_modules/@socket.io/redis-adapter" ] ||
    [ ! -d "$SIO_DIR/node_modules/redis" ]; then
    say "installing the Node peer's redis-adapter (npm ci in $SIO_DIR)"
    npm ci --prefix "$SIO_DIR" --no-audit --no-fund --loglevel=error || die "npm ci failed"
  fi
  ;;
esac
"$THRONG" bench fanout --help 2>/dev/null | grep -q -- '--pub-url' ||
  die "this throng has no 'bench fanout --pub-url'"
out="$BENCH_OUT/bridge-$(date +%Y%m%dT%H%M%S).jsonl"
run_out=$(mktemp)
TMP_FILES+=("$run_out")

# The processes of this run (servers, Redis), as "pid:name", stopped in reverse order.
PROCS=()

# start_proc NAME PORT CMD...: starts CMD on SERVER_CORE (log: target/bench/bridge-NAME.log)
# and waits at most 20 s for 127.0.0.1:PORT. Sets PROC_PID.
start_proc() {
  local name=$1 port=$2
  shift 2
  local log="$BENCH_OUT/bridge-$name.log"
  say "starting $name on core $SERVER_CORE: $* (log: $log)"
  taskset -c "$SERVER_CORE" "$@" >"$log" 2>&1 &
  PROC_PID=$!
  PROCS+=("$PROC_PID:$name")
  wait_listening "$PROC_PID" "$port" "$name" "$log"
}

# stop_procs [KEEP]: SIGTERM to each process but the first KEEP (started first), up to 5 s
# each, then SIGKILL.
stop_procs() {
  local keep=${1:-0} entry
  while [ "${#PROCS[@]}" -gt "$keep" ]; do
    entry=${PROCS[-1]}
    unset 'PROCS[-1]'
    stop_pid "${entry%%:*}" "${entry#*:}"
  done
}

# Alive, or fails with the log's tail.
alive() {
  local pid=$1 name=$2
  kill -0 "$pid" 2>/dev/null && return 0
  tail -n 20 "$BENCH_OUT/bridge-$name.log" >&2
  die "$name died during the run (log: $BENCH_OUT/bridge-$name.log)"
}

bridge_cleanup() {
  trap - ERR
  if [ -n "${GEN_PID:-}" ]; then
    kill "$GEN_PID" 2>/dev/null || true
    wait "$GEN_PID" 2>/dev/null || true
    GEN_PID=
  fi
  stop_procs 0
  rm -f "${TMP_FILES[@]}"
}
trap bridge_cleanup EXIT


# Waits (at most 10 s) until N connections to Redis hold a pattern subscription: both
# hosts listen on the bus before anything is published.
wait_bus() {
  local n=$1 have _
  for _ in $(seq 1 50); do
    have=$(redis-cli -h 127.0.0.1 -p "$redis_port" CLIENT LIST | grep -c ' psub=[1-9]' || true)
    [ "$have" -ge "$n" ] && return 0
    sleep 0.2
  done
  die "only $have of $n servers subscribed on Redis within 10 s"
}

# start_host SERVER NAME PORT [REDIS_URL]: one server on 127.0.0.1:PORT.
start_host() {
  local server=$1 name=$2 port=$3 redis=${4:-}
  case $server in
    throng)
      start_proc "$name" "$port" "$THRONG" serve --host 127.0.0.1 --port "$port" \
        --app sio-shootout --workers 1 --driver epoll ${redis:+--redis-url "$redis"}
      ;;
    node-socketio)
      start_proc "$name" "$port" env ${redis:+REDIS_URL="$redis"} node "$SIO_DIR/server.js" "$port"
      ;;
  esac
}

# cpu_pct TICKS0 TICKS1 T0 T1: CPU % of one core between two readings.
cpu_pct() {
  python3 -c "print(round(($2 - $1) / $tck / ($4 - $3) * 100))"
}

# run_one SERVER SETUP LOAD: fresh servers, the generator, CPU figures, JSON to $out.
run_one() {
  local server=$1 setup=$2 load=$3
  wait_sockets_gone
  local port_a port_b pid_a pid_b=
  port_a=$(free_port)
  if [ "$setup" = single ]; then
    start_host "$server" "$server-a" "$port_a"
    pid_a=$PROC_PID
    port_b=$port_a
  else
    local bus="redis://127.0.0.1:$redis_port"
    start_host "$server" "$server-a" "$port_a" "$bus"
    pid_a=$PROC_PID
    port_b=$(free_port)
    start_host "$server" "$server-b" "$port_b" "$bus"
    pid_b=$PROC_PID
    wait_bus 2
  fi
  sleep 0.5
  local -a flags=(--window "$WINDOW" --max-lag "$MAX_LAG")
  [ "$load" = load ] || flags=(--window 1 --max-lag 1)
  local -a cmd=(bench fanout --proto socketio --url "ws://127.0.0.1:$port_b/"
    --subscribers "$SUBSCRIBERS" --size "$SIZE" --secs "$SECS" --warmup "$WARMUP"
    --threads "$GEN_THREADS" --sources "$SOURCES" "${flags[@]}")
  [ "$setup" = single ] || cmd+=(--pub-url "ws://127.0.0.1:$port_a/")
  say "$server, $setup, $load: throng ${cmd[*]}"
  local a0 b0=0 r0=0 a1 b1=0 r1=0 t0 t1 rc
  a0=$(cpu_ticks "$pid_a")
  [ -z "$pid_b" ] || b0=$(cpu_ticks "$pid_b")
  [ -z "${redis_pid:-}" ] || r0=$(cpu_ticks "$redis_pid")
  t0=$(date +%s.%N)
  run_generator "$run_out" "$THRONG" "${cmd[@]}"
  rc=$GEN_RC
  t1=$(date +%s.%N)
  alive "$pid_a" "$server-a"
  [ -z "$pid_b" ] || alive "$pid_b" "$server-b"
  a1=$(cpu_ticks "$pid_a")
  [ -z "$pid_b" ] || b1=$(cpu_ticks "$pid_b")
  [ -z "${redis_pid:-}" ] || r1=$(cpu_ticks "$redis_pid")
  grep -q '^{' "$run_out" || die "throng bench fanout ($server, $setup, $load) printed no result (exit $rc)"
  [ "$rc" -eq 0 ] ||
    echo "warning: throng bench fanout exited $rc ($server, $setup, $load; kept in the JSON, flagged in the table)" >&2
  local cpu_a cpu_b cpu_r load_avg
  cpu_a=$(cpu_pct "$a0" "$a1" "$t0" "$t1")
  cpu_b=$(cpu_pct "$b0" "$b1" "$t0" "$t1")
  cpu_r=0
  [ "$setup" = single ] || cpu_r=$(cpu_pct "$r0" "$r1" "$t0" "$t1")
  load_avg=$(cut -d" " -f1 /proc/loadavg)
  tag "$server" "{\"setup\": \"$setup\", \"load\": \"$load\", \"cpu_a_percent\": $cpu_a, \"cpu_b_percent\": $cpu_b, \"redis_cpu_percent\": $cpu_r, \"generator_exit\": $rc, \"loadavg_1m\": $load_avg}" \
    <"$run_out" >>"$out"
  # Keep Redis (the first process) when it runs.
  stop_procs "$keep"
}

say "kernel $(uname -r), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg) (other work on these cores skews the figures); servers and Redis on core $SERVER_CORE, generator on core $CLIENT_CORE"
say "servers: $SERVERS; setups: $SETUPS; loads: $LOADS; $SUBSCRIBERS subscribers, $SIZE B, ${WARMUP}s warmup + ${SECS}s; load: window $WINDOW, max lag $MAX_LAG; probe: window 1, max lag 1"
tck=$(getconf CLK_TCK)
# shellcheck disable=SC2034 # read by wait_sockets_gone (lib)
tcp_baseline=$(tcp_inuse)
keep=0
redis_pid=
redis_port=
case " $SETUPS " in *" cross "*)
  redis_port=$(free_port)
  start_proc redis "$redis_port" "$REDIS_SERVER" --bind 127.0.0.1 --port "$redis_port" \
    --save '' --appendonly no
  redis_pid=$PROC_PID
  keep=1
  say "$("$REDIS_SERVER" --version | cut -d' ' -f1-3) on 127.0.0.1:$redis_port"
  ;;
esac
for server in $SERVERS; do
  for setup in $SETUPS; do
    for load in $LOADS; do
      run_one "$server" "$setup" "$load"
    done
  done
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]

def flags(r):
    out = [f'exit={r["generator_exit"]}'] if r.get("generator_exit") else []
    out += [f"{k}={r[k]}" for k in ("lost", "duplicates", "out_of_order", "unexpected",
            "missing_acks", "publisher_missing", "connect_failed", "connections_lost",
            "error") if r.get(k)]
    if r.get("cpu_percent", 0) >= 90:  # the generator has one core
        out.append("generator-bound?")
    return " ".join(out)

print()
print(f'{"server":<15}{"setup":<8}{"load":<7}{"deliveries/s":>14}{"publishes/s":>13}'
      f'{"p50 us":>10}{"p99 us":>10}{"A CPU%":>8}{"B CPU%":>8}{"Redis%":>8}{"gen CPU%":>10}'
      f'{"load":>6}  flags')
fig = {}
for r in rows:
    key = (r["server"], r["setup"], r["load"])
    fig[key] = r
    b = "-" if r["setup"] == "single" else r["cpu_b_percent"]
    red = "-" if r["setup"] == "single" else r["redis_cpu_percent"]
    print(f'{r["server"]:<15}{r["setup"]:<8}{r["load"]:<7}{r["deliveries_per_sec"]:>14,.0f}'
          f'{r["publishes_per_sec"]:>13,.0f}{r["p50_us"]:>10}{r["p99_us"]:>10}'
          f'{r["cpu_a_percent"]:>8}{b:>8}{red:>8}{r["cpu_percent"]:>10.0f}'
          f'{r["loadavg_1m"]:>6.1f}  {flags(r)}')

def ratio(num, den, lower_better, goal):
    if not num or not den or num not in fig or den not in fig:
        return
    for field, what in (("p50_us", "p50 latency"), ("p99_us", "p99 latency")) if lower_better \
            else (("deliveries_per_sec", "deliveries/s"),):
        a, b = fig[num][field], fig[den][field]
        if not a or not b:
            continue
        x = a / b
        if goal is None:
            verdict = ""
        elif lower_better:
            verdict = f'  (goal <= {goal}x: {"met" if x <= goal else "NOT met"})'
        else:
            verdict = f'  (goal >= {goal}x: {"met" if x >= goal else "NOT met"})'
        label = f'{"/".join(num)} vs {"/".join(den)}: {what}'
        print(f"{label:<72}{a:>12,.0f} / {b:>12,.0f} = {x:8.2f}x{verdict}")

print()
loads = list(dict.fromkeys(r["load"] for r in rows))
for load in loads:
    ratio(("throng", "cross", load), ("throng", "single", load), True, 2)
ratio(("throng", "cross", "load"), ("node-socketio", "cross", "load"), False, 10)
for load in loads:
    ratio(("node-socketio", "cross", load), ("node-socketio", "single", load), True, None)
ratio(("throng", "single", "load"), ("node-socketio", "single", "load"), False, None)
print(f'\nraw results: {sys.argv[1]}')
print("notes: servers and Redis shared core 0, the generator core 1; A is the publisher's "
      "server (the only one in 'single'), B the subscribers'; CPU% is over the whole "
      "generator run (connects and warmup included); 'load' latency is mostly the queue "
      "--window/--max-lag allow over the rate, 'probe' is one broadcast at a time; "
      "generator-bound? marks runs where the generator used ~all of its core.")
PY
