#!/usr/bin/env bash
# Installs everything wsgate's build, tests, demo and benchmarks need on Debian 12.
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends \
  build-essential cmake ninja-build ccache pkg-config git ca-certificates \
  nlohmann-json3-dev catch2 libssl-dev libboost1.81-dev libsqlite3-dev libhiredis-dev redis-server \
  libcurl4-openssl-dev libbenchmark-dev \
  python3 python3-websockets python3-jwt python3-cryptography python3-yaml \
  clang libclang-rt-14-dev \
  chromium

# Node, for the headless-browser test's playwright-core (it drives Debian's chromium and
# downloads no browser) and for dynalite, the DynamoDB implementation the DynamoDB store's tests
# start. The machine's own Node is used when there is one.
if ! command -v npm >/dev/null 2>&1; then
  $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
(cd "$(dirname "$0")/../tests/e2e/browser" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$(dirname "$0")/../tests/dynamodb" && npm ci --no-audit --no-fund --loglevel=error)
