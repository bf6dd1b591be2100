#!/usr/bin/env bash
# Mutation testing of the security-critical decisions with cargo-mutants (27 or later): the
# redirect loop and origin comparison, the digest scope, the SSRF policy, the forwarded walk and
# CORS origin matching. Each run mutates only the decision functions of one module and runs the
# fastest test target that covers them (built and run alone: `--cargo-arg` reaches both the
# build and the test step, and the features name only what that target needs). Fails when any
# mutant is missed; a mutant that makes the tests time out counts as caught (they hung).
#
#   bash .ci/mutants.sh              # every run (about 45 minutes on two cores)
#   bash .ci/mutants.sh ssrf cors    # only the runs named
#
# Not part of .ci/run: it rebuilds the crate once per mutant. Results go to
# $MUTANTS_OUT/mutants-<run>/mutants.out (default MUTANTS_OUT=/tmp); `missed.txt` lists survivors.
# MUTANTS_TARGET_DIR, when set, is one target directory the runs share, so the dependencies are
# built once instead of once per run (cargo-mutants builds in a copy of the tree).
set -uo pipefail
cd "$(dirname "$0")/.."
unset CARGO_TARGET_DIR
if [ -n "${MUTANTS_TARGET_DIR:-}" ]; then export CARGO_TARGET_DIR="$MUTANTS_TARGET_DIR"; fi
out_root="${MUTANTS_OUT:-/tmp}"

run() {
    local name="$1"; shift
    echo "== mutants: $name"
    local output="$out_root/mutants-$name"
    mkdir -p "$output"
    local status=0
    cargo mutants --no-shuffle -j 1 --output "$output" "$@" || status=$?
    # 0: every mutant caught; 2: some missed; 3: some timed out (a mutant that makes the tests
    # hang was detected: a loop that no longer ends). Anything else: the run itself failed.
    if [ "$status" -ne 0 ] && [ "$status" -ne 2 ] && [ "$status" -ne 3 ]; then
        echo "== $name: FAILED (cargo mutants exited with $status: see $output/mutants.out)"
        failed+=("$name")
    elif [ -s "$output/mutants.out/missed.txt" ]; then
        echo "== $name: FAILED, missed mutants:"
        cat "$output/mutants.out/missed.txt"
        failed+=("$name")
    else
        echo "== $name: no survivor"
    fi
}

# Whether the run named `$1` was asked for: every run when none was named.
wanted() { [ "${#selected[@]}" -eq 0 ] || printf '%s\n' "${selected[@]}" | grep -qx "$1"; }

selected=("$@")
failed=()

# The redirect loop: which status is followed, the method rewrite, the hop count, and the
# origin comparison that drops credentials on a cross-origin hop.
wanted redirect && run redirect \
    --file src/client/redirect.rs --file src/client/origin.rs \
    --re 'crosses_origin|redirect_target|turns_into_get|follow_hops' \
    --features axum --cargo-arg=--test=client

# The digest scope: which origins and paths get an answer (`Origin::contains` is also what
# scopes a token). The protection spaces have unit tests; the origin scope is HTTP behaviour,
# tested against loopback servers in the client suite.
wanted digest && run digest \
    --file src/client/digest/space.rs --file src/client/digest/auth.rs --file src/client/origin.rs \
    --re 'answers_origin|bind_origin|Space::covers|Spaces::covers|path_has_prefix|domain_prefixes|Spaces::origin_of|Origin::contains' \
    --features axum --cargo-arg=--lib --cargo-arg=--test=client

# The SSRF policy's classification and decisions.
wanted ssrf && run ssrf \
    --file src/client/ssrf/policy.rs \
    --re 'judge_|builtin_name_rule|HostPattern::matches|AddrRule::matches|is_wholesale_local|Policy::enforce|check_ip|check_url' \
    --no-default-features --features client --cargo-arg=--lib

# The forwarded walk: which hops are believed, from the right, and what is stripped.
wanted forwarded && run forwarded \
    --file src/server/forwarded.rs \
    --re 'Config::is_trusted|in apply$|replace apply |believed_hops|x_forwarded_hops|from_the_right|rfc7239_hops|in strip$|replace strip ' \
    --no-default-features --features server --cargo-arg=--lib

# CORS: origin matching and the policy's grant. Origins are normalised when the layer is built
# (unit and property tests); the grant is HTTP behaviour (the server suite).
wanted cors && run cors \
    --file src/server/cors/allow_origin.rs --file src/server/cors/policy.rs \
    --re 'OriginPolicy::decide|OriginList::decide|normalize_origin|Config::grant|Config::covers|mirror' \
    --features axum --cargo-arg=--lib --cargo-arg=--test=server

if [ "${#failed[@]}" -gt 0 ]; then
    echo "missed mutants, or a run that failed, in: ${failed[*]}"
    exit 1
fi
echo "mutants: every run caught every mutant"
