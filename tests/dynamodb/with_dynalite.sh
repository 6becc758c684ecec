#!/usr/bin/env bash
# with_dynalite.sh COMMAND [ARG...]: runs COMMAND against a fresh in-memory dynalite (a local
# DynamoDB) on 127.0.0.1 and a free port, then stops it (by PID) however COMMAND ends.
#   - every `{endpoint}` in the arguments becomes http://127.0.0.1:<port>
#   - WSGATE_DYNALITE_ENDPOINT is exported with the same URL
#   - AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_REGION default to dummies (dynalite signs nothing)
# dynalite is tests/dynamodb/node_modules/dynalite (`npm ci` in tests/dynamodb); node is $WSGATE_NODE
# or the node on PATH. Exit status: COMMAND's, or 125 if dynalite could not be started.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node=${WSGATE_NODE:-$(command -v node || true)}
cli="$here/node_modules/dynalite/cli.js"
if [[ $# -eq 0 ]]; then
  echo "usage: with_dynalite.sh COMMAND [ARG...]   ({endpoint} in ARGs is replaced)" >&2
  exit 2
fi
if [[ -z "$node" || ! -x "$node" ]]; then
  echo "with_dynalite.sh: node not found (set WSGATE_NODE)" >&2
  exit 125
fi
if [[ ! -f "$cli" ]]; then
  echo "with_dynalite.sh: $cli is missing: run npm ci in $here" >&2
  exit 125
fi

# A free port: bind port 0 and read what the kernel chose. Another process could take it before
# dynalite binds; dynalite then exits and the wait below says so.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
endpoint="http://127.0.0.1:$port"
log=$(mktemp "${TMPDIR:-/tmp}/dynalite.XXXXXX.log")

"$node" "$cli" --host 127.0.0.1 --port "$port" --createTableMs 0 --deleteTableMs 0 --updateTableMs 0 >"$log" 2>&1 &
dynalite_pid=$!
cleanup() {
  kill "$dynalite_pid" 2>/dev/null || true
  wait "$dynalite_pid" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Wait until dynalite answers HTTP (any status: an unsigned request is refused, which is an answer).
for _ in $(seq 1 200); do
  if ! kill -0 "$dynalite_pid" 2>/dev/null; then
    echo "with_dynalite.sh: dynalite exited at start:" >&2
    cat "$log" >&2
    exit 125
  fi
  if /usr/bin/python3 - "$port" <<'PY' 2>/dev/null; then
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=1)
c.request("POST", "/", body="{}", headers={"Content-Type": "application/x-amz-json-1.0"})
c.getresponse().read()
PY
    break
  fi
  sleep 0.05
done
if ! kill -0 "$dynalite_pid" 2>/dev/null; then
  echo "with_dynalite.sh: dynalite did not start" >&2
  exit 125
fi

export WSGATE_DYNALITE_ENDPOINT="$endpoint"
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-local}
export AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-local}
export AWS_REGION=${AWS_REGION:-us-east-1}

args=()
for a in "$@"; do
  args+=("${a//\{endpoint\}/$endpoint}")
done
set +e
"${args[@]}"
status=$?
set -e
exit "$status"
