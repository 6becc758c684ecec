#!/usr/bin/env bash
# Sets everything up and runs every test: the normal build (all tests, examples, package
# consumer), an ASan+UBSan build, a TSan build of the concurrency tests, and a bounded fuzz run.
#   scripts/test.sh            everything
#   SKIP_SETUP=1 scripts/test.sh   without apt-get
#   FUZZ_SECONDS=25            length of each fuzz run (5 targets)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
JOBS="${JOBS:-$(nproc)}"
export CCACHE_DIR="${CCACHE_DIR:-$PWD/build/.ccache}"
LAUNCHER=""
command -v ccache >/dev/null && LAUNCHER="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
start=$(date +%s)
stage() { echo; echo "=== $* ($(( $(date +%s) - start ))s) ==="; }
# Runs ctest, keeps its output, and adds its test count to the total printed at the end
# (ctest exits non-zero on any failure, which ends this script).
PASSED=0
CTEST_LOG="$(mktemp)"
trap 'rm -f "$CTEST_LOG"' EXIT
run_ctest() {
  ctest "$@" | tee "$CTEST_LOG"
  local n
  n=$(sed -n 's/.*tests passed, 0 tests failed out of \([0-9][0-9]*\).*/\1/p' "$CTEST_LOG" | tail -n 1)
  PASSED=$((PASSED + ${n:-0}))
}

stage "dev build"
cmake --preset dev $LAUNCHER -DWSGATE_REQUIRE_BROWSER_TEST=ON -DWSGATE_REQUIRE_DYNAMODB_TEST=ON
cmake --build --preset dev -j "$JOBS"
stage "dev tests"
run_ctest --preset dev -j "$JOBS"

stage "ASan+UBSan build"
cmake --preset asan-ubsan $LAUNCHER
cmake --build --preset asan-ubsan -j "$JOBS"
stage "ASan+UBSan tests"
run_ctest --preset asan-ubsan -j "$JOBS"

stage "TSan build (concurrency tests)"
cmake --preset tsan $LAUNCHER
cmake --build --preset tsan -j "$JOBS" --target wsgate_concurrency_tests
stage "TSan tests"
run_ctest --preset tsan

if [ -f tests/fuzz/run_fuzz.sh ]; then
  stage "fuzz (${FUZZ_SECONDS:-25}s per target)"
  bash tests/fuzz/run_fuzz.sh "${FUZZ_SECONDS:-25}"
fi
stage "all test suites passed"
echo "ctest: ${PASSED} passed, 0 failed"
