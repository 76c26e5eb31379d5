#!/usr/bin/env bash
# Echo benchmark: throng against a tokio-tungstenite echo server and node's ws echo server,
# same machine, same run, 127.0.0.1 only.
#
# Each server is pinned to core 0 (SERVER_CORE) with one worker (throng --workers 1,
# tokio-tungstenite with 1 runtime worker thread, node's single JS thread); the generator
# (`throng bench echo`) is pinned to core 1 (CLIENT_CORE). Scenarios, 64-byte text messages:
#   100 connections x 1 in flight, 100 x 8 in flight, 1,000 x 1 in flight.
# For each: msgs/s, p99 latency, the server's own CPU use (from /proc, over the whole run),
# msgs per server-CPU-second, and the ratios throng/peer.
# All JSON lines (the generator's fields + "server" + "server_cpu_percent") go to
# target/bench/echo-<time>.jsonl.
#
# Env: SECS (measured seconds, default 10), WARMUP (seconds before measuring, default 2),
#      SERVERS (default "throng tokio-tungstenite node-ws"), SCENARIOS (CONNS:INFLIGHT
#      pairs, default "100:1 100:8 1000:1"), SIZE (default 64), GEN_THREADS (default 1),
#      SERVER_CORE, CLIENT_CORE, NO_BUILD=1.
set -Eeuo pipefail
source "$(dirname "$0")/lib/bench-common.sh"

SECS=${SECS:-10}
WARMUP=${WARMUP:-2}
SIZE=${SIZE:-64}
GEN_THREADS=${GEN_THREADS:-1}
SERVERS=${SERVERS:-"throng tokio-tungstenite node-ws"}
SCENARIOS=${SCENARIOS:-"100:1 100:8 1000:1"}

check_servers $SERVERS
require_tools taskset python3 cargo
case " $SERVERS " in *" node-ws "*) require_tools node npm ;; esac
raise_fd_limit
build_all $SERVERS
out="$BENCH_OUT/echo-$(date +%Y%m%dT%H%M%S).jsonl"
run_out=$(mktemp)
TMP_FILES+=("$run_out")

say "kernel $(uname -r), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg) (other work on these cores skews the figures); servers on core $SERVER_CORE, generator on core $CLIENT_CORE"
say "scenarios (conns:inflight): $SCENARIOS; $SIZE B messages; ${WARMUP}s warmup + ${SECS}s measured each"
tck=$(getconf CLK_TCK)
for server in $SERVERS; do
  port=$(free_port)
  start_server "$server" "$port"
  for sc in $SCENARIOS; do
    conns=${sc%%:*}
    inflight=${sc##*:}
    say "$server: $conns conns x $SIZE B, $inflight in flight"
    before=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s.%N)
    run_generator "$run_out" "$THRONG" bench echo --url "ws://127.0.0.1:$port/" \
      --conns "$conns" --size "$SIZE" --inflight "$inflight" --secs "$SECS" \
      --warmup "$WARMUP" --threads "$GEN_THREADS"
    rc=$GEN_RC
    t1=$(date +%s.%N)
    server_alive
    after=$(cpu_ticks "$SERVER_PID")
    grep -q '^{' "$run_out" ||
      die "throng bench echo against $server printed no result (exit $rc)"
    if [ "$rc" -ne 0 ]; then
      echo "warning: throng bench echo exited $rc against $server (errors or bad replies;" \
        "kept in the JSON, flagged in the table)" >&2
    fi
    cpu=$(python3 -c "print(round(($after - $before) / $tck / ($t1 - $t0) * 100))")
    tag "$server" "{\"server_cpu_percent\": $cpu, \"generator_exit\": $rc}" <"$run_out" >>"$out"
  done
  stop_server
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
scenario = lambda r: (r["conns"], r["inflight"], r["size"])
print()
print(f'{"scenario":<26}{"server":<20}{"msgs/s":>11}{"p99 us":>9}{"p999 us":>9}'
      f'{"srv CPU%":>10}{"msgs/CPU-s":>12}{"gen CPU%":>10}  flags')
for sc in sorted({scenario(r) for r in rows}):
    group = [r for r in rows if scenario(r) == sc]
    label = f"{sc[0]} conns x {sc[2]} B, {sc[1]} infl"
    for r in group:
        r["per_cpu"] = r["msgs_per_sec"] / max(r["server_cpu_percent"], 1) * 100
        flags = []
        if r.get("errors") or r.get("bad_replies") or r.get("generator_exit"):
            flags.append(f'errors={r.get("errors")} bad={r.get("bad_replies")}')
        if r.get("cpu_percent", 0) >= 95:
            flags.append("generator-bound")
        print(f'{label:<26}{r["server"]:<20}{r["msgs_per_sec"]:>11.0f}{r["p99_us"]:>9}'
              f'{r["p999_us"]:>9}{r["server_cpu_percent"]:>10}{r["per_cpu"]:>12.0f}'
              f'{r.get("cpu_percent", 0):>10.0f}  {" ".join(flags)}')
    t = next((r for r in group if r["server"] == "throng"), None)
    for r in group:
        if t is None or r is t or not r["msgs_per_sec"]:
            continue
        p99 = f'{t["p99_us"] / r["p99_us"]:.2f}x' if r["p99_us"] else "-"
        print(f'{"":<26}throng/{r["server"]}: msgs/s {t["msgs_per_sec"] / r["msgs_per_sec"]:.2f}x, '
              f'p99 {p99} (lower is better), '
              f'msgs per server-CPU-s {t["per_cpu"] / r["per_cpu"]:.2f}x')
print(f'\nraw results: {sys.argv[1]}')
print("note: when the generator's CPU is near 100% (generator-bound), msgs/s is the generator's "
      "ceiling, not the server's; msgs per server-CPU-second still compares the servers.")
PY
