#!/usr/bin/env bash
# Builds kvxfer with `--features cuda` and the device test executables that
# scripts/device-check.sh runs (its --device-tests), in one cargo profile, and lays them out as
# the check expects them: ROOT/bin/kvxfer and ROOT/tests/NAME (NAME: lib, or a tests/ target).
#
#   scripts/device-build.sh PROFILE ROOT link|copy
#
# PROFILE is a cargo profile (both scripts/gpu-check.sh and scripts/device-bundle.sh take
# `device`: release code, thin LTO); link makes symbolic links into target/, copy copies.
# Exit status 2 when the build fails.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -ne 3 ] || { [ "$3" != link ] && [ "$3" != copy ]; }; then
    sed -n '2,9p' "$0" >&2
    exit 2
fi
profile="$1" root="$2" how="$3"
cd "$repo"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
targets=()
mapfile -t tests < <(bash scripts/device-check.sh --device-tests)
for t in "${tests[@]}"; do
    if [ "$t" = lib ]; then targets+=(--lib); else targets+=(--test "$t"); fi
done
echo "device-build: cargo test --profile $profile --features cuda --no-run ${targets[*]}" >&2
# One build gives the test executables and, as the integration tests' dependency, kvxfer.
if ! cargo test --profile "$profile" --features cuda --no-run "${targets[@]}" \
    --message-format=json-render-diagnostics >"$log"; then
    echo "device-build: the cuda build failed" >&2
    exit 2
fi

# executable KIND NAME TEST: the path cargo reported for that target ("true" for a test build).
executable() {
    grep '"reason":"compiler-artifact"' "$log" |
        grep "\"kind\":\[\"$1\"\][^}]*\"name\":\"$2\"" |
        grep "\"test\":$3" |
        sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1
}

mkdir -p "$root/bin" "$root/tests"
place() { # SOURCE DEST
    if [ -z "$1" ] || [ ! -x "$1" ]; then
        echo "device-build: cargo reported no executable for $2" >&2
        exit 2
    fi
    rm -f "$2"
    if [ "$how" = link ]; then ln -s "$1" "$2"; else cp "$1" "$2"; fi
}
place "$(executable bin kvxfer false)" "$root/bin/kvxfer"
for t in "${tests[@]}"; do
    if [ "$t" = lib ]; then
        place "$(executable lib kvxfer true)" "$root/tests/lib"
    else
        place "$(executable test "$t" true)" "$root/tests/$t"
    fi
done
