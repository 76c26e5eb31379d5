#!/usr/bin/env bash
# Memory per idle connection with and without TLS: N idle WebSocket connections held by
# node's `ws` (scripts/tls-idle.js, its own process, on CLIENT_CORE) against
# `throng serve --app echo --workers 1` (on SERVER_CORE), first over ws://, then over
# wss:// with a self-signed certificate made by openssl. Reports the growth of the
# server's RSS per connection (user space only; the kernel's share is the same either
# way, see scripts/bench-idle.sh). Env: N (default 5000), NO_BUILD=1.
set -Eeuo pipefail
source "$(dirname "$0")/lib/bench-common.sh"

N=${N:-5000}
require_tools taskset python3 cargo node openssl
raise_fd_limit
build_all throng
[ -d "$ROOT/tests/sio/node_modules/ws" ] || die "npm ci --prefix tests/sio first (node's ws)"
dir=$(mktemp -d)
TMP_FILES+=("$dir/cert.pem" "$dir/key.pem")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

run() { # run LABEL SCHEME EXTRA_FLAGS...
  local label=$1 scheme=$2 port log out pid gen
  shift 2
  port=$(free_port)
  log="$BENCH_OUT/tls-idle-$label.log"
  taskset -c "$SERVER_CORE" "$THRONG" serve --host 127.0.0.1 --port "$port" --app echo \
    --workers 1 --drain-window 0 "$@" >"$log" 2>&1 &
  pid=$!
  wait_listening "$pid" "$port" throng "$log"
  sleep 0.5
  local before after
  before=$(rss_kb "$pid")
  out=$(mktemp)
  TMP_FILES+=("$out")
  URL="$scheme://127.0.0.1:$port/" N=$N CA_FILE=$([ "$scheme" = wss ] && echo "$dir/cert.pem") \
    taskset -c "$CLIENT_CORE" node "$ROOT/scripts/tls-idle.js" >"$out" 2>&1 &
  gen=$!
  for _ in $(seq 1 600); do
    grep -q '^held' "$out" && break
    kill -0 "$gen" 2>/dev/null || break
    sleep 0.1
  done
  sleep 1
  after=$(rss_kb "$pid")
  echo "$label: $(cat "$out"); server RSS $before -> $after KiB = $(((after - before) * 1024 / N)) B/conn"
  kill -TERM "$gen" 2>/dev/null || true
  wait "$gen" 2>/dev/null || true
  stop_pid "$pid" throng
}

run plaintext ws
run tls wss --tls-cert "$dir/cert.pem" --tls-key "$dir/key.pem"
rm -rf "$dir"
