#!/usr/bin/env bash
# Runs every test of Throng:
#   1. cargo test: unit tests beside the code and end-to-end tests in tests/ (real TCP on
#      127.0.0.1 against the built `throng` binary, and node's `ws` client for interop);
#   2. the real Autobahn|Testsuite, cases 1.*-11.*, plus its raw handshake checks, against
#      `throng serve --app echo` (../shared/autobahn/run.sh; 12.*/13.* are
#      permessage-deflate, which Throng does not negotiate);
#   3. the end-to-end tests that exercise the kernel seam (URING_TESTS) and Autobahn again,
#      with the servers on the io_uring driver (THRONG_TEST_DRIVER=uring), then a part of
#      them (URING_OPTION_TESTS) with every opt-in option of that driver at once (SQPOLL,
#      registered files, every send zero-copy). A kernel that cannot run it is reported as
#      a skip with the probe's reason, not counted as passed.
#   4. `docker build` of deploy/Dockerfile (and the image's `--version`) where a Docker
#      daemon answers and the base images can be pulled; otherwise reported as a skip
#      with the reason, not counted as passed.
# Ends with one line `N passed, N failed` summing all; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

scripts/setup-test-deps.sh || exit 2

log=$(mktemp)
trap 'rm -f "$log"; [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null' EXIT

# sum_results LOG: "PASSED FAILED" from cargo's `test result:` lines.
sum_results() {
  awk '/^test result:/ {
      for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i }
    } END { print p + 0, f + 0 }' "$1"
}

# autobahn DRIVER: runs the Autobahn suite against an echo server on DRIVER; sets
# ab_passed/ab_failed.
autobahn() {
  local driver=$1 port summary
  ab_passed=0
  ab_failed=1
  local runner=${AUTOBAHN:-$root/../shared/autobahn/run.sh}
  if [ ! -x "$runner" ]; then
    echo "Autobahn runner not found at $runner (expected ../shared/autobahn beside the repo)" >&2
    return
  fi
  cargo build --quiet --bin throng || exit 1
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  ./target/debug/throng serve --host 127.0.0.1 --port "$port" --app echo --workers 2 \
    --driver "$driver" >"target/autobahn-server-$driver.log" 2>&1 &
  server_pid=$!
  "$runner" "ws://127.0.0.1:$port/" --exclude '12.*,13.*' \
    --out "$root/target/autobahn-reports/test-$driver" 2>&1 | tee "$log"
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -n "$summary" ]; then
    ab_passed=$(echo "$summary" | awk '{print $1}')
    ab_failed=$(echo "$summary" | awk '{print $3}')
  fi
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "the server under Autobahn died; see target/autobahn-server-$driver.log" >&2
    ab_failed=$((ab_failed + 1))
  fi
  kill -TERM "$server_pid" 2>/dev/null
  wait "$server_pid" 2>/dev/null
  server_pid=
}

echo "== cargo test"
cargo test --no-fail-fast 2>&1 | tee "$log"
cargo_rc=${PIPESTATUS[0]}
read -r cargo_passed cargo_failed < <(sum_results "$log")
if [ "$cargo_rc" -ne 0 ] && [ "$cargo_failed" -eq 0 ]; then
  cargo_failed=1 # a build failure counts as a failure
fi

echo "== Autobahn|Testsuite 1.*-11.* + handshake checks (epoll)"
autobahn epoll
epoll_ab_passed=$ab_passed
epoll_ab_failed=$ab_failed

# test_targets "TARGETS" [VAR=VALUE...]: cargo test on each test target of TARGETS with
# the variables set; sets targets_passed and targets_failed (a failing run that counted no
# failed test, such as a build error, counts one).
test_targets() {
  local targets=$1 t rc
  shift
  local -a args=()
  for t in $targets; do args+=(--test "$t"); done
  env "$@" cargo test --no-fail-fast "${args[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  read -r targets_passed targets_failed < <(sum_results "$log")
  if [ "$rc" -ne 0 ] && [ "$targets_failed" -eq 0 ]; then
    targets_failed=1
  fi
}

# The end-to-end tests that go through the driver (not the unit tests, the benches' own
# tests or the layering check), again on io_uring.
URING_TESTS=${URING_TESTS:-"rfc6455 robustness driver_faults fabric limits sio interop engineio polling_bounds admission drain tls"}
uring_passed=0
uring_failed=0
uring_ab_passed=0
uring_ab_failed=0
# The binary probes the kernel before anything else (then fails on the absurd limit).
uring_skip=$(./target/debug/throng serve --driver uring --host 127.0.0.1 --port 0 \
  --max-connections 4000000000 2>&1 | grep -o 'io_uring lacks.*' || true)
if [ -n "$uring_skip" ]; then
  echo "== io_uring: SKIPPED, the kernel's $uring_skip"
else
  echo "== cargo test on io_uring: $URING_TESTS"
  test_targets "$URING_TESTS" THRONG_TEST_DRIVER=uring
  uring_passed=$targets_passed
  uring_failed=$targets_failed
  echo "== Autobahn|Testsuite 1.*-11.* + handshake checks (io_uring)"
  autobahn uring
  uring_ab_passed=$ab_passed
  uring_ab_failed=$ab_failed
fi
# The options stay off by default (they do not pay here, scripts/bench-uring-options.sh),
# so they are tested on purpose, together.
URING_OPTION_TESTS=${URING_OPTION_TESTS:-"rfc6455 robustness driver_faults fabric drain"}
options_passed=0
options_failed=0
options=(THRONG_URING_SQPOLL=50 THRONG_URING_FIXED_FILES=1 THRONG_URING_SEND_ZC=1)
options_skip=$uring_skip
if [ -z "$options_skip" ]; then
  options_skip=$(env "${options[@]}" ./target/debug/throng serve --driver uring \
    --host 127.0.0.1 --port 0 --max-connections 4000000000 2>&1 | grep -o 'io_uring lacks.*' || true)
fi
if [ -n "$options_skip" ]; then
  echo "== io_uring options: SKIPPED, the kernel's $options_skip"
else
  echo "== cargo test on io_uring with ${options[*]}: $URING_OPTION_TESTS"
  test_targets "$URING_OPTION_TESTS" THRONG_TEST_DRIVER=uring "${options[@]}"
  options_passed=$targets_passed
  options_failed=$targets_failed
fi
# deploy/Dockerfile, built where a Docker daemon answers and its base images can be
# pulled; otherwise a stated skip (no daemon runs on the machines this was written on).
docker_passed=0
docker_failed=0
docker_skip=""
if ! command -v docker >/dev/null 2>&1; then
  docker_skip="docker is not installed"
elif ! docker info >/dev/null 2>&1; then
  docker_skip="no Docker daemon answers (docker info failed)"
else
  for image in $(awk '/^FROM/ { print $2 }' deploy/Dockerfile); do
    if ! docker pull -q "$image" >/dev/null 2>&1; then
      docker_skip="the base image $image cannot be pulled from here"
      break
    fi
  done
fi
if [ -n "$docker_skip" ]; then
  echo "== docker build: SKIPPED, $docker_skip"
else
  echo "== docker build -f deploy/Dockerfile"
  if docker build -q -f deploy/Dockerfile -t throng-test-build . &&
    docker run --rm throng-test-build --version; then
    docker_passed=1
  else
    docker_failed=1
  fi
fi
passed=$((cargo_passed + epoll_ab_passed + uring_passed + uring_ab_passed + options_passed + docker_passed))
failed=$((cargo_failed + epoll_ab_failed + uring_failed + uring_ab_failed + options_failed + docker_failed))
echo "cargo test: $cargo_passed passed, $cargo_failed failed; autobahn+handshake: $epoll_ab_passed passed, $epoll_ab_failed failed"
if [ -n "$uring_skip" ]; then
  echo "io_uring: skipped (the kernel's $uring_skip)"
else
  echo "io_uring: cargo test $uring_passed passed, $uring_failed failed; autobahn+handshake: $uring_ab_passed passed, $uring_ab_failed failed"
fi
if [ -n "$options_skip" ]; then
  echo "io_uring options: skipped (the kernel's $options_skip)"
else
  echo "io_uring options: cargo test $options_passed passed, $options_failed failed"
fi
if [ -n "$docker_skip" ]; then
  echo "docker build: skipped ($docker_skip)"
else
  echo "docker build: $docker_passed passed, $docker_failed failed"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
