#!/usr/bin/env bash
# Sets everything up, builds, and runs the demo: the realtime server (http://127.0.0.1:8080)
# when the Beast backend is built, else the in-process tournament example.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
LAUNCHER=""
command -v ccache >/dev/null && LAUNCHER="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
cmake -S . -B build/demo -G Ninja -DCMAKE_BUILD_TYPE=Release -DWSGATE_BUILD_TESTS=OFF \
  -DWSGATE_BUILD_BENCHMARKS=OFF $LAUNCHER
if ninja -C build/demo -t targets all | grep -q '^realtime_server:'; then
  cmake --build build/demo -j "$(nproc)" --target realtime_server
  exec build/demo/examples/realtime_server/realtime_server "$@"
fi
cmake --build build/demo -j "$(nproc)" --target tournament_example
exec build/demo/examples/tournament/tournament_example "$@"
