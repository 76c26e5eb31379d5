#!/usr/bin/env bash
# Runs every test of Throng:
#   1. cargo test: unit tests beside the code and end-to-end tests in tests/ (real TCP on
#      127.0.0.1 against the built `throng` binary, and node's `ws` client for interop);
#   2. the real Autobahn|Testsuite, cases 1.*-11.*, plus its raw handshake checks, against
#      `throng serve --app echo` (../shared/autobahn/run.sh; 12.*/13.* are
#      permessage-deflate, which Throng does not negotiate).
# Ends with one line `N passed, N failed` summing both; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/setup-test-deps.sh || exit 2

log=$(mktemp)
trap 'rm -f "$log"; [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null' EXIT

echo "== cargo test"
cargo test --no-fail-fast 2>&1 | tee "$log"
cargo_rc=${PIPESTATUS[0]}
read -r cargo_passed cargo_failed < <(awk '/^test result:/ {
    for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
  } END { print p + 0, f + 0 }' "$log")
if [ "$cargo_rc" -ne 0 ] && [ "$cargo_failed" -eq 0 ]; then
  cargo_failed=1 # a build failure counts as a failure
fi

echo "== Autobahn|Testsuite 1.*-11.* + handshake checks"
autobahn=${AUTOBAHN:-$root/../shared/autobahn/run.sh}
ab_passed=0
ab_failed=1
if [ ! -x "$autobahn" ]; then
  echo "Autobahn runner not found at $autobahn (expected ../shared/autobahn beside the repo)" >&2
else
  cargo build --quiet --bin throng || exit 1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ./target/debug/throng serve --host 127.0.0.1 --port "$port" --app echo --workers 2 \
    >target/autobahn-server.log 2>&1 &
  server_pid=$!
  "$autobahn" "ws://127.0.0.1:$port/" --exclude '12.*,13.*' --out "$root/target/autobahn-reports/test" \
    2>&1 | tee "$log"
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -n "$summary" ]; then
    ab_passed=$(echo "$summary" | awk '{print $1}')
    ab_failed=$(echo "$summary" | awk '{print $3}')
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server under Autobahn died; see target/autobahn-server.log" >&2
    ab_failed=$((ab_failed + 1))
  fi
  kill -TERM "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=
fi

passed=$((cargo_passed + ab_passed))
failed=$((cargo_failed + ab_failed))
echo "cargo test: $cargo_passed passed, $cargo_failed failed; autobahn+handshake: $ab_passed passed, $ab_failed failed"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
