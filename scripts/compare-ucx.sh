#!/usr/bin/env bash
# kvxfer ucx-perf against the ucx_perftest of the same UCX (the set-up's 1.22), side by side: the two tools run interleaved
# (A B A B ...) on the same UCX transport, size and iteration count, each as a server and a
# client on 127.0.0.1, and the script prints the median of each tool's figure and of the
# per-round ratios, with its interval and verdict (scripts/ratios.py).
#
#   scripts/compare-ucx.sh [ROUNDS]      (default 5 rounds per case; with the defaults it runs
#                                         several minutes: CASES=lat-tcp for one case)
#
# Cases: 64-byte tag_lat over UCX_TLS=tcp (UCX_NET_DEVICES=lo) and over UCX_TLS=posix, and
# 672M tag_bw over tcp. The ratio printed is the median of per-round ratios (each kvxfer run
# against the ucx_perftest run right after it). Figures compared:
#   tag_lat  kvxfer's p50 over all iterations (HDR)  vs  ucx_perftest's percentile column
#            (median of its last 2048 iterations); microseconds, lower is better.
#   tag_bw   kvxfer's bandwidth, which runs to the receiver's acknowledgement, vs ucx_perftest's
#            overall MB/s (1.18+ acknowledges the end; Debian's 1.13 stops at local send
#            completion, no acknowledgement);
#            both in MiB/s (ucx_perftest's MB/s is 2^20 bytes/s); higher is better.
# Env: KVXFER (binary; default target/release/kvxfer, built if missing), UCX_PERFTEST (default
# .cache/ucx/bin/ucx_perftest, the launcher of scripts/setup.sh's UCX 1.22), LAT_ITERS (20000),
# BW_ITERS (10), BW_SIZE (672M), CASES (default "lat-tcp lat-posix bw-tcp": a subset to run). Two busy-polling processes need both cores: run it on an idle
# machine and read the ratios, not the absolute figures.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-5}"
kvxfer="${KVXFER:-$repo/target/release/kvxfer}"
lat_iters="${LAT_ITERS:-20000}"
bw_iters="${BW_ITERS:-10}"
bw_size="${BW_SIZE:-672M}"
tmp="$(mktemp -d)"
# Stopped (Ctrl-C, kill): end the background servers and wait for every child before the
# folder they write into goes.
cleanup() {
    local j
    for j in $(jobs -p); do kill "$j" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "compare-ucx.sh: $*" >&2; exit 1; }
perftest="${UCX_PERFTEST:-$repo/.cache/ucx/bin/ucx_perftest}"
[ -x "$perftest" ] || die "$perftest not found (scripts/setup.sh installs UCX 1.22)"
command -v python3 >/dev/null || die "python3 not found"
if [ -z "${KVXFER:-}" ] && [ ! -x "$kvxfer" ]; then
    (cd "$repo" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[ -x "$kvxfer" ] || die "$kvxfer is not an executable"

bytes() { # 672M -> 704643072
    python3 -c "import sys; s=sys.argv[1].upper(); m={'K':1<<10,'M':1<<20,'G':1<<30}
print(int(s[:-1])*m[s[-1]] if s[-1] in m else int(s))" "$1"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# run_ucx_perftest TEST SIZE ITERS -> prints the compared figure
run_ucx_perftest() {
    local test=$1 size=$2 iters=$3 p out
    for _ in 1 2 3; do
        p=$(port)
        timeout -k 5 120 "$perftest" -p "$p" >/dev/null 2>&1 &
        local srv=$!
        sleep 0.5
        # Children run in the background and are waited for, so a stop reaches them at once.
        timeout -k 5 120 "$perftest" 127.0.0.1 -p "$p" -t "$test" -s "$size" -n "$iters" \
            >"$tmp/perftest.out" 2>&1 &
        wait $! || true
        out=$(cat "$tmp/perftest.out")
        wait "$srv" 2>/dev/null || true
        local final
        final=$(grep -E '^ *Final:' <<<"$out" || true)
        if [ -n "$final" ]; then
            # Final: iters percentile avg-lat overall-lat avg-bw overall-bw avg-msg overall-msg
            if [ "$test" = tag_lat ]; then awk '{print $3}' <<<"$final"; else awk '{print $7}' <<<"$final"; fi
            return 0
        fi
    done
    echo "ucx_perftest failed: $out" >&2
    return 1
}

# run_kvxfer TEST SIZE ITERS WARMUP -> prints the compared figure
run_kvxfer() {
    local test=$1 size=$2 iters=$3 warmup=$4 p
    p=$(port)
    local args=(ucx-perf -t "$test" -s "$size" -n "$iters" -w "$warmup" --timeout 120)
    timeout 180 "$kvxfer" "${args[@]}" --listen "127.0.0.1:$p" >/dev/null 2>"$tmp/target.err" &
    local tgt=$!
    timeout 180 "$kvxfer" "${args[@]}" --peer "127.0.0.1:$p" --json "$tmp/k.json" >/dev/null &
    wait $! || { cat "$tmp/target.err" >&2; die "kvxfer $test failed"; }
    wait "$tgt" || die "kvxfer target failed: $(cat "$tmp/target.err")"
    python3 - "$tmp/k.json" "$test" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(r["latency_us"]["p50"] if sys.argv[2] == "tag_lat" else r["extra"]["bandwidth_mib_s"])
PY
}

# case LABEL TLS TEST SIZE ITERS WARMUP
case_() {
    local label=$1 tls=$2 test=$3 size=$4 iters=$5 warmup=$6 ours=() theirs=()
    export UCX_TLS="$tls"
    if [ "$tls" = tcp ]; then export UCX_NET_DEVICES=lo; else unset UCX_NET_DEVICES; fi
    local nbytes
    nbytes=$(bytes "$size")
    for ((i = 1; i <= rounds; i++)); do
        # Called in this shell, not in $(...), so that the stop trap sees their children.
        run_kvxfer "$test" "$size" "$iters" "$warmup" >"$tmp/ours"
        run_ucx_perftest "$test" "$nbytes" "$iters" >"$tmp/theirs"
        ours+=("$(cat "$tmp/ours")")
        theirs+=("$(cat "$tmp/theirs")")
    done
    local unit=MiB/s better=higher
    [ "$test" = tag_lat ] && unit="us(p50)" better=lower
    # Each kvxfer run is paired with the ucx_perftest run right after it: this host switches
    # between speed modes for minutes at a time, and a pair shares its mode.
    python3 "$repo/scripts/ratios.py" "$label" kvxfer ucx_perftest "$unit" "$better" \
        -- "${ours[@]}" -- "${theirs[@]}"
    echo "    kvxfer runs: ${ours[*]}"
    echo "    ucx_perftest runs: ${theirs[*]}"
}

echo "# $rounds interleaved rounds per case; $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
cases="${CASES:-lat-tcp lat-posix bw-tcp}"
for c in $cases; do
    case "$c" in
        lat-tcp) case_ "tag_lat 64 B tcp" tcp tag_lat 64 "$lat_iters" 2000 ;;
        lat-posix) case_ "tag_lat 64 B posix" posix tag_lat 64 "$lat_iters" 2000 ;;
        bw-tcp) case_ "tag_bw $bw_size tcp" tcp tag_bw "$bw_size" "$bw_iters" 1 ;;
        *) die "unknown case $c (lat-tcp, lat-posix, bw-tcp)" ;;
    esac
done
