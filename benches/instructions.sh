#!/usr/bin/env bash
# Instructions per request under `valgrind --tool=callgrind`: exact, and independent of the
# machine's load, so they complement criterion's nanoseconds on a busy machine. Counts only what
# runs inside `Runtime::block_on` (the requests, not building the clients); the server-layer
# figures have the cost of building the request subtracted, the loopback figures include the
# in-process server's work. Slow (each run is a few seconds under valgrind); needs valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }

# `BENCH_CARGO` runs cargo another way (e.g. `BENCH_CARGO="flock /tmp/cargo.lock cargo"` on a
# machine whose builds take turns).
executable() {
    ${BENCH_CARGO:-cargo} bench --no-run -p stopover-benches --bench "$1" 2>&1 | sed -n "s/.*Executable .*(\(.*\))$/\1/p" | tail -1
}

# Instructions collected inside block_on (or the function `$4` names) when the bench's profile
# mode runs `$3`.
collected() {
    local bin=$1 var=$2 target=$3 toggle=${4:-'tokio::runtime::runtime::Runtime::block_on*'}
    env "$var=$target" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        --toggle-collect="$toggle" "$bin" 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

# `benches/instructions.sh server` (or `client`) runs one half only.
only=${1:-all}

per_request() { # total, baseline, requests
    awk -v t="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.0f", (t - b) / n }'
}

if [ "$only" != client ]; then
echo "server layers, in process: instructions per request (request building subtracted)"
bin=$(executable server_layers)
echo "| stack | no Origin | simple CORS | preflight |"
echo "|---|---|---|---|"
declare -A base
for shape in no-origin simple-cors preflight; do
    base[$shape]=$(collected "$bin" SERVER_LAYERS_PROFILE "requests/$shape")
done
for stack in bare "tower-http 0.6" "tower-http 0.7" stopover axum "axum + tower-http 0.6" \
    "axum + tower-http 0.7" "axum + stopover" "axum + stopover, 4 layer calls" \
    "tower-http cors" "tower-http 0.7 cors" "tower-http catch-panic" \
    "tower-http timeout" "stopover forwarded" "stopover cors" "stopover error" "stopover timeout"; do
    row="| $stack |"
    for shape in no-origin simple-cors preflight; do
        total=$(collected "$bin" SERVER_LAYERS_PROFILE "$stack/$shape")
        row="$row $(per_request "$total" "${base[$shape]}" 20000) |"
    done
    echo "$row"
done
echo
fi
[ "$only" = server ] && exit 0

echo "client chain, in process: instructions per request"
bin=$(executable client_chain)
echo "| middlewares | stopover | reqwest-middleware |"
echo "|---|---|---|"
for depth in 0 1 4 16; do
    ours=$(collected "$bin" CLIENT_CHAIN_PROFILE "stopover/$depth")
    theirs=$(collected "$bin" CLIENT_CHAIN_PROFILE "reqwest-middleware/$depth")
    echo "| $depth | $(per_request "$ours" 0 20000) | $(per_request "$theirs" 0 20000) |"
done
echo

echo "client over loopback, sequential: instructions per request (client and server)"
bin=$(executable client_loopback)
echo "| client | instructions/req |"
echo "|---|---|"
while IFS= read -r client; do
    total=$(collected "$bin" CLIENT_LOOPBACK_PROFILE "$client")
    echo "| $client | $(per_request "$total" 0 2000) |"
done < <("$bin" --list-clients)
echo

echo "client over loopback by requests in flight: instructions per request (client and server; warm-up subtracted)"
bin=$(executable client_scaling)
echo "| client | 1 | 32 | 256 |"
echo "|---|---|---|---|"
while IFS= read -r client; do
    row="| $client |"
    for in_flight in 1 32 256; do
        # `load::run` is never inlined; while it runs, the server thread's work is counted too.
        total=$(collected "$bin" CLIENT_SCALING_PROFILE "$client/$in_flight" '*load::run')
        warm=$(collected "$bin" CLIENT_SCALING_PROFILE "$client/$in_flight/warm" '*load::run')
        row="$row $(per_request "$total" "$warm" 5120) |"
    done
    echo "$row"
done < <(CLIENT_SCALING_PROFILE=--list "$bin")
