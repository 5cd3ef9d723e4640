#!/usr/bin/env bash
# kvxfer pingpong and Debian's fi_pingpong, interleaved (A B A B ...), on the same provider,
# endpoint, size and iteration count over the loopback; prints each round, the medians, and the
# median of the per-round ratios with its interval and verdict (scripts/ratios.py). Run it on
# an idle machine: two busy-polling processes need both cores.
#
#   scripts/compare-pingpong.sh [PROVIDER] [ENDPOINT] [SIZE] [ITERATIONS] [ROUNDS]
#   defaults:                    shm        rdm        64     20000        5
#
# Compared: kvxfer's p50 of the per-iteration half round trips and its usec/xfer (fi_pingpong's
# arithmetic over the same timed iterations, after kvxfer's 10 warm-up iterations) against
# fi_pingpong's usec/xfer (client side). Both run as two processes on 127.0.0.1.
# Env: KVXFER (the binary to measure; default target/release/kvxfer, built if missing),
# KVXFER_NO_RT (1: no real-time priority).
set -euo pipefail

provider=${1:-shm}
endpoint=${2:-rdm}
size=${3:-64}
iters=${4:-20000}
rounds=${5:-5}
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
kvxfer=${KVXFER:-$repo/target/release/kvxfer}
[ -n "${KVXFER:-}" ] || [ -x "$kvxfer" ] || (cd "$repo" && cargo build --release --quiet)
[ -x "$kvxfer" ] || { echo "compare-pingpong: $kvxfer is not an executable" >&2; exit 1; }
command -v fi_pingpong >/dev/null || { echo "fi_pingpong not found: bash scripts/setup.sh" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT

# Real-time priority for both tools where allowed (root on Linux): a loaded 2-core machine
# otherwise measures its scheduler. KVXFER_NO_RT=1 runs both at normal priority.
rt=()
if [ -z "${KVXFER_NO_RT:-}" ] && chrt -f 1 true 2>/dev/null; then rt=(chrt -f 1); fi

domain=()
case "$provider" in tcp|udp|sockets|net) domain=(-d lo) ;; esac
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

fi_round() {
    local p; p=$(port)
    "${rt[@]}" timeout -k 5 120 fi_pingpong -p "$provider" -e "$endpoint" "${domain[@]}" -I "$iters" -S "$size" -B "$p" >/dev/null 2>&1 &
    local srv=$!
    sleep 0.3
    "${rt[@]}" timeout -k 5 120 fi_pingpong -p "$provider" -e "$endpoint" "${domain[@]}" -I "$iters" -S "$size" -P "$p" 127.0.0.1 >"$tmp/fi.out"
    wait $srv
    # The data row: its 7th column is usec/xfer.
    awk 'NR==2 {print $7}' "$tmp/fi.out"
}

kv_round() {
    local p; p=$(port)
    "${rt[@]}" "$kvxfer" pingpong -p "$provider" -e "$endpoint" -S "$size" -I "$iters" --listen "127.0.0.1:$p" >/dev/null 2>&1 &
    local srv=$!
    "${rt[@]}" "$kvxfer" pingpong -p "$provider" -e "$endpoint" -S "$size" -I "$iters" --peer "127.0.0.1:$p" \
        --json "$tmp/kv.json" >/dev/null
    wait $srv
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print(r["latency_us"]["p50"], r["extra"]["usec_per_xfer"])' "$tmp/kv.json"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

echo "provider=$provider endpoint=$endpoint size=$size iterations=$iters rounds=$rounds priority=${rt[*]:-normal}"
printf "%-6s %18s %18s %18s\n" round "fi usec/xfer" "kvxfer p50" "kvxfer usec/xfer"
: >"$tmp/fi"; : >"$tmp/p50"; : >"$tmp/mean"
for r in $(seq 1 "$rounds"); do
    f=$(fi_round)
    read -r p50 mean < <(kv_round)
    echo "$f" >>"$tmp/fi"; echo "$p50" >>"$tmp/p50"; echo "$mean" >>"$tmp/mean"
    printf "%-6s %18s %18.3f %18.3f\n" "$r" "$f" "$p50" "$mean"
done
mf=$(median <"$tmp/fi"); mp=$(median <"$tmp/p50"); mm=$(median <"$tmp/mean")
printf "%-6s %18s %18.3f %18.3f\n" median "$mf" "$mp" "$mm"
# Each kvxfer round is paired with the fi_pingpong round before it (the host's latency mode
# changes for minutes at a time; a pair shares it).
python3 "$repo/scripts/ratios.py" "p50 vs usec/xfer" kvxfer fi_pingpong us lower \
    -- $(cat "$tmp/p50") -- $(cat "$tmp/fi")
python3 "$repo/scripts/ratios.py" "usec/xfer vs usec/xfer" kvxfer fi_pingpong us lower \
    -- $(cat "$tmp/mean") -- $(cat "$tmp/fi")
