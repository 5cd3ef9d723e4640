#!/usr/bin/env bash
# Side by side, in one run on this host: kvxfer's 672M transfer bandwidth over shm, fi_pingpong's
# 64 MiB messages over shm, a single-thread memcpy of 672 MiB (the one-core limit), and 64-byte
# latency of kvxfer rma-pingpong (write) vs kvxfer pingpong (messages) on the same provider.
#
# Usage: scripts/compare-xfer.sh [PROVIDER]   (default shm; ROUNDS=3 interleaved rounds)
# Env: KVXFER (the binary to measure; default target/release/kvxfer, rebuilt first unless
# BUILD=0; a KVXFER given is used as it is, never rebuilt), SIZE (672M), PORT (47611).
# Measurements on a shared 2-core machine are noisy: run it on an idle machine and compare
# ratios within one run, not figures across runs.
set -euo pipefail

PROVIDER=${1:-shm}
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-672M}
HERE=$(cd "$(dirname "$0")/.." && pwd)
if [[ -n ${KVXFER:-} ]]; then BUILD=0; fi
KVXFER=${KVXFER:-$HERE/target/release/kvxfer}
PORT=${PORT:-47611}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [[ ${BUILD:-1} == 1 ]]; then
    (cd "$HERE" && cargo build --release --quiet)
fi
[[ -x $KVXFER ]] || { echo "compare-xfer: $KVXFER is not an executable" >&2; exit 1; }
command -v jq >/dev/null || { echo "compare-xfer: jq is required" >&2; exit 1; }

# A figure from a result document, rounded to 3 decimals ("-" when absent).
fig() { jq -r "($1) // \"-\" | if type == \"number\" then (. * 1000 | round / 1000) else . end" "$2"; }

# fi_pingpong's MB/sec for 64 MiB messages (server in the background, client prints).
fi_pingpong_mbps() {
    if ! command -v fi_pingpong >/dev/null; then echo "-"; return; fi
    local out="$work/fipp.txt"
    timeout -k 5 120 fi_pingpong -p "$PROVIDER" -e rdm -S 67108864 -I 20 -B "$PORT" >/dev/null 2>&1 &
    local srv=$!
    sleep 0.3
    if timeout -k 5 120 fi_pingpong -p "$PROVIDER" -e rdm -S 67108864 -I 20 -P "$PORT" 127.0.0.1 >"$out" 2>&1; then
        awk '$1 == "64m" {print $6}' "$out"
    else
        echo "-"
    fi
    wait "$srv" 2>/dev/null || true
}

declare -a xfer_gbps memcpy_gbps fipp_gbps rma_us msg_us rma_p50 msg_p50
for r in $(seq 1 "$ROUNDS"); do
    "$KVXFER" --provider "$PROVIDER" --size "$SIZE" -I 5 -w 1 --json "$work/x.json" >/dev/null 2>&1
    xfer_gbps+=("$(fig '.results[0].bandwidth_gbps' "$work/x.json")")
    "$KVXFER" memcpy --size "$SIZE" -I 5 -w 1 --json "$work/m.json" >/dev/null
    memcpy_gbps+=("$(fig '.results[0].bandwidth_gbps' "$work/m.json")")
    mb=$(fi_pingpong_mbps)
    fipp_gbps+=("$( [[ $mb == - ]] && echo - || awk -v m="$mb" 'BEGIN{printf "%.3f", m/1000}')")
    "$KVXFER" rma-pingpong -p "$PROVIDER" -o write -S 64 -I 10000 --json "$work/r.json" >/dev/null 2>&1
    rma_us+=("$(fig '.results[0].extra.usec_per_xfer' "$work/r.json")")
    rma_p50+=("$(fig '.results[0].latency_us.p50' "$work/r.json")")
    "$KVXFER" pingpong -p "$PROVIDER" -S 64 -I 10000 --json "$work/p.json" >/dev/null 2>&1
    msg_us+=("$(fig '.results[0].extra.usec_per_xfer' "$work/p.json")")
    msg_p50+=("$(fig '.results[0].latency_us.p50' "$work/p.json")")
done

median() { printf '%s\n' "$@" | grep -v '^-$' | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "-"; else print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a=="-"||b=="-"||b==0) print "-"; else printf "%.2f", a/b }'; }

X=$(median "${xfer_gbps[@]}"); M=$(median "${memcpy_gbps[@]}"); F=$(median "${fipp_gbps[@]}")
RU=$(median "${rma_us[@]}"); MU=$(median "${msg_us[@]}"); RP=$(median "${rma_p50[@]}"); MP=$(median "${msg_p50[@]}")

echo "compare-xfer: provider $PROVIDER, $ROUNDS interleaved rounds, medians (host $(hostname), load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-44s %12s %s\n' "figure" "median" "rounds"
printf '%-44s %12s %s\n' "kvxfer xfer $SIZE bandwidth (GB/s)" "$X" "${xfer_gbps[*]}"
printf '%-44s %12s %s\n' "fi_pingpong 64 MiB messages (GB/s)" "$F" "${fipp_gbps[*]}"
printf '%-44s %12s %s\n' "memcpy $SIZE, one thread (GB/s)" "$M" "${memcpy_gbps[*]}"
printf '%-44s %12s %s\n' "kvxfer rma-pingpong write 64 B (usec/xfer)" "$RU" "${rma_us[*]}"
printf '%-44s %12s %s\n' "kvxfer pingpong msg 64 B (usec/xfer)" "$MU" "${msg_us[*]}"
printf '%-44s %12s %s\n' "  same, p50 of half round trips (rma / msg)" "$RP / $MP" ""
echo "ratios: xfer/memcpy $(ratio "$X" "$M"), xfer/fi_pingpong $(ratio "$X" "$F"), rma/msg latency $(ratio "$RU" "$MU") (p50: $(ratio "$RP" "$MP"))"
echo "(usec/xfer is a mean over the run and carries every scheduling stall of a busy machine; the p50 is robust)"
if ! command -v fi_rma_pingpong >/dev/null; then
    echo "note: fi_rma_pingpong is not installed (Debian's libfabric-bin ships fi_pingpong only)"
fi
