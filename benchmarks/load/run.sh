#!/usr/bin/env bash
# Runs the loopback load benchmark: the wsgate server and the bare Beast server, each pinned to
# the cores SERVER_CORES, against the load generator pinned to the cores LOAD_CORES.
#   benchmarks/load/run.sh [BUILD_DIR]
#     env: NS="100 1000 10000"  subscriber counts
#          M=200 W=8 SIZE=64    events per run (M/4 from N=10000), events in flight, event bytes
#          MODES="bare wsgate"  each KIND or KIND=BINARY or LABEL=BINARY, KIND one of
#                                 bare               bench_bare_server (one io thread, whatever THREADS says)
#                                 wsgate             bench_wsgate_server
#                                 wsgate-nocoalesce  bench_wsgate_server --coalesce 0
#                               e.g. MODES="bare wsgate-prev=/tmp/old/bench_wsgate_server wsgate" compares
#                               an older build of the wsgate server (any other LABEL runs as wsgate).
#          REPS=1               runs of each (N, mode); the modes alternate within each repetition,
#                               so the modes of one N are measured close in time
#          THREADS=1            --threads for bench_wsgate_server
#          FLUSH_DELAY_US       --flush-delay-us for bench_wsgate_server (unset: not passed)
#          THREAD_CPUS          --thread-cpus for bench_wsgate_server: io thread i on CPU i of this
#                               comma list (unset: threads float within SERVER_CORES)
#          SERVER_CORES=SERVER_CORE (0), LOAD_CORES=LOAD_CORE (1)   taskset CPU lists, e.g. "0-7"
#          SYSCALLS=1 if perf is on PATH, else 0: count the server's system calls (perf stat)
#
# Columns besides throughput and latency, for the server over the publish phase: CPU seconds,
# CPU ms per 1,000 deliveries, allocations (calls to operator new) per delivery, system calls per
# delivery; RSS per connection after connecting. "-" where a figure could not be had (perf
# missing or not permitted; a server binary without the allocation count).
set -euo pipefail
BUILD=${1:-build}
BIN=$BUILD/benchmarks/load
NS=${NS:-"100 1000 10000"}
M=${M:-200}
W=${W:-8}
SIZE=${SIZE:-64}
REPS=${REPS:-1}
THREADS=${THREADS:-1}
SERVER_CORES=${SERVER_CORES:-${SERVER_CORE:-0}}
LOAD_CORES=${LOAD_CORES:-${LOAD_CORE:-1}}
if [ -z "${SYSCALLS:-}" ]; then
  if command -v perf >/dev/null; then SYSCALLS=1; else SYSCALLS=0; fi
fi
WSGATE_ARGS=(--threads "$THREADS")
[ -n "${FLUSH_DELAY_US:-}" ] && WSGATE_ARGS+=(--flush-delay-us "$FLUSH_DELAY_US")
[ -n "${THREAD_CPUS:-}" ] && WSGATE_ARGS+=(--thread-cpus "$THREAD_CPUS")
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
echo "# ulimit -n $(ulimit -n); server on cores $SERVER_CORES (wsgate: threads $THREADS${FLUSH_DELAY_US:+, flush delay $FLUSH_DELAY_US µs}; bare: one thread), generator on cores $LOAD_CORES; M=$M events, window $W, ${SIZE}-byte events; $REPS runs each; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| server | N | events | deliveries/s | p50 ms | p99 ms | server CPU s | RSS KiB/conn | CPU ms/1k | allocs/delivery | syscalls/delivery | generator CPU | connect s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
TMP=$(mktemp -d)
SRV=""
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$TMP"' EXIT
for N in $NS; do
  # Fewer events at large N keeps each run around the same number of deliveries.
  EVENTS=$M
  if [ "$N" -ge 10000 ]; then EVENTS=$(( M / 4 > 10 ? M / 4 : 10 )); fi
  for _ in $(seq "$REPS"); do
    for MODE in ${MODES:-bare wsgate}; do
      LABEL=${MODE%%=*}
      EXE=""
      [ "$LABEL" != "$MODE" ] && EXE=${MODE#*=}
      case $LABEL in
        bare|wsgate|wsgate-nocoalesce) KIND=$LABEL; [ -n "$EXE" ] && LABEL="$KIND ($EXE)" ;;
        *)
          KIND=wsgate
          if [ -z "$EXE" ]; then echo "unknown mode $MODE" >&2; exit 2; fi ;;
      esac
      rm -f "$TMP/port"
      case $KIND in
        bare)
          taskset -c "$SERVER_CORES" "${EXE:-$BIN/bench_bare_server}" --port 0 --port-file "$TMP/port" \
            --alloc-file "$TMP/allocs" & SRV=$! ;;
        wsgate-nocoalesce)
          taskset -c "$SERVER_CORES" "${EXE:-$BIN/bench_wsgate_server}" --port 0 --port-file "$TMP/port" \
            --alloc-file "$TMP/allocs" "${WSGATE_ARGS[@]}" --coalesce 0 2>/dev/null & SRV=$! ;;
        wsgate)
          taskset -c "$SERVER_CORES" "${EXE:-$BIN/bench_wsgate_server}" --port 0 --port-file "$TMP/port" \
            --alloc-file "$TMP/allocs" "${WSGATE_ARGS[@]}" 2>/dev/null & SRV=$! ;;
      esac
      for _ in $(seq 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
      GEN_MODE=${KIND%%-*}
      taskset -c "$LOAD_CORES" "$BIN/bench_load_generator" --mode $GEN_MODE --label "$LABEL" --port "$(cat "$TMP/port")" \
        --server-pid $SRV -n "$N" -m "$EVENTS" -w "$W" --size "$SIZE" --alloc-file "$TMP/allocs" --syscalls "$SYSCALLS" \
        || echo "| $LABEL | $N | run failed |"
      kill $SRV; wait $SRV 2>/dev/null || true
      SRV=""
    done
  done
done
