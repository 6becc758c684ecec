#!/usr/bin/env bash
# Scale-out load benchmark: the demo server (examples/realtime_server) as one node in memory, one
# node on Redis (store + bus), and three nodes over one Redis, against bench_load_generator
# (docs/benchmarks.md, "Scale-out").
#
#   benchmarks/load/scaleout.sh [BUILD_DIR]
#     env: NS="1000 5000" DELIVERIES=400000 W=8 SIZE=64 REPS=2   the delivery cases: DELIVERIES / N
#          events each (at least 20), at most W in flight
#          CASES="mem redis redis-single 3node 3node-single"
#          HOP_N=300 HOP_M=200 HOP_CASES="hop-3node"   light load: three nodes, one event in flight, so
#                                                     cross-node vs local p99 is the bus hop, not a queue
#          FANOUT_N=10000 FANOUT_M=30 FANOUT_CASES="fanout-1node fanout-3node"   publish to one big topic,
#                                                     one event in flight (NS="", HOP_CASES="" or
#                                                     FANOUT_CASES="" skips that part)
#          SERVER_CORE=0 LOAD_CORE=1 REDIS_CORE=$SERVER_CORE   taskset cores
#          DEMO=BUILD_DIR/examples/realtime_server/realtime_server GEN=BUILD_DIR/benchmarks/load/bench_load_generator
#
# Cases: mem = one node, --store memory, no bus; redis = one node, --store and --bus on Redis
# (routed: per-topic sharded channels); 3node = three nodes over one Redis, subscriber i on node
# i % 3, every event published through node 0; hop-3node = 3node at light load; *-single = the
# same with ?channels=single (wsgate 0.1's one common channel every node receives). fanout-* publish to FANOUT_N members on one node
# or three (Redis, routed), one event at a time, and report the time until the last member got it.
# Subscribers hold HS256 user tokens (one user each) and read the topic leaderboard:bench; events
# are the demo's server-side publish, POST /publish with the admin key, through node 0. Every run
# gets a fresh redis-server (127.0.0.1, a free port, no persistence), stopped by its PID. All nodes
# and Redis share SERVER_CORE, the generator LOAD_CORE, so every case has the same CPU.
#
# Columns: deliveries/s; delivery latency p50/p99 (publish request → frame read by the
# subscriber); p99 on node 0 (local) and on the other nodes (cross-node, through Redis); the time
# from the publish request until the event's last member got it (p50/p99 over events); the POST's
# own round trip p50; the nodes' CPU seconds; Redis's CPU ms in total and per 1,000 deliveries
# (utime+stime from /proc/PID/stat, 10 ms ticks, across the publish phase only); the generator's
# CPU; the connect phase's seconds; the 1-minute load average at the end of the run.
set -euo pipefail
BUILD=${1:-build}
GEN=${GEN:-$BUILD/benchmarks/load/bench_load_generator}
DEMO=${DEMO:-$BUILD/examples/realtime_server/realtime_server}
NS=${NS-"1000 5000"}
DELIVERIES=${DELIVERIES:-400000}
W=${W:-8}
SIZE=${SIZE:-64}
REPS=${REPS:-2}
CASES=${CASES-"mem redis redis-single 3node 3node-single"}
HOP_N=${HOP_N:-300}
HOP_M=${HOP_M:-200}
HOP_CASES=${HOP_CASES-"hop-3node"}
FANOUT_N=${FANOUT_N:-10000}
FANOUT_M=${FANOUT_M:-30}
FANOUT_CASES=${FANOUT_CASES-"fanout-1node fanout-3node"}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
REDIS_CORE=${REDIS_CORE:-$SERVER_CORE}
ADMIN_KEY=scaleout-admin-key
SESSION_SECRET=scaleout-session-secret-0123456789abcdef
PUBLIC_SECRET=scaleout-public-secret-0123456789abcdef
TOPIC=leaderboard:bench
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d)
NODE_PIDS=()
REDIS_PID=
stop_all() {
  for p in "${NODE_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${NODE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  NODE_PIDS=()
  if [ -n "$REDIS_PID" ]; then kill "$REDIS_PID" 2>/dev/null || true; wait "$REDIS_PID" 2>/dev/null || true; fi
  REDIS_PID=
}
trap 'stop_all; rm -rf "$TMP"' EXIT

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_redis() {
  local port
  port=$(free_port)
  mkdir -p "$TMP/redis"
  taskset -c "$REDIS_CORE" redis-server --bind 127.0.0.1 --port "$port" --dir "$TMP/redis" --save '' --appendonly no \
    --logfile "$TMP/redis/log" & REDIS_PID=$!
  for _ in $(seq 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && { REDIS_URL="redis://127.0.0.1:$port"; return 0; }
    sleep 0.05
  done
  echo "redis-server did not start" >&2; return 1
}

# start_nodes COUNT STORE BUS: starts COUNT demo nodes; PORTS and PIDS are comma lists.
start_nodes() {
  local count=$1 store=$2 bus=$3 i
  PORTS=; PIDS=
  for i in $(seq 0 $((count - 1))); do
    rm -f "$TMP/port.$i"
    taskset -c "$SERVER_CORE" "$DEMO" --port 0 --port-file "$TMP/port.$i" --admin-key "$ADMIN_KEY" \
      --session-secret "$SESSION_SECRET" --public-secret "$PUBLIC_SECRET" --web-root '' \
      --store "$store" --bus "$bus" --node-id "node-$i" --max-connections 0 --max-connections-per-address 0 \
      >"$TMP/node.$i.log" 2>&1 & NODE_PIDS+=($!)
    PIDS=${PIDS:+$PIDS,}$!
  done
  for i in $(seq 0 $((count - 1))); do
    for _ in $(seq 200); do [ -s "$TMP/port.$i" ] && break; sleep 0.05; done
    [ -s "$TMP/port.$i" ] || { echo "node $i did not start:" >&2; cat "$TMP/node.$i.log" >&2; return 1; }
    PORTS=${PORTS:+$PORTS,}$(cat "$TMP/port.$i")
  done
}

# run_case CASE N EVENTS WINDOW: one run with fresh servers, one table row.
run_case() {
  local case=$1 n=$2 events=$3 window=$4 nodes=1 redis=0 channels=routed redis_args=()
  case $case in
    mem) ;;
    redis) redis=1 ;;
    redis-single) redis=1; channels=single ;;
    3node|fanout-3node|hop-3node) redis=1; nodes=3 ;;
    3node-single) redis=1; nodes=3; channels=single ;;
    fanout-1node) redis=1 ;;
    *) echo "unknown case $case" >&2; return 1 ;;
  esac
  if [ $redis = 1 ]; then
    start_redis
    start_nodes $nodes "$REDIS_URL" "$REDIS_URL?channels=$channels"
    redis_args=(--redis-pid "$REDIS_PID")
  else
    start_nodes $nodes memory none
  fi
  taskset -c "$LOAD_CORE" "$GEN" --mode wsgate --row scaleout --label "$case" --ports "$PORTS" --server-pid "$PIDS" \
    "${redis_args[@]}" --topic "$TOPIC" --token-secret "$SESSION_SECRET" --publish http --admin-key "$ADMIN_KEY" \
    -n "$n" -m "$events" -w "$window" --size "$SIZE" || echo "| $case | $n | $nodes | run failed |"
  stop_all
}

HEADER="| case | N | nodes | events | deliveries/s | p50 ms | p99 ms | local p99 ms | cross-node p99 ms | last member p50 ms | last member p99 ms | POST p50 ms | nodes' CPU s | Redis CPU ms: total / per 1k deliveries | generator CPU | connect s | load |
|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); ulimit -n $(ulimit -n)"
echo "# nodes and Redis on core $SERVER_CORE (Redis: $REDIS_CORE), generator on core $LOAD_CORE; $(redis-server --version | cut -d' ' -f3)"
echo "# delivery cases: $DELIVERIES / N events, window $W, ${SIZE}-byte event data, $REPS runs each"
echo "$HEADER"
for N in $NS; do
  EVENTS=$(( DELIVERIES / N > 20 ? DELIVERIES / N : 20 ))
  # Repetitions alternate the cases, so a burst of load from elsewhere hits all of them alike.
  for _ in $(seq "$REPS"); do
    for CASE in $CASES; do run_case "$CASE" "$N" "$EVENTS" "$W"; done
  done
done
if [ -n "$HOP_CASES" ]; then
  echo
  echo "# light load: $HOP_N subscribers, $HOP_M events, one in flight; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "$HEADER"
  for _ in $(seq "$REPS"); do
    for CASE in $HOP_CASES; do run_case "$CASE" "$HOP_N" "$HOP_M" 1; done
  done
fi
if [ -n "$FANOUT_CASES" ]; then
  echo
  echo "# publish to one topic of $FANOUT_N members: $FANOUT_M events, one in flight; load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "$HEADER"
  for _ in $(seq "$REPS"); do
    for CASE in $FANOUT_CASES; do run_case "$CASE" "$FANOUT_N" "$FANOUT_M" 1; done
  done
fi
