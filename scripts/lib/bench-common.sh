# Shared by the benchmark scripts: build the servers, start one pinned to a core, wait for
# its port, read its CPU time, stop it. Loopback only. Source this file; do not run it.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
THRONG="$ROOT/target/release/throng"
TT_ECHO="$ROOT/benches/peers/tokio-tungstenite-echo/target/release/tokio-tungstenite-echo"
NODE_WS="$ROOT/benches/peers/node-ws/echo.js"
SERVER_CORE=${SERVER_CORE:-0}
CLIENT_CORE=${CLIENT_CORE:-1}
SERVER_PID=

build_all() {
  echo "== building throng and the peers (release)" >&2
  (cd "$ROOT" && cargo build --release --quiet)
  (cd "$ROOT/benches/peers/tokio-tungstenite-echo" && cargo build --release --quiet)
  [ -d "$ROOT/benches/peers/node-ws/node_modules" ] ||
    npm ci --prefix "$ROOT/benches/peers/node-ws" --no-audit --no-fund --loglevel=error
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_server NAME PORT: starts NAME (throng | tokio-tungstenite | node-ws) on SERVER_CORE.
start_server() {
  local name=$1 port=$2
  case $name in
    throng) taskset -c "$SERVER_CORE" "$THRONG" serve --host 127.0.0.1 --port "$port" --app echo --workers 1 \
      >"$ROOT/target/bench/$name.log" 2>&1 & ;;
    tokio-tungstenite) taskset -c "$SERVER_CORE" "$TT_ECHO" --port "$port" --threads 1 \
      >"$ROOT/target/bench/$name.log" 2>&1 & ;;
    node-ws) taskset -c "$SERVER_CORE" node "$NODE_WS" --port "$port" \
      >"$ROOT/target/bench/$name.log" 2>&1 & ;;
    *) echo "unknown server $name" >&2; return 1 ;;
  esac
  SERVER_PID=$!
  local i
  for i in $(seq 1 200); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null; then
      return 0
    fi
    sleep 0.05
  done
  echo "$name did not listen on $port within 10 s (see target/bench/$name.log)" >&2
  return 1
}

stop_server() {
  if [ -n "$SERVER_PID" ]; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
  fi
}

# CPU ticks (utime + stime) of a process.
cpu_ticks() {
  awk '{print $14 + $15}' "/proc/$1/stat"
}

# tag NAME EXTRA_JSON: adds "server" and EXTRA_JSON fields to each JSON line on stdin.
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

trap stop_server EXIT
mkdir -p "$ROOT/target/bench"
