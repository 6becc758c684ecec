#!/usr/bin/env bash
# Idle connections: memory per idle connection and a large connect, against the bare Beast server
# and the wsgate demo server (examples/realtime_server: HS256 user tokens, in-memory store,
# node-local delivery index), each pinned to core SERVER_CORE, the generator to core LOAD_CORE.
#
#   benchmarks/load/connections.sh [BUILD_DIR]
#     env: N=50000        idle connections per server (each its own user, token and device)
#          SOURCES=4      loopback source addresses 127.0.0.2.. (one address has ~28k ports)
#          RUNS=1         repetitions; every mode is measured in each run
#          MODES="bare realtime"   each KIND or KIND=BINARY, KIND one of
#                         bare      bench_bare_server (/sub, no auth; publish on /pub)
#                         realtime  the demo server: token per connection, subscribe to
#                                   leaderboard:bench, publish through POST /publish
#                         bench     bench_wsgate_server (/ws, admits everyone, topic bench)
#                         e.g. MODES="bare realtime=/tmp/old/realtime_server realtime"
#                         compares an older build of the demo server in the same run.
#
# Each server gets the descriptor limit the script can give (ulimit -n up to the hard limit) and
# the demo server the flags a host would pass for that many clients behind few addresses:
# --max-connections N+1000 --max-connections-per-address 0. When the hard limit is below
# N + 200, N is reduced to fit and the row says so. The generator binds each socket to its
# source address before connecting, subscribes once acknowledged, waits 2 s, reads the server's
# VmRSS (before connecting and now), then makes one publish and counts the connections it
# reached. Columns: connections, source addresses, connect seconds, connections/s, server CPU
# time per connect (user + system, µs; less sensitive than connections/s to other load on the
# machine), server RSS before/after (MiB), RSS KiB per connection, deliveries, ms until the last
# delivery.
set -euo pipefail
BUILD=${1:-build}
BIN=$BUILD/benchmarks/load
N=${N:-50000}
SOURCES=${SOURCES:-4}
RUNS=${RUNS:-1}
MODES=${MODES:-"bare realtime"}
SERVER_CORE=${SERVER_CORE:-0}
LOAD_CORE=${LOAD_CORE:-1}
SECRET=${SECRET:-connections-benchmark-session-secret-0123456789}
ADMIN_KEY=${ADMIN_KEY:-connections-benchmark-admin-key}

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
LIMIT=$(ulimit -n)
NOTE=""
if [ "$LIMIT" != unlimited ] && [ $(( N + 200 )) -gt "$LIMIT" ]; then
  NOTE=" (N reduced from $N: descriptor hard limit $LIMIT)"
  N=$(( LIMIT - 200 ))
fi
echo "# ulimit -n $LIMIT; server on core $SERVER_CORE, generator on core $LOAD_CORE; N=$N$NOTE, $SOURCES source addresses, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| server | connections | sources | connect s | conn/s | server CPU µs/conn | RSS before MiB | RSS after MiB | RSS KiB/conn | deliveries | deliver ms |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
TMP=$(mktemp -d)
SRV=""
trap '[ -n "$SRV" ] && kill $SRV 2>/dev/null; rm -rf "$TMP"' EXIT
for RUN in $(seq "$RUNS"); do
  for MODE in $MODES; do
    KIND=${MODE%%=*}
    EXE=""
    [ "$KIND" != "$MODE" ] && EXE=${MODE#*=}
    LABEL=$KIND
    [ -n "$EXE" ] && LABEL="$KIND ($EXE)"
    rm -f "$TMP/port"
    case $KIND in
      bare)
        taskset -c "$SERVER_CORE" "${EXE:-$BIN/bench_bare_server}" --port 0 --port-file "$TMP/port" & SRV=$!
        GEN=(--path /sub --publish-ws /pub --publish-text '{"marker":"idle-bench"}') ;;
      bench)
        taskset -c "$SERVER_CORE" "${EXE:-$BIN/bench_wsgate_server}" --port 0 --port-file "$TMP/port" 2>/dev/null & SRV=$!
        GEN=(--path /ws --subscribe bench --publish-ws /ws
             --publish-text '{"type":"publish","topic":"bench","data":{"marker":"idle-bench"}}') ;;
      realtime)
        taskset -c "$SERVER_CORE" "${EXE:-$BUILD/examples/realtime_server/realtime_server}" --port 0 --port-file "$TMP/port" \
          --session-secret "$SECRET" --public-secret "$SECRET-public" --admin-key "$ADMIN_KEY" \
          --max-connections $(( N + 1000 )) --max-connections-per-address 0 >/dev/null & SRV=$!
        GEN=(--path /ws --secret "$SECRET" --subscribe leaderboard:bench --publish-http /publish --admin-key "$ADMIN_KEY"
             --publish-body '{"topic":"leaderboard:bench","type":"leaderboard_update","data":{"marker":"idle-bench"}}') ;;
      *) echo "unknown mode $KIND" >&2; exit 2 ;;
    esac
    for _ in $(seq 200); do [ -s "$TMP/port" ] && break; sleep 0.05; done
    sleep 0.5  # the server's own start-up allocations are not per connection
    taskset -c "$LOAD_CORE" "$BIN/bench_idle_connections" --label "$LABEL" --port "$(cat "$TMP/port")" \
      --server-pid $SRV -n "$N" --sources "$SOURCES" "${GEN[@]}" || echo "| $LABEL | run incomplete (see above) |"
    kill $SRV; wait $SRV 2>/dev/null || true
    SRV=""
    sleep 2  # sockets in TIME_WAIT belong to the client side; give the kernel a moment
  done
done
