#!/usr/bin/env bash
# Time linear in the input, for every parser that reads what a peer sends: the challenge and
# Authentication-Info parsers, Forwarded, X-Forwarded-*, Access-Control-Request-Headers,
# Retry-After and the token endpoint's JSON. Each parser runs once under
# `valgrind --tool=callgrind` (instruction counts are exact, whatever the machine's load) on
# adversarial inputs of 1, 4, 16 and 64 KiB (long runs of quotes, backslashes, commas,
# parameters); the script fails when the instructions per byte at 64 KiB exceed twice those at
# 1 KiB. Only the parser's call is counted (the probes are tests beside each parser, which in
# `cargo test` parse every shape at 64 KiB; see src/linearity.rs). Needs valgrind; `BENCH_CARGO` runs cargo another way.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }

bin=$(${BENCH_CARGO:-cargo} test --lib --no-run 2>&1 |
    sed -n 's/.*Executable unittests src\/lib.rs (\(.*\))$/\1/p' | tail -1)
[ -x "$bin" ] || { echo "the library's test binary was not built"; exit 1; }

# Instructions inside `linearity::measured` for one probe, shape and size.
collected() {
    LINEARITY_SHAPE=$2 LINEARITY_BYTES=$3 valgrind --tool=callgrind --callgrind-out-file=/dev/null \
        --toggle-collect='*linearity::measured*' "$bin" --exact "$1" --test-threads=1 2>&1 |
        sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}

probes=(
    "client::digest::properties::challenge_linearity_probe challenge-escapes"
    "client::digest::properties::challenge_linearity_probe challenge-unterminated"
    "client::digest::properties::challenge_linearity_probe challenge-params"
    "client::digest::properties::challenge_linearity_probe challenge-commas"
    "client::digest::properties::challenge_linearity_probe challenge-schemes"
    "client::digest::properties::authentication_info_linearity_probe challenge-escapes"
    "client::digest::properties::authentication_info_linearity_probe challenge-params"
    "server::forwarded::properties::forwarded_linearity_probe forwarded-escapes"
    "server::forwarded::properties::forwarded_linearity_probe forwarded-unterminated"
    "server::forwarded::properties::forwarded_linearity_probe forwarded-elements"
    "server::forwarded::properties::forwarded_linearity_probe forwarded-quoted-commas"
    "server::forwarded::properties::forwarded_linearity_probe forwarded-commas"
    "server::forwarded::properties::x_forwarded_linearity_probe x-forwarded-items"
    "server::forwarded::properties::x_forwarded_linearity_probe x-forwarded-commas"
    "server::cors::properties::request_headers_linearity_probe cors-items"
    "server::cors::properties::request_headers_linearity_probe cors-commas"
    "server::cors::properties::request_headers_linearity_probe cors-whitespace"
    "linearity::retry_after_linearity_probe retry-after-digits"
    "linearity::retry_after_linearity_probe retry-after-spaces"
    "client::token::tests::token_response_linearity_probe token-escapes"
    "client::token::tests::token_response_linearity_probe token-keys"
    "client::token::tests::token_response_linearity_probe token-nested"
)
sizes=(1024 4096 16384 65536)

# Every count is independent: run them on every core, then read them back in order.
counts=$(mktemp -d)
trap 'rm -rf "$counts"' EXIT
export -f collected
export bin
for entry in "${probes[@]}"; do
    for size in "${sizes[@]}"; do
        echo "$entry $size"
    done
done | xargs -P "$(nproc)" -L 1 bash -c 'collected "$0" "$1" "$2" > "'"$counts"'/${0##*::}.$1.$2"'

failed=0
echo "instructions per byte (callgrind), and the ratio of 64 KiB to 1 KiB (at most 2)"
echo "| parser probe | input | 1 KiB | 4 KiB | 16 KiB | 64 KiB | ratio |"
echo "|---|---|---|---|---|---|---|"
for entry in "${probes[@]}"; do
    read -r probe shape <<<"$entry"
    row=()
    for size in "${sizes[@]}"; do
        count=$(cat "$counts/${probe##*::}.$shape.$size")
        [ -n "$count" ] || { echo "no count for $probe $shape $size"; exit 1; }
        row+=("$(awk -v c="$count" -v n="$size" 'BEGIN { printf "%.1f", c / n }')")
    done
    ratio=$(awk -v a="${row[0]}" -v b="${row[3]}" 'BEGIN { printf "%.2f", b / a }')
    verdict=""
    if awk -v r="$ratio" 'BEGIN { exit !(r > 2) }'; then
        verdict=" SUPER-LINEAR"
        failed=1
    fi
    echo "| ${probe##*::} | $shape | ${row[0]} | ${row[1]} | ${row[2]} | ${row[3]} | $ratio$verdict |"
done
if [ "$failed" -ne 0 ]; then
    echo "a parser's cost per byte grew more than twofold from 1 KiB to 64 KiB"
    exit 1
fi
