#!/usr/bin/env bash
# The team's comparison, libfabric against UCX, one flag apart, on this host's loopback: kvxfer
# xfer over libfabric's tcp provider and over UCX's tcp transport (UCX_TLS=tcp,
# UCX_NET_DEVICES=lo), interleaved (A B A B ...), same size, chunks, window, concurrency and op;
# then the same over shared memory (libfabric shm against UCX posix,cma). Prints each round and
# the median of the per-round ratios UCX / libfabric (aggregate GB/s, end-to-end p50) with its
# interval and verdict (scripts/ratios.py).
#
#   scripts/compare-backends.sh [ROUNDS]        (default 5, the fewest that give a verdict)
# Env: SIZE (default 64M), CONC (concurrency, default 1), OP (default send: UCX 1.13's tcp
# transport emulates RMA, so write/read over tcp measure that emulation), ITERS (default 5),
# KVXFER (the binary to measure, e.g. a release build of another commit; default
# target/release/kvxfer, built if missing). Busy-polling needs both cores: run it on an idle machine.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-5}"
kvxfer="${KVXFER:-$repo/target/release/kvxfer}"
size="${SIZE:-64M}"
conc="${CONC:-1}"
op="${OP:-send}"
iters="${ITERS:-5}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

die() { echo "compare-backends.sh: $*" >&2; exit 1; }
command -v python3 >/dev/null || die "python3 not found"
if [ -z "${KVXFER:-}" ] && [ ! -x "$kvxfer" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$kvxfer" ] || die "$kvxfer is not an executable"

# run LABEL ENV... -- ARGS...: one local xfer; prints "GB/s p50_ms"
run() {
    local envs=() args=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    args=("$@")
    env -u UCX_TLS -u UCX_NET_DEVICES UCX_LOG_FILE=stderr "${envs[@]}" timeout -k 5 600 "$kvxfer" xfer \
        "${args[@]}" -s "$size" -c "$conc" --op "$op" -I "$iters" -w 1 --json "$tmp/r.json" \
        >/dev/null 2>"$tmp/err" || { cat "$tmp/err" >&2; die "kvxfer xfer ${args[*]} failed"; }
    python3 - "$tmp/r.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(r["bandwidth_gbps"], r["latency_us"]["p50"] / 1000)
PY
}

# case LABEL FABRIC_ARGS UCX_ENV...
case_() {
    local label=$1 fab=$2
    shift 2
    local lf_bw=() lf_p50=() ux_bw=() ux_p50=()
    echo "# $label: $size x $conc, op $op, $iters iterations, $rounds rounds"
    for ((i = 1; i <= rounds; i++)); do
        # shellcheck disable=SC2086
        a=$(run -- $fab)
        b=$(run "$@" -- --backend ucx)
        echo "round $i  libfabric GB/s p50_ms: $a   UCX GB/s p50_ms: $b"
        lf_bw+=("${a% *}") lf_p50+=("${a#* }")
        ux_bw+=("${b% *}") ux_p50+=("${b#* }")
    done
    python3 "$repo/scripts/ratios.py" "$label: bandwidth" UCX libfabric GB/s higher \
        -- "${ux_bw[@]}" -- "${lf_bw[@]}"
    python3 "$repo/scripts/ratios.py" "$label: end-to-end p50" UCX libfabric ms lower \
        -- "${ux_p50[@]}" -- "${lf_p50[@]}"
}

echo "# $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
case_ "tcp (libfabric tcp provider vs UCX tcp on lo)" "-p tcp" UCX_TLS=tcp UCX_NET_DEVICES=lo
case_ "shared memory (libfabric shm vs UCX posix,cma)" "-p shm" UCX_TLS=posix,cma
