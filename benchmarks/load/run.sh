#!/usr/bin/env bash
# Runs the loopback load benchmark: the wsgate server and the bare Beast server, each pinned to
# core SERVER_CORE, against the load generator pinned to core LOAD_CORE.
#   benchmarks/load/run.sh [BUILD_DIR]      env: NS="100 1000 10000" M=200 W=8 SIZE=64
#                                           MODES="bare wsgate wsgate-nocoalesce"
set -euo pipefail
BUILD=${1:-build}
BIN=$BUILD/benchmarks/load
NS=${NS:-"100 1000 10000"}
M=${M:-200}
W=${W:-8}
SIZE=${SIZE:-64}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "# ulimit -n $(ulimit -n); server on core $SERVER_CORE, generator on core $LOAD_CORE; M=$M events, window $W, ${SIZE}-byte events"
echo "| server | N | events | deliveries/s | p50 ms | p99 ms | server CPU s | RSS KiB/conn | generator CPU | connect s |"
echo "|---|---|---|---|---|---|---|---|---|---|"
TMP=$(mktemp -d)
trap 'kill $SRV 2>/dev/null || true; rm -rf "$TMP"' EXIT
for N in $NS; do
  # Fewer events at large N keeps each run around the same number of deliveries.
  EVENTS=$M
  if [ "$N" -ge 10000 ]; then EVENTS=$(( M / 4 > 10 ? M / 4 : 10 )); fi
  for MODE in ${MODES:-bare wsgate}; do
    rm -f "$TMP/port"
    if [ $MODE = bare ]; then
      taskset -c "$SERVER_CORE" "$BIN/bench_bare_server" --port 0 --port-file "$TMP/port" & SRV=$!
    elif [ $MODE = wsgate-nocoalesce ]; then
      taskset -c "$SERVER_CORE" "$BIN/bench_wsgate_server" --port 0 --port-file "$TMP/port" --coalesce 0 2>/dev/null & SRV=$!
    else
      taskset -c "$SERVER_CORE" "$BIN/bench_wsgate_server" --port 0 --port-file "$TMP/port" 2>/dev/null & SRV=$!
    fi
    for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
    GEN_MODE=${MODE%%-*}
    taskset -c "$LOAD_CORE" "$BIN/bench_load_generator" --mode $GEN_MODE --label "$MODE" --port "$(cat "$TMP/port")" \
      --server-pid $SRV -n "$N" -m "$EVENTS" -w "$W" --size "$SIZE" || echo "| $MODE | $N | run failed |"
    kill $SRV; wait $SRV 2>/dev/null || true
  done
done
