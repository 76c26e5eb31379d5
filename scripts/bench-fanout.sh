#!/usr/bin/env bash
# Broadcast / fan-out benchmark (the websocket-shootout protocol): throng (`--app shootout`)
# against a tokio-tungstenite shootout server and node's ws shootout server, same machine,
# same run, 127.0.0.1 only.
#
# Each server is pinned to core 0 (SERVER_CORE) with one worker (throng --workers 1,
# tokio-tungstenite with 1 runtime worker thread, node's single JS thread) and is started
# anew for each scenario; the generator (`throng bench ...`) is pinned to core 1
# (CLIENT_CORE). Scenarios:
#   broadcast: `throng bench broadcast`, the websocket-shootout ramp: clients are added
#              STEP at a time; at each step CONCURRENT senders broadcast (PADDING bytes of
#              payload) one at a time, and the round trip (send -> `broadcastResult`) is
#              sampled; the ramp stops when its LIMIT_PERCENTILE-th percentile passes
#              LIMIT_RTT_MS (or at MAX_CLIENTS). Reported: the largest client count held
#              within the limit, and the percentile at the largest count both sides held.
#              Every client must receive every broadcast (checked per step), but only the
#              `broadcastResult` is timed: a server that acks once the broadcast is queued
#              (as the tokio-tungstenite peer does, like the original shootout servers)
#              answers before its deliveries are written. The fanout scenario times them.
#   fanout:    `throng bench fanout --mode shootout`: SUBSCRIBERS clients, broadcasts for
#              SECS seconds: deliveries/s, delivery latency (send -> each subscriber's
#              receipt), lost deliveries.
# For each: the server's own CPU use (from /proc, over the whole run), and a final table
# with the ratios throng/peer, all measured in this run.
# All JSON lines (the generator's fields + "server" + "scenario" + "server_cpu_percent" +
# "generator_exit" + "loadavg_1m") go to target/bench/fanout-<time>.jsonl.
#
# Env: SECS (fanout measured seconds, default 10), WARMUP (fanout warmup seconds, default 2),
#      SERVERS (default "throng tokio-tungstenite-shootout node-ws-shootout"),
#      SCENARIOS (default "broadcast fanout"), GEN_THREADS (default 1), SOURCES (source
#      addresses 127.0.0.2.., default 4), SERVER_CORE, CLIENT_CORE, NO_BUILD=1;
#      broadcast: STEP (default 1000), MAX_CLIENTS (default 19000: the hard open-file limit
#      here is 20,000 per process), CONCURRENT (default 4), PADDING (default 200),
#      LIMIT_PERCENTILE (default 95), LIMIT_RTT_MS (default 100);
#      fanout: SUBSCRIBERS (default 1000), SIZE (payload bytes), WINDOW (publishes not yet
#      acknowledged) and MAX_LAG (publishes the subscribers may trail by: a shootout server
#      acks before it delivers), all three by default the generator's (64, 64, 1024).
set -Eeuo pipefail
# shellcheck disable=SC2034 # read by lib/bench-common.sh's start_server
THRONG_APP=shootout
# shellcheck source=lib/bench-common.sh
source "$(dirname "$0")/lib/bench-common.sh"

SECS=${SECS:-10}
WARMUP=${WARMUP:-2}
GEN_THREADS=${GEN_THREADS:-1}
SOURCES=${SOURCES:-4}
SERVERS=${SERVERS:-"throng tokio-tungstenite-shootout node-ws-shootout"}
SCENARIOS=${SCENARIOS:-"broadcast fanout"}
STEP=${STEP:-1000}
MAX_CLIENTS=${MAX_CLIENTS:-19000}
CONCURRENT=${CONCURRENT:-4}
PADDING=${PADDING:-200}
LIMIT_PERCENTILE=${LIMIT_PERCENTILE:-95}
LIMIT_RTT_MS=${LIMIT_RTT_MS:-100}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
SIZE=${SIZE:-}
WINDOW=${WINDOW:-}
MAX_LAG=${MAX_LAG:-}

for server in $SERVERS; do
  case $server in
    throng | tokio-tungstenite-shootout | node-ws-shootout) ;;
    *) die "server '$server' does not speak the shootout protocol (throng, tokio-tungstenite-shootout, node-ws-shootout)" ;;
  esac
done
for sc in $SCENARIOS; do
  case $sc in
    broadcast | fanout) ;;
    *) die "unknown scenario '$sc' (broadcast, fanout)" ;;
  esac
done
check_servers $SERVERS
require_tools taskset python3 cargo
case " $SERVERS " in *" node-ws-shootout "*)
  require_tools node npm
  [ -f "$NODE_DIR/shootout.js" ] || die "$NODE_DIR/shootout.js is missing"
  ;;
esac
raise_fd_limit
case " $SCENARIOS " in *" broadcast "*)
  [ "$MAX_CLIENTS" -le $(($(ulimit -n) - 100)) ] ||
    die "MAX_CLIENTS=$MAX_CLIENTS does not fit the open-file limit $(ulimit -n) (server and generator each hold one socket per client)"
  ;;
esac
build_all $SERVERS
"$THRONG" bench broadcast --help >/dev/null 2>&1 || die "this throng has no 'bench broadcast'"
"$THRONG" bench fanout --help >/dev/null 2>&1 || die "this throng has no 'bench fanout'"
out="$BENCH_OUT/fanout-$(date +%Y%m%dT%H%M%S).jsonl"
run_out=$(mktemp)
TMP_FILES+=("$run_out")


say "kernel $(uname -r), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg) (other work on these cores skews the figures); servers on core $SERVER_CORE, generator on core $CLIENT_CORE"
say "scenarios: $SCENARIOS; broadcast: steps of $STEP clients up to $MAX_CLIENTS, $CONCURRENT concurrent senders, $PADDING B padding, limit p$LIMIT_PERCENTILE <= $LIMIT_RTT_MS ms; fanout: $SUBSCRIBERS subscribers, ${WARMUP}s warmup + ${SECS}s measured"
tck=$(getconf CLK_TCK)
# shellcheck disable=SC2034 # read by wait_sockets_gone (lib)
tcp_baseline=$(tcp_inuse)
for server in $SERVERS; do
  for sc in $SCENARIOS; do
    wait_sockets_gone
    port=$(free_port)
    start_server "$server" "$port"
    url="ws://127.0.0.1:$port/"
    case $sc in
      broadcast)
        say "$server: broadcast ramp, +$STEP clients a step up to $MAX_CLIENTS"
        cmd=(bench broadcast --url "$url" --concurrent "$CONCURRENT" --padding "$PADDING"
          --step-size "$STEP" --max-clients "$MAX_CLIENTS"
          --limit-percentile "$LIMIT_PERCENTILE" --limit-rtt-ms "$LIMIT_RTT_MS"
          --threads "$GEN_THREADS" --sources "$SOURCES")
        ;;
      fanout)
        say "$server: fanout, $SUBSCRIBERS subscribers, ${SECS}s"
        cmd=(bench fanout --url "$url" --mode shootout --subscribers "$SUBSCRIBERS"
          --secs "$SECS" --warmup "$WARMUP" --threads "$GEN_THREADS" --sources "$SOURCES")
        [ -z "$SIZE" ] || cmd+=(--size "$SIZE")
        [ -z "$WINDOW" ] || cmd+=(--window "$WINDOW")
        [ -z "$MAX_LAG" ] || cmd+=(--max-lag "$MAX_LAG")
        ;;
    esac
    before=$(cpu_ticks "$SERVER_PID")
    t0=$(date +%s.%N)
    run_generator "$run_out" "$THRONG" "${cmd[@]}"
    rc=$GEN_RC
    t1=$(date +%s.%N)
    server_alive
    after=$(cpu_ticks "$SERVER_PID")
    grep -q '^{' "$run_out" ||
      die "throng bench $sc against $server printed no result (exit $rc)"
    if [ "$rc" -ne 0 ]; then
      echo "warning: throng bench $sc exited $rc against $server (kept in the JSON, flagged in the table)" >&2
    fi
    cpu=$(python3 -c "print(round(($after - $before) / $tck / ($t1 - $t0) * 100))")
    # The 1-minute load average after the run: well above 2 (server + generator) means
    # other work shared the cores, and the figures of this run are suspect.
    load=$(cut -d" " -f1 /proc/loadavg)
    tag "$server" "{\"scenario\": \"$sc\", \"server_cpu_percent\": $cpu, \"generator_exit\": $rc, \"loadavg_1m\": $load}" \
      <"$run_out" >>"$out"
    stop_server
  done
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
servers = list(dict.fromkeys(r["server"] for r in rows))

def fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)

def ratio(a, b, lower_better=False):
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}x" + (" (lower is better)" if lower_better else "")

def flags(r, *keys):
    out = [f'exit={r["generator_exit"]}'] if r.get("generator_exit") else []
    out += [f"{k}={r[k]}" for k in keys if r.get(k)]
    return out

# broadcast: the summary line per server, with the RTT of the last step held and of the
# step that broke the limit.
bc = {r["server"]: r for r in rows if r.get("mode") == "broadcast" and r.get("kind") == "summary"}
if bc:
    summary = next(iter(bc.values()))
    pct = f'p{summary["limit_percentile"]:g}'
    print()
    print(f'broadcast ramp: largest client count whose {pct} broadcast round trip stayed within '
          f'{summary["limit_rtt_ms"]} ms ({summary["concurrent"]} senders x '
          f'{summary["sample_size"]} broadcasts a step, {summary["padding"]} B padding)')
    print(f'{"server":<28}{"held":>7}{pct + " ms":>9}{"next":>7}{pct + " ms":>9}{"steps":>7}'
          f'{"srv CPU%":>10}{"gen CPU%":>10}{"load":>6}  stopped, flags')
    for s in servers:
        r = bc.get(s)
        if not r:
            continue
        steps = [x for x in rows if x["server"] == s and x.get("mode") == "broadcast"
                 and x.get("kind") == "step"]
        held = r["clients_within_limit"]
        at = next((x for x in steps if x["clients"] == held and x["within_limit"]), None)
        over = next((x for x in steps if not x["within_limit"]), None)
        ms = lambda x: None if x is None else x["rtt_limit_pct_us"] / 1000
        fl = flags(r, "missing", "extra", "unexpected", "connect_failed", "lost", "error")
        if r.get("cpu_percent", 0) >= 90:
            fl.append("generator-bound")
        print(f'{s:<28}{held:>7}{fmt(ms(at), ".1f"):>9}{fmt(over and over["clients"]):>7}'
              f'{fmt(ms(over), ".1f"):>9}{r["steps"]:>7}{r["server_cpu_percent"]:>10}'
              f'{fmt(r.get("cpu_percent")):>10}{fmt(r.get("loadavg_1m"), ".1f"):>6}'
              f'  {r["stopped"]} {" ".join(fl)}')
    def step_at(s, clients):
        return next((x for x in rows if x["server"] == s and x.get("mode") == "broadcast"
                     and x.get("kind") == "step" and x["clients"] == clients), None)
    t = bc.get("throng")
    for s, r in bc.items():
        if t is None or r is t:
            continue
        line = f'  throng/{s}: clients held {ratio(t["clients_within_limit"], r["clients_within_limit"])}'
        # The round trip at the largest step both passed, for a second view when both hit
        # MAX_CLIENTS (or one stopped early).
        common = min(t["clients_within_limit"], r["clients_within_limit"])
        a, b = step_at("throng", common), step_at(s, common)
        if a and b:
            line += (f'; {pct} at {common} clients {a["rtt_limit_pct_us"] / 1000:.1f} vs '
                     f'{b["rtt_limit_pct_us"] / 1000:.1f} ms = '
                     f'{ratio(a["rtt_limit_pct_us"], b["rtt_limit_pct_us"], True)}')
        print(line)

fo = {r["server"]: r for r in rows if r.get("mode") == "fanout"}
if fo:
    summary = next(iter(fo.values()))
    print()
    print(f'fanout: every broadcast to all {summary["subscribers"]} subscribers, '
          f'{summary["size"]} B payload, window {summary["window"]}, {summary["secs"]} s measured')
    print(f'{"server":<28}{"deliv/s":>11}{"pub/s":>9}{"p50 us":>9}{"p99 us":>9}{"max us":>9}'
          f'{"lost":>7}{"srv CPU%":>10}{"deliv/CPU-s":>13}{"gen CPU%":>10}{"load":>6}  flags')
    for s in servers:
        r = fo.get(s)
        if not r:
            continue
        d = r["deliveries_per_sec"]
        r["_per_cpu"] = d / max(r["server_cpu_percent"], 1) * 100 if d else None
        fl = flags(r, "duplicates", "out_of_order", "unexpected", "server_errors",
                   "missing_acks", "publisher_missing", "connect_failed", "connections_lost", "error")
        # The generator is pinned to one core, whatever its --threads.
        if r.get("cpu_percent", 0) >= 90:
            fl.append("generator-bound")
        print(f'{s:<28}{d:>11.0f}{fmt(r.get("publishes_per_sec")):>9}{fmt(r.get("p50_us")):>9}'
              f'{fmt(r.get("p99_us")):>9}{fmt(r.get("max_us")):>9}{fmt(r.get("lost")):>7}'
              f'{r["server_cpu_percent"]:>10}{fmt(r["_per_cpu"]):>13}'
              f'{fmt(r.get("cpu_percent")):>10}{fmt(r.get("loadavg_1m"), ".1f"):>6}'
              f'  {" ".join(fl)}')
    t = fo.get("throng")
    for s, r in fo.items():
        if t is None or r is t:
            continue
        print(f'  throng/{s}: deliveries/s {ratio(t["deliveries_per_sec"], r["deliveries_per_sec"])}, '
              f'p99 {ratio(t.get("p99_us"), r.get("p99_us"), True)}, '
              f'deliveries per server-CPU-s {ratio(t["_per_cpu"], r["_per_cpu"])}')
print(f'\nraw results: {sys.argv[1]}')
print("notes: srv CPU% is the server's CPU over the whole run (connects, ramp or warmup "
      "included); load is the 1-minute load average after the run (well above 2: other work "
      "shared the cores, rerun); when the generator's CPU (one core) is near 100% "
      "(generator-bound), deliveries/s is the generator's ceiling, not the server's, and "
      "deliveries per server-CPU-second still compares the servers.")
PY
