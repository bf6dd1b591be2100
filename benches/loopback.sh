#!/usr/bin/env bash
# The loopback load tests: installs the load generator when it is missing (Debian's `wrk`), then
# runs the server and client loopback benchmarks. Loopback only; every run is bounded in time.
set -euo pipefail
# `BENCH_CARGO` runs cargo another way (e.g. `BENCH_CARGO="flock /tmp/cargo.lock cargo"`).
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    echo "== installing wrk (Debian package)"
    if [ "$(id -u)" -eq 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
    else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
    fi
fi

echo "== cargo bench -p stopover-benches --bench server_loopback"
${BENCH_CARGO:-cargo} bench -p stopover-benches --bench server_loopback -- "$@"
echo "== cargo bench -p stopover-benches --bench client_loopback"
${BENCH_CARGO:-cargo} bench -p stopover-benches --bench client_loopback -- "$@"
