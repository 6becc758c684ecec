#!/bin/sh
# Builds the token fuzzer with clang (libFuzzer + ASan + UBSan) in its own build directory and
# runs it for a bounded time.   usage: tests/fuzz/run_fuzz.sh [seconds=60] [build-dir=build-fuzz]
set -eu
seconds="${1:-60}"
src="$(cd "$(dirname "$0")/../.." && pwd)"
build="${2:-$src/build-fuzz}"

cmake -S "$src" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DWSGATE_BUILD_FUZZERS=ON -DWSGATE_BUILD_TESTS=OFF -DWSGATE_BUILD_EXAMPLES=OFF -DWSGATE_BUILD_BENCHMARKS=OFF \
  -DWSGATE_WITH_SQLITE=OFF -DWSGATE_WITH_REDIS=OFF -DWSGATE_WITH_BEAST=OFF -DWSGATE_WITH_AWS=OFF \
  -DBUILD_SHARED_LIBS=OFF
cmake --build "$build" --target fuzz_jwt

# New inputs go to a scratch corpus; the shipped seeds stay untouched.
work="$build/fuzz-corpus-jwt"
mkdir -p "$work"
"$build/tests/fuzz/fuzz_jwt" "$work" "$src/tests/fuzz/corpus/jwt" \
  -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
