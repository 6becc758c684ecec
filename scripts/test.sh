#!/usr/bin/env bash
# Sets everything up and runs every test: the normal build (all tests, examples, package
# consumer), an ASan+UBSan build, a TSan build of the concurrency tests, and a bounded fuzz run.
#   scripts/test.sh            everything
#   SKIP_SETUP=1 scripts/test.sh   without apt-get
#   FUZZ_SECONDS=60            length of each fuzz run
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
JOBS="${JOBS:-$(nproc)}"
export CCACHE_DIR="${CCACHE_DIR:-$PWD/build/.ccache}"
LAUNCHER=""
command -v ccache >/dev/null && LAUNCHER="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
start=$(date +%s)
stage() { echo; echo "=== $* ($(( $(date +%s) - start ))s) ==="; }

stage "dev build"
cmake --preset dev $LAUNCHER -DWSGATE_REQUIRE_BROWSER_TEST=ON
cmake --build --preset dev -j "$JOBS"
stage "dev tests"
ctest --preset dev -j "$JOBS"

stage "ASan+UBSan build"
cmake --preset asan-ubsan $LAUNCHER
cmake --build --preset asan-ubsan -j "$JOBS"
stage "ASan+UBSan tests"
ctest --preset asan-ubsan -j "$JOBS"

stage "TSan build (concurrency tests)"
cmake --preset tsan $LAUNCHER
cmake --build --preset tsan -j "$JOBS" --target wsgate_concurrency_tests
stage "TSan tests"
ctest --preset tsan

if [ -f tests/fuzz/run_fuzz.sh ]; then
  stage "fuzz (${FUZZ_SECONDS:-60}s per target)"
  bash tests/fuzz/run_fuzz.sh "${FUZZ_SECONDS:-60}"
fi
stage "all test suites passed"
