#!/bin/sh
# Builds the fuzzers with clang (libFuzzer + ASan + UBSan) in their own build directory and runs
# each for a bounded time.   usage: tests/fuzz/run_fuzz.sh [seconds-per-target=60] [build-dir=build-fuzz]
# JOBS (default 2) bounds the build's parallel compiles.
set -eu
seconds="${1:-60}"
src="$(cd "$(dirname "$0")/../.." && pwd)"
build="${2:-$src/build-fuzz}"
jobs="${JOBS:-2}"

cmake -S "$src" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DWSGATE_BUILD_FUZZERS=ON -DWSGATE_BUILD_TESTS=OFF -DWSGATE_BUILD_EXAMPLES=OFF -DWSGATE_BUILD_BENCHMARKS=OFF \
  -DWSGATE_WITH_SQLITE=OFF -DWSGATE_WITH_REDIS=OFF -DWSGATE_WITH_BEAST=ON -DWSGATE_WITH_AWS=ON \
  -DBUILD_SHARED_LIBS=OFF
# Only the fuzz targets and what they link (Beast for fuzz_http, AWS for fuzz_apigw).
cmake --build "$build" -j "$jobs" --target fuzz_jwt fuzz_message fuzz_client fuzz_http fuzz_apigw

# New inputs go to a scratch corpus; the shipped seeds stay untouched.
for target in jwt message client http apigw; do
  work="$build/fuzz-corpus-$target"
  mkdir -p "$work"
  echo "--- fuzz_$target for ${seconds}s"
  "$build/tests/fuzz/fuzz_$target" "$work" "$src/tests/fuzz/corpus/$target" \
    -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
