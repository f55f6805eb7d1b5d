#!/usr/bin/env bash
# Performance targets of the harness's own parts (not of HAProxy): `make bench`.
#   backend: the purpose-built backend must not be the bottleneck: >= $BACKEND_TARGET req/s
#            for small keep-alive responses on one core, measured with wrk on loopback.
set -euo pipefail
BACKEND_TARGET=${BACKEND_TARGET:-15000}
PY=${PY:-python3}

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
log=$(mktemp)
BACKEND_HOST=127.0.0.1 BACKEND_PORT=0 "$PY" -u backends/server.py >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 50); do grep -q "listening on" "$log" && break; sleep 0.1; done
port=$(grep -o "listening on [0-9.]*:[0-9]*" "$log" | head -n1 | cut -d: -f2)
echo "backend on 127.0.0.1:$port; wrk -t1 -c50 -d5s"
out=$(wrk -t1 -c50 -d5s "http://127.0.0.1:$port/")
echo "$out"
rps=$(awk '/Requests\/sec/ {printf "%d", $2}' <<<"$out")
if (( rps < BACKEND_TARGET )); then
    echo "bench: backend ${rps} req/s is below the target of ${BACKEND_TARGET}" >&2
    exit 1
fi
echo "bench: backend ${rps} req/s (target ${BACKEND_TARGET}): ok"
