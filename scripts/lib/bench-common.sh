# Shared by scripts/bench-echo.sh, scripts/bench-idle.sh, scripts/bench-fanout.sh and
# scripts/bench-sio.sh: build
# the servers, start one pinned to a core, wait (bounded) for its port, read its CPU time,
# stop it, and tag the generator's JSON lines. Loopback (127.0.0.1) only. Source this file; do not run it.
#
# Servers: throng (1 worker, epoll, `--app $THRONG_APP`), tokio-tungstenite (1 runtime
# worker thread), tokio-tungstenite-4k (the same with a 4 KiB read buffer instead of
# tungstenite's 128 KiB default), node-ws (node's `ws`, one JS thread by nature); and, for the
# shootout protocol (echo + broadcast, scripts/bench-fanout.sh, which sets THRONG_APP=shootout):
# tokio-tungstenite-shootout (benches/peers/tokio-tungstenite-shootout, 1 runtime worker
# thread) and node-ws-shootout (benches/peers/node-ws/shootout.js); and, for the
# sio-shootout protocol over Socket.IO (scripts/bench-sio.sh, THRONG_APP=sio-shootout):
# node-socketio (benches/peers/socketio/server.js, Node socket.io 4.8, one JS thread).
#
# Env: SERVER_CORE (default 0), CLIENT_CORE (default 1), NO_BUILD=1 to skip the builds.
# Set by the sourcing script: THRONG_APP (default echo), THRONG_DRIVER (default epoll).

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
THRONG="$ROOT/target/release/throng"
TT_DIR="$ROOT/benches/peers/tokio-tungstenite-echo"
TT_ECHO="$TT_DIR/target/release/tokio-tungstenite-echo"
TT_SHOOT_DIR="$ROOT/benches/peers/tokio-tungstenite-shootout"
TT_SHOOT="$TT_SHOOT_DIR/target/release/tokio-tungstenite-shootout"
NODE_DIR="$ROOT/benches/peers/node-ws"
SIO_DIR="$ROOT/benches/peers/socketio"
BENCH_OUT="$ROOT/target/bench"
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
SERVER_PID=
SERVER_NAME=
THRONG_APP=${THRONG_APP:-echo}
THRONG_DRIVER=${THRONG_DRIVER:-epoll}
SERVER_NAMES="throng, tokio-tungstenite, tokio-tungstenite-4k, node-ws, \
tokio-tungstenite-shootout, node-ws-shootout, node-socketio"

say() { echo "== $*" >&2; }
die() {
  echo "error: $*" >&2
  exit 1
}

# The generator running in the background, and temporary files, for `cleanup`.
GEN_PID=
TMP_FILES=()

# On every exit (normal, error, Ctrl-C, SIGTERM): stop the generator, then the server.
cleanup() {
  trap - ERR
  if [ -n "${GEN_PID:-}" ]; then
    kill "$GEN_PID" 2>/dev/null || true
    wait "$GEN_PID" 2>/dev/null || true
    GEN_PID=
  fi
  stop_server
  rm -f "${TMP_FILES[@]}"
}

# Every failing command names itself.
trap 'echo "error: \"$BASH_COMMAND\" failed (line $LINENO of $(basename "$0"))" >&2' ERR
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || die "$tool is needed and not installed"
  done
  local cores
  cores=$(nproc)
  [ "$SERVER_CORE" -lt "$cores" ] && [ "$CLIENT_CORE" -lt "$cores" ] ||
    die "SERVER_CORE=$SERVER_CORE / CLIENT_CORE=$CLIENT_CORE: this machine has $cores cores"
}

# check_servers NAMES...: fails at once on a name start_server does not know.
check_servers() {
  local name
  for name in "$@"; do
    case $name in
      throng | tokio-tungstenite | tokio-tungstenite-4k | node-ws) ;;
      tokio-tungstenite-shootout | node-ws-shootout | node-socketio) ;;
      *) die "unknown server '$name' ($SERVER_NAMES)" ;;
    esac
  done
}

# Raises this shell's soft open-file limit to the hard one, so that every server and the
# generator started from here may hold that many sockets (node raises its own; tokio does not).
raise_fd_limit() {
  ulimit -n "$(ulimit -Hn)"
  say "open-file limit: $(ulimit -n) per process"
}

# build_all SERVERS...: builds throng (release), and the peers the list names.
build_all() {
  if [ "${NO_BUILD:-0}" = 1 ]; then
    say "NO_BUILD=1: using the binaries already built"
  else
    say "building throng (cargo build --release)"
    (cd "$ROOT" && nice -n 5 cargo build --release --quiet) || die "building throng failed"
    case " $* " in *" tokio-tungstenite "* | *" tokio-tungstenite-4k "*)
      say "building the tokio-tungstenite peer (cargo build --release in $TT_DIR)"
      (cd "$TT_DIR" && nice -n 5 cargo build --release --quiet) ||
        die "building the tokio-tungstenite peer failed"
      ;;
    esac
    case " $* " in *" tokio-tungstenite-shootout "*)
      say "building the tokio-tungstenite shootout peer (cargo build --release in $TT_SHOOT_DIR)"
      (cd "$TT_SHOOT_DIR" && nice -n 5 cargo build --release --quiet) ||
        die "building the tokio-tungstenite shootout peer failed"
      ;;
    esac
  fi
  case " $* " in *" node-ws "* | *" node-ws-shootout "*)
    if [ ! -d "$NODE_DIR/node_modules/ws" ]; then
      say "installing node's ws (npm ci in $NODE_DIR)"
      npm ci --prefix "$NODE_DIR" --no-audit --no-fund --loglevel=error || die "npm ci failed"
    fi
    ;;
  esac
  case " $* " in *" node-socketio "*)
    if [ ! -d "$SIO_DIR/node_modules/socket.io" ]; then
      say "installing node's socket.io (npm ci in $SIO_DIR)"
      npm ci --prefix "$SIO_DIR" --no-audit --no-fund --loglevel=error || die "npm ci failed"
    fi
    ;;
  esac
  [ -x "$THRONG" ] || die "$THRONG is missing"
  mkdir -p "$BENCH_OUT"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

port_open() {
  python3 -c "import socket; socket.create_connection(('127.0.0.1', $1), 0.2).close()" 2>/dev/null
}

# start_server NAME PORT: starts NAME on SERVER_CORE, listening on 127.0.0.1:PORT, and waits
# at most 20 s for the port to accept connections. Sets SERVER_PID.
start_server() {
  local name=$1 port=$2 log="$BENCH_OUT/$1.log"
  local -a cmd
  case $name in
    throng)
      cmd=("$THRONG" serve --host 127.0.0.1 --port "$port" --app "$THRONG_APP" --workers 1 \
        --driver "$THRONG_DRIVER") ;;
    tokio-tungstenite)
      cmd=("$TT_ECHO" --port "$port" --threads 1) ;;
    tokio-tungstenite-4k)
      cmd=("$TT_ECHO" --port "$port" --threads 1 --read-buffer 4096) ;;
    node-ws)
      cmd=(node "$NODE_DIR/echo.js" --port "$port") ;;
    tokio-tungstenite-shootout)
      cmd=("$TT_SHOOT" --port "$port" --threads 1) ;;
    node-ws-shootout)
      cmd=(node "$NODE_DIR/shootout.js" --port "$port") ;;
    node-socketio)
      cmd=(node "$SIO_DIR/server.js" "$port") ;;
    *) die "unknown server '$name' ($SERVER_NAMES)" ;;
  esac
  say "starting $name on core $SERVER_CORE: ${cmd[*]} (log: $log)"
  taskset -c "$SERVER_CORE" "${cmd[@]}" >"$log" 2>&1 &
  SERVER_PID=$!
  SERVER_NAME=$name
  wait_listening "$SERVER_PID" "$port" "$name" "$log" || {
    SERVER_PID=
    return 1
  }
}

# wait_listening PID PORT NAME LOG: waits at most 20 s for 127.0.0.1:PORT to accept
# connections while PID lives; dies with the log's tail otherwise.
wait_listening() {
  local pid=$1 port=$2 name=$3 log=$4 _
  for _ in $(seq 1 100); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$log" >&2
      die "$name exited before listening (log: $log)"
    fi
    port_open "$port" && return 0
    sleep 0.2
  done
  tail -n 20 "$log" >&2
  die "$name did not listen on 127.0.0.1:$port within 20 s (log: $log)"
}

# stop_server: SIGTERM, up to 5 s for a clean exit (throng drains), then SIGKILL.
stop_server() {
  [ -n "${SERVER_PID:-}" ] || return 0
  local pid=$SERVER_PID
  SERVER_PID=
  stop_pid "$pid" "$SERVER_NAME"
}

# stop_pid PID NAME: SIGTERM, up to 5 s for a clean exit, then SIGKILL.
stop_pid() {
  local pid=$1 _
  say "stopping $2 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# TCP sockets open on the machine now.
tcp_inuse() {
  awk '$1 == "TCP:" { print $3 }' /proc/net/sockstat
}

# wait_sockets_gone [NOTE]: waits at most 30 s for the previous run's sockets to close
# (down to $tcp_baseline + 50, which the script sets), else warns (with NOTE).
# shellcheck disable=SC2154
wait_sockets_gone() {
  local _
  for _ in $(seq 1 150); do
    [ "$(tcp_inuse)" -le $((tcp_baseline + 50)) ] && return 0
    sleep 0.2
  done
  echo "warning: $(tcp_inuse) TCP sockets still open (baseline $tcp_baseline)${1:+; $1}" >&2
}

# server_alive: fails (with the log's tail) if the server died during a run.
server_alive() {
  if [ -n "${SERVER_PID:-}" ] && ! kill -0 "$SERVER_PID" 2>/dev/null; then
    tail -n 20 "$BENCH_OUT/$SERVER_NAME.log" >&2
    SERVER_PID=
    die "$SERVER_NAME died during the run (log: $BENCH_OUT/$SERVER_NAME.log)"
  fi
}

# cpu_ticks PID: CPU time used so far (user + system, in clock ticks), all threads.
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

# run_generator OUT CMD...: runs the generator pinned to CLIENT_CORE, stdout to OUT, in the
# background so that a signal to the script interrupts `wait` at once and the EXIT trap
# stops both the generator and the server. Sets GEN_RC to its exit status.
run_generator() {
  local out=$1
  shift
  GEN_RC=0
  taskset -c "$CLIENT_CORE" "$@" >"$out" &
  GEN_PID=$!
  wait "$GEN_PID" || GEN_RC=$?
  GEN_PID=
}

# tag NAME EXTRA_JSON: adds "server": NAME and the fields of EXTRA_JSON to each JSON line
# on stdin; other lines are dropped.
tag() {
  python3 -c '
import json, sys
name, extra = sys.argv[1], json.loads(sys.argv[2])
for line in sys.stdin:
    line = line.strip()
    if line.startswith("{"):
        print(json.dumps({**json.loads(line), "server": name, **extra}))
' "$1" "$2"
}

# measure_cpu OUT NAME FIELD VALUE CMD...: runs the generator CMD (`throng` arguments)
# against the running server, with the server's CPU time (every thread) around it; tags its
# JSON line with "server": NAME, FIELD: VALUE, the server's CPU share ("server_cpu_percent")
# and the generator's exit status, and appends it to OUT. Dies if it printed no result.
measure_cpu() {
  local out=$1 name=$2 field=$3 value=$4
  shift 4
  local run_out before after t0 t1 cpu tck
  run_out=$(mktemp)
  TMP_FILES+=("$run_out")
  tck=$(getconf CLK_TCK)
  before=$(cpu_ticks "$SERVER_PID")
  t0=$(date +%s.%N)
  run_generator "$run_out" "$THRONG" "$@"
  t1=$(date +%s.%N)
  server_alive
  after=$(cpu_ticks "$SERVER_PID")
  grep -q '^{' "$run_out" || die "throng $1 $2 against $value printed no result (exit $GEN_RC)"
  [ "$GEN_RC" -eq 0 ] || echo "warning: throng $1 $2 exited $GEN_RC against $value" >&2
  cpu=$(python3 -c "print(round(($after - $before) / $tck / ($t1 - $t0) * 100))")
  tag "$name" "{\"$field\": \"$value\", \"server_cpu_percent\": $cpu, \"generator_exit\": $GEN_RC}" \
    <"$run_out" >>"$out"
}

# connect_then_fanout LABEL: two fresh throng servers, each measured with the caller's
# `measure LABEL CMD...`: CONNS idle upgraded connections from 4 source addresses
# (connects/s, RSS and slab per connection), then a fan-out to SUBSCRIBERS subscribers
# (`--app shootout`, which it leaves set in THRONG_APP). Waits for the sockets to go
# after each.
connect_then_fanout() {
  local label=$1 port
  port=$(free_port)
  start_server throng "$port"
  say "$label: connect $CONNS idle connections"
  measure "$label" bench connect --url "ws://127.0.0.1:$port/" --conns "$CONNS" --sources 4 \
    --server-pid "$SERVER_PID" --hold 1
  stop_server
  wait_sockets_gone "before the fan-out run"

  THRONG_APP=shootout
  port=$(free_port)
  start_server throng "$port"
  say "$label: fan-out to $SUBSCRIBERS subscribers"
  measure "$label" bench fanout --url "ws://127.0.0.1:$port/" --mode shootout \
    --subscribers "$SUBSCRIBERS" --secs "$SECS" --warmup "$WARMUP" --sources 4
  stop_server
  wait_sockets_gone "before the next run"
}
