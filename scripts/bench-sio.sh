#!/usr/bin/env bash
# Socket.IO benchmark: throng (`--app sio-shootout --workers 1`) against Node socket.io 4.8
# (benches/peers/socketio/server.js, the same contract), same machine, same run, 127.0.0.1
# only. Both speak Socket.IO v5 over Engine.IO v4, WebSocket transport (connect-polling:
# HTTP long-polling), no compression, namespace `/`: echo(P) comes back as echo(P) (or as the ack, when asked), broadcast(P)
# goes to every socket, then broadcastResult(P) to the sender.
#
# Each server is pinned to core 0 (SERVER_CORE), one worker (node: its one JS thread), and
# started anew for each scenario; the generator (`throng bench ... --proto socketio`) is
# pinned to core 1 (CLIENT_CORE). Scenarios:
#   echo:      `throng bench echo`: per CONNS:INFLIGHT[:ack] pair of ECHO, that many
#              connections keep that many 64 B (SIZE) `42["echo",P]` in flight (`:ack`:
#              `42<id>["echo",P]` answered by the ack `43<id>[P]`): msgs/s, p99. Messages
#              start once every connection is open (`--open-first`): Node socket.io,
#              busy echoing, may otherwise not finish 1,000 handshakes in the run.
#   broadcast: `throng bench broadcast`, the websocket-shootout ramp over Socket.IO: clients
#              added STEP at a time up to MAX_CLIENTS, CONCURRENT senders, PADDING bytes,
#              until the LIMIT_PERCENTILE-th broadcast round trip passes LIMIT_RTT_MS.
#   fanout:    `throng bench fanout`: one publisher, SUBSCRIBERS clients, every broadcast to
#              all: deliveries/s, delivery latency, lost deliveries.
#   connect:   `throng bench connect`: CONNS idle connections, each CONNECTed to `/`
#              (open packet, CONNECT, `40{"sid":..}`): connects/s, and the server's RSS
#              growth per idle Socket.IO connection (kernel slab per connection too, both
#              loopback ends, machine-wide).
#   connect-polling: `throng bench connect --transport polling`: POLL_SESSIONS idle
#              Engine.IO long-polling sessions, each on one keep-alive TCP connection
#              (handshake GET, POST `40`, GET the `40{"sid":..}`, then one GET always held
#              by the server; pings answered by POSTing `3`): the server's RSS growth per
#              idle polling session. The Node peer is WebSocket-only by design; for this
#              scenario alone it is started with SIO_POLLING=1 (transports polling and
#              websocket, Node's default).
# For each: the server's own CPU use (from /proc, over the whole run), and a final table of
# throng / node ratios, all measured in this run. JSON lines (the generator's fields +
# "server" + "scenario" + "server_cpu_percent" + "generator_exit" + "loadavg_1m") go to
# target/bench/sio-<time>.jsonl.
#
# Env: SECS (echo and fanout measured seconds, default 10), WARMUP (default 2),
#      SERVERS (default "throng node-socketio"), SCENARIOS (default "echo broadcast fanout
#      connect connect-polling"), ECHO (default "100:1 100:8 1000:1 100:8:ack"), SIZE (echo payload bytes,
#      default 64), GEN_THREADS (default 1), SOURCES (default 4), SERVER_CORE, CLIENT_CORE,
#      NO_BUILD=1; broadcast: STEP (default 500: Node socket.io holds fewer than 1,000
#      clients within the limit here), MAX_CLIENTS (default 19000, the open-file
#      limit here is 20,000 per process), CONCURRENT (4), PADDING (200), LIMIT_PERCENTILE
#      (95), LIMIT_RTT_MS (100); fanout: SUBSCRIBERS (default 1000); connect: CONNS
#      (default 10000); connect-polling: POLL_SESSIONS (default 2000, one socket each).
set -Eeuo pipefail
# shellcheck disable=SC2034 # read by lib/bench-common.sh's start_server
THRONG_APP=sio-shootout
# shellcheck source=lib/bench-common.sh
source "$(dirname "$0")/lib/bench-common.sh"

SECS=${SECS:-10}
WARMUP=${WARMUP:-2}
SIZE=${SIZE:-64}
GEN_THREADS=${GEN_THREADS:-1}
SOURCES=${SOURCES:-4}
SERVERS=${SERVERS:-"throng node-socketio"}
SCENARIOS=${SCENARIOS:-"echo broadcast fanout connect connect-polling"}
ECHO=${ECHO:-"100:1 100:8 1000:1 100:8:ack"}
STEP=${STEP:-500}
MAX_CLIENTS=${MAX_CLIENTS:-19000}
CONCURRENT=${CONCURRENT:-4}
PADDING=${PADDING:-200}
LIMIT_PERCENTILE=${LIMIT_PERCENTILE:-95}
LIMIT_RTT_MS=${LIMIT_RTT_MS:-100}
SUBSCRIBERS=${SUBSCRIBERS:-1000}
CONNS=${CONNS:-10000}
POLL_SESSIONS=${POLL_SESSIONS:-2000}

for server in $SERVERS; do
  case $server in
    throng | node-socketio) ;;
    *) die "server '$server' does not speak the sio-shootout protocol (throng, node-socketio)" ;;
  esac
done
for sc in $SCENARIOS; do
  case $sc in
    echo | broadcast | fanout | connect | connect-polling) ;;
    *) die "unknown scenario '$sc' (echo, broadcast, fanout, connect, connect-polling)" ;;
  esac
done
for e in $ECHO; do
  [[ $e =~ ^[0-9]+:[0-9]+(:ack)?$ ]] || die "ECHO entry '$e' is not CONNS:INFLIGHT[:ack]"
done
check_servers $SERVERS
require_tools taskset python3 cargo
case " $SERVERS " in *" node-socketio "*)
  require_tools node npm
  [ -f "$SIO_DIR/server.js" ] || die "$SIO_DIR/server.js is missing"
  ;;
esac
raise_fd_limit
most=$CONNS
case " $SCENARIOS " in *" broadcast "*) [ "$MAX_CLIENTS" -gt "$most" ] && most=$MAX_CLIENTS ;; esac
case " $SCENARIOS " in *" connect-polling "*) [ "$POLL_SESSIONS" -gt "$most" ] && most=$POLL_SESSIONS ;; esac
[ "$most" -le $(($(ulimit -n) - 100)) ] ||
  die "$most clients do not fit the open-file limit $(ulimit -n) (server and generator each hold one socket per client)"
build_all $SERVERS
"$THRONG" bench echo --help 2>/dev/null | grep -q -- '--proto' ||
  die "this throng has no 'bench --proto socketio'"
case " $SCENARIOS " in *" connect-polling "*)
  "$THRONG" bench connect --help 2>/dev/null | grep -q -- '--transport' ||
    die "this throng has no 'bench connect --transport polling'"
  ;;
esac
out="$BENCH_OUT/sio-$(date +%Y%m%dT%H%M%S).jsonl"
run_out=$(mktemp)
TMP_FILES+=("$run_out")


# run_scenario SERVER SCENARIO LABEL EXTRA_JSON CMD...: a fresh server, the generator,
# the server's CPU over the run, the tagged JSON lines appended to $out.
run_scenario() {
  local server=$1 sc=$2 label=$3 extra=$4
  shift 4
  wait_sockets_gone
  local port
  port=$(free_port)
  start_server "$server" "$port"
  sleep 0.5 # let the server settle before its RSS is read
  local url="ws://127.0.0.1:$port/"
  local -a cmd=()
  local a
  for a in "$@"; do
    case $a in
      @URL) cmd+=("$url") ;;
      @PID) cmd+=("$SERVER_PID") ;;
      *) cmd+=("$a") ;;
    esac
  done
  say "$server: $label"
  local before t0 t1 after rc cpu load
  before=$(cpu_ticks "$SERVER_PID")
  t0=$(date +%s.%N)
  run_generator "$run_out" "$THRONG" "${cmd[@]}"
  rc=$GEN_RC
  t1=$(date +%s.%N)
  server_alive
  after=$(cpu_ticks "$SERVER_PID")
  grep -q '^{' "$run_out" || die "throng bench $sc against $server printed no result (exit $rc)"
  if [ "$rc" -ne 0 ]; then
    echo "warning: throng bench $sc exited $rc against $server (kept in the JSON, flagged in the table)" >&2
  fi
  cpu=$(python3 -c "print(round(($after - $before) / $tck / ($t1 - $t0) * 100))")
  load=$(cut -d" " -f1 /proc/loadavg)
  tag "$server" "{\"scenario\": \"$sc\", \"label\": \"$label\", \"server_cpu_percent\": $cpu, \"generator_exit\": $rc, \"loadavg_1m\": $load${extra:+, $extra}}" \
    <"$run_out" >>"$out"
  stop_server
}

say "kernel $(uname -r), $(nproc) cores, load average $(cut -d" " -f1-3 /proc/loadavg) (other work on these cores skews the figures); servers on core $SERVER_CORE, generator on core $CLIENT_CORE"
say "scenarios: $SCENARIOS; echo (conns:inflight[:ack]) $ECHO, $SIZE B, ${WARMUP}s warmup + ${SECS}s; broadcast: +$STEP up to $MAX_CLIENTS, p$LIMIT_PERCENTILE <= $LIMIT_RTT_MS ms; fanout: $SUBSCRIBERS subscribers; connect: $CONNS idle connections; connect-polling: $POLL_SESSIONS idle polling sessions"
tck=$(getconf CLK_TCK)
# shellcheck disable=SC2034 # read by wait_sockets_gone (lib)
tcp_baseline=$(tcp_inuse)
common=(--proto socketio --sources "$SOURCES")
for server in $SERVERS; do
  for sc in $SCENARIOS; do
    case $sc in
      echo)
        for e in $ECHO; do
          IFS=: read -r conns inflight ack <<<"$e"
          flags=()
          [ -z "$ack" ] || flags+=(--ack)
          run_scenario "$server" echo "echo $conns x $SIZE B, $inflight in flight${ack:+, acks}" "" \
            bench echo --url @URL "${common[@]}" --conns "$conns" --size "$SIZE" \
            --inflight "$inflight" --secs "$SECS" --warmup "$WARMUP" --threads "$GEN_THREADS" \
            --open-first "${flags[@]}"
        done
        ;;
      broadcast)
        run_scenario "$server" broadcast "broadcast ramp, +$STEP up to $MAX_CLIENTS" "" \
          bench broadcast --url @URL "${common[@]}" --concurrent "$CONCURRENT" \
          --padding "$PADDING" --step-size "$STEP" --max-clients "$MAX_CLIENTS" \
          --limit-percentile "$LIMIT_PERCENTILE" --limit-rtt-ms "$LIMIT_RTT_MS" \
          --threads "$GEN_THREADS"
        ;;
      fanout)
        run_scenario "$server" fanout "fanout to $SUBSCRIBERS" "" \
          bench fanout --url @URL "${common[@]}" --subscribers "$SUBSCRIBERS" \
          --secs "$SECS" --warmup "$WARMUP" --threads "$GEN_THREADS"
        ;;
      connect)
        run_scenario "$server" connect "$CONNS idle connections" "" \
          bench connect --url @URL "${common[@]}" --conns "$CONNS" --server-pid @PID --hold 1
        ;;
      connect-polling)
        # SIO_POLLING=1 reaches the server's environment (start_server, inside
        # run_scenario): the Node peer then allows polling; throng ignores it.
        SIO_POLLING=1 run_scenario "$server" connect-polling \
          "$POLL_SESSIONS idle polling sessions" "" \
          bench connect --url @URL "${common[@]}" --transport polling \
          --conns "$POLL_SESSIONS" --server-pid @PID --hold 1
        ;;
    esac
  done
done

python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
servers = list(dict.fromkeys(r["server"] for r in rows))

def fmt(v, spec=".0f"):
    return "-" if v is None else format(v, spec)

def flags(r, *keys):
    out = [f'exit={r["generator_exit"]}'] if r.get("generator_exit") else []
    out += [f"{k}={r[k]}" for k in keys if r.get(k)]
    if r.get("cpu_percent", 0) >= 90 and r.get("mode") != "connect":
        out.append("generator-bound")
    return " ".join(out)

def per_cpu(v, r):
    return None if not v else v / max(r["server_cpu_percent"], 1) * 100

# Each measured figure: (section, row label, value, lower_is_better), per server.
figures = {}
def put(label, server, value, lower=False):
    figures.setdefault(label, {"lower": lower})[server] = value

print()
print(f'{"scenario":<36}{"server":<15}{"result":>12}{"p99 us":>10}{"srv CPU%":>10}'
      f'{"per CPU-s":>12}{"gen CPU%":>10}{"load":>6}  flags')
for r in rows:
    s, mode = r["server"], r.get("mode")
    if mode == "echo":
        label = r["label"]
        v = r["msgs_per_sec"]
        put(f"{label}: msgs/s", s, v)
        put(f"{label}: p99 us", s, r["p99_us"], True)
        put(f"{label}: msgs per server-CPU-s", s, per_cpu(v, r))
        print(f'{label:<36}{s:<15}{v:>12.0f}{r["p99_us"]:>10}{r["server_cpu_percent"]:>10}'
              f'{fmt(per_cpu(v, r)):>12}{r["cpu_percent"]:>10.0f}{r["loadavg_1m"]:>6.1f}  '
              f'{flags(r, "errors", "bad_replies", "connect_failed")}')
    elif mode == "broadcast" and r.get("kind") == "summary":
        steps = [x for x in rows if x["server"] == s and x.get("mode") == "broadcast"
                 and x.get("kind") == "step"]
        held = r["clients_within_limit"]
        at = next((x for x in steps if x["clients"] == held and x["within_limit"]), None)
        pct = f'p{r["limit_percentile"]:g}'
        put(f"broadcast: clients held at {pct} <= {r['limit_rtt_ms']} ms", s, held)
        r["_steps"] = {x["clients"]: x for x in steps}
        lab = f'broadcast ({pct} <= {r["limit_rtt_ms"]} ms)'
        print(f'{lab:<36}{s:<15}{str(held) + " clients":>12}'
              f'{fmt(at and at["rtt_limit_pct_us"]):>10}{r["server_cpu_percent"]:>10}{"":>12}'
              f'{r["cpu_percent"]:>10.0f}{r["loadavg_1m"]:>6.1f}  stopped: {r["stopped"]} '
              f'{flags(r, "missing", "extra", "unexpected", "connect_failed", "lost", "error")}')
    elif mode == "fanout":
        d = r["deliveries_per_sec"]
        label = f'fanout to {r["subscribers"]}, {r["size"]} B'
        put(f"{label}: deliveries/s", s, d)
        put(f"{label}: p99 delivery us", s, r["p99_us"], True)
        put(f"{label}: deliveries per server-CPU-s", s, per_cpu(d, r))
        print(f'{label:<36}{s:<15}{d:>12.0f}{r["p99_us"]:>10}{r["server_cpu_percent"]:>10}'
              f'{fmt(per_cpu(d, r)):>12}{r["cpu_percent"]:>10.0f}{r["loadavg_1m"]:>6.1f}  '
              f'{flags(r, "lost", "duplicates", "out_of_order", "unexpected", "missing_acks", "connect_failed", "connections_lost", "error")}')
    elif mode == "connect" and r.get("transport") == "polling":
        label = f'connect {r["conns_requested"]} polling idle'
        put("polling sessions opened/s", s, r["connects_per_sec"])
        put("RSS per idle polling session (B)", s, r.get("rss_per_conn_bytes"), True)
        put("kernel slab per polling session (B, both ends)", s,
            r.get("kernel_slab_per_conn_bytes"), True)
        print(f'{label:<36}{s:<15}{str(r["conns_held"]) + " held":>12}{"":>10}'
              f'{r["server_cpu_percent"]:>10}{"":>12}{r["cpu_percent"]:>10.0f}'
              f'{r["loadavg_1m"]:>6.1f}  {fmt(r["connects_per_sec"])} sessions/s, RSS '
              f'{fmt(r.get("rss_per_conn_bytes"))} B/session, slab '
              f'{fmt(r.get("kernel_slab_per_conn_bytes"))} B/session {flags(r, "failed")}')
    elif mode == "connect":
        label = f'connect {r["conns_requested"]} idle'
        put("connects/s", s, r["connects_per_sec"])
        put("RSS per idle Socket.IO connection (B)", s, r.get("rss_per_conn_bytes"), True)
        put("kernel slab per connection (B, both ends)", s,
            r.get("kernel_slab_per_conn_bytes"), True)
        print(f'{label:<36}{s:<15}{str(r["conns_held"]) + " held":>12}{"":>10}'
              f'{r["server_cpu_percent"]:>10}{"":>12}{r["cpu_percent"]:>10.0f}'
              f'{r["loadavg_1m"]:>6.1f}  {fmt(r["connects_per_sec"])} connects/s, RSS '
              f'{fmt(r.get("rss_per_conn_bytes"))} B/conn, slab '
              f'{fmt(r.get("kernel_slab_per_conn_bytes"))} B/conn {flags(r, "failed")}')
# The broadcast round trip at the largest client count every server held.
bc = {r["server"]: r for r in rows if r.get("mode") == "broadcast" and r.get("kind") == "summary"}
if len(bc) > 1:
    common = min(r["clients_within_limit"] for r in bc.values())
    if common:
        for s, r in bc.items():
            st = r["_steps"].get(common)
            if st:
                pct = f'p{r["limit_percentile"]:g}'
                put(f"broadcast: {pct} round trip at {common} clients (us)", s,
                    st["rtt_limit_pct_us"], True)

others = [s for s in servers if s != "throng"]
if "throng" in servers and others:
    print()
    head = f'{"":<52}{"throng":>12}' + "".join(f"  {s:>15}  {'throng/' + s:>22}" for s in others)
    print(head)
    for label, per in figures.items():
        t = per.get("throng")
        line = f"{label:<52}{fmt(t):>12}"
        for s in others:
            v = per.get(s)
            if t is None or not v:
                ratio = "-"
            else:
                ratio = f"{t / v:.2f}x"
                if per["lower"]:
                    ratio += " (lower better)"
            line += f"  {fmt(v):>15}  {ratio:>22}"
        print(line)
print(f'\nraw results: {sys.argv[1]}')
print("notes: every server ran alone on core 0 with one worker, the generator on core 1; srv "
      "CPU% is the server's CPU over the whole run (connects and warmup included); load is "
      "the 1-minute load average after the run (well above 2: other work shared the cores); "
      "generator-bound means the figure is the generator's ceiling, and the per-server-CPU "
      "figures still compare the servers.")
PY
